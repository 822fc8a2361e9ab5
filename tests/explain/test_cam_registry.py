"""Every registered explainer: output contract, batch == per-sample, device."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from xbyol.explain import EXPLAINERS, EmbeddingSimilarityTarget, LinearClassTarget, NormTarget, explain, names
from xbyol.models import create_backbone

ALL = ["cam", "eigencam", "gradcam", "gradcampp", "guided_backprop", "integrated_gradients", "kernelshap",
       "layercam", "lime", "occlusion", "saliency", "scorecam", "smoothgrad", "xgradcam"]  # fmt: skip
# methods without randomness (SmoothGrad draws noise, LIME / KernelSHAP draw coalitions)
DETERMINISTIC = sorted(set(ALL) - {"smoothgrad", "lime", "kernelshap"})
FAST = {  # small settings for the tests
    "integrated_gradients": {"n_steps": 8},
    "lime": {"n_samples": 12, "segments": "grid"},
    "kernelshap": {"n_samples": 12, "segments": "grid"},
    "smoothgrad": {"nt_samples": 3},
    "occlusion": {"window": 8, "stride": 8},
}


def test_registry_names() -> None:
    assert names() == sorted(ALL)
    assert all(EXPLAINERS.doc(n) for n in names())
    with pytest.raises(KeyError, match="unknown explainer 'nope'"):
        explain(nn.Identity(), torch.zeros(1, 3, 4, 4), lambda o: o[:, 0], method="nope")


def test_an_explainer_refuses_a_target_type_it_cannot_explain() -> None:
    model, x, _ = _setup("cpu", batch=1)
    cam = EXPLAINERS.create("cam", model=model)
    assert cam.method == "cam" and EXPLAINERS.get("gradcam").method == "gradcam"  # type: ignore[attr-defined]
    with pytest.raises(ValueError, match="^cam explains only LinearClassTarget or DimensionTarget targets, not NormTarget$"):
        cam(x, NormTarget())
    assert explain(model, x, NormTarget(), method="gradcam").shape == (1, 32, 32)  # any target: no check


def _setup(device: str, batch: int = 2, size: int = 32, dtype: torch.dtype = torch.float32):
    torch.manual_seed(0)
    model = create_backbone("resnet10_16").eval().to(device, dtype)
    x = torch.randn(batch, 3, size, size, device=device, dtype=dtype)
    probe = nn.Linear(model.num_features, 4).to(device, dtype)
    with torch.no_grad():
        probe.weight.abs_()  # positive weights on non-negative features: CAMs are not all zero
    return model, x, probe


def _target(method: str, model: nn.Module, probe: nn.Linear, x: torch.Tensor, idx: list[int]):
    if method == "cam":
        return LinearClassTarget(probe, [(3 * i + 1) % 4 for i in idx])
    with torch.no_grad():
        refs = model(x.roll(1, 0))  # each image is compared with another one
    return EmbeddingSimilarityTarget(refs[idx])


def _devices() -> list:
    return ["cpu"] + ([pytest.param("cuda", marks=pytest.mark.cuda)] if torch.cuda.is_available() else [])


@pytest.mark.parametrize("device", _devices())
@pytest.mark.parametrize("method", ALL)
def test_every_method_output_contract(method: str, device: str) -> None:
    model, x, probe = _setup(device)
    maps = explain(model, x, _target(method, model, probe, x, [0, 1]), method=method, **FAST.get(method, {}))
    assert maps.shape == (2, 32, 32)
    assert maps.device == x.device and maps.dtype == x.dtype and not maps.requires_grad
    assert torch.isfinite(maps).all() and maps.min() >= 0 and maps.max() <= 1
    assert (maps.flatten(1).amax(dim=1) == 1).all(), "each map is min-max normalised"


@pytest.mark.parametrize("method", DETERMINISTIC)
def test_batch_equals_each_image_alone(method: str) -> None:
    # float64: in float32, convolutions of different batch sizes differ by ~1e-6 on CPU
    model, x, probe = _setup("cpu", batch=3, size=16, dtype=torch.float64)
    kw = dict(FAST.get(method, {}), **({"layer": "stages.1"} if method == "scorecam" else {}))
    batch = explain(model, x, _target(method, model, probe, x, [0, 1, 2]), method=method, **kw)
    for i in range(3):
        alone = explain(model, x[i : i + 1], _target(method, model, probe, x, [i]), method=method, **kw)
        assert alone.max() == 1
        torch.testing.assert_close(batch[i : i + 1], alone, atol=1e-6, rtol=0)


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("method", DETERMINISTIC)
def test_maps_on_cuda_equal_the_cpu_maps(method: str) -> None:
    # float64 on both devices: float32 CUDA convolutions use TF32 by default (~1e-3 relative)
    model, x, probe = _setup("cpu", batch=3, size=16, dtype=torch.float64)
    kw = dict(FAST.get(method, {}), **({"layer": "stages.1"} if method == "scorecam" else {}))
    on_cpu = explain(model, x, _target(method, model, probe, x, [0, 1, 2]), method=method, **kw)
    model, x, probe = model.to("cuda"), x.to("cuda"), probe.to("cuda")
    on_cuda = explain(model, x, _target(method, model, probe, x, [0, 1, 2]), method=method, **kw)
    assert on_cuda.device == x.device
    torch.testing.assert_close(on_cuda.cpu(), on_cpu, atol=1e-6, rtol=0)


@pytest.mark.parametrize("method", ["lime", "kernelshap"])
def test_surrogates_first_image_matches_alone_under_same_seed(method: str) -> None:
    # Captum fits one surrogate per image in order, so image 0 sees the same random coalitions
    model, x, probe = _setup("cpu")
    kw = FAST[method]
    torch.manual_seed(5)
    batch = explain(model, x, _target(method, model, probe, x, [0, 1]), method=method, **kw)
    torch.manual_seed(5)
    alone = explain(model, x[:1], _target(method, model, probe, x, [0]), method=method, **kw)
    torch.testing.assert_close(batch[:1], alone, atol=1e-6, rtol=0)


@pytest.mark.parametrize("method", ALL)
def test_raw_scale_is_kept_without_normalisation(method: str) -> None:
    model, x, probe = _setup("cpu", size=16)
    target = _target(method, model, probe, x, [0, 1])
    torch.manual_seed(1)
    raw = explain(model, x, target, method=method, normalize=False, **FAST.get(method, {}))
    torch.manual_seed(1)
    norm = explain(model, x, target, method=method, **FAST.get(method, {}))
    low = raw.amin(dim=(1, 2), keepdim=True)
    torch.testing.assert_close(norm, (raw - low) / (raw.amax(dim=(1, 2), keepdim=True) - low), atol=1e-6, rtol=0)
