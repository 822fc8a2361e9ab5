"""CAM (Zhou et al. 2016, arXiv 1512.04150): the weights of a linear head over GAP features.

``L = ReLU(sum_k w_{c,k} A^k)`` with ``w_c`` the row of the linear probe for class ``c``.
Valid when the model's embedding is the global average pool of ``layer`` (xbyol ResNets:
``forward = mean(feature_layer(x))``) and the target is a :class:`LinearClassTarget` on
that embedding; a :class:`DimensionTarget` ``j`` is the identity head (``w = e_j``).
On such a model Grad-CAM = CAM / (h w). No gradients are computed; the bias is irrelevant.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from xbyol.explain.cam.base import BaseCAM
from xbyol.explain.explainer import EXPLAINERS
from xbyol.explain.targets import DimensionTarget, LinearClassTarget, TargetFn


@EXPLAINERS.register("cam", doc="CAM: linear-probe weights over GAP features (LinearClassTarget)")
class CAM(BaseCAM):
    """Classic CAM at ``layer`` for a :class:`LinearClassTarget` (or :class:`DimensionTarget`)."""

    needs_gradients = False
    target_types = (LinearClassTarget, DimensionTarget)

    def cam_weights(
        self,
        activations: torch.Tensor,
        gradients: torch.Tensor | None,
        *,
        images: torch.Tensor,
        target: TargetFn | None,
    ) -> torch.Tensor:
        b, c = activations.shape[:2]
        if isinstance(target, LinearClassTarget):
            if target.linear.in_features != c:
                raise ValueError(
                    f"CAM: the layer has C={c} channels but the probe expects {target.linear.in_features} features; "
                    "CAM needs the probe to sit on the global average pool of this layer"
                )
            index = target.indices(b, activations.device)  # (B,)
            weights = target.linear.weight.detach()[index].to(activations.dtype)  # (B, C)
        else:  # a DimensionTarget: Explainer.__call__ has refused every other type (target_types)
            assert isinstance(target, DimensionTarget)
            target._check_range(c)
            index = target.indices(b, activations.device)  # (B,)
            weights = F.one_hot(index, c).to(activations.dtype)  # (B, C)
        return weights  # (B, C)
