"""Is the concept "why" of an embedding faithful? Remove the concept's direction and see.

``explain_embedding`` lists an embedding's top concepts. The list is faithful when the
representation really carries its top concept: removing that concept's direction from the
representation must lower the concept's weight, and the retrieval of images that have the
concept, more than removing the direction of a random other concept does.

- **Concept direction** in representation space (independent of the concept map that
  produced the explanation, so the check is not circular): the difference between the
  mean training representation of the images that have the concept and of those that do
  not, unit length (a mean-difference concept activation vector, cf. TCAV, Kim et al.
  2018, arXiv 1711.11279, which uses a linear classifier's normal instead).
- **Removal:** ``h' = h - ((h - mu) . u) u`` for the unit direction ``u`` and the mean
  training representation ``mu``: the variation along ``u`` is erased while the
  representation keeps its mean there (an uncentred ``h - (h . u) u`` would also shift
  every representation off its distribution, which disturbs any concept alike).
- **Score drop** of image ``i`` with top concept ``t_i``: ``w_{t_i}(h_i) - w_{t_i}(h_i')``
  where ``w`` are the explanation's weights; the control removes the direction of a
  concept ``r_i != t_i`` drawn uniformly.
- **Retrieval drop** of concept ``k`` (every concept that is some image's top concept):
  the average precision of ranking the test images by ``w_k`` against "has concept k",
  before minus after removing ``u_k`` from every image; the control removes ``u_j`` of a
  random ``j != k``.
"""

from __future__ import annotations

import math
from typing import Callable

import torch
import torch.nn.functional as F

from xbyol.concepts.explain_embedding import concept_weights_of
from xbyol.concepts.projection import representations_and_targets, run_bank
from xbyol.rundir import Run

ScoreFn = Callable[[torch.Tensor], torch.Tensor]


