"""Deletion / insertion (RISE) and infidelity (Captum) on toy models with closed forms."""

import math

import numpy as np
import pytest
import torch
from scipy import ndimage

from xbyol.metrics import auc, deletion_auc, gaussian_blur, infidelity, insertion_auc
from xbyol.metrics.faithfulness import _blur_params, rise_gaussian_kernel


def region_mean(x: torch.Tensor) -> torch.Tensor:
    """Score = mean over channels of the top-left 2x2 pixels."""
    return x[:, :, 0:2, 0:2].mean(dim=(1, 2, 3))


def _region_heatmap(batch: int = 1) -> torch.Tensor:
    h = torch.zeros(batch, 4, 4)
    h[:, 0:2, 0:2] = 1.0
    return h


def test_auc_on_hand_arrays():
    assert auc(torch.tensor([1.0, 0.5, 0.0])).item() == pytest.approx(0.5)
    assert auc(torch.tensor([0.0, 1.0, 1.0, 1.0, 0.0])).item() == pytest.approx(0.75)
    assert auc(torch.tensor([[2.0, 2.0], [0.0, 1.0]])).tolist() == [2.0, 0.5]
    with pytest.raises(ValueError, match="2 points"):
        auc(torch.tensor([1.0]))


def test_deletion_closed_form():
    x = torch.ones(1, 3, 4, 4)
    area, curve = deletion_auc(region_mean, x, _region_heatmap(), step=2, return_curves=True)
    assert curve.tolist() == [[1.0, 0.5] + [0.0] * 7]  # 16 / 2 = 8 steps, 9 points
    assert area.item() == pytest.approx((1.5 - 0.5 - 0.0) / 8)


def test_insertion_closed_form_with_zero_start():
    x = torch.ones(1, 3, 4, 4)
    area, curve = insertion_auc(region_mean, x, _region_heatmap(), step=2, baseline="zeros", return_curves=True)
    assert curve.tolist() == [[0.0, 0.5] + [1.0] * 7]
    assert area.item() == pytest.approx((7.5 - 0.0 - 0.5) / 8)


def test_ties_broken_by_ascending_flat_index():
    x = torch.ones(1, 3, 4, 4)

    def pixel_01(z):
        return z[:, :, 0, 1].mean(1)

    # Region pixels tie; flat order 0, 1, 4, 5: pixel (0, 1) goes second.
    _, curve = deletion_auc(pixel_01, x, _region_heatmap(), step=1, return_curves=True)
    assert curve.tolist() == [[1.0, 1.0] + [0.0] * 15]


def test_default_step_and_partial_last_step():
    x = torch.ones(1, 3, 8, 8)
    _, curve = deletion_auc(region_mean, x, torch.rand(1, 8, 8), return_curves=True)
    assert curve.shape == (1, 17)  # ceil(64 / 16) = 4 px per step
    _, curve = deletion_auc(region_mean, x[:, :, :4, :4], _region_heatmap(), step=3, return_curves=True)
    assert curve.shape == (1, 7)  # ceil(16 / 3) = 6 steps
    assert curve[0, -1].item() == 0.0


def test_baseline_tensor_and_endpoints():
    x = torch.ones(2, 3, 4, 4)
    base = torch.full((3, 1, 1), 2.0)
    _, curve = deletion_auc(region_mean, x, _region_heatmap(2), step=4, baseline=base, return_curves=True)
    assert curve[:, 0].tolist() == [1.0, 1.0] and curve[:, -1].tolist() == [2.0, 2.0]
    with pytest.raises(ValueError, match="broadcast"):
        deletion_auc(region_mean, x, _region_heatmap(2), baseline=torch.ones(5))


def test_insertion_starts_from_blur_and_ends_at_image():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 3, 8, 8, generator=g)

    def f(z):
        return z.pow(2).mean(dim=(1, 2, 3))

    _, curve = insertion_auc(f, x, torch.rand(2, 8, 8, generator=g), return_curves=True)
    assert torch.allclose(curve[:, 0], f(gaussian_blur(x)))
    assert torch.allclose(curve[:, -1], f(x))


