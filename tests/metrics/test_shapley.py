"""Exact Shapley values: hand-worked games, and KernelSHAP (Captum) against brute force on a conv net."""

import itertools
import math

import pytest
import torch
from torch import nn

from xbyol.explain.attribution import KernelShap, Lime
from xbyol.explain.targets import EmbeddingSimilarityTarget
from xbyol.metrics.shapley import (
    coalition_images,
    coalitions,
    exact_shapley,
    r_squared,
    relative_l2,
    shapley_from_values,
)


def test_coalition_table_bits():
    t = coalitions(3)
    assert t.shape == (8, 3)
    assert t[5].tolist() == [True, False, True]  # 5 = 0b101: players 0 and 2
    assert t[6].tolist() == [False, True, True]


def test_glove_game_by_hand():
    # player 0 holds a left glove, players 1 and 2 a right glove each; a pair is worth 1.
    # Textbook values: phi_0 = 2/3, phi_1 = phi_2 = 1/6.
    v = torch.tensor([0, 0, 0, 1, 0, 1, 0, 1], dtype=torch.float64)  # index k = bits of the coalition
    torch.testing.assert_close(shapley_from_values(v), torch.tensor([2 / 3, 1 / 6, 1 / 6], dtype=torch.float64))


def test_asymmetric_three_player_game_by_hand():
    # v({})=0 v(0)=1 v(1)=2 v(01)=4 v(2)=0 v(02)=3 v(12)=2 v(012)=6; weights 1/3 (|S|=0, 2), 1/6 (|S|=1):
    # phi_0 = 1/3*1 + 1/6*(4-2) + 1/6*(3-0) + 1/3*(6-2) = 2.5
    # phi_1 = 1/3*2 + 1/6*(4-1) + 1/6*(2-0) + 1/3*(6-3) = 2.5
    # phi_2 = 1/3*0 + 1/6*(3-1) + 1/6*(2-2) + 1/3*(6-4) = 1.0
    v = torch.tensor([0, 1, 2, 4, 0, 3, 2, 6], dtype=torch.float64)
    torch.testing.assert_close(shapley_from_values(v), torch.tensor([2.5, 2.5, 1.0], dtype=torch.float64))
    # batched games, and an additive game whose values are its weights
    additive = coalitions(4).double() @ torch.tensor([1.0, -2.0, 0.5, 3.0], dtype=torch.float64)  # (16,)
    out = shapley_from_values(torch.stack([additive, 2 * additive]))
    torch.testing.assert_close(out[0], torch.tensor([1.0, -2.0, 0.5, 3.0], dtype=torch.float64))
    torch.testing.assert_close(out[1], 2 * out[0])
    with pytest.raises(ValueError, match="2\\^M"):
        shapley_from_values(torch.zeros(6))


def test_coalition_images_keep_and_baseline():
    image = torch.arange(8.0).view(2, 2, 2)  # (C=2, H=2, W=2)
    segments = torch.tensor([[0, 1], [1, 0]])
    out = coalition_images(image, segments, torch.tensor([[True, False], [False, True]]), baseline=-1.0)
    assert out[0, 0].tolist() == [[0.0, -1.0], [-1.0, 3.0]]
    assert out[1, 1].tolist() == [[-1.0, 5.0], [6.0, -1.0]]


def test_relative_l2_and_r_squared_by_hand():
    assert relative_l2(torch.tensor([[3.0, 4.0]]), torch.tensor([[0.0, 4.0]])).item() == pytest.approx(3 / 4)
    # y = 1, 2, 3 (mean 2, ss_tot 2); prediction off by 1 once: ss_res 1 -> R^2 = 0.5
    assert r_squared(torch.tensor([[1.0, 2.0, 3.0]]), torch.tensor([[1.0, 2.0, 4.0]])).item() == pytest.approx(0.5)
    assert math.isnan(r_squared(torch.ones(1, 3), torch.zeros(1, 3)).item())


def _brute_force_by_orderings(v: dict[frozenset, float], m: int) -> list[float]:
    """Shapley values as the mean marginal contribution over all m! orderings (the definition)."""
    phi = [0.0] * m
    orders = list(itertools.permutations(range(m)))
    for order in orders:
        s: frozenset = frozenset()
        for p in order:
            phi[p] += v[s | {p}] - v[s]
            s = s | {p}
    return [x / len(orders) for x in phi]


