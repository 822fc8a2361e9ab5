"""Captum adapters on a linear model, where every attribution is known in closed form.

Model: x [B, 3, 4, 4] -> flatten -> W [2, 48] (no bias). With DimensionTarget(j), the score is
f_j(x) = <W_j, x>, its gradient is W_j everywhere, IG from a zero baseline is W_j * x, the
occlusion drop of a window is the sum of W_j * x inside it, and the Shapley value of a
superpixel is the sum of W_j * x over it.
"""

from __future__ import annotations

import warnings

import pytest
import torch
from torch import nn

from xbyol.explain import DimensionTarget, explain, superpixel_mask

G = torch.Generator().manual_seed(0)
W = torch.randn(2, 3, 4, 4, generator=G)
X = torch.randn(2, 3, 4, 4, generator=G)
GRID = torch.tensor([[0, 0, 1, 1], [0, 0, 1, 1], [2, 2, 3, 3], [2, 2, 3, 3]])


def _linear() -> nn.Module:
    model = nn.Sequential(nn.Flatten(), nn.Linear(48, 2, bias=False))
    with torch.no_grad():
        model[1].weight.copy_(W.flatten(1))
    return model.eval()


# per-sample target: image 0 explains dimension 0, image 1 dimension 1
TARGET = DimensionTarget([0, 1])
WX = (W * X).sum(dim=1)  # (2, 4, 4): per-pixel <W_b, x_b> over channels, image b with its own row


def _raw(method: str, **kw) -> torch.Tensor:
    return explain(_linear(), X, TARGET, method=method, normalize=False, **kw)


def _block_sums(m: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
    """Replace every pixel by the sum of its segment."""
    out = torch.zeros_like(m)
    for s in ids.unique():
        sel = ids == s
        out[:, sel] = m[:, sel].sum(dim=1, keepdim=True)
    return out


@pytest.mark.parametrize("method", ["saliency", "guided_backprop", "smoothgrad"])
def test_gradient_methods_sum_abs_gradient_over_channels(method: str) -> None:
    # a linear model has the same gradient at every (noisy) input, so SmoothGrad = saliency
    torch.testing.assert_close(_raw(method), W.abs().sum(dim=1))


def test_integrated_gradients_is_w_times_x_and_complete() -> None:
    ig = _raw("integrated_gradients", sign="all", n_steps=5)
    torch.testing.assert_close(ig, WX)
    torch.testing.assert_close(ig.sum(dim=(1, 2)), (W.flatten(1) * X.flatten(1)).sum(dim=1))  # f(x) - f(0)
    torch.testing.assert_close(_raw("integrated_gradients", n_steps=5), WX.clamp(min=0))  # default: positive part
    torch.testing.assert_close(_raw("integrated_gradients", n_steps=5, sign="absolute"), WX.abs())
    baseline = torch.full((3, 4, 4), 0.5)
    torch.testing.assert_close(_raw("integrated_gradients", sign="all", n_steps=5, baseline=baseline), (W * (X - 0.5)).sum(dim=1))


def test_occlusion_is_the_window_score_drop() -> None:
    torch.testing.assert_close(_raw("occlusion", window=1, stride=1, sign="all"), WX)
    # non-overlapping 2x2 windows: every pixel gets the drop of its window
    torch.testing.assert_close(_raw("occlusion", window=2, stride=2, sign="all"), _block_sums(WX, GRID))
    # default window on a 4x4 image is max(1, round(4 / 8)) = 1 pixel
    torch.testing.assert_close(_raw("occlusion", sign="all", perturbations_per_eval=3), WX)


def test_kernelshap_recovers_shapley_values_of_superpixels() -> None:
    torch.manual_seed(0)
    got = _raw("kernelshap", segments="grid", n_segments=4, n_samples=64, sign="all")  # 2 x 4 = 8 needed
    torch.testing.assert_close(got, _block_sums(WX, GRID), atol=1e-4, rtol=1e-4)


def test_kernelshap_default_samples_are_exact_on_a_linear_model_of_36_superpixels() -> None:
    # f(x) = <w, x> over a [3, 12, 12] image, 6 x 6 grid superpixels of 2 x 2 pixels, zero
    # baseline: the exact Shapley value of a superpixel is the sum of w * x over its pixels
    g = torch.Generator().manual_seed(1)
    w, x = torch.randn(1, 3, 12, 12, generator=g), torch.randn(1, 3, 12, 12, generator=g)
    model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 144, 1, bias=False)).eval()
    with torch.no_grad():
        model[1].weight.copy_(w.flatten(1))
    ids = superpixel_mask(x, n_segments=36, method="grid")  # (1, 12, 12), ids 0..35
    exact = _block_sums((w * x).sum(dim=1), ids[0])  # (1, 12, 12)
    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the default must not warn
        got = explain(model, x, DimensionTarget([0]), method="kernelshap", segments="grid", n_segments=36,
                      normalize=False, sign="all")  # 2 x 36 + 2048 = 2120 samples
    # a linear model: any full-rank regression is exact, up to float32 least squares (~1e-3)
    assert float((got - exact).norm() / exact.norm()) < 5e-3
    torch.manual_seed(0)
    with pytest.warns(UserWarning, match=r"n_samples=25 is fewer than 2 x 36 superpixels = 72"):
        few = explain(model, x, DimensionTarget([0]), method="kernelshap", segments="grid", n_segments=36,
                      n_samples=25, normalize=False, sign="all")
    assert float((few - exact).norm() / exact.norm()) > 0.3  # 37 unknowns from 25 samples


