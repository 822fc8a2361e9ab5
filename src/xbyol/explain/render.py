"""Heatmaps and images as pictures: colour maps applied in torch, overlays, PNG files and
``data:image/png;base64,...`` URIs, integer nearest-neighbour upscaling.

Shared by ``xbyol explain`` (PNG files), the HTML report and the web explorer (inline URIs),
so the same map looks the same everywhere: :data:`OVERLAY_CMAP` at an opacity that follows
the map's value (:data:`OVERLAY_ALPHA` at 1), ground-truth masks as a cyan outline.
"""

from __future__ import annotations

import base64
import io
import math
from pathlib import Path

import numpy as np
import torch

__all__ = ["OVERLAY_ALPHA", "OVERLAY_CMAP", "colorbar_uri", "colorize", "heat_layer_uri", "image_data_uri", "mask_outline",
           "outline_uri", "overlay", "overlay_uri", "png_bytes", "png_data_uri", "save_heatmaps_npy", "save_overlay", "upscale"]

#: heatmap colours: perceptually uniform, dark (transparent) at 0, pale yellow at 1
OVERLAY_CMAP = "inferno"
#: heatmap opacity where the map is 1; it falls to 0 with the map so the image keeps its colours
OVERLAY_ALPHA = 0.8
#: colour of a ground-truth mask outline (cyan: not in the inferno colormap)
OUTLINE_RGB = (0, 255, 255)


def png_data_uri(png: bytes) -> str:
    """``data:`` URI of PNG bytes."""
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def upscale(arr: np.ndarray, min_size: int) -> np.ndarray:
    """``[H, W, ...]`` repeated by the smallest integer factor (nearest) that makes ``min(H, W) >= min_size``."""
    side = min(arr.shape[0], arr.shape[1])
    if not min_size or side >= min_size:
        return arr
    f = math.ceil(min_size / side)
    return arr.repeat(f, axis=0).repeat(f, axis=1)


def png_bytes(image: torch.Tensor | np.ndarray, min_size: int = 0) -> bytes:
    """PNG of an image, upscaled by an integer factor (nearest) to at least ``min_size``.

    Args:
        image: uint8 ``[3, H, W]`` tensor or ``[H, W, 3]`` (RGB) / ``[H, W, 4]`` (RGBA) array.
        min_size: smallest displayed side in pixels (0: as is).
    """
    from PIL import Image

    if isinstance(image, torch.Tensor):
        if image.dim() != 3 or image.shape[0] != 3:
            raise ValueError(f"png_bytes: expected a [3, H, W] tensor, got {list(image.shape)}")
        arr = image.detach().cpu().permute(1, 2, 0).numpy()  # (H, W, 3)
    else:
        arr = np.asarray(image)
    if arr.dtype != np.uint8 or arr.ndim != 3 or arr.shape[2] not in (3, 4):
        raise ValueError(f"png_bytes: expected uint8 [H, W, 3] or [H, W, 4], got {arr.dtype} {list(arr.shape)}")
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(upscale(arr, min_size))).save(buf, format="PNG")
    return buf.getvalue()


def image_data_uri(image: torch.Tensor | np.ndarray, min_size: int = 0) -> str:
    """PNG ``data:`` URI of :func:`png_bytes`."""
    return png_data_uri(png_bytes(image, min_size))


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
    Image.fromarray(upscale(arr, min_size)).save(path, format="PNG")
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


def mask_outline(mask: np.ndarray) -> np.ndarray:
    """The 1-pixel inner boundary of a bool mask ``[H, W]``: mask pixels with a 4-neighbour outside it."""
    padded = np.pad(mask, 1, constant_values=False)
    inner = padded[:-2, 1:-1] & padded[2:, 1:-1] & padded[1:-1, :-2] & padded[1:-1, 2:]
    return mask & ~inner


def overlay_uri(image: torch.Tensor, heatmap: torch.Tensor, min_size: int = 96, alpha: float = OVERLAY_ALPHA,
                mask: torch.Tensor | None = None) -> str:
    """PNG ``data:`` URI of a heatmap ``[H, W]`` over a uint8 image ``[3, H, W]``, upscaled to ``min_size``.

    The heatmap's opacity follows its value (``alpha`` at 1, transparent at 0; see
    :func:`overlay`), so the image keeps its colours where the map is
    low. ``mask`` (bool ``[H, W]``) is drawn as a thin cyan outline at the displayed size.
    """
    out = upscale(overlay(image.cpu(), heatmap.cpu(), alpha=alpha, cmap=OVERLAY_CMAP, by_value=True).numpy(), min_size)
    if mask is not None:
        out = out.copy()
        out[mask_outline(upscale(mask.cpu().numpy().astype(bool), min_size))] = OUTLINE_RGB
    return image_data_uri(out)


def heat_layer_uri(heatmap: torch.Tensor, min_size: int = 96, alpha: float = OVERLAY_ALPHA) -> str:
    """The heatmap alone as an RGBA PNG ``data:`` URI: colour ``cmap(v)``, opacity ``alpha * v``.

    Drawn over the image in a browser it gives :func:`overlay_uri`'s picture (without the
    outline), and its CSS opacity can be changed with a slider.
    """
    h = heatmap.detach().float().cpu().clamp(0, 1)  # (H, W)
    rgb = (colorize(h, OVERLAY_CMAP) * 255).round().to(torch.uint8)  # (H, W, 3)
    a = (alpha * h * 255).round().to(torch.uint8)[..., None]  # (H, W, 1)
    return image_data_uri(upscale(torch.cat([rgb, a], dim=-1).numpy(), min_size))


def outline_uri(mask: torch.Tensor, min_size: int = 96) -> str:
    """A transparent RGBA PNG ``data:`` URI holding only the cyan outline of a bool mask ``[H, W]``."""
    edge = mask_outline(upscale(mask.cpu().numpy().astype(bool), min_size))
    out = np.zeros((*edge.shape, 4), dtype=np.uint8)
    out[edge] = (*OUTLINE_RGB, 255)
    return image_data_uri(out)


def colorbar_uri(width: int = 256, height: int = 12) -> str:
    """A horizontal colour bar of :data:`OVERLAY_CMAP` from 0 (left) to 1 (right)."""
    ramp = torch.linspace(0, 1, width)[None].expand(height, width)  # (h, w)
    return image_data_uri((colorize(ramp, OVERLAY_CMAP) * 255).round().to(torch.uint8).numpy())

