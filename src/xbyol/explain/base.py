"""The one explainer interface: ``explain(model, images, target, method) -> heatmaps [B, H, W]``.

Every explainer is a class registered in :data:`EXPLAINERS`, built as
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

import abc
import warnings
from typing import Any

import torch
from torch import nn

from xbyol.explain.targets import TargetFn
from xbyol.registry import Registry

__all__ = ["EXPLAINERS", "Explainer", "check_images", "explain", "minmax_normalize", "names"]

EXPLAINERS: Registry["Explainer"] = Registry("explainer")

# modules whose training-mode forward differs from eval (batch statistics, random masks)
_BATCH_DEPENDENT = (nn.modules.batchnorm._BatchNorm, nn.modules.dropout._DropoutNd)


def check_images(images: torch.Tensor) -> torch.Tensor:
    """Validate a batch of normalised float images ``[B, C, H, W]``."""
    if not isinstance(images, torch.Tensor):
        raise TypeError(f"images: expected a torch.Tensor [B, 3, H, W], got {type(images).__name__}")
    if images.dim() != 4 or images.shape[0] == 0:
        raise ValueError(
            f"images: expected a non-empty batch [B, 3, H, W] (use images[None] for one image), got {list(images.shape)}"
        )
    if not images.is_floating_point():
        raise TypeError(
            f"images: expected float normalised images (xbyol.augment.preprocess), got dtype {images.dtype}"
        )
    return images


def minmax_normalize(maps: torch.Tensor) -> torch.Tensor:
    """Min-max normalise each map to [0, 1] on its own; a constant map becomes zeros.

    Args:
        maps: ``[B, H, W]``.

    Returns:
        ``[B, H, W]`` in [0, 1].
    """
    flat = maps.flatten(1)  # (B, HW)
    low = flat.amin(dim=1, keepdim=True)  # (B, 1)
    span = flat.amax(dim=1, keepdim=True) - low  # (B, 1)
    safe = torch.where(span > 0, span, torch.ones_like(span))
    out = torch.where(span > 0, (flat - low) / safe, torch.zeros_like(flat))  # (B, HW)
    return out.view_as(maps)


class Explainer(abc.ABC):
    """Base of every explainer: input checks, target checks, normalisation.

    Subclasses implement :meth:`attribute` (raw heatmaps) and are registered in
    :data:`EXPLAINERS` under their method name.

    Args:
        model: any module mapping images ``[B, 3, H, W]`` to embeddings ``[B, D]``.
        normalize: per-image min-max normalisation of the output to [0, 1].
    """

    #: whether the method uses the target (Eigen-CAM does not)
    needs_target: bool = True
    #: the target classes the method can explain (``None``: any callable target)
    target_types: tuple[type, ...] | None = None

    def __init__(self, model: nn.Module, normalize: bool = True) -> None:
        if not isinstance(model, nn.Module):
            raise TypeError(f"model must be an nn.Module, got {type(model).__name__}")
        self.model = model
        self.normalize = normalize

    def __call__(self, images: torch.Tensor, target: TargetFn | None) -> torch.Tensor:
        """Explain a batch.

        Args:
            images: ``[B, 3, H, W]`` float normalised images.
            target: callable ``outputs [B, D] -> scores [B]``; ``None`` only for target-free methods.

        Returns:
            ``[B, H, W]`` heatmaps on the images' device, detached.
        """
        images = check_images(images)
        if self.needs_target:
            if target is None:
                raise TypeError(
                    f"{type(self).__name__}: target is None. An encoder without class logits has no default target; "
                    "pass e.g. EmbeddingSimilarityTarget(reference), ConceptTarget(text_embedding, projection), "
                    "LinearClassTarget(probe, k), DimensionTarget(j) or NormTarget()"
                )
            if not callable(target):
                raise TypeError(f"target must be callable outputs [B, D] -> scores [B], got {type(target).__name__}")
        if any(m.training for m in self.model.modules() if isinstance(m, _BATCH_DEPENDENT)):
            warnings.warn(
                f"{type(self).__name__}: the model is in training mode; call model.eval() before explaining "
                "(batch-norm statistics would mix the images of the batch, dropout is random)",
                stacklevel=2,
            )
        b, _, h, w = images.shape
        maps = self.attribute(images, target).detach()
        if maps.shape != (b, h, w):
            raise RuntimeError(f"{type(self).__name__} produced maps of shape {list(maps.shape)}, expected [{b}, {h}, {w}]")
        return minmax_normalize(maps) if self.normalize else maps

    @abc.abstractmethod
    def attribute(self, images: torch.Tensor, target: TargetFn | None) -> torch.Tensor:
        """Raw heatmaps ``[B, H, W]`` (before the optional normalisation)."""


def target_types(method: str) -> tuple[type, ...] | None:
    """The target classes ``method`` can explain (``None``: any callable target)."""
    _load_all()
    if method not in EXPLAINERS:
        raise KeyError(f"unknown explainer {method!r}; available: {', '.join(EXPLAINERS.names())}")
    return getattr(EXPLAINERS._factories[method], "target_types", None)


def names() -> list[str]:
    """Names of the registered explainers."""
    _load_all()
    return EXPLAINERS.names()


def cam_names() -> list[str]:
    """Names of the registered CAM-family explainers (the ones that take a ``layer``)."""
    from xbyol.explain.cam.base import BaseCAM

    _load_all()
    return [n for n in EXPLAINERS.names() if isinstance(EXPLAINERS._factories[n], type) and issubclass(EXPLAINERS._factories[n], BaseCAM)]  # type: ignore[arg-type]


def _load_all() -> None:
    # the variant modules register themselves on import
    import xbyol.explain.attribution  # noqa: F401
    import xbyol.explain.cam  # noqa: F401


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
    _load_all()
    if method not in EXPLAINERS:
        raise KeyError(f"unknown explainer {method!r}; available: {', '.join(EXPLAINERS.names())}")
    explainer = EXPLAINERS.create(method, model=model, layer=layer, normalize=normalize, **method_kwargs)
    return explainer(images, target)
