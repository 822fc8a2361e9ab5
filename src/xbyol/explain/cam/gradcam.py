"""Grad-CAM (Selvaraju et al. 2017, arXiv 1610.02391).

``alpha_k = mean_ij dy/dA^k_ij``; ``L = ReLU(sum_k alpha_k A^k)``. Matches Captum's
``LayerGradCam(relu_attributions=True)`` followed by bilinear ``LayerAttribution.interpolate``.
"""

from __future__ import annotations

import torch

from xbyol.explain.cam.base import BaseCAM
from xbyol.explain.explainer import EXPLAINERS
from xbyol.explain.targets import TargetFn


@EXPLAINERS.register("gradcam", doc="Grad-CAM: channel weights = spatial mean of the gradients")
class GradCAM(BaseCAM):
    """Grad-CAM at ``layer`` (default ``model.feature_layer``)."""

    def cam_weights(
        self,
        activations: torch.Tensor,
        gradients: torch.Tensor | None,
        *,
        images: torch.Tensor,
        target: TargetFn | None,
    ) -> torch.Tensor:
        assert gradients is not None
        return gradients.mean(dim=(2, 3))  # (B, C)
