"""Hand-worked CAM values on a tiny model whose activations and gradients are known.

Model: images [1, 3, 2, 2] -> 1x1 conv keeping channels 0 and 1 (the CAM layer, so
A = x[:, :2]) -> square -> GAP -> linear [1.0, 0.5] -> output [1, 1]; target = dimension 0:

    y = mean(A0^2) + 0.5 * mean(A1^2)   =>   g0 = dy/dA0 = A0 / 2,  g1 = dy/dA1 = A1 / 4.

With A0 = [[1, 2], [3, 4]] and A1 = [[2, 0], [1, 1]]:
    g0 = [[0.5, 1], [1.5, 2]],  g1 = [[0.5, 0], [0.25, 0.25]]  (g1 = 0 where A1 = 0),
    S0 = sum A0 = 10, S1 = sum A1 = 4.
The maps are at the input size (2x2), so no upsampling is involved.
"""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from xbyol.explain import DimensionTarget, explain
from xbyol.explain.cam import GradCAMPlusPlus

A0 = torch.tensor([[1.0, 2.0], [3.0, 4.0]])
A1 = torch.tensor([[2.0, 0.0], [1.0, 1.0]])


class QuadraticHead(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.layer = nn.Conv2d(3, 2, 1, bias=False)
        self.head = nn.Linear(2, 1, bias=False)
        with torch.no_grad():
            self.layer.weight.copy_(torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]).view(2, 3, 1, 1))
            self.head.weight.copy_(torch.tensor([[1.0, 0.5]]))

    @property
    def feature_layer(self) -> nn.Module:
        return self.layer

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.layer(x).pow(2).mean(dim=(2, 3)))


@pytest.fixture
def setup() -> tuple[nn.Module, torch.Tensor]:
    x = torch.stack([A0, A1, torch.full((2, 2), 7.0)])[None]  # (1, 3, 2, 2); channel 2 is ignored by the layer
    return QuadraticHead().eval(), x


def _run(setup, method: str, **kw) -> torch.Tensor:
    model, x = setup
    return explain(model, x, DimensionTarget(0), method=method, normalize=False, **kw)[0]


def test_gradcam_by_hand(setup) -> None:
    # alpha0 = mean g0 = 1.25, alpha1 = mean g1 = 0.25
    torch.testing.assert_close(_run(setup, "gradcam"), 1.25 * A0 + 0.25 * A1)


def test_gradcampp_by_hand(setup) -> None:
    # alpha_ij = g^2 / (2 g^2 + S g^3) = 1 / (2 + S g) where g != 0
    # channel 0: g = 0.5, 1, 1.5, 2 -> alpha = 1/7, 1/12, 1/17, 1/22
    w0 = 0.5 / 7 + 1.0 / 12 + 1.5 / 17 + 2.0 / 22
    # channel 1: g = 0.5 -> 1/4; g = 0 -> alpha 0; g = 0.25 -> 1/3 (twice)
    w1 = 0.5 / 4 + 0.0 + 0.25 / 3 + 0.25 / 3
    assert w0 == pytest.approx(0.3339063, abs=1e-7) and w1 == pytest.approx(7 / 24)
    expected = w0 * A0 + w1 * A1  # [[0.9172, 0.6678], [1.2934, 1.6273]]
    torch.testing.assert_close(_run(setup, "gradcampp"), expected, atol=1e-5, rtol=0)


def test_gradcampp_alpha_is_zero_where_gradient_is_zero(setup) -> None:
    # without eps, g = 0 gives 0 / 0; the rule alpha = 0 there must keep the map finite and exact
    model, x = setup
    got = GradCAMPlusPlus(model, eps=0.0, normalize=False)(x, DimensionTarget(0))[0]
    w0 = 0.5 / 7 + 1.0 / 12 + 1.5 / 17 + 2.0 / 22
    torch.testing.assert_close(got, w0 * A0 + (7 / 24) * A1, atol=1e-6, rtol=0)


def test_xgradcam_by_hand(setup) -> None:
    # w0 = (1*0.5 + 2*1 + 3*1.5 + 4*2) / 10 = 1.5 ; w1 = (2*0.5 + 0 + 1*0.25 + 1*0.25) / 4 = 0.375
    torch.testing.assert_close(_run(setup, "xgradcam"), torch.tensor([[2.25, 3.0], [4.875, 6.375]]))


def test_layercam_by_hand(setup) -> None:
    # relu(g0) * A0 + relu(g1) * A1 = [[0.5, 2], [4.5, 8]] + [[1, 0], [0.25, 0.25]]
    torch.testing.assert_close(_run(setup, "layercam"), torch.tensor([[1.5, 2.0], [4.75, 8.25]]))


def test_scorecam_by_hand(setup) -> None:
    # masks: M0 = (A0 - 1) / 3 = [[0, 1/3], [2/3, 1]], M1 = A1 / 2 = [[1, 0], [.5, .5]]
    # f(X * M0): A0*M0 = [[0, 2/3], [2, 4]], A1*M0 = [[0, 0], [2/3, 1]]
    #   y = (4/9 + 4 + 16)/4 + 0.5 * (4/9 + 1)/4 = 5.1111 + 0.18056 = 5.29167
    # f(X * M1): A0*M1 = [[1, 0], [1.5, 2]], A1*M1 = [[2, 0], [.5, .5]]
    #   y = (1 + 2.25 + 4)/4 + 0.5 * (4 + .25 + .25)/4 = 1.8125 + 0.5625 = 2.375
    # baseline f(0) = 0
    s0 = (4 / 9 + 4 + 16) / 4 + 0.5 * (4 / 9 + 1) / 4
    s1 = 2.375
    assert s0 == pytest.approx(5.2916667, abs=1e-6)
    w0 = math.exp(s0) / (math.exp(s0) + math.exp(s1))  # softmax over channels
    expected = w0 * A0 + (1 - w0) * A1
    torch.testing.assert_close(_run(setup, "scorecam"), expected, atol=1e-5, rtol=0)
    # chunking the masked forward passes does not change the result
    torch.testing.assert_close(_run(setup, "scorecam", batch_size=1), expected, atol=1e-5, rtol=0)
