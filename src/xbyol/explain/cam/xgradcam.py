"""XGrad-CAM (Fu et al. 2020, arXiv 2008.02312).

``w_k = sum_ij (A^k_ij / (sum_ab A^k_ab + eps)) * g^k_ij``; ``L = ReLU(sum_k w_k A^k)``; eps 1e-7.
"""

from __future__ import annotations

import torch
from torch import nn

from xbyol.explain.cam.base import BaseCAM
from xbyol.explain.explainer import EXPLAINERS
from xbyol.explain.targets import TargetFn


@EXPLAINERS.register("xgradcam", doc="XGrad-CAM: gradients weighted by normalised activations")
class XGradCAM(BaseCAM):
    """XGrad-CAM at ``layer``."""

    def __init__(
        self, model: nn.Module, layer: nn.Module | str | None = None, normalize: bool = True, eps: float = 1e-7
    ) -> None:
        super().__init__(model, layer=layer, normalize=normalize)
        self.eps = eps

    def cam_weights(
        self,
        activations: torch.Tensor,
        gradients: torch.Tensor | None,
        *,
        images: torch.Tensor,
        target: TargetFn | None,
    ) -> torch.Tensor:
        assert gradients is not None
        sum_a = activations.sum(dim=(2, 3), keepdim=True)  # (B, C, 1, 1)
        weights = (activations / (sum_a + self.eps) * gradients).sum(dim=(2, 3))  # (B, C)
        return weights  # (B, C)
