"""Heatmaps over images: matplotlib colormaps applied in torch, PNG and ``.npy`` writers."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch

__all__ = ["colorize", "overlay", "save_heatmaps_npy", "save_overlay"]


def colorize(heatmap: torch.Tensor, cmap: str = "jet") -> torch.Tensor:
    """Map values in [0, 1] through a matplotlib colormap (256-entry lookup table).

    Args:
        heatmap: ``[H, W]`` float; values are clamped to [0, 1].
        cmap: a matplotlib colormap name.

    Returns:
        ``[H, W, 3]`` float RGB in [0, 1] on the heatmap's device.
    """
    import matplotlib  # heavy: imported on first use

    try:
        lut = matplotlib.colormaps[cmap].resampled(256)(range(256))[:, :3]  # (256, 3)
    except KeyError:
        raise ValueError(f"unknown matplotlib colormap {cmap!r}") from None
    table = torch.as_tensor(lut, dtype=torch.float32, device=heatmap.device)
    index = (heatmap.float().clamp(0, 1) * 255).round().long()  # (H, W)
    return table[index]  # (H, W, 3)


def overlay(image: torch.Tensor, heatmap: torch.Tensor, alpha: float = 0.5, cmap: str = "jet",
            by_value: bool = False) -> torch.Tensor:
    """Blend a colourised heatmap over an image: ``(1 - a) * image + a * cmap(heatmap)``.

    With ``by_value=False`` the opacity is ``a = alpha`` everywhere (the classic CAM figure;
    a jet map at 0.5 turns a red object magenta where the map is low). With
    ``by_value=True`` it is ``a = alpha * heatmap`` per pixel: where the map is 0 the image
    keeps its own colours, and only the regions the map points at are tinted.

    Args:
        image: ``[3, H, W]`` uint8, or float in [0, 1] (unnormalised; use
            ``xbyol.augment.unnormalize`` on model inputs).
        heatmap: ``[H, W]`` in [0, 1] (an explainer's normalised output).
        alpha: heatmap opacity in [0, 1] (the largest, with ``by_value``).
        cmap: a matplotlib colormap name.
        by_value: opacity proportional to the heatmap value.

    Returns:
        ``[H, W, 3]`` uint8 on the image's device (``.cpu().numpy()`` for Pillow).
    """
    if not isinstance(image, torch.Tensor) or image.dim() != 3 or image.shape[0] != 3:
        shape = list(image.shape) if isinstance(image, torch.Tensor) else type(image).__name__
        raise ValueError(f"overlay: image must be [3, H, W], got {shape}")
    if not isinstance(heatmap, torch.Tensor) or heatmap.dim() != 2 or heatmap.shape != image.shape[1:]:
        shape = list(heatmap.shape) if isinstance(heatmap, torch.Tensor) else type(heatmap).__name__
        raise ValueError(f"overlay: heatmap must be [H, W] = {list(image.shape[1:])} like the image, got {shape}")
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"overlay: alpha must be in [0, 1], got {alpha}")
    if not torch.isfinite(heatmap).all():
        raise ValueError("overlay: heatmap contains NaN or inf")
    if image.dtype == torch.uint8:
        rgb = image.float() / 255.0
    elif image.is_floating_point():
        rgb = image.float().clamp(0, 1)
    else:
        raise TypeError(f"overlay: image must be uint8 or float in [0, 1], got {image.dtype}")
    heat = heatmap.to(image.device).float()
    colour = colorize(heat, cmap)  # (H, W, 3)
    a = alpha * heat.clamp(0, 1)[..., None] if by_value else alpha  # (H, W, 1) or a number
    blended = (1 - a) * rgb.permute(1, 2, 0) + a * colour  # (H, W, 3)
    return (blended * 255).round().clamp(0, 255).to(torch.uint8)


def save_overlay(
    path: str | Path, image: torch.Tensor, heatmap: torch.Tensor, alpha: float = 0.5, cmap: str = "jet",
    by_value: bool = False, min_size: int = 0,
) -> Path:
    """Write :func:`overlay` as a PNG, upscaled by an integer factor (nearest: each pixel a
    sharp block) until its shorter side is at least ``min_size``; returns the path."""
    from PIL import Image

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    arr = overlay(image, heatmap, alpha=alpha, cmap=cmap, by_value=by_value).cpu().numpy()  # (H, W, 3)
    side = min(arr.shape[:2])
    if min_size > side:
        f = math.ceil(min_size / side)
        arr = arr.repeat(f, axis=0).repeat(f, axis=1)
    Image.fromarray(arr).save(path, format="PNG")
    return path


def save_heatmaps_npy(path: str | Path, heatmaps: torch.Tensor) -> Path:
    """Save heatmaps ``[B, H, W]`` (or ``[H, W]``) as float32 ``.npy``; returns the path."""
    if not isinstance(heatmaps, torch.Tensor) or heatmaps.dim() not in (2, 3):
        shape = list(heatmaps.shape) if isinstance(heatmaps, torch.Tensor) else type(heatmaps).__name__
        raise ValueError(f"save_heatmaps_npy: expected heatmaps [B, H, W] or [H, W], got {shape}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.save(path, heatmaps.detach().float().cpu().numpy())
    return path
