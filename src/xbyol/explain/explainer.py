"""The explainer contract: :class:`Explainer` (input, target and mode checks, normalisation)
and the :data:`EXPLAINERS` registry the variants (``attribution``, ``cam/*``) register in.

The entry points that pick a variant by name (``explain``, ``names``) are in
:mod:`xbyol.explain.base`, above the variants.
"""

from __future__ import annotations

import abc
import warnings
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from xbyol.explain.targets import TargetFn
from xbyol.registry import Registry


class _ExplainerRegistry(Registry["Explainer"]):
    """The registry of explainer classes; each learns the name it is registered under (``cls.method``)."""

    def register(self, name: str, doc: str | None = None, replace: bool = False) -> Callable[[Any], Any]:
        deco = super().register(name, doc, replace)

        def named(cls: Any) -> Any:
            cls.method = name
            return deco(cls)

        return named


EXPLAINERS = _ExplainerRegistry("explainer")

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
    #: the name the class is registered under in :data:`EXPLAINERS`
    method: str = "explainer"

    @classmethod
    def target_mismatch(cls, target_type: type) -> str | None:
        """Why the method cannot explain a ``target_type`` target, in one line; ``None`` when it can."""
        if cls.target_types is None or issubclass(target_type, cls.target_types):
            return None
        kinds = " or ".join(t.__name__ for t in cls.target_types)
        return f"{cls.method} explains only {kinds} targets, not {target_type.__name__}"

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
        if target is not None and (why := self.target_mismatch(type(target))):
            raise ValueError(why)
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
