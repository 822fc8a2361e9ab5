"""Robustness of explanations to small input changes.

Reference: Yeh et al. 2019, "On the (In)fidelity and Sensitivity of Explanations"
(arXiv 1901.09392), max-sensitivity ``SENS_max = max_{||delta|| <= r} ||Phi(x + delta) - Phi(x)||``,
estimated by Monte Carlo with the conventions of Captum ``captum.metrics.sensitivity_max``:
``delta ~ U(-r, r)`` per element (the L-infinity ball), Frobenius norm, divided by
``||Phi(x)||_F`` (by 1 where that norm is 0), max over samples.
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor

ExplainFn = Callable[[Tensor], Tensor]


def _explain(explain_fn: ExplainFn, images: Tensor, where: str) -> Tensor:
    maps = explain_fn(images)
    if not isinstance(maps, Tensor) or maps.dim() < 2 or maps.shape[0] != images.shape[0]:
        shape = tuple(maps.shape) if isinstance(maps, Tensor) else type(maps).__name__
        raise ValueError(f"{where}: explain_fn must return [n, ...] maps for n={images.shape[0]} images, got {shape}")
    return maps.detach().flatten(1)


def max_sensitivity(
    explain_fn: ExplainFn,
    images: Tensor,
    radius: float = 0.02,
    n_samples: int = 10,
    seed: int = 0,
    batch_size: int = 64,
    perturbations: Tensor | None = None,
) -> Tensor:
    """Max-sensitivity (Yeh et al. 2019): largest relative change of the explanation. Lower is better.

    ``max_s ||Phi(x + delta_s) - Phi(x)||_F / ||Phi(x)||_F`` with ``delta_s ~ U(-radius, radius)``
    per element (Captum's defaults: radius 0.02, 10 samples); where ``||Phi(x)||_F = 0`` the
    difference is not divided (Captum). ``explain_fn`` is called without a no-grad context,
    so gradient explainers work. Noise is drawn on the CPU from
    ``torch.Generator().manual_seed(seed)``, one ``[C, H, W]`` draw per (sample s, image b)
    in s-major order, so the result is deterministic and independent of ``batch_size``.

    Args:
        explain_fn: ``[n, C, H, W] -> [n, ...]`` explanations (e.g. ``[n, H, W]`` heatmaps).
        images: ``[B, C, H, W]`` model inputs.
        radius: L-infinity radius of the perturbations.
        n_samples: Monte-Carlo samples per image.
        seed: seed of the perturbations.
        batch_size: images per ``explain_fn`` call.
        perturbations: fixed perturbations ``[B, n, C, H, W]`` used instead of random ones.

    Returns:
        ``[B]`` max-sensitivity.
    """
    where = "max_sensitivity"
    if not isinstance(images, Tensor) or images.dim() != 4 or not images.is_floating_point():
        raise ValueError(f"{where}: images must be a float tensor [B, C, H, W], got {getattr(images, 'shape', images)}")
    if perturbations is not None:
        if perturbations.dim() != 5 or perturbations.shape[:1] + perturbations.shape[2:] != images.shape:
            raise ValueError(
                f"{where}: perturbations must be [B, n, C, H, W] matching images {tuple(images.shape)}, "
                f"got {tuple(perturbations.shape)}"
            )
        n_samples = perturbations.shape[1]
    if n_samples < 1 or batch_size < 1 or radius < 0:
        raise ValueError(
            f"{where}: need n_samples >= 1, batch_size >= 1, radius >= 0; got {n_samples}, {batch_size}, {radius}"
        )
    batch = images.shape[0]
    reference = torch.cat(
        [_explain(explain_fn, images[lo : lo + batch_size], where) for lo in range(0, batch, batch_size)]
    )  # (B, D)
    norms = reference.norm(dim=1)  # (B,)
    norms = torch.where(norms == 0, torch.ones_like(norms), norms)
    generator = torch.Generator().manual_seed(seed)
    total = batch * n_samples
    sens: list[Tensor] = []
    # (sample, image) pairs in sample-major order.
    for first in range(0, total, batch_size):
        pair = torch.arange(first, min(first + batch_size, total))
        s, b = pair // batch, pair % batch
        if perturbations is not None:
            delta = perturbations[b, s].to(images)  # (n, C, H, W)
        else:
            delta = torch.stack(
                [(torch.rand(images.shape[1:], generator=generator) * 2 - 1) * radius for _ in pair]
            ).to(images)
        b_dev = b.to(images.device)
        maps = _explain(explain_fn, images[b_dev] + delta, where)  # (n, D)
        sens.append((maps - reference[b_dev]).norm(dim=1) / norms[b_dev])
    return torch.cat(sens).view(n_samples, batch).amax(0)
