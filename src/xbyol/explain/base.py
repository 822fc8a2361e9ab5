"""The one explainer interface: ``explain(model, images, target, method) -> heatmaps [B, H, W]``.

Every explainer is a class registered in :data:`EXPLAINERS` (the contract,
:class:`Explainer`, is in :mod:`xbyol.explain.explainer`, below the variants), built as
``cls(model, layer=None, normalize=True, **method_kwargs)`` and called as
``explainer(images [B, 3, H, W], target) -> [B, H, W]``:

- ``images`` are float, normalised (``xbyol.augment.preprocess``), on any device; heatmaps
  come back detached, in torch, on the same device and dtype;
- ``target`` is a callable ``outputs [B, D] -> scores [B]`` (see :mod:`xbyol.explain.targets`);
  there is no default target;
- ``normalize=True`` min-max normalises each heatmap to [0, 1] on its own (a constant map
  becomes all zeros); ``normalize=False`` keeps the method's raw scale, so maps of different
  images stay comparable.

Explainers never change the model's train/eval mode; explain a model in eval mode
(batch-norm in training mode mixes the images of a batch and updates running statistics).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from xbyol.explain.cam.base import BaseCAM
from xbyol.explain.explainer import EXPLAINERS, Explainer, check_images, minmax_normalize
from xbyol.explain.targets import TargetFn

__all__ = ["EXPLAINERS", "Explainer", "check_images", "explain", "minmax_normalize", "names"]


def names() -> list[str]:
    """Names of the registered explainers."""
    return EXPLAINERS.names()


def cam_names() -> list[str]:
    """Names of the registered CAM-family explainers (the ones that take a ``layer``)."""
    return [n for n, cls in EXPLAINERS.items() if isinstance(cls, type) and issubclass(cls, BaseCAM)]


def explain(
    model: nn.Module,
    images: torch.Tensor,
    target: TargetFn | None,
    method: str = "gradcam",
    layer: nn.Module | str | None = None,
    normalize: bool = True,
    **method_kwargs: Any,
) -> torch.Tensor:
    """Explain why ``model`` gives each image its ``target`` score.

    Args:
        model: maps images ``[B, 3, H, W]`` to embeddings ``[B, D]``; put it in eval mode.
        images: ``[B, 3, H, W]`` float normalised images (``xbyol.augment.preprocess``).
        target: callable ``outputs [B, D] -> scores [B]`` (:mod:`xbyol.explain.targets`).
        method: a name from :func:`names` (``gradcam``, ``scorecam``, ``integrated_gradients``, ...).
        layer: CAM methods only: an ``nn.Module`` of ``model`` or its dotted name; default
            ``model.feature_layer``.
        normalize: per-image min-max normalisation to [0, 1]; ``False`` keeps the raw scale.
        **method_kwargs: options of the method (e.g. ``n_steps`` for integrated gradients).

    Returns:
        ``[B, H, W]`` heatmaps on the images' device.
    """
    explainer = EXPLAINERS.create(method, model=model, layer=layer, normalize=normalize, **method_kwargs)
    return explainer(images, target)
