"""Explainers for encoders without labels: ``explain(model, images, target, method) -> [B, H, W]``.

Targets (:mod:`xbyol.explain.targets`) say what scalar to explain; methods are the CAM
family (:mod:`xbyol.explain.cam`) and Captum adapters (:mod:`xbyol.explain.attribution`),
all registered in :data:`EXPLAINERS`.
"""

from xbyol.explain.attribution import superpixel_mask
from xbyol.explain.base import EXPLAINERS, Explainer, explain, minmax_normalize, names
from xbyol.explain.cam import BaseCAM
from xbyol.explain.hooks import ActivationsAndGradients, resolve_layer
from xbyol.explain.render import overlay, save_heatmaps_npy, save_overlay
from xbyol.explain.targets import (
    ConceptTarget,
    DimensionTarget,
    EmbeddingSimilarityTarget,
    LinearClassTarget,
    NormTarget,
    Target,
    compute_scores,
)

__all__ = [
    "EXPLAINERS",
    "ActivationsAndGradients",
    "BaseCAM",
    "ConceptTarget",
    "DimensionTarget",
    "EmbeddingSimilarityTarget",
    "Explainer",
    "LinearClassTarget",
    "NormTarget",
    "Target",
    "compute_scores",
    "explain",
    "minmax_normalize",
    "names",
    "overlay",
    "resolve_layer",
    "save_heatmaps_npy",
    "save_overlay",
    "superpixel_mask",
]
