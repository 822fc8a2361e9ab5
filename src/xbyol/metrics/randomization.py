"""Model randomisation sanity check.

Reference: Adebayo et al. 2018, "Sanity Checks for Saliency Maps" (arXiv 1810.03292);
layer selection and similarity as in Quantus ``MPRT`` (``reset_parameters()`` on every
module that has one, top-down, Spearman rank correlation of absolute explanations).
An explanation that survives randomisation of the weights it claims to explain is not
explaining the model: correlations should fall as layers are randomised (lower is better).
"""

from __future__ import annotations

import copy
import math
from typing import Any, Callable

import torch
from torch import Tensor, nn

ModelExplainFn = Callable[[nn.Module, Tensor], Tensor]


def average_ranks(values: Tensor) -> Tensor:
    """Ranks 1..N along the last dim, ties given their average rank (``scipy.stats.rankdata``).

    Args:
        values: ``[B, N]``.

    Returns:
        ``[B, N]`` float64 ranks.
    """
    n = values.shape[-1]
    ordered, order = values.sort(dim=-1, stable=True)  # (B, N)
    starts_group = torch.ones_like(ordered, dtype=torch.bool)
    starts_group[..., 1:] = ordered[..., 1:] != ordered[..., :-1]
    ends_group = torch.ones_like(starts_group)
    ends_group[..., :-1] = starts_group[..., 1:]
    pos = torch.arange(n, device=values.device).expand_as(order)
    first = torch.where(starts_group, pos, 0).cummax(dim=-1).values  # (B, N) start of own tie group
    last = torch.where(ends_group, pos, n - 1).flip(-1).cummin(dim=-1).values.flip(-1)  # end of group
    mean_rank = (first + last).to(torch.float64) / 2 + 1
    return torch.empty_like(mean_rank).scatter_(-1, order, mean_rank)


def spearman(a: Tensor, b: Tensor) -> Tensor:
    """Spearman rank correlation per row, average ranks for ties.

    Args:
        a: ``[B, N]``.
        b: ``[B, N]``.

    Returns:
        ``[B]`` float32 in [-1, 1]; NaN where a row is constant or holds a non-finite value.
    """
    if a.shape != b.shape or a.dim() != 2:
        raise ValueError(f"spearman: need two [B, N] tensors of one shape, got {tuple(a.shape)} and {tuple(b.shape)}")
    ra, rb = average_ranks(a), average_ranks(b)  # (B, N)
    ra = ra - ra.mean(-1, keepdim=True)
    rb = rb - rb.mean(-1, keepdim=True)
    denom = (ra.square().sum(-1) * rb.square().sum(-1)).sqrt()  # (B,)
    rho = (ra * rb).sum(-1) / torch.where(denom == 0, torch.ones_like(denom), denom)
    bad = (denom == 0) | ~torch.isfinite(a).all(-1) | ~torch.isfinite(b).all(-1)
    return torch.where(bad, torch.full_like(rho, math.nan), rho).float()


def randomizable_layers(model: nn.Module) -> list[str]:
    """Names of sub-modules with ``reset_parameters``, top-down (reversed registration order)."""
    return [name for name, mod in reversed(list(model.named_modules())) if name and hasattr(mod, "reset_parameters")]


def _flat_maps(maps: Tensor, images: Tensor, absolute: bool) -> Tensor:
    if not isinstance(maps, Tensor) or maps.dim() < 2 or maps.shape[0] != images.shape[0]:
        shape = tuple(maps.shape) if isinstance(maps, Tensor) else type(maps).__name__
        raise ValueError(
            f"model_randomization: explain_fn must return [B, H, W] maps for B={images.shape[0]}, got {shape}"
        )
    flat = maps.detach().flatten(1)
    return flat.abs() if absolute else flat


def _reset(model: nn.Module, name: str, seed: int) -> None:
    devices = sorted({p.device.index or 0 for p in model.parameters() if p.device.type == "cuda"})
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        model.get_submodule(name).reset_parameters()  # type: ignore[operator]


def model_randomization(
    model: nn.Module,
    explain_fn: ModelExplainFn,
    images: Tensor,
    layers: list[str] | None = None,
    seed: int = 0,
    cascade: bool = True,
    absolute: bool = True,
) -> dict[str, Any]:
    """Model parameter randomisation test (Adebayo et al. 2018; Quantus MPRT).

    Works on a deep copy; the caller's model is unchanged. Layer ``i`` of ``layers`` is
    re-initialised with its own ``reset_parameters()`` under ``torch.manual_seed(seed + i)``
    inside a forked RNG (the global RNG state is left as it was), so a layer gets the same
    random weights in both modes. With ``cascade=True`` randomisations accumulate
    (top-down, as in the paper); with ``cascade=False`` each layer is randomised alone in a
    fresh copy. After each step the explanation is compared with the original one by the
    Spearman rank correlation (of absolute values by default, as Quantus).

    Args:
        model: the model to test (left untouched).
        explain_fn: ``(model, images [B, C, H, W]) -> [B, H, W]`` explanations.
        images: ``[B, C, H, W]`` model inputs.
        layers: module names (``model.named_modules()``) in the order to randomise;
            ``None`` = every module with ``reset_parameters``, top-down.
        seed: base seed of the re-initialisations.
        cascade: accumulate randomisations instead of one layer at a time.
        absolute: compare ``|explanation|``.

    Returns:
        ``{"layer_names": list[str] (L), "correlations": [B, L] float32}``; a correlation is
        NaN where an explanation is constant (e.g. an all-zero CAM).
    """
    names = randomizable_layers(model) if layers is None else list(layers)
    modules = dict(model.named_modules())
    for name in names:
        if name not in modules or not hasattr(modules[name], "reset_parameters"):
            raise ValueError(
                f"model_randomization: layer {name!r} is not a sub-module with reset_parameters(); "
                f"candidates: {randomizable_layers(model)}"
            )
    work = copy.deepcopy(model)
    original = _flat_maps(explain_fn(work, images), images, absolute)  # (B, D)
    columns = []
    for i, name in enumerate(names):
        if not cascade:
            work = copy.deepcopy(model)
        _reset(work, name, seed + i)
        randomised = _flat_maps(explain_fn(work, images), images, absolute)  # (B, D)
        columns.append(spearman(original, randomised))
    correlations = torch.stack(columns, dim=1) if columns else original.new_zeros(original.shape[0], 0)
    return {"layer_names": names, "correlations": correlations}
