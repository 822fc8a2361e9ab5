"""Eigen-CAM: rank-one activations with a known principal direction, and the sign convention."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from xbyol.explain import explain
from xbyol.explain.cam import eigen_projection


class Pass(nn.Module):
    """The CAM layer is the input itself: activations = images."""

    def __init__(self) -> None:
        super().__init__()
        self.feat = nn.Identity()

    @property
    def feature_layer(self) -> nn.Module:
        return self.feat

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.feat(x).mean(dim=(2, 3))


P = torch.tensor([[0.0, 1.0, 3.0], [1.0, 2.0, 1.0], [0.0, 0.0, 1.0]])  # spatial pattern, mean 1
D = torch.tensor([5.0, -1.0, 2.0])  # per-channel offsets (removed by the centring)


def _rank_one(c: torch.Tensor) -> torch.Tensor:
    """A^k = c_k * P + d_k."""
    return (c[:, None, None] * P + D[:, None, None])[None]  # (1, 3, 3, 3)


@pytest.mark.parametrize("c", [[1.0, 2.0, 0.5], [-1.0, -2.0, -0.5], [3.0, -1.0, -1.0]])
def test_projection_is_principal_direction_with_positive_correlation(c) -> None:
    c = torch.tensor(c)
    # centred M = (P - mean P) c^T: first right-singular vector = +-c/|c|, projection = +-|c| (P - mean P);
    # the mean activation map is mean(c) P + const, so the sign is sign(mean(c))
    expected = torch.sign(c.mean()) * c.norm() * (P - P.mean())
    torch.testing.assert_close(eigen_projection(_rank_one(c))[0], expected, atol=1e-5, rtol=1e-5)
    got = explain(Pass(), _rank_one(c), None, method="eigencam", normalize=False)[0]
    torch.testing.assert_close(got, expected.relu(), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("shape", [(4, 6, 5, 5), (4, 30, 2, 2)])  # hw > C and hw <= C
def test_matches_svd_and_sign_does_not_depend_on_the_solver(shape) -> None:
    torch.manual_seed(0)
    acts = torch.randn(*shape, dtype=torch.float64)
    got = eigen_projection(acts).flatten(1)  # (B, hw)
    m = acts.flatten(2).transpose(1, 2)
    centred = m - m.mean(dim=1, keepdim=True)
    _, _, vh = torch.linalg.svd(centred, full_matrices=False)
    for sign in (1.0, -1.0):  # either sign of the SVD's vector is the same projection up to our flip
        svd_proj = (centred @ (sign * vh[:, 0, :, None]))[..., 0]
        torch.testing.assert_close(got.abs(), svd_proj.abs())
    mean_map = acts.mean(dim=1).flatten(1)
    corr = (got * (mean_map - mean_map.mean(dim=1, keepdim=True))).sum(dim=1)
    assert (corr > 0).all()
    # the flip is relative to the data: negating the activations keeps the map's orientation rule
    neg = eigen_projection(-acts).flatten(1)
    neg_mean = -mean_map
    assert ((neg * (neg_mean - neg_mean.mean(dim=1, keepdim=True))).sum(dim=1) > 0).all()


def test_eigencam_ignores_the_target_and_upsamples() -> None:
    x = _rank_one(torch.tensor([1.0, 2.0, 0.5]))
    x = F.interpolate(x, size=(6, 6), mode="nearest")
    a = explain(Pass(), x, None, method="eigencam")
    b = explain(Pass(), x, lambda out: out[:, 0], method="eigencam")
    assert a.shape == (1, 6, 6) and torch.equal(a, b)
    assert a.min() == 0 and a.max() == 1
