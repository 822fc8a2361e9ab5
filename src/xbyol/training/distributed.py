"""torch.distributed helpers; launched by ``torchrun`` (nothing home-made)."""

from __future__ import annotations

import os

import torch
import torch.distributed as dist


def is_distributed() -> bool:
    return dist.is_available() and dist.is_initialized()


def rank() -> int:
    return dist.get_rank() if is_distributed() else 0


def world_size() -> int:
    return dist.get_world_size() if is_distributed() else 1


def is_main() -> bool:
    return rank() == 0


def init_from_env(device: torch.device) -> bool:
    """Initialise the process group when launched by torchrun (``WORLD_SIZE`` > 1).

    Uses NCCL on CUDA and gloo on CPU. Returns whether training is distributed.
    """
    if is_distributed():
        return True
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return False
    backend = "nccl" if device.type == "cuda" else "gloo"
    dist.init_process_group(backend=backend)
    return True


def barrier() -> None:
    if is_distributed():
        dist.barrier()


def all_reduce_mean(x: torch.Tensor) -> torch.Tensor:
    if not is_distributed():
        return x
    y = x.detach().clone()
    dist.all_reduce(y)
    return y / world_size()


def local_world_size() -> int:
    """Training processes on this machine (torchrun's ``LOCAL_WORLD_SIZE``; 1 outside torchrun)."""
    return int(os.environ.get("LOCAL_WORLD_SIZE", "1"))
