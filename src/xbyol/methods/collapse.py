"""Collapse statistics of embeddings (REFERENCES.md section 6).

They sit with the methods, whose ``"embed/"`` outputs they read: a method warns with them
(:meth:`xbyol.methods.xmodal.CrossModalTowers.watch_collapse`), the trainer logs them
(:mod:`xbyol.training.monitors`) and the retrieval evaluation reports them.

- :func:`embedding_std`: mean over dimensions of the per-dimension std (over the batch) of
  L2-normalised embeddings; 0 when collapsed, about ``1/sqrt(D)`` when healthy
  (lightly ``std_of_l2_normalized``, after SimSiam, Chen & He 2021).
- :func:`effective_rank`: RankMe (Garrido et al. 2023, arXiv 2210.02885),
  ``exp(-sum_k p_k log p_k)``, ``p_k = sigma_k / ||sigma||_1 + 1e-7``; between about 1 and
  ``min(N, D)``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

RANKME_EPS = 1e-7
#: a monitored embedding has collapsed when its std falls below this fraction of ``1/sqrt(D)``
#: (calibrated on collapsed and healthy runs: benchmarks/BENCHMARKS.md, section "Collapse warnings")
COLLAPSED_STD_FRACTION = 0.3
#: ... or when its effective rank falls below this fraction of its maximum ``min(N, D)``
COLLAPSED_RANK_FRACTION = 0.05


def _check(z: torch.Tensor, name: str, min_rows: int) -> None:
    if z.dim() != 2:
        raise ValueError(f"{name}: expected embeddings [N, D], got shape {list(z.shape)}")
    if z.shape[0] < min_rows or z.shape[1] < 1:
        raise ValueError(f"{name}: needs at least {min_rows} rows and 1 column, got shape {list(z.shape)}")


@torch.no_grad()
def embedding_std(z: torch.Tensor) -> float:
    """Mean per-dimension std of the L2-normalised rows.

    Args:
        z: ``[N, D]`` embeddings, ``N >= 2``.

    Returns:
        ``mean_d std_n(z_n / ||z_n||)_d`` (unbiased std); 0 for identical rows, ``~1/sqrt(D)``
        for isotropic embeddings.
    """
    _check(z, "embedding_std", 2)
    zn = F.normalize(z.float(), dim=1)  # (N, D)
    return float(zn.std(dim=0).mean())


@torch.no_grad()
def effective_rank(z: torch.Tensor) -> float:
    """RankMe effective rank of an embedding matrix (no centring, as in the paper).

    Args:
        z: ``[N, D]`` embeddings.

    Returns:
        ``exp(entropy(p))`` with ``p_k = sigma_k / sum(sigma) + 1e-7``; 0.0 for an all-zero matrix.
    """
    _check(z, "effective_rank", 1)
    sigma = torch.linalg.svdvals(z.double())  # (min(N, D),)
    total = sigma.sum()
    if total <= 0:
        return 0.0
    p = sigma / total + RANKME_EPS  # (min(N, D),)
    return float(torch.exp(-(p * p.log()).sum()))


def collapse_signs(std: float, rank: float, dim: int, rows: int | None = None) -> dict[str, float]:
    """The monitors of one embedding that say it has collapsed, as fractions of their healthy reference.

    BYOL's healthy embeddings sit well below the isotropic references (a healthy run ends with a
    std near ``1/sqrt(D)`` and a rank a fraction of ``D``), so the thresholds
    :data:`COLLAPSED_STD_FRACTION` and :data:`COLLAPSED_RANK_FRACTION` are set between healthy
    and really collapsed runs, not at the references themselves.

    Args:
        std: :func:`embedding_std` of the ``[N, D]`` embeddings.
        rank: :func:`effective_rank` of them.
        dim: ``D``.
        rows: ``N`` (the rank is at most ``min(N, D)``); ``None``: ``D``.

    Returns:
        ``{"std": std * sqrt(D)}`` and/or ``{"rank": rank / min(N, D)}`` for the monitors below
        their threshold; empty when the embedding looks healthy.
    """
    std_frac, rank_frac = std * math.sqrt(dim), rank / min(dim, rows or dim)
    return {k: v for k, v, low in (("std", std_frac, COLLAPSED_STD_FRACTION), ("rank", rank_frac, COLLAPSED_RANK_FRACTION))
            if v < low}