def concept_directions(feats: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Unit mean-difference directions ``[K, D]``: mean of images with concept k minus mean of the others.

    Args:
        feats: representations ``[N, D]``.
        targets: ``[N, K]`` bool, which images have which concept.

    Returns:
        ``[K, D]``; a row is NaN when every image or no image has the concept.
    """
    if feats.ndim != 2 or targets.shape[0] != feats.shape[0] or targets.ndim != 2:
        raise ValueError(f"expected feats [N, D] and targets [N, K], got {list(feats.shape)} and {list(targets.shape)}")
    t = targets.to(feats.dtype)  # (N, K)
    n_pos, n_neg = t.sum(0), (1 - t).sum(0)  # (K,)
    mean_pos = t.T @ feats / n_pos[:, None]  # (K, D)
    mean_neg = (1 - t).T @ feats / n_neg[:, None]  # (K, D)
    diff = F.normalize(mean_pos - mean_neg, dim=1)  # (K, D)
    undefined = (n_pos == 0) | (n_neg == 0)
    return torch.where(undefined[:, None], torch.full_like(diff, math.nan), diff)


def project_out(feats: torch.Tensor, direction: torch.Tensor, center: torch.Tensor | None = None) -> torch.Tensor:
    """``h - ((h - c) . u) u`` for each row ``h`` of ``feats [N, D]``.

    Args:
        feats: ``[N, D]``.
        direction: ``[D]``; normalised to the unit ``u`` here.
        center: ``[D]`` point kept on the removed axis (default the origin).
    """
    u = F.normalize(direction.to(feats.dtype), dim=0)  # (D,)
    shifted = feats if center is None else feats - center.to(feats.dtype)
    return feats - (shifted @ u)[:, None] * u[None, :]  # (N, D)


def average_precision(scores: torch.Tensor, positives: torch.Tensor) -> float:
    """Average precision of ranking by ``scores [N]`` (descending) against bool ``positives [N]``.

    ``AP = mean over positives of the precision at its rank`` (no interpolation; equal to
    scikit-learn's ``average_precision_score`` when the scores have no ties). NaN without
    any positive.
    """
    pos = positives.bool()
    if not bool(pos.any()):
        return math.nan
    order = scores.argsort(descending=True, stable=True)
    hits = pos[order].double()  # (N,)
    precision = hits.cumsum(0) / torch.arange(1, len(hits) + 1, dtype=torch.float64)
    return float((precision * hits).sum() / hits.sum())


def _other_concept(k: torch.Tensor, candidates: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """For each ``k [N]``, a uniformly drawn member of ``candidates [M]`` different from it."""
    out = torch.empty_like(k)
    for i, ki in enumerate(k.tolist()):
        pool = candidates[candidates != ki]
        out[i] = pool[torch.randint(len(pool), (1,), generator=generator)]
    return out


@torch.no_grad()
def direction_removal_faithfulness(
    score_fn: ScoreFn,
    feats: torch.Tensor,
    targets: torch.Tensor,
    directions: torch.Tensor,
    center: torch.Tensor | None = None,
    seed: int = 0,
) -> dict[str, float]:
    """Score and retrieval drops when the top concept's direction is removed, vs a random concept's.

    Args:
        score_fn: representations ``[N, D]`` -> concept weights ``[N, K]`` (the explanation's).
        feats: test representations ``[N, D]``.
        targets: ``[N, K]`` bool ground-truth concepts of the test images.
        directions: ``[K, D]`` concept directions (:func:`concept_directions` on training data);
            NaN rows are never removed nor drawn.
        center: ``[D]`` kept on each removed axis (the mean training representation).
        seed: of the random control concepts.

    Returns:
        ``score_drop_top`` / ``score_drop_random``: mean over images of the drop of the top
        concept's weight; ``score_top_wins``: fraction of images where removing the top
        concept lowered it more; ``ap`` (before), ``ap_drop_top`` / ``ap_drop_random``: mean
        over the retrieved concepts of the AP drop; ``ap_top_wins``; ``images``, ``concepts``.
    """
    gen = torch.Generator().manual_seed(seed)
    weights = score_fn(feats).cpu()  # (N, K)
    valid = ~torch.isnan(directions).any(1).cpu()  # (K,)
    candidates = torch.nonzero(valid).flatten()
    top = weights.argmax(1)  # (N,)
    keep = valid[top]  # images whose top concept has a direction
    top, idx = top[keep], torch.nonzero(keep).flatten()
    rand = _other_concept(top, candidates, gen)  # (N',)

    def weight_after(removed: torch.Tensor) -> torch.Tensor:
        """Weight of each image's top concept after removing concept ``removed[i]``'s direction."""
        out = torch.empty(len(idx), dtype=torch.float64)
        for c in removed.unique().tolist():
            sel = removed == c
            w = score_fn(project_out(feats[idx[sel]], directions[c], center)).cpu()  # (n, K)
            out[sel] = w.gather(1, top[sel][:, None])[:, 0].double()
        return out

    before = weights[idx].gather(1, top[:, None])[:, 0].double()  # (N',)
    drop_top = before - weight_after(top)
    drop_rand = before - weight_after(rand)

    t = targets.bool().cpu()
    concepts = [k for k in top.unique().tolist() if bool(t[:, k].any())]
    controls = _other_concept(torch.tensor(concepts, dtype=torch.long), candidates, gen).tolist() if concepts else []
    ap, ap_top, ap_rand = [], [], []
    for k, j in zip(concepts, controls):
        ap.append(average_precision(weights[:, k], t[:, k]))
        ap_top.append(average_precision(score_fn(project_out(feats, directions[k], center)).cpu()[:, k], t[:, k]))
        ap_rand.append(average_precision(score_fn(project_out(feats, directions[j], center)).cpu()[:, k], t[:, k]))
    a, at, ar = (torch.tensor(v, dtype=torch.float64) for v in (ap, ap_top, ap_rand))
    return {
        "score_drop_top": float(drop_top.mean()) if len(idx) else math.nan,
        "score_drop_random": float(drop_rand.mean()) if len(idx) else math.nan,
        "score_top_wins": float((drop_top > drop_rand).double().mean()) if len(idx) else math.nan,
        "ap": float(a.mean()) if concepts else math.nan,
        "ap_drop_top": float((a - at).mean()) if concepts else math.nan,
        "ap_drop_random": float((a - ar).mean()) if concepts else math.nan,
        "ap_top_wins": float(((a - at) > (a - ar)).double().mean()) if concepts else math.nan,
        "images": len(idx),
        "concepts": len(concepts),
    }


@torch.no_grad()
def explanation_faithfulness(run: Run, split: str = "test", seed: int = 0) -> dict[str, float]:
    """:func:`direction_removal_faithfulness` of ``explain_embedding``'s weights on a run.

    Directions come from the training split's representations and concept labels; the
    drops are measured on ``split``.
    """
    bank = run_bank(run)
    train_feats, train_targets = representations_and_targets(run, "train", bank)
    feats, targets = representations_and_targets(run, split, bank)
    train_feats = train_feats.float().cpu()
    directions = concept_directions(train_feats, train_targets.cpu())
    return direction_removal_faithfulness(
        lambda h: concept_weights_of(run, h), feats.float().cpu(), targets.cpu(), directions, train_feats.mean(0), seed
    )
