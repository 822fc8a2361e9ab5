"""Localisation metrics: does a heatmap point at the ground-truth region?

All functions take ``heatmaps`` ``[B, H, W]`` (``[B, 1, H, W]`` is accepted and squeezed)
and boolean ``masks`` ``[B, H, W]`` of the same size (upsample the heatmap first; nothing
is resized here), and return one float per sample ``[B]``. A sample is NaN when the
metric is undefined for it: an empty mask, a heatmap with a non-finite value, or a
zero denominator.

References:
    - Pointing game: Zhang et al. 2016, "Top-down Neural Attention by Excitation
      Backprop" (arXiv 1608.00507); tolerance convention of facebookresearch/TorchRay
      ``torchray/benchmark/pointing_game.py`` (``dist^2 < tolerance^2``, 15 px at 224).
    - Energy pointing game: Wang et al. 2020, "Score-CAM" (arXiv 1910.01279). The
      reference code (haofanwang/Score-CAM ``utils/energyPointGame.py``) indexes the box
      as ``[x1:x2, y1:y2]``; here the box is rows ``y1..y2`` and columns ``x1..x2``.
    - Relevance mass and relevance rank accuracy: Arras et al. 2022, "CLEVR-XAI"
      (arXiv 2003.07258).
    - Mask IoU: intersection over union of the highlighted region and the mask, as in the
      localisation evaluations of Grad-CAM (Selvaraju et al. 2017, arXiv 1610.02391).

Unlike Quantus 0.6.0 ``PointingGame``, an empty mask gives NaN, never a hit; and unlike a
rule that accepts any tied maximum, a constant heatmap points nowhere and gives NaN.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor


def _as_heatmaps(heatmaps: Tensor, where: str) -> Tensor:
    """Checks and returns float heatmaps ``[B, H, W]`` (squeezes a ``[B, 1, H, W]`` input)."""
    if not isinstance(heatmaps, Tensor):
        raise TypeError(f"{where}: heatmaps must be a torch.Tensor, got {type(heatmaps).__name__}")
    if heatmaps.dim() == 4 and heatmaps.shape[1] == 1:
        heatmaps = heatmaps[:, 0]
    if heatmaps.dim() != 3:
        raise ValueError(f"{where}: heatmaps must be [B, H, W] (or [B, 1, H, W]), got shape {tuple(heatmaps.shape)}")
    if heatmaps.dtype == torch.bool or not heatmaps.is_floating_point():
        heatmaps = heatmaps.float()
    return heatmaps


def _prepare(heatmaps: Tensor, masks: Tensor, where: str) -> tuple[Tensor, Tensor, Tensor]:
    """Validates inputs; returns (finite heatmaps [B,H,W], masks [B,H,W], undefined [B] bool).

    Non-finite heatmap values are replaced by 0 so the arithmetic stays finite; such samples,
    and samples with an empty mask, are flagged in ``undefined`` and end up NaN.
    """
    h = _as_heatmaps(heatmaps, where)
    if not isinstance(masks, Tensor) or masks.dtype != torch.bool:
        got = masks.dtype if isinstance(masks, Tensor) else type(masks).__name__
        raise TypeError(f"{where}: masks must be a bool tensor [B, H, W], got {got}")
    if masks.dim() == 4 and masks.shape[1] == 1:
        masks = masks[:, 0]
    if masks.shape != h.shape:
        raise ValueError(
            f"{where}: masks shape {tuple(masks.shape)} must equal heatmaps shape {tuple(h.shape)} "
            "(resize the heatmap to the mask size first)"
        )
    masks = masks.to(h.device)
    finite = torch.isfinite(h).flatten(1).all(1)  # (B,)
    undefined = ~finite | ~masks.flatten(1).any(1)  # (B,)
    h = torch.where(torch.isfinite(h), h, torch.zeros((), dtype=h.dtype, device=h.device))
    return h, masks, undefined


def _nan_where(values: Tensor, undefined: Tensor) -> Tensor:
    return torch.where(undefined, torch.full_like(values, math.nan), values)


def default_tolerance(height: int) -> float:
    """Pointing-game tolerance in pixels: 15 px at 224 (EBP/TorchRay), scaled by ``height / 224``."""
    return 15.0 * height / 224.0


def _disk_dilate(masks: Tensor, tolerance: float) -> Tensor:
    """Pixels with a mask pixel at squared distance < ``tolerance**2``, or in the mask. [B,H,W] bool."""
    _, height, width = masks.shape
    radius = min(int(math.floor(tolerance)), max(height, width) - 1)
    offsets = torch.arange(-radius, radius + 1, device=masks.device, dtype=torch.float32)
    dist2 = offsets[:, None] ** 2 + offsets[None, :] ** 2  # (K, K)
    disk = (dist2 < tolerance**2) | (dist2 == 0)
    kernel = disk.float()[None, None]  # (1, 1, K, K)
    hits = F.conv2d(masks.float()[:, None], kernel, padding=radius)  # (B, 1, H, W) counts
    return hits[:, 0] > 0.5


def blank_maps(heatmaps: Tensor) -> Tensor:
    """Maps that point nowhere: constant (max == min) or holding a non-finite value. ``[B]`` bool.

    An all-zero Grad-CAM after its ReLU is the common case. Such a map has no peak, so the
    pointing game is undefined for it (NaN) rather than a hit; report how many there were.
    """
    h = _as_heatmaps(heatmaps, "blank_maps")
    flat = h.flatten(1)  # (B, N)
    finite = torch.isfinite(flat).all(1)  # (B,)
    safe = torch.where(torch.isfinite(flat), flat, torch.zeros((), dtype=flat.dtype, device=flat.device))
    return ~finite | (safe.amax(1) == safe.amin(1))


def pointing_location(heatmaps: Tensor) -> Tensor:
    """The one pixel each heatmap points at, ``[B, 2]`` long ``(row, column)``.

    The peak is the arg-max. When several pixels share the maximum, the point is the tied
    pixel nearest the centre of mass of all tied pixels (squared Euclidean distance; an
    exact tie in that distance goes to the first in row-major order). For one compact
    plateau this is its centre; the point is always a maximal pixel, so a ring of tied
    maxima does not point into its hole, and it never depends on which tied pixel happens
    to be nearest the mask. Non-finite values count as 0 here; :func:`blank_maps` flags
    those maps.
    """
    h = _as_heatmaps(heatmaps, "pointing_location")
    h = torch.where(torch.isfinite(h), h, torch.zeros((), dtype=h.dtype, device=h.device))
    b, height, width = h.shape
    peaks = h == h.amax(dim=(1, 2), keepdim=True)  # (B, H, W)
    weight = peaks.to(torch.float64)
    n = weight.sum(dim=(1, 2))  # (B,) >= 1
    rows = torch.arange(height, dtype=torch.float64, device=h.device)
    cols = torch.arange(width, dtype=torch.float64, device=h.device)
    mean_row = (weight.sum(2) * rows).sum(1) / n  # (B,)
    mean_col = (weight.sum(1) * cols).sum(1) / n  # (B,)
    dist2 = (rows[None, :, None] - mean_row[:, None, None]) ** 2 + (cols[None, None, :] - mean_col[:, None, None]) ** 2
    dist2 = torch.where(peaks, dist2, torch.full_like(dist2, math.inf))  # (B, H, W)
    flat = dist2.view(b, -1).argmin(1)  # (B,) first minimum in row-major order
    return torch.stack([flat // width, flat % width], dim=1)  # (B, 2)


def pointing_game(heatmaps: Tensor, masks: Tensor, tolerance_px: float | None = None) -> Tensor:
    """Pointing game (Zhang et al. 2016): does the heatmap's one peak land on the object?

    One point per map, as in TorchRay: the point ``p`` is :func:`pointing_location` (the
    arg-max; among tied maxima, the one nearest their centre of mass). The sample is a hit
    (1.0) when the mask has a pixel ``q`` with ``||p - q||^2 < tolerance_px^2`` (strict,
    TorchRay convention) or ``p`` lies in the mask itself (so ``tolerance_px=0`` is the
    no-tolerance rule). A constant or non-finite map (:func:`blank_maps`) points nowhere
    and is NaN, like an empty mask; count the blank maps next to the score. The centre
    baseline is this function applied to a map peaked at the image centre. The dataset
    score of the original protocol is the per-class mean of the per-sample hits
    (:func:`class_mean`); report the per-pair mean beside it.

    Args:
        heatmaps: ``[B, H, W]`` saliency maps.
        masks: ``[B, H, W]`` bool ground-truth masks.
        tolerance_px: tolerance in pixels; ``None`` means ``default_tolerance(H)``.

    Returns:
        ``[B]``: 1.0 hit, 0.0 miss, NaN for an empty mask or a blank heatmap.
    """
    h, m, undefined = _prepare(heatmaps, masks, "pointing_game")
    tol = default_tolerance(h.shape[1]) if tolerance_px is None else float(tolerance_px)
    if not math.isfinite(tol) or tol < 0:
        raise ValueError(f"pointing_game: tolerance_px must be a finite number >= 0, got {tolerance_px}")
    point = pointing_location(h)  # (B, 2)
    reach = _disk_dilate(m, tol)  # (B, H, W)
    batch = torch.arange(h.shape[0], device=h.device)
    hit = reach[batch, point[:, 0], point[:, 1]].to(h.dtype)  # (B,)
    return _nan_where(hit, undefined | blank_maps(heatmaps).to(h.device))


def class_mean(values: Tensor, classes: Tensor) -> float:
    """Mean over classes of each class's mean value, NaN samples left out (EBP protocol).

    Args:
        values: ``[N]`` per-sample scores (NaN = undefined).
        classes: ``[N]`` integer class of each sample.

    Returns:
        The mean of the per-class means over the classes with at least one defined value;
        NaN when there is none.
    """
    if values.shape != classes.shape or values.dim() != 1:
        raise ValueError(f"class_mean: values and classes must both be [N], got {list(values.shape)} and {list(classes.shape)}")
    v = values.double()
    ok = ~torch.isnan(v)
    means = [v[ok & (classes == c)].mean() for c in torch.unique(classes[ok])]
    return float(torch.stack(means).mean()) if means else math.nan


def mask_bbox(masks: Tensor) -> Tensor:
    """Bounding box of each mask as a filled bool region ``[B, H, W]``.

    The box covers rows ``y1..y2`` and columns ``x1..x2`` (inclusive), where y indexes
    dim 1 (height) and x dim 2 (width). An empty mask gives an empty box.
    """
    _, height, width = masks.shape
    rows = masks.any(dim=2)  # (B, H)
    cols = masks.any(dim=1)  # (B, W)
    ys = torch.arange(height, device=masks.device)
    xs = torch.arange(width, device=masks.device)
    y1 = torch.where(rows, ys, height).amin(1, keepdim=True)  # (B, 1)
    y2 = torch.where(rows, ys, -1).amax(1, keepdim=True)
    x1 = torch.where(cols, xs, width).amin(1, keepdim=True)
    x2 = torch.where(cols, xs, -1).amax(1, keepdim=True)
    in_rows = (ys >= y1) & (ys <= y2)  # (B, H)
    in_cols = (xs >= x1) & (xs <= x2)  # (B, W)
    return in_rows[:, :, None] & in_cols[:, None, :]


def energy_pointing_game(heatmaps: Tensor, masks: Tensor, use_bbox: bool = False) -> Tensor:
    """Energy-based pointing game (Wang et al. 2020): share of heatmap energy on the object.

    ``E = sum_{(y,x) in region} L_yx / sum_yx L_yx`` with ``L = max(heatmap, 0)``: negative
    values are clamped to 0 (a heatmap's negative evidence is not energy). The region is
    the mask itself, or its bounding box with ``use_bbox=True`` (the paper's protocol).

    Args:
        heatmaps: ``[B, H, W]`` saliency maps.
        masks: ``[B, H, W]`` bool ground-truth masks.
        use_bbox: use the mask's bounding box instead of the mask.

    Returns:
        ``[B]`` in [0, 1]; NaN for an empty mask, a non-finite heatmap or zero total energy.
    """
    h, m, undefined = _prepare(heatmaps, masks, "energy_pointing_game")
    region = mask_bbox(m) if use_bbox else m
    energy = h.clamp(min=0)
    inside = torch.where(region, energy, 0.0).sum(dim=(1, 2))  # (B,)
    total = energy.sum(dim=(1, 2))  # (B,)
    return _nan_where(inside / total.clamp(min=torch.finfo(h.dtype).tiny), undefined | (total == 0))


def mask_iou(
    heatmaps: Tensor, masks: Tensor, top_fraction: float = 0.2, threshold: float | None = None
) -> Tensor:
    """IoU of the heatmap's highlighted region with the mask.

    The highlighted region is, by default, the top ``top_fraction`` of pixels: every pixel
    with a value ``>=`` the k-th largest value, ``k = max(1, round(top_fraction * H * W))``,
    and ``> 0``. Ties at the cut are all included (the region never depends on pixel order,
    so it may exceed k pixels), and pixels with zero or negative relevance are never
    highlighted; a binary heatmap equal to the mask thus scores 1 for any fraction. The
    default 20% is a fixed, mask-area-free fraction, so scores are comparable across
    images. With ``threshold`` given, the region is ``heatmap >= threshold`` instead (the
    fraction is ignored).

    Args:
        heatmaps: ``[B, H, W]`` saliency maps.
        masks: ``[B, H, W]`` bool ground-truth masks.
        top_fraction: fraction of pixels in (0, 1] kept when ``threshold`` is None.
        threshold: absolute threshold on heatmap values.

    Returns:
        ``[B]`` in [0, 1]; NaN for an empty mask or a non-finite heatmap.
    """
    h, m, undefined = _prepare(heatmaps, masks, "mask_iou")
    if threshold is not None:
        region = h >= threshold
    else:
        if not 0.0 < top_fraction <= 1.0:
            raise ValueError(f"mask_iou: top_fraction must be in (0, 1], got {top_fraction}")
        flat = h.flatten(1)  # (B, N)
        k = max(1, round(top_fraction * flat.shape[1]))
        cut = flat.topk(k, dim=1).values[:, -1]  # (B,) k-th largest
        region = (h >= cut[:, None, None]) & (h > 0)
    inter = (region & m).flatten(1).sum(1)  # (B,)
    union = (region | m).flatten(1).sum(1)
    iou = inter.to(h.dtype) / union.clamp(min=1).to(h.dtype)
    return _nan_where(iou, undefined)


def relevance_mass(heatmaps: Tensor, masks: Tensor, absolute: bool = False) -> Tensor:
    """Relevance mass accuracy (Arras et al. 2022): ``R_in / R_total``.

    No absolute value by default (as in the paper and Quantus), so negative relevance
    outside the mask can push the score above 1; pass ``absolute=True`` to use ``|R|``.

    Args:
        heatmaps: ``[B, H, W]`` relevance maps.
        masks: ``[B, H, W]`` bool ground-truth masks.
        absolute: use absolute relevance.

    Returns:
        ``[B]``; NaN for an empty mask, a non-finite heatmap or ``R_total == 0``.
    """
    h, m, undefined = _prepare(heatmaps, masks, "relevance_mass")
    if absolute:
        h = h.abs()
    inside = torch.where(m, h, 0.0).sum(dim=(1, 2))  # (B,)
    total = h.sum(dim=(1, 2))  # (B,)
    safe = torch.where(total == 0, torch.ones_like(total), total)
    return _nan_where(inside / safe, undefined | (total == 0))


def relevance_rank(heatmaps: Tensor, masks: Tensor, absolute: bool = False) -> Tensor:
    """Relevance rank accuracy (Arras et al. 2022): ``|top-K ∩ GT| / K``, ``K = |GT|``.

    Ties at the K-th value are resolved by expectation rather than pixel order: the pixels
    strictly above the K-th largest value all count, and the remaining slots are filled by
    the tied group pro rata (``slots * tied_in_mask / tied``), i.e. the mean score under a
    uniformly random tie break. A constant heatmap thus scores ``K / (H * W)``.

    Args:
        heatmaps: ``[B, H, W]`` relevance maps.
        masks: ``[B, H, W]`` bool ground-truth masks.
        absolute: rank by ``|R|``.

    Returns:
        ``[B]`` in [0, 1]; NaN for an empty mask or a non-finite heatmap.
    """
    h, m, undefined = _prepare(heatmaps, masks, "relevance_rank")
    if absolute:
        h = h.abs()
    flat = h.flatten(1)  # (B, N)
    gt = m.flatten(1)  # (B, N)
    k = gt.sum(1)  # (B,)
    ordered = flat.sort(dim=1, descending=True).values  # (B, N)
    cut = ordered.gather(1, (k - 1).clamp(min=0)[:, None])  # (B, 1) K-th largest
    above = flat > cut  # (B, N)
    tied = flat == cut
    slots = (k - above.sum(1)).to(h.dtype)  # (B,)
    tied_share = (tied & gt).sum(1).to(h.dtype) / tied.sum(1).clamp(min=1).to(h.dtype)
    hits = (above & gt).sum(1).to(h.dtype) + slots * tied_share
    return _nan_where(hits / k.clamp(min=1).to(h.dtype), undefined)
