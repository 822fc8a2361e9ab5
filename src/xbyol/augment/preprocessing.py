"""The one input transform of every model: uint8 or [0, 1] float images -> ImageNet-normalised floats.

``preprocess(uint8 [B,3,H,W]) -> float [B,3,H,W]``, its inverse :func:`unnormalize` for
display, and the mean/std constants.
"""

from __future__ import annotations

import torch

IMAGE_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
IMAGE_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)


def _check_batch(x: torch.Tensor, name: str) -> None:
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name}: expected a torch.Tensor [B, 3, H, W], got {type(x).__name__}")
    if x.dim() != 4 or x.shape[1] != 3:
        raise ValueError(f"{name}: expected a tensor of shape [B, 3, H, W], got {list(x.shape)}")


def to_unit_float(images: torch.Tensor) -> torch.Tensor:
    """uint8 images in [0, 255] -> float32 in [0, 1]; float images are returned as they are.

    Args:
        images: ``[B, 3, H, W]`` uint8, or float already in [0, 1].

    Returns:
        ``[B, 3, H, W]`` float on the input's device.
    """
    _check_batch(images, "images")
    if images.dtype == torch.uint8:
        return images.float().div_(255.0)
    if not images.is_floating_point():
        raise TypeError(f"images: expected uint8 or a float dtype, got {images.dtype}")
    return images


def move_like(t: torch.Tensor, x: torch.Tensor, dtype: torch.dtype | None = None) -> torch.Tensor:
    """``t`` (made on the CPU: random parameters, constants) on ``x``'s device, in ``dtype`` or ``x``'s.

    The copy does not wait for the device. A blocking host-to-device copy makes PyTorch
    synchronise the stream, so the host would stall until every queued kernel had run, once
    per parameter of every op; a non-blocking copy from ordinary (pageable) memory is staged
    by the CUDA driver before the call returns, so ``t`` may be freed or changed at once. On
    the CPU it is an ordinary ``to``.
    """
    return t.to(device=x.device, dtype=x.dtype if dtype is None else dtype, non_blocking=True)


def _stats(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    mean = move_like(torch.tensor(IMAGE_MEAN), x).view(1, 3, 1, 1)
    std = move_like(torch.tensor(IMAGE_STD), x).view(1, 3, 1, 1)
    return mean, std


def normalize(x: torch.Tensor) -> torch.Tensor:
    """Float images in [0, 1] ``[B, 3, H, W]`` -> ``(x - IMAGE_MEAN) / IMAGE_STD``."""
    _check_batch(x, "x")
    mean, std = _stats(x)
    return (x - mean).div_(std)


def preprocess(images: torch.Tensor) -> torch.Tensor:
    """The one input transform of every model: scale to [0, 1], then normalise.

    Args:
        images: ``[B, 3, H, W]`` uint8 in [0, 255], or float in [0, 1] (not range-checked).

    Returns:
        ``[B, 3, H, W]`` float (float32 for uint8 input), on the input's device.
    """
    return normalize(to_unit_float(images))


def unnormalize(x: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`preprocess` for display: ``x * IMAGE_STD + IMAGE_MEAN``, clamped to [0, 1].

    Args:
        x: ``[B, 3, H, W]`` normalised float images.

    Returns:
        ``[B, 3, H, W]`` float in [0, 1].
    """
    _check_batch(x, "x")
    mean, std = _stats(x)
    return (x * std + mean).clamp_(0.0, 1.0)
