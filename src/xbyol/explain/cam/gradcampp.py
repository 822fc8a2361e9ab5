"""Grad-CAM++ (Chattopadhyay et al. 2018, arXiv 1710.11063), eq. 19 (exponential output).

``alpha^k_ij = g^2 / (2 g^2 + sum_ab A^k_ab * g^3 + eps)`` with ``g = dy/dA^k_ij``,
``alpha = 0`` where ``g = 0``; ``w_k = sum_ij alpha^k_ij ReLU(g^k_ij)``;
``L = ReLU(sum_k w_k A^k)``. ``eps = 1e-6`` as in pytorch-grad-cam.
"""

from __future__ import annotations

import torch
from torch import nn

from xbyol.explain.cam.base import BaseCAM
from xbyol.explain.explainer import EXPLAINERS
from xbyol.explain.targets import TargetFn


@EXPLAINERS.register("gradcampp", doc="Grad-CAM++: positive gradients weighted by second/third-order terms")
class GradCAMPlusPlus(BaseCAM):
    """Grad-CAM++ at ``layer``; ``eps`` keeps the denominator away from zero."""

    def __init__(
        self, model: nn.Module, layer: nn.Module | str | None = None, normalize: bool = True, eps: float = 1e-6
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
        g2 = gradients.pow(2)  # (B, C, h, w)
        g3 = gradients.pow(3)  # (B, C, h, w)
        sum_a = activations.sum(dim=(2, 3), keepdim=True)  # (B, C, 1, 1)
        alpha = g2 / (2 * g2 + sum_a * g3 + self.eps)  # (B, C, h, w)
        alpha = torch.where(gradients != 0, alpha, torch.zeros_like(alpha))
        weights = (alpha * gradients.clamp(min=0)).sum(dim=(2, 3))  # (B, C)
        return weights  # (B, C)
