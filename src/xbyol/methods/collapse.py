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

import torch
import torch.nn.functional as F

RANKME_EPS = 1e-7


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
