"""Weighted k-nearest-neighbour classification of frozen features.

Cosine similarity between L2-normalised features; each of the ``k`` nearest bank
items votes for its label with weight ``exp(sim / t)`` (Wu et al. 2018, InstDisc;
the solo-learn / lightly benchmark convention, solo-learn k=20, t=0.07).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def _check(query: torch.Tensor, bank: torch.Tensor, bank_labels: torch.Tensor, num_classes: int, k: int, t: float) -> None:
    if query.dim() != 2 or bank.dim() != 2 or query.shape[1] != bank.shape[1]:
        raise ValueError(f"knn: expected query [Q, D] and bank [N, D] with the same D, got {list(query.shape)} and {list(bank.shape)}")
    if bank.shape[0] == 0:
        raise ValueError("knn: the feature bank is empty")
    if bank_labels.shape != (bank.shape[0],):
        raise ValueError(f"knn: bank_labels must be [N] = [{bank.shape[0]}], got {list(bank_labels.shape)}")
    if num_classes < 1:
        raise ValueError(f"knn: num_classes must be >= 1, got {num_classes}")
    if bank_labels.min() < 0 or bank_labels.max() >= num_classes:
        raise ValueError(
            f"knn: bank labels must lie in [0, {num_classes}), got range [{int(bank_labels.min())}, {int(bank_labels.max())}]"
        )
    if k < 1:
        raise ValueError(f"knn: k must be >= 1, got {k}")
    if not t > 0:
        raise ValueError(f"knn: temperature t must be > 0, got {t}")


@torch.no_grad()
def knn_predict(
    query: torch.Tensor,
    bank: torch.Tensor,
    bank_labels: torch.Tensor,
    num_classes: int,
    k: int = 20,
    t: float = 0.07,
    chunk_size: int = 1024,
) -> torch.Tensor:
    """Class scores of a temperature-weighted kNN vote.

    Args:
        query: ``[Q, D]`` features to classify (any scale; normalised here).
        bank: ``[N, D]`` labelled features (any scale; normalised here).
        bank_labels: ``[N]`` integer labels in ``[0, num_classes)``.
        num_classes: ``C``.
        k: neighbours per query; ``min(k, N)`` are used.
        t: temperature of the weights ``exp(cos / t)``.
        chunk_size: queries per similarity block, bounding memory to ``chunk_size * N``.

    Returns:
        ``[Q, C]`` float32 scores: the summed weights of the neighbours of each class.
    """
    _check(query, bank, bank_labels, num_classes, k, t)
    k = min(k, bank.shape[0])
    bank_n = F.normalize(bank.float(), dim=1)  # (N, D)
    labels = bank_labels.long().to(bank.device)  # (N,)
    out = []
    for start in range(0, query.shape[0], chunk_size):
        q = F.normalize(query[start : start + chunk_size].float().to(bank.device), dim=1)  # (q, D)
        sim = q @ bank_n.T  # (q, N)
        top_sim, top_idx = sim.topk(k, dim=1)  # (q, k)
        weights = (top_sim / t).exp()  # (q, k)
        scores = torch.zeros(q.shape[0], num_classes, device=q.device)  # (q, C)
        scores.scatter_add_(1, labels[top_idx], weights)
        out.append(scores)
    if not out:
        return torch.zeros(0, num_classes, device=bank.device)
    return torch.cat(out)  # (Q, C)


def knn_accuracy(
    train_feats: torch.Tensor,
    train_labels: torch.Tensor,
    test_feats: torch.Tensor,
    test_labels: torch.Tensor,
    k: int = 20,
    t: float = 0.07,
    num_classes: int | None = None,
) -> float:
    """Top-1 accuracy of :func:`knn_predict` with the training set as the bank.

    Args:
        train_feats: ``[N, D]`` bank features.
        train_labels: ``[N]`` bank labels.
        test_feats: ``[Q, D]`` query features.
        test_labels: ``[Q]`` query labels.
        k: neighbours.
        t: temperature.
        num_classes: defaults to ``1 + max label`` of both sets.

    Returns:
        Fraction of test samples whose highest-scoring class is their label, in [0, 1].
    """
    if test_labels.shape != (test_feats.shape[0],):
        raise ValueError(f"knn_accuracy: test_labels must be [Q] = [{test_feats.shape[0]}], got {list(test_labels.shape)}")
    if test_feats.shape[0] == 0:
        raise ValueError("knn_accuracy: no test samples")
    if num_classes is None:
        num_classes = int(max(train_labels.max(), test_labels.max())) + 1
    scores = knn_predict(test_feats, train_feats, train_labels, num_classes, k=k, t=t)  # (Q, C)
    pred = scores.argmax(dim=1).cpu()
    return float((pred == test_labels.long().cpu()).float().mean())
