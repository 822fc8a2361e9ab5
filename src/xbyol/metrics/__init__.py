"""Explanation metrics: pure functions on tensors returning one value per sample (NaN if undefined).

``METRICS`` maps each metric's name to its metadata: ``name``, ``higher_is_better``,
``category`` (localization | faithfulness | robustness | randomization) and ``fn``.
"""

from __future__ import annotations

from typing import Any

from xbyol.metrics.faithfulness import auc, deletion_auc, gaussian_blur, infidelity, insertion_auc
from xbyol.metrics.localization import (
    blank_maps,
    class_mean,
    default_tolerance,
    energy_pointing_game,
    mask_bbox,
    mask_iou,
    pointing_game,
    pointing_location,
    relevance_mass,
    relevance_rank,
)
from xbyol.metrics.randomization import model_randomization, randomizable_layers, spearman
from xbyol.metrics.robustness import max_sensitivity


def _meta(fn: Any, higher_is_better: bool, category: str) -> dict[str, Any]:
    return {"name": fn.__name__, "higher_is_better": higher_is_better, "category": category, "fn": fn}


METRICS: dict[str, dict[str, Any]] = {
    m["name"]: m
    for m in (
        _meta(pointing_game, True, "localization"),
        _meta(energy_pointing_game, True, "localization"),
        _meta(mask_iou, True, "localization"),
        _meta(relevance_mass, True, "localization"),
        _meta(relevance_rank, True, "localization"),
        _meta(deletion_auc, False, "faithfulness"),
        _meta(insertion_auc, True, "faithfulness"),
        _meta(infidelity, False, "faithfulness"),
        _meta(max_sensitivity, False, "robustness"),
        # Spearman correlation with the original explanation after randomising: should fall.
        _meta(model_randomization, False, "randomization"),
    )
}

__all__ = [
    "METRICS",
    "auc",
    "blank_maps",
    "class_mean",
    "default_tolerance",
    "deletion_auc",
    "energy_pointing_game",
    "gaussian_blur",
    "infidelity",
    "insertion_auc",
    "mask_bbox",
    "mask_iou",
    "max_sensitivity",
    "model_randomization",
    "pointing_game",
    "pointing_location",
    "randomizable_layers",
    "relevance_mass",
    "relevance_rank",
    "spearman",
]
