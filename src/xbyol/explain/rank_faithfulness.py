"""A faithfulness check of the concept "why" that can fail: rank drops against a null that cannot be faithful.

The check of :mod:`xbyol.explain.concept_faithfulness` compares raw weight drops, which
differ in scale between explainers (an attention softmax, a post-hoc softmax, a head's
logits), and its retrieval form is passed by any representation whose concept map was
fitted on the labels. Here every explainer is put on one scale, and the explainer must
beat a null:

- **Rank scale.** For image ``i`` with top concept ``t_i`` (the arg-max of its weights
  ``w_i [K]``), remove a concept direction from its representation (``project_out`` about
  the training mean) and read the **rank** of ``t_i`` among all ``K`` concepts (1 = top,
  ties counted against it). ``own``: the direction of ``t_i`` itself; ``other``: the
  direction of a concept ``c_i != t_i`` drawn uniformly. The **gap** of image ``i`` is
  ``rank_own - rank_other``: positive when the explanation's top concept depends on that
  concept's direction more than on a random one's.
- **Null (concept names permuted).** The same weights with their concept names permuted
  by a fixed random derangement ``pi`` (``w'_k = w_{pi(k)}``): its top concept's name is
  unrelated to the weight that put it on top, so removing the named concept's direction
  moves it no more than a random direction, and its gap is about 0. It runs through the
  same code with the same random draws.
- **Test.** The explanation is called faithful when its mean gap exceeds the null's: the
  per-image ``excess = gap - gap_null``, averaged over images (and compared over seeds by
  the benchmark's paired rule).
"""

from __future__ import annotations

from typing import Callable

import torch

from xbyol.explain.concept_faithfulness import project_out

ScoreFn = Callable[[torch.Tensor], torch.Tensor]


def rank_of(weights: torch.Tensor, concept: torch.Tensor) -> torch.Tensor:
    """``[N]`` rank (1 = highest) of ``concept[i]`` in row ``i`` of ``weights [N, K]``; ties count against it
    (``1 + #{k : w_ik >= w_i,concept[i]} - 1``, i.e. the number of weights at least as large)."""
    own = weights.gather(1, concept[:, None])  # (N, 1)
    return (weights >= own).sum(1)  # (N,)


def derangement(k: int, generator: torch.Generator) -> torch.Tensor:
    """``[k]`` a uniformly drawn permutation with no fixed point (rejection sampling; ``k >= 2``)."""
    if k < 2:
        raise ValueError(f"a derangement needs at least 2 concepts, got {k}")
    while True:
        p = torch.randperm(k, generator=generator)
        if bool((p != torch.arange(k)).all()):
            return p


@torch.no_grad()
def rank_gaps(score_fn: ScoreFn, feats: torch.Tensor, directions: torch.Tensor, center: torch.Tensor | None,
              others: torch.Tensor, permutation: torch.Tensor | None = None) -> torch.Tensor:
    """Per-image gaps ``rank_own - rank_other`` ``[N]`` (float64).

    Args:
        score_fn: representations ``[N, D]`` -> weights ``[N, K]``.
        feats: test representations ``[N, D]``.
        directions: ``[K, D]`` concept directions (e.g. :func:`concept_directions` on training data).
        center: ``[D]`` kept on each removed axis (the mean training representation), or None.
        others: ``[N]`` the control concept of each image, drawn by the caller; where it equals the image's
            top concept the image's gap is NaN.
        permutation: ``[K]`` the concept names of the weights are permuted: ``w'_k = w_{permutation[k]}``.
    """
    def weights(h: torch.Tensor) -> torch.Tensor:
        w = score_fn(h).double().cpu()  # (n, K)
        return w if permutation is None else w[:, permutation]

    top = weights(feats).argmax(1)  # (N,)

    def rank_after(removed: torch.Tensor) -> torch.Tensor:
        out = torch.empty(len(feats), dtype=torch.float64)
        for c in removed.unique().tolist():
            sel = removed == c
            w = weights(project_out(feats[sel], directions[c], center))  # (n, K)
            out[sel] = rank_of(w, top[sel]).double()
        return out

    gaps = rank_after(top) - rank_after(others)
    gaps[others == top] = float("nan")
    return gaps


@torch.no_grad()
def rank_faithfulness(score_fn: ScoreFn, feats: torch.Tensor, directions: torch.Tensor,
                      center: torch.Tensor | None = None, seed: int = 0) -> dict[str, object]:
    """Gap of the explanation, gap of the permuted-names null and their per-image difference.

    ``directions`` must have no NaN row. The control concepts are drawn relative to each weighting's
    own top concept, with one generator seeded by ``seed`` (the permutation first).

    Returns:
        ``gap`` / ``gap_null``: mean over images of ``rank_own - rank_other`` for the explanation and for
        the null; ``excess``: mean of ``gap - gap_null``; ``images``; ``excess_per_image``: the per-image
        excesses (for a test-set interval).
    """
    if torch.isnan(directions).any():
        raise ValueError("directions has NaN rows: leave concepts without a direction out first")
    k = directions.shape[0]
    gen = torch.Generator().manual_seed(seed)
    perm = derangement(k, gen)
    out: dict[str, torch.Tensor] = {}
    for name, p in (("gap", None), ("gap_null", perm)):
        w = score_fn(feats).double().cpu()
        top = (w if p is None else w[:, p]).argmax(1)  # (N,)
        others = (top + torch.randint(1, k, (len(feats),), generator=gen)) % k  # uniform over the other k - 1
        out[name] = rank_gaps(score_fn, feats, directions, center, others, p)
    excess = out["gap"] - out["gap_null"]  # (N,)
    return {"gap": float(out["gap"].mean()), "gap_null": float(out["gap_null"].mean()),
            "excess": float(excess.mean()), "images": len(feats),
            "excess_per_image": [round(float(v), 4) for v in excess]}
