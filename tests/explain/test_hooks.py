"""Hooks: recorded values, layer resolution, and no hook left behind (also after errors)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from xbyol.explain import (
    ActivationsAndGradients,
    EmbeddingSimilarityTarget,
    LinearClassTarget,
    explain,
    names,
    resolve_layer,
)
from xbyol.models import create_backbone

FAST = {"integrated_gradients": {"n_steps": 2}, "lime": {"n_samples": 3, "segments": "grid"},
        "kernelshap": {"n_samples": 3, "segments": "grid"}, "smoothgrad": {"nt_samples": 2},
        "occlusion": {"window": 8, "stride": 8}, "scorecam": {"layer": "stages.0"}}  # fmt: skip


def _hooks(model: nn.Module) -> list[str]:
    left = []
    for name, m in model.named_modules():
        for kind in ("_forward_hooks", "_forward_pre_hooks", "_backward_hooks", "_backward_pre_hooks"):
            if getattr(m, kind, None):
                left.append(f"{name or '<root>'}.{kind}")
    return left


@pytest.fixture(scope="module")
def model() -> nn.Module:
    torch.manual_seed(0)
    return create_backbone("resnet10_16").eval()


def _target(method: str):
    if method == "cam":
        return LinearClassTarget(nn.Linear(128, 3), 1)
    return EmbeddingSimilarityTarget(torch.randn(128, generator=torch.Generator().manual_seed(0)))


def test_records_activations_and_gradients(model) -> None:
    x = torch.randn(2, 3, 16, 16, requires_grad=True)
    with ActivationsAndGradients(model.feature_layer) as rec:
        out = model(x)
        scores = out[:, 3] * 2 + out[:, 5]
        grads = rec.backward(scores)
    feats = model.forward_features(x)
    torch.testing.assert_close(rec.activations, feats)
    (expected,) = torch.autograd.grad((feats.mean(dim=(2, 3))[:, [3, 5]] * torch.tensor([2.0, 1.0])).sum(), feats)
    torch.testing.assert_close(grads, expected)
    assert _hooks(model) == []


def test_gradients_touch_no_parameter_grad(model) -> None:
    explain(model, torch.randn(2, 3, 16, 16), _target("gradcam"), method="gradcam")
    assert all(p.grad is None for p in model.parameters())


def test_frozen_model_still_explained(model) -> None:
    frozen = create_backbone("resnet10_16").eval().requires_grad_(False)
    maps = explain(frozen, torch.randn(2, 3, 16, 16), _target("gradcam"), method="gradcampp")
    assert maps.amax(dim=(1, 2)).eq(1).all()


def test_resolve_layer(model) -> None:
    assert resolve_layer(model, None) is model.feature_layer
    assert resolve_layer(model, "stages.1") is model.stages[1]
    assert resolve_layer(model, model.stem) is model.stem
    with pytest.raises(ValueError, match="not a submodule"):
        resolve_layer(model, "stages.9")
    with pytest.raises(ValueError, match="not a submodule"):
        resolve_layer(model, nn.Conv2d(1, 1, 1))
    with pytest.raises(ValueError, match="feature_layer.*layer="):
        resolve_layer(nn.Sequential(nn.Conv2d(3, 4, 3)), None)
    with pytest.raises(TypeError, match="layer must be"):
        resolve_layer(model, 3)  # type: ignore[arg-type]


HOOK_CHECKED = ["cam", "eigencam", "gradcam", "gradcampp", "guided_backprop", "integrated_gradients", "kernelshap",
                "layercam", "lime", "occlusion", "saliency", "scorecam", "smoothgrad", "xgradcam"]


def test_every_registered_explainer_is_checked_for_left_over_hooks() -> None:
    assert sorted(names()) == HOOK_CHECKED


@pytest.mark.parametrize("method", HOOK_CHECKED)
def test_no_hooks_left_after_success(model, method) -> None:
    explain(model, torch.randn(2, 3, 16, 16), _target(method), method=method, **FAST.get(method, {}))
    assert _hooks(model) == []


class Crashes(nn.Module):
    """Runs the backbone's feature layer, then raises before returning an embedding."""

    def __init__(self, backbone: nn.Module) -> None:
        super().__init__()
        self.backbone = backbone

    @property
    def feature_layer(self) -> nn.Module:
        return self.backbone.feature_layer

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.backbone.forward_features(x)
        raise RuntimeError("boom mid-forward")


@pytest.mark.parametrize("method", ["gradcam", "scorecam", "eigencam", "saliency", "guided_backprop", "occlusion"])
def test_no_hooks_left_after_exception_in_forward(model, method) -> None:
    crashing = Crashes(model)
    with pytest.raises(RuntimeError, match="boom mid-forward"):
        kw = {k: v for k, v in FAST.get(method, {}).items() if k != "layer"}
        explain(crashing, torch.randn(1, 3, 16, 16), _target(method), method=method, **kw)
    assert _hooks(crashing) == []


@pytest.mark.parametrize("method", ["gradcam", "layercam", "guided_backprop", "integrated_gradients"])
def test_no_hooks_left_after_exception_in_target(model, method) -> None:
    def bad_target(outputs: torch.Tensor) -> torch.Tensor:
        raise ValueError("target failed")

    with pytest.raises(ValueError, match="target failed"):
        explain(model, torch.randn(1, 3, 16, 16), bad_target, method=method, **FAST.get(method, {}))
    assert _hooks(model) == []


def test_layer_called_twice_raises_and_releases() -> None:
    class Twice(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(3, 3, 3, padding=1)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.conv(self.conv(x)).mean(dim=(2, 3))

    model = Twice()
    with pytest.raises(RuntimeError, match="more than once"):
        explain(model, torch.randn(1, 3, 8, 8), lambda o: o[:, 0], layer="conv")
    assert _hooks(model) == []


def test_layer_not_on_the_output_path_raises() -> None:
    class Branch(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.side = nn.Conv2d(3, 2, 1)
            self.main = nn.Conv2d(3, 2, 1)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            self.side(x)
            return self.main(x).mean(dim=(2, 3))

    model = Branch()
    with pytest.raises(RuntimeError, match="do not depend"):
        explain(model, torch.randn(1, 3, 4, 4), lambda o: o[:, 0], layer="side")
    assert _hooks(model) == []


def test_inplace_op_after_the_layer_and_grad_mode_is_restored() -> None:
    # the CAM layer is a conv followed by an in-place ReLU: the recorded activations are the conv
    # output (before the ReLU) and its gradient passes through the ReLU
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(inplace=True), nn.AdaptiveAvgPool2d(1), nn.Flatten())
    x = torch.randn(2, 3, 6, 6)
    conv = model[0](x).detach()
    # target = sum of the GAP dims: g = [conv > 0] / (h w), alpha_k = mean of g over positions
    expected = torch.einsum("bc,bchw->bhw", (conv > 0).float().mean(dim=(2, 3)) / 36, conv).relu()
    with torch.no_grad():
        got = explain(model, x, lambda o: o.sum(dim=1), layer="0", normalize=False)
        assert not torch.is_grad_enabled()
    assert torch.is_grad_enabled()
    torch.testing.assert_close(got, expected)
    assert _hooks(model) == []
