"""Reference representations for the concept scores (SCS margin, concept accuracy): a floor and a ceiling.

An SCS margin or a concept accuracy means little alone: concept embeddings from a
sentence encoder are strongly correlated, so the reachable range is narrow and not
``[-2, 2]`` or ``[0, 1]``. Three concept-space representations ``[N, E]`` that any
concept map can be read against, each scored by the same pipeline as a model
(:func:`xbyol.eval.concept_eval.scores_of_representations`):

- **chance**: i.i.d. standard normal vectors, one per image (a representation that
  carries nothing; its expected SCS margin is 0);
- **label prior**: one constant vector for every image, the training-frequency-weighted
  sum of the concept embeddings ``sum_k p_k e_k`` (``p_k`` the fraction of training
  images with concept ``k``): what the label statistics alone give, without looking at
  the image;
- **oracle** (per-image optimum of the SCS margin): for image ``i`` with true set ``T_i``
  and the other concepts ``F_i``, ``m_i = mean_{k in T_i} e_k - mean_{k in F_i} e_k``. With
  unit-norm ``e_k`` the margin of a representation ``r`` is ``r_hat . m_i`` (cosines are
  linear in ``r_hat``), so ``m_i`` itself attains the largest margin any representation can
  have on that image, ``||m_i||``. Its concept accuracy is reported too (the accuracy of
  the margin-optimal vector, not an upper bound of accuracy, which is 1 per group).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def _check(targets: torch.Tensor, concepts: torch.Tensor) -> torch.Tensor:
    if targets.ndim != 2 or concepts.ndim != 2 or targets.shape[1] != concepts.shape[0]:
        raise ValueError(f"expected targets [N, K] and concepts [K, E], got {list(targets.shape)} and {list(concepts.shape)}")
    return targets.bool()


def chance_representations(n: int, dim: int, generator: torch.Generator) -> torch.Tensor:
    """``[n, dim]`` i.i.d. standard normal vectors."""
    return torch.randn(n, dim, generator=generator)


def label_prior_representation(train_targets: torch.Tensor, concepts: torch.Tensor) -> torch.Tensor:
    """``[E]``: ``sum_k p_k e_k`` with ``p_k`` the fraction of ``train_targets [M, K]`` having concept ``k``
    and ``e_k`` the unit-normalised rows of ``concepts [K, E]``."""
    t = _check(train_targets, concepts).double()
    return (t.mean(0) @ F.normalize(concepts.double(), dim=-1)).float()  # (E,)


def oracle_representations(targets: torch.Tensor, concepts: torch.Tensor) -> torch.Tensor:
    """``[N, E]``: ``mean_{true} e_k - mean_{false} e_k`` per image (unit-normalised ``e_k``), the per-image
    maximiser of the SCS margin; a zero row where an image has no true or no false concept."""
    t = _check(targets, concepts).double()  # (N, K)
    e = F.normalize(concepts.double(), dim=-1)  # (K, E)
    n_true, n_false = t.sum(1, keepdim=True), (1 - t).sum(1, keepdim=True)  # (N, 1)
    m = t @ e / n_true.clamp(min=1) - (1 - t) @ e / n_false.clamp(min=1)  # (N, E)
    return torch.where((n_true > 0) & (n_false > 0), m, torch.zeros_like(m)).float()
