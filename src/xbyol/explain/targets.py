"""Explanation targets: what scalar an explainer explains, for encoders without class logits.

A *target* is any callable ``target(outputs [B, D]) -> scores [B]``: one scalar per
sample, computed **row-wise** (score ``i`` depends only on ``outputs[i]``). Explainers
differentiate or perturb that scalar. There is no default target: an SSL encoder has no
argmax class, and silently explaining "the largest embedding dimension" (what grad-cam
does with ``targets=None``) explains nothing a user asked about.

Per-sample targets (a ``[B, D]`` reference, a ``[B]`` class index) must have exactly one
entry per image; a single shared value is given unbatched (``[D]``, an ``int``). A
per-sample target whose length differs from the batch raises (grad-cam explains only
image 0 when given one target for a batch).

These classes back the command-line specs ``image:PATH`` (:class:`EmbeddingSimilarityTarget`),
``concept:TEXT`` (:class:`ConceptTarget`), ``class:K`` (:class:`LinearClassTarget`),
``dim:J`` (:class:`DimensionTarget`) and ``norm`` (:class:`NormTarget`).
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Sequence
from typing import Union

import torch
import torch.nn.functional as F
from torch import nn

TargetFn = Callable[[torch.Tensor], torch.Tensor]
IndexLike = Union[int, Sequence[int], torch.Tensor]

__all__ = [
    "ConceptTarget",
    "DimensionTarget",
    "EmbeddingSimilarityTarget",
    "LinearClassTarget",
    "NormTarget",
    "Target",
    "TargetFn",
    "compute_scores",
    "score_rows",
]


def _check_outputs(outputs: torch.Tensor, who: str) -> torch.Tensor:
    if not isinstance(outputs, torch.Tensor) or outputs.dim() != 2:
        shape = list(outputs.shape) if isinstance(outputs, torch.Tensor) else type(outputs).__name__
        raise ValueError(f"{who}: expected model outputs of shape [B, D] (embeddings), got {shape}")
    return outputs


def _check_batch(n: int, batch: int, who: str, what: str) -> None:
    if n != batch:
        raise ValueError(
            f"{who}: {n} per-sample {what} for a batch of {batch} images; give exactly one per image, "
            f"or a single unbatched value to share it across the batch"
        )


def _as_index(value: IndexLike, who: str) -> torch.Tensor:
    """An int -> 0-d long tensor (shared); a sequence / 1-D tensor -> [B] long (per-sample)."""
    if isinstance(value, bool):
        raise TypeError(f"{who}: expected an int or a sequence of ints, got a bool")
    if isinstance(value, int):
        return torch.tensor(value, dtype=torch.long)
    index = torch.as_tensor(value).detach()
    if index.is_floating_point() or index.is_complex() or index.dtype == torch.bool:
        raise TypeError(f"{who}: expected integer indices, got dtype {index.dtype}")
    if index.dim() > 1:
        raise ValueError(f"{who}: expected an int or a 1-D sequence [B] of ints, got shape {list(index.shape)}")
    return index.long().cpu()


class Target(abc.ABC):
    """Base class of the built-in targets: checks ``outputs`` is ``[B, D]`` and the scores ``[B]``."""

    def __call__(self, outputs: torch.Tensor) -> torch.Tensor:
        """Score each sample.

        Args:
            outputs: ``[B, D]`` model outputs (embeddings).

        Returns:
            ``[B]`` scores, differentiable w.r.t. ``outputs``.
        """
        name = type(self).__name__
        scores = self.score(_check_outputs(outputs, name))
        if scores.shape != (outputs.shape[0],):
            raise RuntimeError(f"{name}: produced scores of shape {list(scores.shape)}, expected [{outputs.shape[0]}]")
        return scores

    @abc.abstractmethod
    def score(self, outputs: torch.Tensor) -> torch.Tensor:
        """``[B, D] -> [B]``, already shape-checked."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class EmbeddingSimilarityTarget(Target):
    """Cosine similarity to a reference embedding: "why are these two images alike?".

    Args:
        reference: ``[D]`` one reference for every image, or ``[B, D]`` one per image
            (e.g. the embeddings of the images each one is compared with). Detached.
        eps: numerical floor of the norms in the cosine.
    """

    def __init__(self, reference: torch.Tensor, eps: float = 1e-8) -> None:
        if not isinstance(reference, torch.Tensor) or reference.dim() not in (1, 2) or reference.numel() == 0:
            shape = list(reference.shape) if isinstance(reference, torch.Tensor) else type(reference).__name__
            raise ValueError(f"EmbeddingSimilarityTarget: reference must be [D] or [B, D], got {shape}")
        if not reference.is_floating_point():
            raise TypeError(f"EmbeddingSimilarityTarget: reference must be a float tensor, got {reference.dtype}")
        self.reference = reference.detach()
        self.eps = eps

    @classmethod
    def from_images(cls, model: nn.Module, images: torch.Tensor, eps: float = 1e-8) -> "EmbeddingSimilarityTarget":
        """Reference = ``model(images)`` (no gradient): ``[B, 3, H, W]`` -> per-sample, ``[3, H, W]`` -> shared."""
        batch = images.dim() == 4
        with torch.no_grad():
            reference = model(images if batch else images[None])  # (B, D)
        return cls(reference if batch else reference[0], eps=eps)

    def score(self, outputs: torch.Tensor) -> torch.Tensor:
        reference = self.reference.to(device=outputs.device, dtype=outputs.dtype)
        if reference.shape[-1] != outputs.shape[1]:
            raise ValueError(
                f"EmbeddingSimilarityTarget: reference has D={reference.shape[-1]}, model outputs have D={outputs.shape[1]}"
            )
        if reference.dim() == 2:
            _check_batch(reference.shape[0], outputs.shape[0], "EmbeddingSimilarityTarget", "references")
        else:
            reference = reference.expand_as(outputs)  # (B, D)
        return F.cosine_similarity(outputs, reference, dim=1, eps=self.eps)  # (B,)

    def __repr__(self) -> str:
        return f"EmbeddingSimilarityTarget(reference={list(self.reference.shape)})"