def _small_conv_net_image_and_six_superpixels() -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    """A seeded conv net ([B, 3, 12, 12] -> [B, 5]), one image [3, 12, 12] and a 2 x 3 grid of superpixels [12, 12]."""
    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 3, stride=2, padding=1), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 5),
    ).eval()
    image = torch.randn(3, 12, 12)
    segments = (torch.arange(12)[:, None] // 6) * 3 + torch.arange(12)[None, :] // 4  # (12, 12) ids 0..5
    return net, image, segments


def test_kernelshap_matches_exact_shapley_on_a_small_conv_net():
    # M = 6 superpixels (a 2 x 3 grid on a 12 x 12 image): 64 coalitions, enumerated here
    net, image, segments = _small_conv_net_image_and_six_superpixels()
    target = EmbeddingSimilarityTarget.from_images(net, image)  # cosine to the image's own embedding
    baseline = 0.0
    with torch.no_grad():
        table = coalitions(6)
        scores = target(net(coalition_images(image, segments, table, baseline))).double()  # (64,)
    v = {frozenset(j for j in range(6) if table[k, j]): scores[k].item() for k in range(64)}
    expected = torch.tensor(_brute_force_by_orderings(v, 6), dtype=torch.float64)
    assert expected.sum().item() == pytest.approx(scores[63].item() - scores[0].item())  # efficiency

    phi, values = exact_shapley(lambda x: target(net(x)), image, segments, baseline)
    torch.testing.assert_close(phi, expected)
    torch.testing.assert_close(values, scores)

    # KernelSHAP (Captum, through the library's adapter) with the same mask and baseline, at shap's
    # default of 2M + 2048 samples: sampling error only (coalitions are drawn with replacement)
    torch.manual_seed(1)
    shap = KernelShap(net, normalize=False, sign="all", segments=segments[None], n_samples=2 * 6 + 2048,
                      baseline=baseline, perturbations_per_eval=512)
    maps = shap(image[None], target)[0]  # (12, 12): each pixel holds its superpixel's value
    estimate = torch.stack([maps[segments == j].mean() for j in range(6)]).double()
    assert relative_l2(estimate[None], expected[None]).item() < 0.1
    # too few samples: visibly off (the test could fail in the other direction too)
    torch.manual_seed(1)
    few = KernelShap(net, normalize=False, sign="all", segments=segments[None], n_samples=12, baseline=baseline)
    coarse = torch.stack([few(image[None], target)[0][segments == j].mean() for j in range(6)]).double()
    assert relative_l2(coarse[None], expected[None]).item() > relative_l2(estimate[None], expected[None]).item()


def test_lime_default_surrogate_nears_the_best_linear_fit_by_brute_force():
    # M = 6: the least-squares linear surrogate over all 64 coalitions is the best any linear surrogate
    # can do; LIME at its default sample count must come close on held-out random coalitions
    net, image, segments = _small_conv_net_image_and_six_superpixels()
    target = EmbeddingSimilarityTarget.from_images(net, image)
    table = coalitions(6)
    held = torch.rand(200, 6, generator=torch.Generator().manual_seed(3)) < 0.5  # (200, 6)
    with torch.no_grad():
        v = target(net(coalition_images(image, segments, table))).double()  # (64,)
        y = target(net(coalition_images(image, segments, held))).double()  # (200,)
    x_all = torch.cat([torch.ones(64, 1, dtype=torch.float64), table.double()], dim=1)
    best = torch.linalg.lstsq(x_all, v[:, None]).solution[:, 0]  # (7,) intercept + 6 coefficients
    x_held = torch.cat([torch.ones(200, 1, dtype=torch.float64), held.double()], dim=1)
    ceiling = r_squared(y[None], (x_held @ best)[None]).item()

    made = []
    lime = Lime(net, normalize=False, sign="all", segments=segments[None], perturbations_per_eval=512)
    original = lime.surrogate
    lime.surrogate = lambda forward: made.append(original(forward)) or made[-1]
    torch.manual_seed(2)
    maps = lime(image[None], target)[0]
    coef = torch.stack([maps[segments == j].mean() for j in range(6)]).double()
    intercept = float(made[-1].interpretable_model.bias().reshape(-1)[0])
    got = r_squared(y[None], (intercept + held.double() @ coef)[None]).item()
    assert 0 < ceiling < 1
    assert got > 0.99 * ceiling  # 50 samples (the earlier default) reach 0.97 of it here
