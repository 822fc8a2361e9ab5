"""BaseCAM: the class-activation-map family with a single override point.

``BaseCAM.attribute``: forward the batch with :class:`ActivationsAndGradients` on the
layer (autograd records only what follows the layer), score the target (one scalar per
sample), differentiate ``scores.sum()`` down to the layer (each sample's gradient only
depends on its own score), release the hooks, then call
``weights_and_map(activations, gradients, images=, target=) -> [B, h, w]``, apply ReLU and
upsample bilinearly (``align_corners=False``) to the input size. ``Explainer`` then
min-max normalises each map if asked.

A new variant is a subclass that overrides :meth:`BaseCAM.weights_and_map` (and sets
``needs_gradients = False`` when it does not use gradients).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from xbyol.explain.explainer import Explainer
from xbyol.explain.hooks import ActivationsAndGradients, resolve_layer
from xbyol.explain.targets import TargetFn, compute_scores

__all__ = ["BaseCAM", "weighted_sum"]


def weighted_sum(weights: torch.Tensor, activations: torch.Tensor) -> torch.Tensor:
    """``sum_k weights[b, k] * activations[b, k]``: ``[B, C]`` x ``[B, C, h, w]`` -> ``[B, h, w]``."""
    return torch.einsum("bc,bchw->bhw", weights, activations)


class BaseCAM(Explainer):
    """Class activation maps at a layer, for any scalar target.

    Args:
        model: maps images ``[B, 3, H, W]`` to embeddings ``[B, D]``.
        layer: the layer whose ``[B, C, h, w]`` output is explained: an ``nn.Module`` of
            ``model``, a dotted name, or ``None`` for ``model.feature_layer`` (the last
            residual stage of xbyol ResNets).
        normalize: per-image min-max normalisation to [0, 1].
    """

    #: whether :meth:`weights_and_map` uses gradients (skips the backward pass if not)
    needs_gradients: bool = True

    def __init__(self, model: nn.Module, layer: nn.Module | str | None = None, normalize: bool = True) -> None:
        super().__init__(model, normalize=normalize)
        self.layer = resolve_layer(model, layer)

    def activations_and_gradients(
        self, images: torch.Tensor, target: TargetFn | None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """One forward (and backward) pass with hooks on the layer; hooks are gone on return.

        Returns:
            activations ``[B, C, h, w]`` and gradients ``[B, C, h, w]`` (``None`` when
            ``needs_gradients`` is False), both detached.
        """
        x = images.detach()
        grad_ctx = torch.enable_grad() if self.needs_gradients else torch.no_grad()
        rec = ActivationsAndGradients(self.layer, self.needs_gradients, start_graph_at_layer=self.needs_gradients)
        with grad_ctx, rec:
            with torch.no_grad():  # autograd starts at the layer (the hook turns it on there)
                outputs = self.model(x)
            if rec.activations is None:
                raise RuntimeError(f"layer {type(self.layer).__name__} was not called during the forward pass")
            gradients = None
            if self.needs_gradients:
                gradients = rec.backward(compute_scores(target, outputs)).detach()
            activations = rec.activations.detach()
        if activations.dim() != 4:
            raise ValueError(
                f"CAM layer {type(self.layer).__name__} outputs {list(activations.shape)}; a spatial map [B, C, h, w] is required"
            )
        return activations, gradients

    def attribute(self, images: torch.Tensor, target: TargetFn | None) -> torch.Tensor:
        activations, gradients = self.activations_and_gradients(images, target)
        cam = self.weights_and_map(activations, gradients, images=images, target=target)  # (B, h, w)
        b, _, h, w = activations.shape
        if cam.shape != (b, h, w):
            raise RuntimeError(f"{type(self).__name__}.weights_and_map returned {list(cam.shape)}, expected [{b}, {h}, {w}]")
        cam = F.relu(cam)
        if cam.shape[-2:] != images.shape[-2:]:
            cam = F.interpolate(cam[:, None], size=images.shape[-2:], mode="bilinear", align_corners=False)[:, 0]
        return cam  # (B, H, W)

    def weights_and_map(
        self,
        activations: torch.Tensor,
        gradients: torch.Tensor | None,
        *,
        images: torch.Tensor,
        target: TargetFn | None,
    ) -> torch.Tensor:
        """The map at layer resolution, before ReLU and upsampling: ``sum_k w_k A^k``.

        Variants that weight channels only implement :meth:`cam_weights`; variants with
        another form of map (per-position weights, principal components) override this.

        Args:
            activations: ``[B, C, h, w]`` layer output.
            gradients: ``[B, C, h, w]`` d(score)/d(activations), or ``None``.
            images: ``[B, 3, H, W]`` the explained images (for perturbation variants).
            target: the target callable.

        Returns:
            ``[B, h, w]``.
        """
        weights = self.cam_weights(activations, gradients, images=images, target=target)  # (B, C)
        return weighted_sum(weights, activations)  # (B, h, w)

    def cam_weights(
        self,
        activations: torch.Tensor,
        gradients: torch.Tensor | None,
        *,
        images: torch.Tensor,
        target: TargetFn | None,
    ) -> torch.Tensor:
        """Channel weights ``[B, C]`` of the map (pytorch-grad-cam's ``get_cam_weights``)."""
        raise NotImplementedError(f"{type(self).__name__} must implement cam_weights or weights_and_map")
