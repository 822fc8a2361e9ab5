"""One BYOL view as a single pure function of the batch and its drawn parameters, for ``torch.compile``.

:class:`~xbyol.augment.views.ByolViews` draws every random parameter on the CPU (crop
boxes, flips, jitter factors and order, blur sigmas, which samples each op touches) and,
by default on the CPU, applies each op eagerly, on the subset of samples it touches. On
a GPU that eager path is about a hundred small kernels per view whose launches cost more
than the GPU needs to run them. :func:`batched_view` computes the same view from the
same parameters with a graph that does not depend on them:

- crop + flip: the sampling grid is built on the device from the ``[B, 4]`` boxes and
  ``[B]`` flips (the eager path builds the ``[B, S, S, 2]`` grid on the CPU and copies it
  over), then one ``grid_sample``;
- every op with a probability runs on the whole batch and ``torch.lerp`` with 0 / 1
  weights keeps its result where it was drawn (exact both ways);
- the colour jitter's random order becomes data: slot ``k`` of the jitter computes each
  active step and keeps the one that ``sel[k]`` (one-hot) names, so one graph serves all
  24 orders (``x * 1 + y * 0`` is exact for finite values).

Compiled (:func:`compiled_batched_view`, inductor), a view is a handful of fused kernels
whatever the batch size. The results equal the eager path's up to float rounding
(``tests/augment/test_batched_views.py`` checks every op and whole views for the same seed).
"""

from __future__ import annotations

import warnings
from typing import Any, Callable, NamedTuple

import torch
import torch.nn.functional as F

from xbyol.augment.blur import separable_blur
from xbyol.augment.preprocessing import normalize

LUMA = (0.299, 0.587, 0.114)
HUE_OFFSETS = (3.0, 1.0, -1.0)  # n - 2 for n = 5, 3, 1 (R, G, B)
JITTER_STEPS = ("brightness", "contrast", "saturation", "hue")


class ViewSpec(NamedTuple):
    """What a view does, fixed when the pipeline is built (a compiled graph is specialised to it).

    Attributes:
        size: output side ``S``.
        jitter: indices into :data:`JITTER_STEPS` of the active jitter steps (empty: no jitter).
        grayscale, solarize: whether the view has these ops.
        blur: number of blur taps ``K`` (0: no blur).
        normalize: whether the view is normalised with ``IMAGE_MEAN`` / ``IMAGE_STD`` at the end.
    """

    size: int
    jitter: tuple[int, ...]
    grayscale: bool
    blur: int
    solarize: bool
    normalize: bool


def to_grid(coord: torch.Tensor, size: int) -> torch.Tensor:
    """Pixel coordinates -> ``grid_sample``'s [-1, 1] with ``align_corners=True``."""
    return coord * (2.0 / max(size - 1, 1)) - 1.0


