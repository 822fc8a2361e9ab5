"""Score-CAM (Wang et al. 2020, arXiv 1910.01279): channel weights from masked forward passes.

``M_k = minmax(Up(A^k))`` (bilinear to the input size, min-max per image and channel; a
constant channel gives an all-zero mask); ``s_k = f(X * M_k) - f(X_b)`` with ``f`` the
target score and ``X_b = 0`` (the dataset-mean image in normalised space, also what the
masks fade to); ``w = softmax_k(s)``; ``L = ReLU(sum_k w_k A^k)``. The softmax makes the
baseline term cancel; it is kept to follow the paper's "increase of confidence".
The softmax runs over the raw target values (cosines for embedding targets, which are
small numbers, so the weights are close to uniform: a known property, REFERENCES §8).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from xbyol.explain.cam.base import BaseCAM
from xbyol.explain.explainer import EXPLAINERS, minmax_normalize
from xbyol.explain.targets import TargetFn, compute_scores


@EXPLAINERS.register("scorecam", doc="Score-CAM: softmax of the target score of activation-masked inputs")
class ScoreCAM(BaseCAM):
    """Score-CAM at ``layer``.

    Args:
        batch_size: masked images per forward pass (at least one channel of every image
            of the batch per pass: ``max(1, batch_size // B)`` channels at a time).
    """

    needs_gradients = False

    def __init__(self, model: nn.Module, layer: nn.Module | str | None = None, normalize: bool = True, batch_size: int = 256) -> None:
        super().__init__(model, layer=layer, normalize=normalize)
        if batch_size < 1:
            raise ValueError(f"scorecam: batch_size must be >= 1, got {batch_size}")
        self.batch_size = batch_size

    @torch.no_grad()
    def cam_weights(
        self,
        activations: torch.Tensor,
        gradients: torch.Tensor | None,
        *,
        images: torch.Tensor,
        target: TargetFn | None,
    ) -> torch.Tensor:
        b, c = activations.shape[:2]
        up = F.interpolate(activations, size=images.shape[-2:], mode="bilinear", align_corners=False)  # (B, C, H, W)
        masks = minmax_normalize(up.flatten(0, 1)).view_as(up).to(images.dtype)  # (B, C, H, W)
        base = compute_scores(target, self.model(torch.zeros_like(images)))  # (B,)
        per_pass = max(1, self.batch_size // b)
        scores: list[torch.Tensor] = []
        for k0 in range(0, c, per_pass):
            m = masks[:, k0 : k0 + per_pass].transpose(0, 1)  # (k, B, H, W)
            masked = images[None] * m[:, :, None]  # (k, B, 3, H, W)
            out = self.model(masked.flatten(0, 1))  # (k*B, D)
            out = out.view(m.shape[0], b, *out.shape[1:])  # (k, B, D)
            scores.extend(compute_scores(target, o) for o in out)  # k x (B,)
        s = torch.stack(scores, dim=1) - base[:, None]  # (B, C)
        weights = torch.softmax(s.to(activations.dtype), dim=1)  # (B, C)
        return weights  # (B, C)
