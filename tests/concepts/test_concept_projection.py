"""Concept maps: the post-hoc fit recovers separable concepts, dense application equals
per-location application."""

from __future__ import annotations

import torch
from torch import nn

from xbyol.concepts.projection import ConceptMap, apply_dense, fit_concept_map


def test_fit_recovers_linearly_encoded_concepts_and_ignores_unlabelled_rows():
    torch.manual_seed(0)
    concepts = torch.nn.functional.normalize(torch.randn(4, 16), dim=-1)
    labels = torch.arange(200) % 4
    feats = torch.randn(200, 8) * 0.1
    feats[torch.arange(200), labels] += 2.0  # concept k lives in feature k
    targets = torch.nn.functional.one_hot(labels, 4).bool()
    targets[150:] = False  # unlabelled rows must not matter
    cmap = fit_concept_map(feats, targets, concepts, steps=200, lr=0.05)
    pred = (cmap(feats) @ concepts.T).argmax(1)
    assert torch.equal(pred, labels)  # including the 50 rows it never saw labelled
    assert not cmap.training


def test_fit_is_seeded_and_leaves_the_projector_frozen():
    torch.manual_seed(1)
    concepts = torch.nn.functional.normalize(torch.randn(3, 5), dim=-1)
    feats = torch.randn(30, 6)
    targets = torch.nn.functional.one_hot(torch.arange(30) % 3, 3).bool()
    projector = nn.Sequential(nn.Linear(6, 4), nn.BatchNorm1d(4))
    before = [p.detach().clone() for p in projector.parameters()]
    a = fit_concept_map(feats, targets, concepts, projector, steps=20, seed=3)
    b = fit_concept_map(feats, targets, concepts, projector, steps=20, seed=3)
    assert torch.equal(a.linear.weight, b.linear.weight)
    assert all(torch.equal(x, y) for x, y in zip(before, projector.parameters()))


def test_dense_application_equals_per_location_application():
    torch.manual_seed(2)
    cmap = ConceptMap(nn.Sequential(nn.Linear(6, 5), nn.BatchNorm1d(5), nn.ReLU()), nn.Linear(5, 7)).eval()
    fmap = torch.randn(2, 6, 3, 4)
    dense = apply_dense(cmap, fmap)
    assert dense.shape == (2, 7, 3, 4)
    assert torch.allclose(dense[1, :, 2, 3], cmap(fmap[1, :, 2, 3][None])[0], atol=1e-6)
    assert torch.allclose(dense[0, :, 0, 1], cmap(fmap[0, :, 0, 1][None])[0], atol=1e-6)


def test_fit_does_not_depend_on_the_scale_of_each_feature():
    """Inputs are standardised during the fit and the standardisation is folded into the map:
    rescaling and shifting every feature gives the same concept-space outputs."""
    torch.manual_seed(3)
    concepts = torch.nn.functional.normalize(torch.randn(4, 16), dim=-1)
    labels = torch.arange(120) % 4
    feats = torch.randn(120, 8) * 0.1
    feats[torch.arange(120), labels] += 1.0
    targets = torch.nn.functional.one_hot(labels, 4).bool()
    scale = torch.tensor([1e3, 1e-2, 5.0, 1.0, 30.0, 0.1, 2.0, 1e2])
    shift = torch.linspace(-50, 50, 8)
    a = fit_concept_map(feats, targets, concepts, steps=50, seed=0)
    b = fit_concept_map(feats * scale + shift, targets, concepts, steps=50, seed=0)
    torch.testing.assert_close(a(feats), b(feats * scale + shift), atol=5e-3, rtol=1e-2)  # float32 round-off
    assert torch.equal((a(feats) @ concepts.T).argmax(1), labels)
