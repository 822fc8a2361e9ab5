"""Layer-CAM (Jiang et al. 2021, IEEE TIP 30): element-wise, no pooling of the gradients.

``L = ReLU(sum_k ReLU(g^k) * A^k)``.
"""

from __future__ import annotations

import torch

from xbyol.explain.cam.base import BaseCAM
from xbyol.explain.explainer import EXPLAINERS
from xbyol.explain.targets import TargetFn


@EXPLAINERS.register("layercam", doc="Layer-CAM: positive gradients times activations, per position")
class LayerCAM(BaseCAM):
    """Layer-CAM at ``layer``."""

    def weights_and_map(
        self,
        activations: torch.Tensor,
        gradients: torch.Tensor | None,
        *,
        images: torch.Tensor,
        target: TargetFn | None,
    ) -> torch.Tensor:
        assert gradients is not None
        return (gradients.clamp(min=0) * activations).sum(dim=1)  # (B, h, w)