def test_lime_with_weak_regularisation_recovers_the_linear_effects() -> None:
    torch.manual_seed(0)
    got = _raw("lime", segments=GRID.expand(2, 4, 4), n_samples=64, sign="all", alpha=1e-8)
    torch.testing.assert_close(got, _block_sums(WX, GRID), atol=1e-4, rtol=1e-4)
    lasso = _raw("lime", segments="grid", n_segments=4, n_samples=64, sign="all", surrogate="lasso", alpha=1e-6)
    torch.testing.assert_close(lasso, _block_sums(WX, GRID), atol=1e-3, rtol=1e-3)


def test_superpixel_grid_and_slic() -> None:
    assert torch.equal(superpixel_mask(X, n_segments=4, method="grid"), GRID.expand(2, 4, 4))
    # two flat colour halves: SLIC separates them
    from xbyol.augment import normalize

    img = torch.zeros(1, 3, 16, 16)
    img[:, 0, :, :8] = 1.0  # red left half
    img[:, 2, :, 8:] = 1.0  # blue right half
    img[:, 1, 4:12, 4:12] = 1.0  # green square across the boundary
    ids = superpixel_mask(normalize(img), n_segments=6)
    assert ids.shape == (1, 16, 16) and ids.dtype == torch.long
    colour = img[0].argmax(dim=0) + 3 * img[0, 1].long()  # 0 red, 2 blue, 3 green-on-red, 4 green-on-blue
    for s in ids.unique():
        assert colour[ids[0] == s].unique().numel() == 1, "a superpixel crosses a colour edge"
    assert ids.min() == 0 and ids.unique().numel() == ids.max() + 1


def test_noise_image_falls_back_to_grid_with_warning() -> None:
    noise = torch.randn(1, 3, 32, 32, generator=torch.Generator().manual_seed(3)) * 3
    with pytest.warns(UserWarning, match="single superpixel"):
        ids = superpixel_mask(noise, n_segments=16)
    assert torch.equal(ids, superpixel_mask(noise, n_segments=16, method="grid"))


def test_adapter_argument_errors() -> None:
    with pytest.raises(ValueError, match="layer= is only used by CAM methods"):
        explain(_linear(), X, TARGET, method="saliency", layer="1")
    with pytest.raises(ValueError, match="sign must be one of"):
        explain(_linear(), X, TARGET, method="occlusion", sign="negative")
    with pytest.raises(ValueError, match="segments"):
        explain(_linear(), X, TARGET, method="lime", segments=torch.zeros(2, 3, 3, dtype=torch.long))
    with pytest.raises(ValueError, match="surrogate"):
        explain(_linear(), X, TARGET, method="lime", surrogate="tree")