class ConceptTarget(Target):
    """Cosine between ``projection(outputs)`` and a concept's text embedding.

    Args:
        concept_embedding: ``[E]`` one concept for every image, or ``[B, E]`` one per image.
        projection: module or function mapping model embeddings ``[B, D]`` into the concept
            space ``[B, E]`` (e.g. the image projector of a cross-modal model). ``None``: identity, which
            requires ``D == E``. It is called with gradients enabled.
        eps: numerical floor of the norms in the cosine.
    """

    def __init__(
        self,
        concept_embedding: torch.Tensor,
        projection: nn.Module | Callable[[torch.Tensor], torch.Tensor] | None = None,
        eps: float = 1e-8,
    ) -> None:
        emb = concept_embedding
        if not isinstance(emb, torch.Tensor) or emb.dim() not in (1, 2) or emb.numel() == 0:
            shape = list(emb.shape) if isinstance(emb, torch.Tensor) else type(emb).__name__
            raise ValueError(f"ConceptTarget: concept_embedding must be [E] or [B, E], got {shape}")
        if not emb.is_floating_point():
            raise TypeError(f"ConceptTarget: concept_embedding must be a float tensor, got {emb.dtype}")
        if projection is not None and not callable(projection):
            raise TypeError(f"ConceptTarget: projection must be callable or None, got {type(projection).__name__}")
        self.concept_embedding = emb.detach()
        self.projection = projection
        self.eps = eps

    def score(self, outputs: torch.Tensor) -> torch.Tensor:
        projected = outputs if self.projection is None else self.projection(outputs)  # (B, E)
        if not isinstance(projected, torch.Tensor) or projected.shape[:1] != outputs.shape[:1] or projected.dim() != 2:
            raise ValueError("ConceptTarget: projection must map [B, D] outputs to [B, E]")
        concept = self.concept_embedding.to(device=projected.device, dtype=projected.dtype)
        if concept.shape[-1] != projected.shape[1]:
            hint = "" if self.projection is not None else "; pass projection= mapping the model embedding into concept space"
            raise ValueError(
                f"ConceptTarget: concept embedding has E={concept.shape[-1]}, "
                f"{'projected' if self.projection is not None else 'model'} outputs have {projected.shape[1]}{hint}"
            )
        if concept.dim() == 2:
            _check_batch(concept.shape[0], projected.shape[0], "ConceptTarget", "concept embeddings")
        else:
            concept = concept.expand_as(projected)  # (B, E)
        return F.cosine_similarity(projected, concept, dim=1, eps=self.eps)  # (B,)

    def __repr__(self) -> str:
        return f"ConceptTarget(concept_embedding={list(self.concept_embedding.shape)}, projection={type(self.projection).__name__})"


class _IndexTarget(Target):
    """Shared helper: an int (shared) or ``[B]`` (per-sample) index into ``[0, size)``."""

    def __init__(self, index: IndexLike, size: int | None, what: str) -> None:
        name = type(self).__name__
        self.index = _as_index(index, name)
        self._what = what
        if self.index.numel() and int(self.index.min()) < 0:
            raise ValueError(f"{name}: {what} must be >= 0, got {self.index.tolist()}")
        if size is not None:
            self._check_range(size)

    def _check_range(self, size: int) -> None:
        if self.index.numel() and int(self.index.max()) >= size:
            raise ValueError(
                f"{type(self).__name__}: {self._what} {self.index.tolist()} out of range for size {size}"
            )

    def indices(self, batch: int, device: torch.device) -> torch.Tensor:
        """``[B]`` long indices on ``device`` (a shared index is repeated)."""
        if self.index.dim() == 0:
            return self.index.to(device).expand(batch)
        _check_batch(self.index.shape[0], batch, type(self).__name__, self._what)
        return self.index.to(device)