def crop_source_coords(boxes: torch.Tensor, flip: torch.Tensor, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Source pixel coordinates ``(src_x, src_y)``, each ``[B, S]``, of a crop's output columns and rows.

    Output pixel ``(i, j)`` reads ``(x0 + j' (w - 1) / (S - 1), y0 + i (h - 1) / (S - 1))``
    for boxes ``[B, 4]`` ``(x0, y0, w, h)``, with ``j' = S - 1 - j`` where ``flip [B]`` is set,
    else ``j``: the box's corner pixels land on the output's corner pixels. Computed in
    ``boxes``' dtype on its device.
    """
    j = torch.arange(size, dtype=boxes.dtype, device=boxes.device)  # (S,)
    step = 1.0 / max(size - 1, 1)
    x0, y0, w, h = boxes.unbind(1)  # (B,) each
    jx = torch.where(flip.view(-1, 1), (size - 1) - j, j)  # (B, S)
    src_x = x0.view(-1, 1) + jx * ((w.view(-1, 1) - 1) * step)  # (B, S)
    src_y = y0.view(-1, 1) + j * ((h.view(-1, 1) - 1) * step)  # (B, S)
    return src_x, src_y


def crop_grid(boxes: torch.Tensor, flip: torch.Tensor, size: int, height: int, width: int, dtype: torch.dtype) -> torch.Tensor:
    """The ``grid_sample`` grid ``[B, S, S, 2]`` of boxes ``[B, 4]`` ``(x0, y0, w, h)`` and flips ``[B]`` (bool), on their device.

    Output pixel ``(i, j)`` reads ``(x0 + j' (w - 1) / (S - 1), y0 + i (h - 1) / (S - 1))``
    with ``j' = S - 1 - j`` for flipped samples, else ``j``; computed in ``boxes``' dtype
    (float64 for the same grid as the eager path) and returned in ``dtype``.
    """
    s = size
    src_x, src_y = crop_source_coords(boxes, flip, s)  # (B, S) each
    gx = to_grid(src_x, width).to(dtype).view(-1, 1, s).expand(-1, s, s)  # (B, S, S): x along the columns
    gy = to_grid(src_y, height).to(dtype).view(-1, s, 1).expand(-1, s, s)
    return torch.stack([gx, gy], dim=-1)  # (B, S, S, 2)


def grey(x: torch.Tensor) -> torch.Tensor:
    """Luma ``0.299 R + 0.587 G + 0.114 B`` of ``[B, 3, H, W]`` -> ``[B, 1, H, W]``."""
    r, g, b = x.unbind(1)
    return (r * LUMA[0] + g * LUMA[1] + b * LUMA[2]).unsqueeze(1)


def brightness(x: torch.Tensor, f: torch.Tensor) -> torch.Tensor:
    """``clamp(b x)``; ``f [B, 1, 1, 1]``."""
    return (x * f).clamp(0.0, 1.0)


def contrast(x: torch.Tensor, f: torch.Tensor) -> torch.Tensor:
    """``clamp(c x + (1 - c) mean(grey(x)))`` per sample; ``f [B, 1, 1, 1]``."""
    m = x.mean(dim=(2, 3))  # (B, 3)
    mean = (m[:, 0] * LUMA[0] + m[:, 1] * LUMA[1] + m[:, 2] * LUMA[2]).view(-1, 1, 1, 1)  # (B, 1, 1, 1)
    return (x * f + mean * (1 - f)).clamp(0.0, 1.0)


def saturation(x: torch.Tensor, f: torch.Tensor) -> torch.Tensor:
    """``clamp(s x + (1 - s) grey(x))`` per sample; ``f [B, 1, 1, 1]``."""
    return torch.lerp(grey(x).expand_as(x), x, f).clamp(0.0, 1.0)


def hue(x: torch.Tensor, f: torch.Tensor) -> torch.Tensor:
    """Turn the HSV hue by ``f [B, 1, 1, 1]`` of a full turn: the formula of ``views.adjust_hue``, out of place."""
    r, g, b = x.unbind(1)  # (B, H, W) each
    mx = torch.maximum(torch.maximum(r, g), b)
    chroma = mx - torch.minimum(torch.minimum(r, g), b)
    is_r = (r == mx).to(x.dtype)
    is_g = (g == mx).to(x.dtype) * (1.0 - is_r)
    is_b = 1.0 - (is_r + is_g)
    num = (g - b) * is_r + (b - r + 2.0 * chroma) * is_g + (r - g + 4.0 * chroma) * is_b
    h = num / chroma.clamp_min(1e-12) + (f * 6.0).view(-1, 1, 1)  # (B, H, W) turned hue, sextants
    offsets = torch.tensor(HUE_OFFSETS, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    t = h.unsqueeze(1) + offsets  # (B, 3, H, W)
    t = t - torch.floor(t * (1.0 / 6.0)) * 6.0
    w = ((t - 3.0).abs() - 1.0).clamp(0.0, 1.0)
    return mx.unsqueeze(1) - chroma.unsqueeze(1) * w  # (B, 3, H, W)


_STEP_FNS = (brightness, contrast, saturation, hue)


def batched_view(x: torch.Tensor, p: dict[str, torch.Tensor], spec: ViewSpec) -> torch.Tensor:
    """One view of ``x [B, 3, H, W]`` (float in [0, 1]) from drawn parameters, every op on the whole batch.

    Args:
        x: the images, on the device.
        p: the view's parameters on ``x``'s device (``ViewPipeline.batched_params``):
            ``boxes [B, 4]`` float64, ``flip [B]`` bool; with jitter ``jitter_keep
            [B, 1, 1, 1]``, ``jitter_factors [4, B, 1, 1, 1]`` and ``jitter_sel [A, A]``
            (row ``k``: one-hot over the active steps, the one applied ``k``-th); ``gray_keep``;
            ``blur_keep`` and ``blur_taps [B, K]``; ``solarize_keep``. Every ``*_keep`` is
            ``[B, 1, 1, 1]`` in ``x``'s dtype, 1 where the op was drawn.
        spec: the view's fixed structure.

    Returns:
        ``[B, 3, S, S]`` in ``x``'s dtype (normalised when ``spec.normalize``).
    """
    grid = crop_grid(p["boxes"], p["flip"], spec.size, x.shape[-2], x.shape[-1], x.dtype)
    v = F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=True)  # (B, 3, S, S)
    if spec.jitter:
        y = v
        factors, sel = p["jitter_factors"], p["jitter_sel"]
        for k in range(len(spec.jitter)):
            outs = [_STEP_FNS[i](y, factors[i]) for i in spec.jitter]
            y = sum((sel[k, a] * o for a, o in enumerate(outs[1:], start=1)), sel[k, 0] * outs[0])
        v = torch.lerp(v, y, p["jitter_keep"])
    if spec.grayscale:
        v = torch.lerp(v, grey(v).expand_as(v), p["gray_keep"])
    if spec.blur:
        v = torch.lerp(v, separable_blur(v, p["blur_taps"], "reflect"), p["blur_keep"])
    if spec.solarize:
        v = torch.lerp(v, torch.minimum(v, 1.0 - v), p["solarize_keep"])
    return normalize(v) if spec.normalize else v


_compiled: Callable[..., torch.Tensor] | None = None


def compiled_batched_view() -> Callable[..., torch.Tensor]:
    """:func:`batched_view` under ``torch.compile`` (one graph per view structure, shape and device).

    Made once per process. Shapes are first compiled static; when a view structure meets a
    second shape, dynamo makes that graph's sizes symbolic (``dynamic=None``, torch's
    default), so a process that trains at several batch or image sizes compiles a few graphs,
    not one per shape. The recompile limit is raised so that such a process keeps its graphs.
    """
    global _compiled
    if _compiled is None:
        cfg: Any = torch._dynamo.config
        for name in ("recompile_limit", "cache_size_limit"):
            if hasattr(cfg, name):
                setattr(cfg, name, max(getattr(cfg, name), 64))
                break
        _compiled = torch.compile(batched_view, fullgraph=True)
    return _compiled


def warn_fallback(exc: BaseException) -> None:
    """The one warning when compiling the views failed and the eager path takes over."""
    warnings.warn(
        f"aug.compile: compiling the views failed ({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}); "
        "using the eager views for the rest of the run",
        RuntimeWarning,
        stacklevel=3,
    )
