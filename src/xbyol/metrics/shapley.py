"""Exact Shapley values by enumerating every coalition: the reference for KernelSHAP and LIME.

A *game* over ``M`` players (superpixels) gives a value ``v(S)`` to each coalition ``S``. Here
coalition ``k`` (``0 <= k < 2^M``) is the set of players whose bit is set in ``k``: player
``j`` is in coalition ``k`` iff ``(k >> j) & 1``. The Shapley value of player ``i`` is

    phi_i = sum_{S not containing i} |S|! (M - |S| - 1)! / M! * (v(S + i) - v(S))

(Shapley 1953; Lundberg & Lee 2017, arXiv 1705.07874, eq. 8), and ``sum_i phi_i = v(all) - v(empty)``
(efficiency). For an image, ``v(S)`` is the explained score of the image with the superpixels
outside ``S`` set to the baseline: pixel ``p`` of superpixel ``j`` keeps its value when
``j in S`` and takes ``baseline`` otherwise, which is how Captum's Lime and KernelShap build
their perturbed inputs from a ``feature_mask`` and ``baselines``
(``input * z + baseline * (1 - z)`` per feature). Enumeration costs ``2^M`` forward passes,
so it is meant for ``M <= 12`` or so.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

__all__ = ["coalition_images", "coalitions", "exact_shapley", "r_squared", "relative_l2", "shapley_from_values"]


def coalitions(m: int, device: torch.device | str | None = None) -> torch.Tensor:
    """Every coalition of ``m`` players as a ``[2^m, m]`` bool table: row ``k`` has player ``j`` iff bit ``j`` of ``k``."""
    if not 1 <= m <= 20:
        raise ValueError(f"coalitions: need 1 <= m <= 20 players, got {m}")
    k = torch.arange(2**m, device=device)  # (2^m,)
    bits = torch.arange(m, device=device)  # (m,)
    return (k[:, None] >> bits[None, :]) & 1 == 1  # (2^m, m)


def shapley_from_values(values: torch.Tensor) -> torch.Tensor:
    """Exact Shapley values from the values of all ``2^M`` coalitions.

    Args:
        values: ``[..., 2^M]``; entry ``k`` is ``v`` of coalition ``k`` (bit ``j`` = player ``j``).

    Returns:
        ``[..., M]`` in float64.
    """
    n = values.shape[-1]
    m = n.bit_length() - 1
    if n < 2 or 2**m != n:
        raise ValueError(f"shapley_from_values: the last dimension must be 2^M (M >= 1), got {n}")
    v = values.to(torch.float64)
    table = coalitions(m, values.device)  # (2^M, M)
    size = table.sum(dim=1)  # (2^M,) |S|
    # weight of a coalition S without i: |S|! (M - |S| - 1)! / M!, by |S|
    w = torch.tensor([math.factorial(s) * math.factorial(m - s - 1) / math.factorial(m) for s in range(m)],
                     dtype=torch.float64, device=values.device)  # (M,)
    phi = []
    for i in range(m):
        without = ~table[:, i]  # coalitions S not holding i
        idx = torch.nonzero(without).squeeze(1)  # (2^(M-1),)
        gain = v[..., idx + (1 << i)] - v[..., idx]  # (..., 2^(M-1)): v(S + i) - v(S)
        phi.append((gain * w[size[idx]]).sum(dim=-1))
    return torch.stack(phi, dim=-1)  # (..., M)


def coalition_images(image: torch.Tensor, segments: torch.Tensor, table: torch.Tensor, baseline: float = 0.0) -> torch.Tensor:
    """Images of coalitions: superpixels in the coalition keep their pixels, the others take ``baseline``.

    Args:
        image: ``[C, H, W]``.
        segments: ``[H, W]`` long superpixel ids in ``0 .. M-1``.
        table: ``[K, M]`` bool coalitions (e.g. a slice of :func:`coalitions`).
        baseline: value of switched-off pixels (Captum's ``baselines`` scalar).

    Returns:
        ``[K, C, H, W]``.
    """
    if segments.shape != image.shape[1:]:
        raise ValueError(f"coalition_images: segments {list(segments.shape)} do not match the image {list(image.shape)}")
    keep = table[:, segments.long()]  # (K, H, W): pixel kept iff its superpixel is in the coalition
    return torch.where(keep[:, None], image[None], torch.full_like(image, baseline)[None])  # (K, C, H, W)


def exact_shapley(
    score: Callable[[torch.Tensor], torch.Tensor],
    image: torch.Tensor,
    segments: torch.Tensor,
    baseline: float = 0.0,
    batch_size: int = 512,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Exact Shapley values of the superpixels of one image for a scalar score.

    Args:
        score: ``[K, C, H, W] -> [K]`` (e.g. ``target(model(x))``), called on batches of coalition images.
        image: ``[C, H, W]``.
        segments: ``[H, W]`` superpixel ids ``0 .. M-1`` (every id present).
        baseline: value of switched-off superpixels.
        batch_size: coalition images per call of ``score``.

    Returns:
        ``(phi [M], values [2^M])`` in float64: the Shapley values and the value of every coalition.
    """
    m = int(segments.max()) + 1
    table = coalitions(m, image.device)  # (2^M, M)
    values = []
    with torch.no_grad():
        for start in range(0, table.shape[0], batch_size):
            values.append(score(coalition_images(image, segments, table[start : start + batch_size], baseline)).double())
    v = torch.cat(values)  # (2^M,)
    return shapley_from_values(v), v


def relative_l2(estimate: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """``||estimate - reference|| / ||reference||`` per row of ``[B, M]`` (NaN where the reference is 0)."""
    num = (estimate.double() - reference.double()).norm(dim=-1)
    den = reference.double().norm(dim=-1)
    return torch.where(den > 0, num / den.clamp(min=1e-300), torch.full_like(num, math.nan))


def r_squared(y: torch.Tensor, prediction: torch.Tensor) -> torch.Tensor:
    """Coefficient of determination ``1 - sum (y - yhat)^2 / sum (y - mean y)^2`` per row of ``[B, N]``
    (can be negative; NaN where ``y`` is constant)."""
    y, prediction = y.double(), prediction.double()
    ss_res = (y - prediction).square().sum(dim=-1)
    ss_tot = (y - y.mean(dim=-1, keepdim=True)).square().sum(dim=-1)
    return torch.where(ss_tot > 0, 1 - ss_res / ss_tot.clamp(min=1e-300), torch.full_like(ss_res, math.nan))