class LinearClassTarget(_IndexTarget):
    """Logit of a linear probe: ``linear(outputs)[:, class_index]``.

    Args:
        linear: the probe, ``nn.Linear(D, K)``.
        class_index: an int (shared) or ``[B]`` ints (one class per image).
    """

    def __init__(self, linear: nn.Linear, class_index: IndexLike) -> None:
        if not isinstance(linear, nn.Linear):
            raise TypeError(f"LinearClassTarget: linear must be an nn.Linear, got {type(linear).__name__}")
        self.linear = linear
        super().__init__(class_index, linear.out_features, "class indices")

    def score(self, outputs: torch.Tensor) -> torch.Tensor:
        if outputs.shape[1] != self.linear.in_features:
            raise ValueError(
                f"LinearClassTarget: model outputs have D={outputs.shape[1]}, linear.in_features={self.linear.in_features}"
            )
        logits = self.linear(outputs)  # (B, K)
        index = self.indices(outputs.shape[0], outputs.device)  # (B,)
        return logits.gather(1, index[:, None])[:, 0]  # (B,)

    def __repr__(self) -> str:
        return f"LinearClassTarget(linear={self.linear.in_features}->{self.linear.out_features}, class_index={self.index.tolist()})"


class DimensionTarget(_IndexTarget):
    """One embedding dimension ``outputs[:, j]`` (an int, or ``[B]`` one per image)."""

    def __init__(self, j: IndexLike) -> None:
        super().__init__(j, None, "dimensions")

    def score(self, outputs: torch.Tensor) -> torch.Tensor:
        self._check_range(outputs.shape[1])
        index = self.indices(outputs.shape[0], outputs.device)  # (B,)
        return outputs.gather(1, index[:, None])[:, 0]  # (B,)

    def __repr__(self) -> str:
        return f"DimensionTarget({self.index.tolist()})"


class NormTarget(Target):
    """L2 norm of the embedding, ``||outputs[i]||_2``."""

    def score(self, outputs: torch.Tensor) -> torch.Tensor:
        return torch.linalg.vector_norm(outputs, dim=1)  # (B,)


def compute_scores(target: TargetFn | None, outputs: torch.Tensor) -> torch.Tensor:
    """Apply any target callable and check it returned one scalar per sample.

    Args:
        target: a :class:`Target` or any callable ``[B, D] -> [B]``.
        outputs: ``[B, ...]`` model outputs.

    Returns:
        ``[B]`` scores.

    Raises:
        TypeError: ``target`` is ``None`` or not callable.
        ValueError: the scores are not shaped ``[B]``.
    """
    if target is None:
        raise TypeError(
            "target is None: an encoder without class logits has no default target. Pass one, e.g. "
            "EmbeddingSimilarityTarget(reference), ConceptTarget(text_embedding, projection), "
            "LinearClassTarget(probe, k), DimensionTarget(j) or NormTarget()"
        )
    if not callable(target):
        raise TypeError(f"target must be callable outputs [B, D] -> scores [B], got {type(target).__name__}")
    scores = target(outputs)
    batch = outputs.shape[0]
    if not isinstance(scores, torch.Tensor) or scores.shape != (batch,):
        got = list(scores.shape) if isinstance(scores, torch.Tensor) else type(scores).__name__
        raise ValueError(f"target {target!r} returned {got}; expected one scalar per sample, shape [{batch}]")
    return scores


def score_rows(target: TargetFn, outputs: torch.Tensor, sample_index: torch.Tensor, batch: int) -> torch.Tensor:
    """Score rows that belong to arbitrary samples of a batch (perturbed/expanded inputs).

    Attribution libraries evaluate the model on expanded batches (IG steps, noise samples,
    occlusion windows); row ``n`` comes from image ``sample_index[n]``. Targets are row-wise,
    so the rows are regrouped into full ``[batch, D]`` blocks (one occurrence of each image
    per block, absent images filled with a detached copy of a present row) and each block is
    scored by ``target`` as if it were the original batch.

    Args:
        target: a row-wise target callable.
        outputs: ``[N, D]`` model outputs.
        sample_index: ``[N]`` long, values in ``[0, batch)``.
        batch: number of images the target was built for.

    Returns:
        ``[N]`` scores, differentiable w.r.t. ``outputs``.
    """
    n = outputs.shape[0]
    idx = sample_index.to(outputs.device).long().reshape(-1)  # (N,)
    if idx.shape[0] != n:
        raise ValueError(f"score_rows: {idx.shape[0]} sample indices for {n} outputs")
    arange = torch.arange(n, device=idx.device)
    if n == batch and torch.equal(idx, arange):
        return compute_scores(target, outputs)
    # occurrence rank of each row among the rows of the same image
    order = torch.argsort(idx, stable=True)  # (N,)
    counts = torch.bincount(idx, minlength=batch)  # (batch,)
    starts = torch.cumsum(counts, 0) - counts  # (batch,)
    rank = torch.empty_like(idx)
    rank[order] = arange - starts[idx[order]]  # (N,)
    scores = outputs.new_zeros(n)
    for j in range(int(counts.max())):
        rows = (rank == j).nonzero()[:, 0]  # rows of occurrence j
        ids = idx[rows]
        block = outputs[rows[:1]].detach().expand(batch, *outputs.shape[1:]).index_put((ids,), outputs[rows])  # (batch, D)
        scores = scores.index_put((rows,), compute_scores(target, block)[ids])
    return scores
