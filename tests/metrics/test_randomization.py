"""Spearman against SciPy and the model randomisation sanity check on a tiny network."""

import math

import numpy as np
import pytest
import torch
from scipy import stats
from torch import nn

from xbyol.metrics import model_randomization, randomizable_layers, spearman
from xbyol.metrics.randomization import average_ranks


def test_average_ranks_match_scipy_rankdata():
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 5, (4, 30), generator=g).float()
    expected = np.stack([stats.rankdata(row) for row in x.numpy()])
    np.testing.assert_array_equal(average_ranks(x).numpy(), expected)


@pytest.mark.parametrize("levels", [3, 10, None])
def test_spearman_matches_scipy(levels):
    g = torch.Generator().manual_seed(1)
    if levels is None:
        a, b = torch.randn(5, 50, generator=g), torch.randn(5, 50, generator=g)
    else:
        a = torch.randint(0, levels, (5, 50), generator=g).float()
        b = (a + torch.randint(0, levels, (5, 50), generator=g)).float()
    expected = [stats.spearmanr(ra, rb).statistic for ra, rb in zip(a.numpy(), b.numpy())]
    np.testing.assert_allclose(spearman(a, b).numpy(), expected, rtol=1e-6)


def test_spearman_edge_cases():
    x = torch.arange(6.0).view(1, 6)
    assert spearman(x, x**3).item() == pytest.approx(1.0)
    assert spearman(x, -x).item() == pytest.approx(-1.0)
    assert math.isnan(spearman(x, torch.ones(1, 6)).item())
    y = x.clone()
    y[0, 2] = float("nan")
    assert math.isnan(spearman(x, y).item())
    with pytest.raises(ValueError, match="spearman"):
        spearman(x, torch.ones(1, 5))


class Tiny(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 4, 3, padding=1)
        self.act = nn.ReLU()
        self.conv2 = nn.Conv2d(4, 2, 3, padding=1)
        self.head = nn.Linear(2, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv2(self.act(self.conv1(x)))


def feature_map(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """An 'explanation' that depends on conv1 and conv2 (not on the unused head)."""
    return model(x).abs().sum(1)


def _model() -> Tiny:
    torch.manual_seed(0)
    return Tiny()


def test_default_layers_are_top_down():
    assert randomizable_layers(_model()) == ["head", "conv2", "conv1"]


def test_caller_model_and_global_rng_are_untouched():
    model = _model()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    x = torch.randn(2, 3, 6, 6)
    rng = torch.get_rng_state()
    model_randomization(model, feature_map, x)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert torch.equal(rng, torch.get_rng_state())


def test_correlations_fall_only_for_layers_the_explanation_uses():
    x = torch.randn(2, 3, 6, 6)
    out = model_randomization(_model(), feature_map, x)
    assert out["layer_names"] == ["head", "conv2", "conv1"]
    corr = out["correlations"]
    assert corr.shape == (2, 3)
    assert torch.allclose(corr[:, 0], torch.ones(2))  # the head is not used: same map
    assert (corr[:, 1:] < 0.9).all()


def test_model_independent_explainer_keeps_correlation_one():
    out = model_randomization(_model(), lambda m, x: x.sum(1), torch.randn(2, 3, 6, 6))
    assert torch.allclose(out["correlations"], torch.ones(2, 3))


def test_cascade_accumulates_and_independent_resets():
    model = _model()
    original = model.conv2.weight.detach().clone()
    seen: list[bool] = []

    def spy(m: nn.Module, x: torch.Tensor) -> torch.Tensor:
        seen.append(torch.equal(m.conv2.weight, original))
        return feature_map(m, x)

    x = torch.randn(1, 3, 6, 6)
    model_randomization(model, spy, x, layers=["conv2", "conv1"], cascade=True)
    assert seen == [True, False, False]  # original, after conv2, after conv2 + conv1
    seen.clear()
    model_randomization(model, spy, x, layers=["conv2", "conv1"], cascade=False)
    assert seen == [True, False, True]  # conv1 alone: conv2 is original again


def test_deterministic_given_seed():
    x = torch.randn(2, 3, 6, 6)
    a = model_randomization(_model(), feature_map, x, seed=3)["correlations"]
    b = model_randomization(_model(), feature_map, x, seed=3)["correlations"]
    c = model_randomization(_model(), feature_map, x, seed=4)["correlations"]
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_unknown_layer_is_rejected():
    with pytest.raises(ValueError, match="act"):
        model_randomization(_model(), feature_map, torch.randn(1, 3, 6, 6), layers=["act"])
