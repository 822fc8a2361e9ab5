"""torch.distributed helpers; launched by ``torchrun`` (nothing home-made)."""

from __future__ import annotations

import os
from typing import Any

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


def union_over_ranks(items: set[int]) -> set[int]:
    """The union of every rank's ``items`` (a collective: all ranks call it at the same step); ``items`` without DDP."""
    if not is_distributed():
        return items
    parts: list[Any] = [None] * world_size()
    dist.all_gather_object(parts, items)
    return set().union(*parts)


def local_world_size() -> int:
    """Training processes on this machine (torchrun's ``LOCAL_WORLD_SIZE``; 1 outside torchrun)."""
    return int(os.environ.get("LOCAL_WORLD_SIZE", "1"))
