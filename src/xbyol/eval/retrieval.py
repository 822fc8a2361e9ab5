"""Image<->text retrieval metrics: Recall@K, median rank and their chance levels. Pure functions.

Protocol (LAION-AI/CLIP_benchmark ``zeroshot_retrieval.py``; open_clip ``_add_rank_metrics``):
a query's rank is the 1-based position of its best-ranked *relevant* gallery item;
R@K is the fraction of queries whose rank is at most K.

Relevance is decided by caption text, not by item identity: a retrieved caption is
correct for an image query when it equals (as a string) one of that image's captions,
and a retrieved image is correct for a caption query when one of its captions equals
the query. Datasets such as ``shapes`` give the same caption to many images, and
those images are indistinguishable from the text alone, so each of them counts.

Ties: a gallery item that is not relevant and scores *equal to or above* the best
relevant item is ranked ahead of it (pessimistic), so a collapsed model whose scores
are all equal gets the worst rank, never an inflated one.

Chance: the same metrics for a gallery ranked in uniformly random order, computed
exactly per query from its number of relevant items ``r`` in a gallery of ``G``:
``P(rank <= K) = 1 - C(G - r, K) / C(G, K)``, averaged over the queries.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch


def first_relevant_rank(sim: torch.Tensor, relevant: torch.Tensor) -> torch.Tensor:
    """1-based rank of each query's best-scoring relevant gallery item.

    Args:
        sim: similarities ``[Q, G]`` (higher = more similar).
        relevant: bool ``[Q, G]``; every query needs at least one relevant item.

    Returns:
        ``[Q]`` int64 ranks in ``[1, G]``: one plus the number of irrelevant items scoring
        at least as high as the best relevant one.
    """
    if sim.ndim != 2 or relevant.shape != sim.shape:
        raise ValueError(f"expected sim [Q, G] and relevant [Q, G] of one shape, got {tuple(sim.shape)} and {tuple(relevant.shape)}")
    if relevant.dtype != torch.bool:
        raise ValueError(f"relevant must be a bool tensor, got {relevant.dtype}")
    if torch.isnan(sim).any():
        raise ValueError("sim contains NaN: the embeddings are not finite")
    missing = (~relevant.any(dim=1)).nonzero().flatten()
    if len(missing):
        raise ValueError(f"query {int(missing[0])} has no relevant gallery item ({len(missing)} such queries)")
    sim = sim.float()
    best = sim.masked_fill(~relevant, float("-inf")).max(dim=1).values  # (Q,)
    ahead = ((sim >= best[:, None]) & ~relevant).sum(dim=1)  # (Q,)
    return ahead + 1


def recall_at_k(ranks: torch.Tensor, ks: Sequence[int] = (1, 5, 10)) -> dict[int, float]:
    """Fraction of queries whose rank is at most ``k``, for each ``k``."""
    if ranks.numel() == 0:
        raise ValueError("no queries: ranks is empty")
    return {int(k): float((ranks <= k).float().mean()) for k in ks}


def median_rank(ranks: torch.Tensor) -> float:
    """Median of the ranks (the mean of the two middle values for an even count)."""
    if ranks.numel() == 0:
        raise ValueError("no queries: ranks is empty")
    return float(np.median(ranks.cpu().numpy()))


def _survival(r: int, g: int, kmax: int) -> np.ndarray:
    """``P(rank > k)`` for ``k = 0..kmax`` under a random order: ``prod_{i<k} (g - r - i) / (g - i)``."""
    i = np.arange(kmax, dtype=np.float64)
    factors = np.clip((g - r - i) / (g - i), 0.0, None)  # hits 0 once k > g - r
    return np.concatenate([[1.0], np.cumprod(factors)])  # (kmax + 1,)


def _check_counts(num_relevant: Sequence[int] | torch.Tensor, num_gallery: int) -> tuple[np.ndarray, np.ndarray]:
    r = np.asarray(num_relevant.cpu() if isinstance(num_relevant, torch.Tensor) else num_relevant, dtype=np.int64)
    if r.ndim != 1 or r.size == 0:
        raise ValueError("num_relevant must be a non-empty 1-D sequence of counts")
    if num_gallery < 1 or r.min() < 1 or r.max() > num_gallery:
        raise ValueError(f"every query needs 1..{num_gallery} relevant items, got counts in [{r.min()}, {r.max()}]")
    return np.unique(r, return_counts=True)


def chance_recall_at_k(
    num_relevant: Sequence[int] | torch.Tensor, num_gallery: int, ks: Sequence[int] = (1, 5, 10)
) -> dict[int, float]:
    """Expected R@K of a uniformly random ranking.

    Args:
        num_relevant: ``[Q]`` number of relevant gallery items of each query.
        num_gallery: gallery size ``G``.
        ks: the cut-offs.

    Returns:
        ``{k: mean_q (1 - C(G - r_q, k) / C(G, k))}``.
    """
    values, counts = _check_counts(num_relevant, num_gallery)
    kmax = min(max(ks), num_gallery)
    out: dict[int, float] = {}
    surv = {int(v): _survival(int(v), num_gallery, kmax) for v in values}
    for k in ks:
        kk = min(int(k), num_gallery)
        hit = sum(c * (1.0 - surv[int(v)][kk]) for v, c in zip(values, counts))
        out[int(k)] = float(hit / counts.sum())
    return out


def chance_median_rank(num_relevant: Sequence[int] | torch.Tensor, num_gallery: int) -> float:
    """Median of the first-relevant rank under a random ranking, mixed over the queries.

    The smallest ``k`` with ``P(rank <= k) >= 1/2``, where ``P`` averages the queries'
    exact distributions (so ``G = 10, r = 1`` gives 5).
    """
    values, counts = _check_counts(num_relevant, num_gallery)
    surv = sum(c * _survival(int(v), num_gallery, num_gallery) for v, c in zip(values, counts)) / counts.sum()
    return float(np.argmax(1.0 - surv >= 0.5 - 1e-12))


def caption_relevance(query_captions: Sequence[Sequence[str]], gallery_captions: Sequence[Sequence[str]]) -> torch.Tensor:
    """Bool ``[Q, G]``: True where a query and a gallery item share a caption string.

    Args:
        query_captions: the caption(s) of each query (an image's captions, or ``[text]``).
        gallery_captions: the caption(s) of each gallery item.
    """
    owners: dict[str, list[int]] = {}
    for j, caps in enumerate(gallery_captions):
        for c in set(caps):
            owners.setdefault(c, []).append(j)
    rel = torch.zeros(len(query_captions), len(gallery_captions), dtype=torch.bool)
    for i, caps in enumerate(query_captions):
        cols = [j for c in set(caps) for j in owners.get(c, ())]
        if cols:
            rel[i, cols] = True
    return rel


def retrieval_summary(
    ranks: torch.Tensor, num_relevant: Sequence[int] | torch.Tensor, num_gallery: int, ks: Sequence[int] = (1, 5, 10)
) -> dict[str, float]:
    """R@K, median rank and their chance levels side by side, as one flat dict.

    Keys: ``R@k``, ``chance_R@k`` for each ``k`` (fractions in [0, 1]), ``median_rank``,
    ``chance_median_rank``, ``queries``, ``gallery``.
    """
    if len(ranks) != len(num_relevant):
        raise ValueError(f"{len(ranks)} ranks but {len(num_relevant)} relevant counts")
    rec, chance = recall_at_k(ranks, ks), chance_recall_at_k(num_relevant, num_gallery, ks)
    out: dict[str, float] = {}
    for k in ks:
        out[f"R@{k}"] = rec[int(k)]
        out[f"chance_R@{k}"] = chance[int(k)]
    out["median_rank"] = median_rank(ranks)
    out["chance_median_rank"] = chance_median_rank(num_relevant, num_gallery)
    out["queries"] = float(len(ranks))
    out["gallery"] = float(num_gallery)
    return out
