"""Every explanation metric on CUDA tensors gives the CPU's values (float64, so neither TF32
nor float32 rounding blurs the comparison). Skipped without a CUDA device;
``benchmarks/gpu_check.py`` runs it (``pytest -m cuda``)."""

from __future__ import annotations

import pytest
import torch

from xbyol.explain import EmbeddingSimilarityTarget, explain
from xbyol.explain.targets import compute_scores
from xbyol.metrics import METRICS
from xbyol.models import create_backbone

pytestmark = [pytest.mark.cuda, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")]

DEVICE = "cuda"


def _inputs(device: str):
    """A seeded float64 resnet10_16, images [3, 3, 16, 16], heatmaps [3, 16, 16] without ties, masks, a target."""
    torch.manual_seed(0)
    model = create_backbone("resnet10_16").eval().to(device, torch.float64)
    g = torch.Generator().manual_seed(1)
    x = torch.randn(3, 3, 16, 16, generator=g, dtype=torch.float64)
    heat = torch.rand(3, 16, 16, generator=g, dtype=torch.float64)
    masks = torch.zeros(3, 16, 16, dtype=torch.bool)
    masks[0, 2:8, 3:9] = masks[1, 8:14, 8:15] = masks[2, 0:5, 10:16] = True
    with torch.no_grad():
        target = EmbeddingSimilarityTarget(model(x[:1].to(device))[0])  # one [D] reference for every row
    return model, x.to(device), heat.to(device), masks.to(device), target


def _all_metrics(device: str) -> dict[str, torch.Tensor]:
    model, x, heat, masks, target = _inputs(device)

    def forward_fn(images: torch.Tensor) -> torch.Tensor:
        return compute_scores(target, model(images))  # (n,)

    def gradcam(images: torch.Tensor) -> torch.Tensor:
        return explain(model, images, lambda z: z.norm(dim=1), method="gradcam")

    out = {name: METRICS[name]["fn"](heat, masks) for name in
           ("pointing_game", "energy_pointing_game", "mask_iou", "relevance_mass", "relevance_rank")}
    out["deletion_auc"] = METRICS["deletion_auc"]["fn"](forward_fn, x, heat, step=32)
    out["insertion_auc"] = METRICS["insertion_auc"]["fn"](forward_fn, x, heat, step=32)
    out["infidelity"] = METRICS["infidelity"]["fn"](forward_fn, x, heat, n_perturb=4)
    out["max_sensitivity"] = METRICS["max_sensitivity"]["fn"](gradcam, x, n_samples=3)
    return out


def test_every_metric_on_cuda_matches_the_cpu():
    cpu, cuda = _all_metrics("cpu"), _all_metrics(DEVICE)
    assert set(cpu) | {"model_randomization"} == set(METRICS)
    for name in cpu:
        assert cuda[name].device.type == torch.device(DEVICE).type, name
        torch.testing.assert_close(cuda[name].cpu(), cpu[name], rtol=1e-6, atol=1e-9, equal_nan=True, msg=name)


def test_model_randomization_runs_on_cuda_and_is_repeatable():
    """Re-initialisation draws from the CUDA generator there, so values differ from the CPU's; check it is seeded."""
    model, x, _, _, _ = _inputs(DEVICE)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    fn = METRICS["model_randomization"]["fn"]

    def gradcam(m: torch.nn.Module, images: torch.Tensor) -> torch.Tensor:
        return explain(m, images, lambda z: z.norm(dim=1), method="gradcam")

    layers = ["stages.3.0.conv2", "stages.3.0.conv1"]
    a = fn(model, gradcam, x, layers=layers)
    b = fn(model, gradcam, x, layers=layers)
    assert a["correlations"].device.type == torch.device(DEVICE).type
    assert a["correlations"].shape == (3, len(a["layer_names"]))
    torch.testing.assert_close(a["correlations"], b["correlations"], equal_nan=True)
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), f"model_randomization changed {k}"