def test_rise_kernel_matches_scipy_gaussian_filter():
    for klen, sigma in [(11, 5.0), (3, 5 * 32 / 224), (7, 1.3)]:
        delta = np.zeros((klen, klen))
        delta[klen // 2, klen // 2] = 1.0
        expected = ndimage.gaussian_filter(delta, sigma)
        np.testing.assert_allclose(rise_gaussian_kernel(klen, sigma).numpy(), expected, atol=1e-7)


def test_gaussian_blur_of_a_delta_is_the_kernel_per_channel():
    img = torch.zeros(1, 2, 15, 15)
    img[0, 1, 7, 7] = 1.0
    out = gaussian_blur(img, klen=11, sigma=5.0)
    assert torch.allclose(out[0, 1, 2:13, 2:13], rise_gaussian_kernel(11, 5.0))
    assert out[0, 0].abs().max().item() == 0.0


def test_blur_defaults_scale_with_image_size():
    assert _blur_params(224, None, None) == (11, 5.0)
    klen, sigma = _blur_params(32, None, None)
    assert klen == 3 and sigma == pytest.approx(5 * 32 / 224)


def test_chunking_invariance_is_exact():
    g = torch.Generator().manual_seed(0)
    w = torch.randn(3, 8, 8, generator=g)

    def score(z):  # IEEE arithmetic and per-row sums only: the model itself is batch-size invariant
        s = (z * z * w).sum(dim=(1, 2, 3))
        return s / (1 + s * s)

    x = torch.randn(3, 3, 8, 8, generator=g)
    h = torch.rand(3, 8, 8, generator=g)
    h[0, :4] = 0.5  # ties
    for fn in (deletion_auc, insertion_auc):
        area, ref = fn(score, x, h, batch_size=1, return_curves=True)
        for bs in (2, 3, 64):
            other_area, other = fn(score, x, h, batch_size=bs, return_curves=True)
            assert torch.equal(ref, other) and torch.equal(area, other_area), (fn.__name__, bs)


def test_chunking_with_a_conv_net_agrees_to_float_precision():
    torch.manual_seed(0)
    net = torch.nn.Sequential(
        torch.nn.Conv2d(3, 4, 3, padding=1), torch.nn.ReLU(), torch.nn.Flatten(), torch.nn.Linear(4 * 64, 5)
    )

    def prob0(z):
        return net(z).softmax(-1)[:, 0]

    x = torch.randn(3, 3, 8, 8)
    h = torch.rand(3, 8, 8)
    single = torch.cat([deletion_auc(prob0, x[i : i + 1], h[i : i + 1]) for i in range(3)])
    assert torch.allclose(deletion_auc(prob0, x, h, batch_size=5), single, atol=1e-6)


def test_nan_heatmap_and_bad_outputs():
    x = torch.ones(2, 3, 4, 4)
    h = _region_heatmap(2)
    h[1, 3, 3] = float("nan")
    out = deletion_auc(region_mean, x, h, step=4)
    assert not math.isnan(out[0].item()) and math.isnan(out[1].item())
    with pytest.raises(ValueError, match="forward_fn"):
        deletion_auc(lambda z: z.mean(1), x, h)
    with pytest.raises(ValueError, match="heatmaps"):
        insertion_auc(region_mean, x, torch.ones(2, 3, 3))


def linear_model(w):
    def f(x):
        return (w * x).flatten(1).sum(1)

    return f


def test_infidelity_zero_for_exact_attribution_of_linear_model():
    g = torch.Generator().manual_seed(1)
    w = torch.randn(3, 4, 4, generator=g, dtype=torch.float64)
    x = torch.randn(2, 3, 4, 4, generator=g, dtype=torch.float64)
    out = infidelity(linear_model(w), x, w.expand(2, 3, 4, 4), n_perturb=5)
    assert out.shape == (2,)
    assert out.abs().max().item() < 1e-20


def test_infidelity_closed_form_with_fixed_perturbations():
    w = torch.tensor([[[[2.0, -1.0]]]], dtype=torch.float64)  # C=1, H=1, W=2
    x = torch.tensor([[[[0.3, 0.7]]]], dtype=torch.float64)
    phi = w + torch.tensor([1.0, 0.0], dtype=torch.float64)  # attribution off by d = (1, 0)
    pert = torch.tensor([[[[[1.0, 1.0]]], [[[0.0, 2.0]]]]], dtype=torch.float64)  # [B=1, n=2, 1, 1, 2]
    # (I.d)^2 = 1, 0 -> mean 0.5
    assert infidelity(linear_model(w[0]), x, phi, perturbations=pert).item() == pytest.approx(0.5)


def test_infidelity_heatmap_broadcasts_over_channels():
    w = torch.tensor([2.0, -1.0], dtype=torch.float64).view(1, 1, 2).expand(2, 1, 2)  # same per channel
    x = torch.zeros(1, 2, 1, 2, dtype=torch.float64)
    phi = torch.tensor([[[3.0, -1.0]]], dtype=torch.float64)  # [B, H, W], d = (1, 0) per channel
    pert = torch.tensor([[[[1.0, 1.0]], [[2.0, 0.0]]], [[[0.0, 1.0]], [[0.0, 3.0]]]], dtype=torch.float64)
    # I.d = 1 + 2 = 3 and 0 + 0 = 0 -> mean 9 / 2
    out = infidelity(linear_model(w), x, phi, perturbations=pert[None])
    assert out.item() == pytest.approx(4.5)


def test_infidelity_noise_scale_seed_and_chunking():
    w = torch.ones(1, 2, 2, dtype=torch.float64)
    x = torch.zeros(3, 1, 2, 2, dtype=torch.float64)
    d = torch.tensor([1.0, 0.0, 0.0, 0.0], dtype=torch.float64).view(1, 2, 2)
    f = linear_model(w)
    ref = infidelity(f, x, (w + d).expand(3, 1, 2, 2), n_perturb=400, noise_std=0.5, seed=3)
    # E[(I.d)^2] = std^2 |d|^2 = 0.25; Monte-Carlo error ~ 0.25 * sqrt(2 / 400) per sample
    assert ref.mean().item() == pytest.approx(0.25, rel=0.15)
    again = infidelity(f, x, (w + d).expand(3, 1, 2, 2), n_perturb=400, noise_std=0.5, seed=3, batch_size=7)
    assert torch.allclose(ref, again, rtol=1e-12)
    other = infidelity(f, x, (w + d).expand(3, 1, 2, 2), n_perturb=400, noise_std=0.5, seed=4)
    assert not torch.allclose(ref, other)
