"""Semantic losses: pull image representations toward the text embeddings of their concepts.

Both forms take image vectors already mapped into the concept space ``[B, E]``, the
concept bank ``[K, E]`` and the positives ``[B, K]`` (bool). Only *labelled* images
(at least one positive) contribute: each labelled image's loss is averaged over its
positives, then the mean is taken over labelled images. With no labelled image in the
batch the loss is an exact zero that still depends on ``x`` (so ``backward`` works), and
partially labelled data trains BYOL alone on its unlabelled part.

The contrastive form is a multi-label InfoNCE over the whole bank (the "L_out" form of
supervised contrastive learning, Khosla et al. 2020, arXiv 2004.11362, with concept texts
as the candidates as in X-CLR, Sobal et al. 2024, arXiv 2407.18134).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def _check(x: torch.Tensor, concepts: torch.Tensor, targets: torch.Tensor) -> None:
    if x.ndim != 2 or concepts.ndim != 2 or x.shape[1] != concepts.shape[1]:
        raise ValueError(
            f"expected x [B, E] and concepts [K, E] with the same E, got {list(x.shape)} and {list(concepts.shape)}"
        )
    if targets.shape != (x.shape[0], concepts.shape[0]):
        raise ValueError(f"targets must be [B={x.shape[0]}, K={concepts.shape[0]}], got {list(targets.shape)}")
    if targets.dtype != torch.bool:
        raise TypeError(f"targets must be a bool tensor, got {targets.dtype}")


def concept_cosines(x: torch.Tensor, concepts: torch.Tensor) -> torch.Tensor:
    """Cosine of every image vector with every concept: ``[B, E] x [K, E] -> [B, K]``."""
    return F.normalize(x.float(), dim=-1) @ F.normalize(concepts.float(), dim=-1).T  # (B, K)


def _mean_over_positives(per_pair: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    pos = targets.float()  # (B, K)
    n_pos = pos.sum(dim=1)  # (B,)
    labelled = n_pos > 0
    if not bool(labelled.any()):
        return per_pair.sum() * 0.0
    per_image = (per_pair * pos).sum(dim=1)[labelled] / n_pos[labelled]  # (B_lab,)
    return per_image.mean()


def cosine_concept_loss(x: torch.Tensor, concepts: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Negative cosine between each image and each of its concepts, averaged.

    ``L = mean_{i labelled} [ -(1/|P_i|) sum_{k in P_i} cos(x_i, e_k) ]``, in ``[-1, 1]``.

    Args:
        x: image vectors in the concept space ``[B, E]`` (need not be unit).
        concepts: concept embeddings ``[K, E]``.
        targets: positives ``[B, K]`` bool.

    Returns:
        Scalar loss.
    """
    _check(x, concepts, targets)
    return _mean_over_positives(-concept_cosines(x, concepts), targets)


def semantic_contrastive_loss(
    x: torch.Tensor, concepts: torch.Tensor, targets: torch.Tensor, temperature: float = 0.1
) -> torch.Tensor:
    """Multi-label InfoNCE over the concept bank.

    ``L = mean_{i labelled} [ -(1/|P_i|) sum_{k in P_i} log softmax_j(cos(x_i, e_j) / T)_k ]``:
    each image moves toward its concepts and away from every other concept of the bank.
    Its minimum, ``log |P_i|`` per image, is reached when the softmax mass is spread over
    the positives alone.

    Args:
        x: image vectors in the concept space ``[B, E]`` (need not be unit).
        concepts: concept embeddings ``[K, E]``.
        targets: positives ``[B, K]`` bool.
        temperature: softmax temperature T > 0.

    Returns:
        Scalar loss.
    """
    _check(x, concepts, targets)
    if not temperature > 0:
        raise ValueError(f"temperature must be positive, got {temperature}")
    log_p = F.log_softmax(concept_cosines(x, concepts) / temperature, dim=1)  # (B, K)
    return _mean_over_positives(-log_p, targets)


def semantic_loss(
    kind: str, x: torch.Tensor, concepts: torch.Tensor, targets: torch.Tensor, temperature: float = 0.1
) -> torch.Tensor:
    """Dispatch on ``kind``: ``"contrastive"`` or ``"cosine"`` (``method.semantic.loss``)."""
    if kind == "contrastive":
        return semantic_contrastive_loss(x, concepts, targets, temperature)
    if kind == "cosine":
        return cosine_concept_loss(x, concepts, targets)
    raise ValueError(f"semantic loss {kind!r} is unknown; choose 'contrastive' or 'cosine'")
