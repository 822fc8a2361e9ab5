"""The ``auto`` settings of a run: precision, memory format and view batching per device.

``train.precision: auto`` picks bf16 autocast where the hardware runs it fast (CPUs with
AVX512-BF16 or AMX, CUDA devices with bf16 support), fp16 with a GradScaler on CUDA devices
without bf16, and fp32 otherwise. ``train.channels_last: auto`` is on for convolutional
backbones. ``method.concat_views: auto`` (resolved by
:func:`xbyol.methods.byol.resolve_concat_views`, beside the views it batches) passes the two
BYOL views as one concatenated batch on every device (measured: benchmarks/BENCHMARKS.md,
sections "Training throughput (CPU)" and "GPU").
"""

from __future__ import annotations

import torch
from torch import nn


def bf16_is_fast(device: torch.device) -> bool:
    """Whether ``device`` has native bf16 arithmetic (so autocast to bf16 speeds it up)."""
    if device.type == "cuda":
        return bool(torch.cuda.is_bf16_supported())
    if device.type == "cpu":
        return bool(torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported())
    return False


def resolve_precision(value: str, device: torch.device) -> str:
    """``"auto"`` -> ``"bf16"``, ``"fp16"`` or ``"fp32"`` for ``device``; other values unchanged."""
    if value != "auto":
        return value
    if bf16_is_fast(device):
        return "bf16"
    return "fp16" if device.type == "cuda" else "fp32"


def is_convolutional(module: nn.Module) -> bool:
    return any(isinstance(m, nn.Conv2d) for m in module.modules())


def resolve_channels_last(value: bool | str, backbone: nn.Module) -> bool:
    """``"auto"`` -> on for convolutional backbones (oneDNN and cuDNN prefer NHWC)."""
    return is_convolutional(backbone) if value == "auto" else bool(value)
