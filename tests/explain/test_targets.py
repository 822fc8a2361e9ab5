"""Targets: hand-computed scores, per-sample vs shared values, and shape errors."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from xbyol.explain import (
    ConceptTarget,
    DimensionTarget,
    EmbeddingSimilarityTarget,
    LinearClassTarget,
    NormTarget,
    compute_scores,
    explain,
    names,
)
from xbyol.explain.targets import score_rows

OUT = torch.tensor([[1.0, 0.0], [1.0, 1.0]])  # two 2-D embeddings
S = 1 / math.sqrt(2)


def test_embedding_similarity_shared_and_per_sample() -> None:
    torch.testing.assert_close(EmbeddingSimilarityTarget(torch.tensor([1.0, 0.0]))(OUT), torch.tensor([1.0, S]))
    per_sample = EmbeddingSimilarityTarget(torch.tensor([[0.0, 1.0], [2.0, 2.0]]))
    torch.testing.assert_close(per_sample(OUT), torch.tensor([0.0, 1.0]))


def test_embedding_similarity_from_images() -> None:
    model = nn.Sequential(nn.Flatten(), nn.Linear(12, 4))
    imgs = torch.randn(2, 3, 2, 2)
    target = EmbeddingSimilarityTarget.from_images(model, imgs)
    torch.testing.assert_close(target(model(imgs)), torch.ones(2))
    assert EmbeddingSimilarityTarget.from_images(model, imgs[0]).reference.shape == (4,)


def test_embedding_similarity_errors() -> None:
    with pytest.raises(ValueError, match="3 per-sample references for a batch of 2"):
        EmbeddingSimilarityTarget(torch.randn(3, 2))(OUT)
    # one reference in a batch dimension is not silently broadcast (grad-cam's single-target defect)
    with pytest.raises(ValueError, match="1 per-sample references for a batch of 2"):
        EmbeddingSimilarityTarget(torch.randn(1, 2))(OUT)
    with pytest.raises(ValueError, match="D=3"):
        EmbeddingSimilarityTarget(torch.randn(3))(OUT)
    with pytest.raises(ValueError, match=r"\[D\] or \[B, D\]"):
        EmbeddingSimilarityTarget(torch.randn(2, 2, 2))
    with pytest.raises(ValueError, match=r"\[B, D\]"):
        EmbeddingSimilarityTarget(torch.randn(2))(torch.randn(2, 2, 1, 1))


def test_concept_target_with_projection() -> None:
    proj = nn.Linear(2, 3, bias=False)
    with torch.no_grad():
        proj.weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]]))
    # projection(OUT) = [[1, 0, 1], [1, 1, 2]]; concept e = [0, 0, 1]
    target = ConceptTarget(torch.tensor([0.0, 0.0, 1.0]), projection=proj)
    torch.testing.assert_close(target(OUT), torch.tensor([S, 2 / math.sqrt(6)]))
    per_sample = ConceptTarget(torch.tensor([[1.0, 0.0, 1.0], [0.0, 1.0, 0.0]]), projection=proj)
    torch.testing.assert_close(per_sample(OUT), torch.tensor([1.0, 1 / math.sqrt(6)]))


def test_concept_target_without_projection_needs_same_width() -> None:
    torch.testing.assert_close(ConceptTarget(torch.tensor([0.0, 3.0]))(OUT), torch.tensor([0.0, S]))
    with pytest.raises(ValueError, match="pass projection="):
        ConceptTarget(torch.randn(5))(OUT)
    with pytest.raises(ValueError, match="3 per-sample concept embeddings for a batch of 2"):
        ConceptTarget(torch.randn(3, 2))(OUT)


def test_linear_class_target() -> None:
    probe = nn.Linear(2, 3)
    with torch.no_grad():
        probe.weight.copy_(torch.tensor([[1.0, 2.0], [3.0, 4.0], [-1.0, 0.0]]))
        probe.bias.copy_(torch.tensor([0.5, 0.0, 0.0]))
    out = torch.tensor([[1.0, 1.0], [2.0, 0.0]])
    torch.testing.assert_close(LinearClassTarget(probe, 1)(out), torch.tensor([7.0, 6.0]))
    torch.testing.assert_close(LinearClassTarget(probe, [0, 2])(out), torch.tensor([3.5, -2.0]))
    torch.testing.assert_close(LinearClassTarget(probe, torch.tensor([2, 0]))(out), torch.tensor([-1.0, 2.5]))
    with pytest.raises(ValueError, match="out of range"):
        LinearClassTarget(probe, 3)
    with pytest.raises(ValueError, match="3 per-sample class indices for a batch of 2"):
        LinearClassTarget(probe, [0, 1, 2])(out)
    with pytest.raises(TypeError, match="integer"):
        LinearClassTarget(probe, torch.tensor([0.0, 1.0]))
    with pytest.raises(TypeError, match="nn.Linear"):
        LinearClassTarget(nn.Identity(), 0)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="in_features=2"):
        LinearClassTarget(probe, 0)(torch.randn(2, 5))


def test_dimension_and_norm_targets() -> None:
    out = torch.tensor([[3.0, 4.0], [0.0, -2.0]])
    torch.testing.assert_close(DimensionTarget(1)(out), torch.tensor([4.0, -2.0]))
    torch.testing.assert_close(DimensionTarget([1, 0])(out), torch.tensor([4.0, 0.0]))
    torch.testing.assert_close(NormTarget()(out), torch.tensor([5.0, 2.0]))
    with pytest.raises(ValueError, match="out of range"):
        DimensionTarget(2)(out)
    with pytest.raises(ValueError, match=">= 0"):
        DimensionTarget(-1)


def test_compute_scores_checks_any_callable() -> None:
    with pytest.raises(TypeError, match="no default target"):
        compute_scores(None, OUT)
    with pytest.raises(TypeError, match="callable"):
        compute_scores(3, OUT)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"shape \[2\]"):
        compute_scores(lambda o: o.sum(), OUT)
    with pytest.raises(ValueError, match=r"shape \[2\]"):
        compute_scores(lambda o: o, OUT)
    torch.testing.assert_close(compute_scores(lambda o: o[:, 1], OUT), torch.tensor([0.0, 1.0]))


@pytest.mark.parametrize("method", sorted(set(names()) - {"eigencam"}))
def test_targets_none_raises_for_every_method(method: str) -> None:
    model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten())
    layer = "0" if method in {"cam", "gradcam", "gradcampp", "xgradcam", "layercam", "scorecam"} else None
    with pytest.raises(TypeError, match="target is None"):
        explain(model, torch.randn(2, 3, 8, 8), None, method=method, layer=layer)


def test_single_target_for_a_batch_raises_in_explain() -> None:
    model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten())
    with pytest.raises(ValueError, match="1 per-sample dimensions for a batch of 3"):
        explain(model, torch.randn(3, 3, 8, 8), DimensionTarget([2]), layer="0")


@pytest.mark.parametrize("expand", ["repeat", "repeat_interleave", "shuffled"])
def test_score_rows_follows_each_rows_image(expand: str) -> None:
    torch.manual_seed(0)
    refs = torch.randn(3, 4)
    target = EmbeddingSimilarityTarget(refs)
    idx = torch.arange(3)
    idx = {
        "repeat": idx.repeat(4),  # IG steps, occlusion windows
        "repeat_interleave": idx.repeat_interleave(4),  # NoiseTunnel samples
        "shuffled": idx.repeat(4)[torch.randperm(12)],
    }[expand]
    outputs = torch.randn(12, 4, requires_grad=True)
    got = score_rows(target, outputs, idx, batch=3)
    expected = torch.nn.functional.cosine_similarity(outputs, refs[idx], dim=1)
    torch.testing.assert_close(got, expected)
    (g1,) = torch.autograd.grad(got.sum(), outputs)
    (g2,) = torch.autograd.grad(expected.sum(), outputs)
    torch.testing.assert_close(g1, g2)


def test_score_rows_with_unequal_counts() -> None:
    target = DimensionTarget([0, 1, 2])
    outputs = torch.arange(15.0).view(5, 3)
    idx = torch.tensor([2, 2, 0, 1, 2])
    torch.testing.assert_close(score_rows(target, outputs, idx, batch=3), torch.tensor([2.0, 5.0, 6.0, 10.0, 14.0]))
