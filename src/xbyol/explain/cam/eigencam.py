"""Eigen-CAM (Muhammad & Yeasin 2020, arXiv 2008.00299): no gradients, no target.

Per image, the activations are arranged as ``M [hw, C]`` and centred over positions;
the map is the projection ``M_c v`` on the first right-singular vector ``v`` of ``M_c``,
obtained from the eigen-decomposition of the smaller of ``M_c M_c^T`` and ``M_c^T M_c``
(the same vector as the SVD's, from a smaller decomposition).

Sign convention: a singular vector's sign is arbitrary (and differs between LAPACK builds
and devices), so the projection is flipped to correlate positively with the mean activation
map ``mean_k A^k``: ``sum_ij proj_ij (m_ij - mean(m)) >= 0``. On an exact tie (zero
correlation) the sign returned by the SVD is kept. Then ``L = ReLU(proj)`` as for every CAM.
"""

from __future__ import annotations

import torch

from xbyol.explain.cam.base import BaseCAM
from xbyol.explain.explainer import EXPLAINERS
from xbyol.explain.targets import TargetFn


def eigen_projection(activations: torch.Tensor) -> torch.Tensor:
    """Signed first-principal-component projection of each image's activations.

    Args:
        activations: ``[B, C, h, w]``.

    Returns:
        ``[B, h, w]``, sign fixed so it correlates positively with the channel-mean map.
    """
    b, c, h, w = activations.shape
    m = activations.flatten(2).transpose(1, 2)  # (B, hw, C)
    centred = m - m.mean(dim=1, keepdim=True)  # (B, hw, C)
    # top singular pair from the smaller Gram matrix (eigh is ascending: the last is the largest)
    if h * w <= c:
        evals, evecs = torch.linalg.eigh(centred @ centred.transpose(1, 2))  # (B, hw), (B, hw, hw)
        proj = evecs[..., -1] * evals[:, -1:].clamp(min=0).sqrt()  # sigma_1 u_1 = M_c v_1: (B, hw)
    else:
        _, evecs = torch.linalg.eigh(centred.transpose(1, 2) @ centred)  # (B, C, C)
        proj = (centred @ evecs[..., -1:])[..., 0]  # M_c v_1: (B, hw)
    mean_map = m.mean(dim=2)  # (B, hw)
    corr = (proj * (mean_map - mean_map.mean(dim=1, keepdim=True))).sum(dim=1, keepdim=True)  # (B, 1)
    proj = torch.where(corr < 0, -proj, proj)
    return proj.view(b, h, w)


@EXPLAINERS.register("eigencam", doc="Eigen-CAM: first principal component of the activations (target-free)")
class EigenCAM(BaseCAM):
    """Eigen-CAM at ``layer``. The target is ignored (may be ``None``)."""

    needs_gradients = False
    needs_target = False

    def weights_and_map(
        self,
        activations: torch.Tensor,
        gradients: torch.Tensor | None,
        *,
        images: torch.Tensor,
        target: TargetFn | None,
    ) -> torch.Tensor:
        return eigen_projection(activations)  # (B, h, w)
