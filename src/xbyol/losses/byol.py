"""BYOL regression loss (Grill et al. 2020, eq. 2)."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def byol_pair_loss(p: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """Per-sample ``2 - 2 cos(p, sg(z))`` (= squared distance of the unit vectors).

    Args:
        p: online predictions ``[B, D]``.
        z: target projections ``[B, D]``; no gradient flows into them.

    Returns:
        ``[B]`` losses in ``[0, 4]``.
    """
    if p.shape != z.shape or p.ndim != 2:
        raise ValueError(f"expected two [B, D] tensors of the same shape, got {tuple(p.shape)} and {tuple(z.shape)}")
    p = F.normalize(p.float(), dim=-1)
    z = F.normalize(z.detach().float(), dim=-1)
    return 2.0 - 2.0 * (p * z).sum(dim=-1)  # (B,)


def byol_loss(p1: torch.Tensor, p2: torch.Tensor, z1: torch.Tensor, z2: torch.Tensor) -> torch.Tensor:
    """Symmetrised BYOL loss: ``mean_B[(2 - 2cos(p1, z2)) + (2 - 2cos(p2, z1))]``.

    The two directions are summed, not averaged, as in the paper and DeepMind's code
    (averaging quarters the gradient; see REFERENCES.md section 1, lightly#1286).

    Args:
        p1, p2: online predictions of view 1 and view 2, ``[B, D]``.
        z1, z2: target projections of view 1 and view 2, ``[B, D]``.

    Returns:
        Scalar loss in ``[0, 8]``.
    """
    return (byol_pair_loss(p1, z2) + byol_pair_loss(p2, z1)).mean()
