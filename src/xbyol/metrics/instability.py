"""Location instability of part detectors (Zhang, Wu & Zhu 2018, "Interpretable Convolutional
Neural Networks", CVPR, arXiv 1710.00935, Sec. 4.2; the measure is from Zhang et al. 2018,
"Interpreting CNN knowledge via an explanatory graph", AAAI).

A filter that detects one object part should fire at the same place *relative to the object*
in every image. For filter ``f`` and image ``I`` let ``p`` be its *inference position*: the
centre (in image pixels) of the feature-map cell with the highest activation. For each
annotated landmark ``k`` of the object at ``p_k``, the normalised distance is

    d_I(p_k, p) = ||p_k - p|| / sqrt(w^2 + h^2)        (image diagonal)

and the deviation of filter ``f`` from landmark ``k`` is ``D_{f,k} = sqrt(var_I d_I(p_k, p))``,
the standard deviation over images. A filter's location instability is the mean of
``D_{f,k}`` over landmarks, and a layer's is the mean over its filters: lower = a more
stable part detector. Conventions here: the variance is the population variance (``1/N``);
images in which a filter does not fire (its map is all ``<= 0``: no peak) are left out for
that filter; a filter with fewer than two such images has no value (NaN).
"""

from __future__ import annotations

import math

import torch

__all__ = ["location_instability", "peak_positions"]


def peak_positions(maps: torch.Tensor, image_size: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
    """Inference positions of every filter in every image.

    Args:
        maps: ``[N, F, h, w]`` feature maps.
        image_size: ``(H, W)`` of the input images, pixels.

    Returns:
        ``(positions [N, F, 2], fired [N, F])``: ``(y, x)`` of the centre of the highest
        cell, ``((r + 0.5) H / h, (c + 0.5) W / w)`` (the first cell in row-major order on
        ties), and whether that cell's activation is positive.
    """
    if maps.dim() != 4:
        raise ValueError(f"peak_positions: expected maps [N, F, h, w], got {list(maps.shape)}")
    n, f, h, w = maps.shape
    flat = maps.flatten(2)  # (N, F, h*w)
    best, idx = flat.max(dim=2)  # (N, F)
    rows, cols = idx // w, idx % w
    y = (rows.double() + 0.5) * image_size[0] / h
    x = (cols.double() + 0.5) * image_size[1] / w
    return torch.stack([y, x], dim=-1), best > 0  # (N, F, 2), (N, F)


def location_instability(
    positions: torch.Tensor,
    landmarks: torch.Tensor,
    image_size: tuple[int, int],
    valid: torch.Tensor | None = None,
) -> torch.Tensor:
    """Per-filter location instability: ``mean_k std_I ||p_k - p|| / diagonal``.

    Args:
        positions: ``[N, F, 2]`` inference positions ``(y, x)`` in pixels (:func:`peak_positions`).
        landmarks: ``[N, K, 2]`` landmark positions ``(y, x)`` in pixels, the same ``K`` landmarks
            (in the same order) in every image.
        image_size: ``(H, W)``; distances are divided by ``sqrt(H^2 + W^2)``.
        valid: ``[N, F]`` bool, images that count for each filter (default all).

    Returns:
        ``[F]`` float64; NaN for a filter with fewer than two valid images.
    """
    if positions.dim() != 3 or positions.shape[-1] != 2 or landmarks.dim() != 3 or landmarks.shape[-1] != 2:
        raise ValueError(f"location_instability: need positions [N, F, 2] and landmarks [N, K, 2], "
                         f"got {list(positions.shape)} and {list(landmarks.shape)}")
    if positions.shape[0] != landmarks.shape[0]:
        raise ValueError(f"location_instability: {positions.shape[0]} images of positions, {landmarks.shape[0]} of landmarks")
    diagonal = math.hypot(*image_size)
    d = (positions.double()[:, :, None] - landmarks.double()[:, None]).norm(dim=-1) / diagonal  # (N, F, K)
    if valid is None:
        valid = torch.ones(positions.shape[:2], dtype=torch.bool, device=positions.device)
    wgt = valid.double()[:, :, None]  # (N, F, 1)
    count = wgt.sum(dim=0)  # (F, 1)
    mean = (d * wgt).sum(dim=0) / count.clamp(min=1)  # (F, K)
    var = ((d - mean[None]).square() * wgt).sum(dim=0) / count.clamp(min=1)  # (F, K): population variance
    out = var.sqrt().mean(dim=1)  # (F,)
    return torch.where(count[:, 0] >= 2, out, torch.full_like(out, math.nan))
