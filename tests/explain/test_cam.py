"""Grad-CAM against Captum and hand-worked values; CAM == Grad-CAM on GAP + linear."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from xbyol.explain import DimensionTarget, EmbeddingSimilarityTarget, LinearClassTarget, explain
from xbyol.explain.targets import compute_scores
from xbyol.models import create_backbone


@pytest.fixture(scope="module")
def resnet() -> nn.Module:
    torch.manual_seed(0)
    return create_backbone("resnet10_16").eval()


@pytest.fixture(scope="module")
def images() -> torch.Tensor:
    return torch.randn(3, 3, 32, 32, generator=torch.Generator().manual_seed(1))


class _Scores(nn.Module):
    """Captum forward: the target's scalar per sample."""

    def __init__(self, model: nn.Module, target) -> None:
        super().__init__()
        self.model, self.target = model, target

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return compute_scores(self.target, self.model(x))


def _captum_gradcam(model: nn.Module, layer: nn.Module, x: torch.Tensor, target) -> torch.Tensor:
    from captum.attr import LayerAttribution, LayerGradCam

    attr = LayerGradCam(_Scores(model, target), layer).attribute(x, relu_attributions=True)  # (B, 1, h, w)
    return LayerAttribution.interpolate(attr, tuple(x.shape[-2:]), interpolate_mode="bilinear")[:, 0].detach()


def _minmax(m: torch.Tensor) -> torch.Tensor:
    low = m.amin(dim=(1, 2), keepdim=True)
    return (m - low) / (m.amax(dim=(1, 2), keepdim=True) - low)


@pytest.mark.parametrize("layer_name", [None, "stages.2"])
@pytest.mark.parametrize("kind", ["similarity", "probe"])
def test_gradcam_matches_captum_layergradcam(resnet, images, layer_name, kind) -> None:
    torch.manual_seed(2)
    if kind == "similarity":
        target = EmbeddingSimilarityTarget(torch.randn(3, resnet.num_features))  # per-sample references
    else:
        target = LinearClassTarget(nn.Linear(resnet.num_features, 5), [4, 0, 2])
    layer = resnet.feature_layer if layer_name is None else resnet.get_submodule(layer_name)
    ref = _captum_gradcam(resnet, layer, images, target)
    ours = explain(resnet, images, target, method="gradcam", layer=layer_name, normalize=False)
    assert ref.abs().max() > 0
    torch.testing.assert_close(ours, ref, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(explain(resnet, images, target, layer=layer_name), _minmax(ref), atol=1e-5, rtol=1e-5)


class OneConv(nn.Module):
    """x [B,1,4,4] -> conv 3x3 (2 channels: all-ones and all-halves, no bias) -> GAP -> [B, 2]."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 2, 3, bias=False)
        with torch.no_grad():
            self.conv.weight[0].fill_(1.0)
            self.conv.weight[1].fill_(0.5)

    @property
    def feature_layer(self) -> nn.Module:
        return self.conv

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x).mean(dim=(2, 3))


def test_gradcam_toy_conv_by_hand() -> None:
    # x = arange(16) as 4x4. 3x3 window sums: A0 = [[45, 54], [81, 90]], A1 = A0 / 2.
    # probe y = 2 * mean(A0) - 1 * mean(A1)  ->  dy/dA0 = 2/4, dy/dA1 = -1/4 everywhere,
    # Grad-CAM = 0.5 * A0 - 0.25 * A1 = [[16.875, 20.25], [30.375, 33.75]].
    x = torch.arange(16.0).view(1, 1, 4, 4)
    probe = nn.Linear(2, 1, bias=False)
    with torch.no_grad():
        probe.weight.copy_(torch.tensor([[2.0, -1.0]]))
    layer_map = torch.tensor([[16.875, 20.25], [30.375, 33.75]])
    # bilinear 2 -> 4 (align_corners=False): output rows sample source rows 0, 0.25, 0.75, 1
    up = torch.tensor([[1.0, 0.0], [0.75, 0.25], [0.25, 0.75], [0.0, 1.0]])
    expected = up @ layer_map @ up.T
    got = explain(OneConv(), x, LinearClassTarget(probe, 0), method="gradcam", normalize=False)
    torch.testing.assert_close(got[0], expected, atol=1e-5, rtol=0)
    # no-ReLU case: flipping the probe makes every value negative, so the ReLU gives zeros
    with torch.no_grad():
        probe.weight.neg_()
    got = explain(OneConv(), x, LinearClassTarget(probe, 0), method="gradcam", normalize=False)
    assert torch.equal(got, torch.zeros(1, 4, 4))


def test_cam_equals_gradcam_times_positions_on_gap_linear(resnet, images) -> None:
    torch.manual_seed(3)
    probe = nn.Linear(resnet.num_features, 7)
    target = LinearClassTarget(probe, [6, 1, 3])
    cam = explain(resnet, images, target, method="cam", normalize=False)
    grad = explain(resnet, images, target, method="gradcam", normalize=False)
    h, w = resnet.forward_features(images).shape[-2:]
    assert cam.abs().max() > 0
    torch.testing.assert_close(cam, grad * (h * w), atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(
        explain(resnet, images, target, method="cam"), explain(resnet, images, target, method="gradcam"), atol=1e-5, rtol=0
    )


def test_cam_with_dimension_target_is_that_channel(resnet, images) -> None:
    cam = explain(resnet, images, DimensionTarget([5, 9, 0]), method="cam", normalize=False)
    feats = resnet.forward_features(images).detach()
    expected = F.interpolate(feats[[0, 1, 2], [5, 9, 0]][:, None].relu(), size=(32, 32), mode="bilinear")[:, 0]
    torch.testing.assert_close(cam, expected)


def test_cam_rejects_other_targets_and_wrong_layers(resnet, images) -> None:
    with pytest.raises(ValueError, match="^cam explains only LinearClassTarget or DimensionTarget targets, not EmbeddingSimilarityTarget$"):
        explain(resnet, images, EmbeddingSimilarityTarget(torch.randn(128)), method="cam")
    with pytest.raises(ValueError, match="channels"):
        explain(resnet, images, LinearClassTarget(nn.Linear(128, 2), 0), method="cam", layer="stages.2")
