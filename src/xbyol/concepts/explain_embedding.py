"""Every embedding with a readable "why": its top concepts and their weights."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from xbyol.augment import preprocess
from xbyol.concepts.projection import concept_projection
from xbyol.rundir import Run


@torch.no_grad()
def concept_weights_of(run: Run, feats: torch.Tensor) -> torch.Tensor:
    """Weights ``[N, K]`` (rows sum to 1) of every bank concept for representations ``[N, D]``.

    For an ``xbyol`` run with fusion these are the concept-attention weights ``alpha`` of
    the learned map. Otherwise (no fusion, or a run explained through a post-hoc map) they
    are ``softmax_k(cos(z, e_k) / T)`` with ``z`` the representation mapped into the concept
    space and ``T`` = ``method.semantic.temperature``, the distribution the semantic loss
    trains. Taking representations rather than images lets a caller edit them first
    (e.g. remove a concept's direction, :mod:`xbyol.explain.concept_faithfulness`).
    """
    project_fn, bank = concept_projection(run)
    z = project_fn(feats.to(run.device))  # (N, E)
    attention = getattr(run.method, "attention", None)
    if attention is not None and hasattr(run.method, "concept_embeddings"):
        return attention(z, run.method.concept_embeddings).alpha.float()  # (N, K)
    cos = F.normalize(z, dim=-1) @ bank.embeddings.to(z.device).T  # (N, K)
    return (cos / run.cfg.method.semantic.temperature).softmax(dim=-1).float()


@torch.no_grad()
def concept_weights(run: Run, images: torch.Tensor) -> tuple[torch.Tensor, list[str]]:
    """Weights ``[B, K]`` (rows sum to 1) of every bank concept for uint8 images ``[B, 3, H, W]``.

    The weights of :func:`concept_weights_of` on the images' representations.

    Returns:
        The weights on the CPU and the concept texts.
    """
    if images.ndim != 4 or images.shape[1] != 3:
        raise ValueError(f"images must be [B, 3, H, W] uint8, got {list(images.shape)}")
    _, bank = concept_projection(run)
    feats = run.backbone(preprocess(images.to(run.device)))  # (B, D)
    return concept_weights_of(run, feats).cpu(), list(bank.texts)


def explain_embedding(run: Run, images_uint8: torch.Tensor, top_k: int = 5) -> list[list[tuple[str, float]]]:
    """Top concepts of each image's embedding, with their weights.

    Args:
        run: a :class:`xbyol.run.LoadedRun` (``xbyol`` runs use their learned map and
            attention; other runs a post-hoc map fitted on the training set).
        images_uint8: ``[B, 3, H, W]`` uint8 images at the run's image size.
        top_k: concepts per image (at most the bank size).

    Returns:
        One list per image of ``(concept, weight)`` pairs, highest weight first.
    """
    if top_k < 1:
        raise ValueError(f"top_k must be >= 1, got {top_k}")
    alpha, texts = concept_weights(run, images_uint8)
    w, idx = alpha.topk(min(top_k, alpha.shape[1]), dim=1)  # (B, k)
    return [[(texts[int(i)], float(v)) for v, i in zip(wr, ir)] for wr, ir in zip(w, idx)]
