"""Semantic losses against hand-computed values, and their edge cases."""

from __future__ import annotations

import math

import pytest
import torch

from xbyol.losses.semantic import cosine_concept_loss, semantic_contrastive_loss, semantic_loss

E2 = torch.tensor([[1.0, 0.0], [0.0, 1.0]])  # two orthogonal unit concepts


def _toy():
    x = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    targets = torch.tensor([[True, False], [True, True], [False, False]])  # image 2 unlabelled
    return x, targets


def test_cosine_loss_hand_value():
    x, t = _toy()
    # image 0: -cos(x0, e0) = -1; image 1: -(0 + 1) / 2 = -0.5; image 2 ignored
    assert cosine_concept_loss(x, E2, t).item() == pytest.approx(-0.75)


def test_contrastive_loss_hand_value():
    x, t = _toy()
    lse = math.log(math.exp(2.0) + 1.0)  # logits (cos / 0.5) are [2, 0] or [0, 2]
    img0 = -(2.0 - lse)
    img1 = ((lse - 0.0) + (lse - 2.0)) / 2
    assert semantic_contrastive_loss(x, E2, t, temperature=0.5).item() == pytest.approx((img0 + img1) / 2, abs=1e-6)


def test_contrastive_loss_three_concepts_non_unit_input():
    x = torch.tensor([[3.0, 4.0]])  # cosines with (1,0), (0,1), (-1,0): 0.6, 0.8, -0.6
    c = torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]])
    t = torch.tensor([[True, False, False]])
    expected = -(0.6 - math.log(math.exp(0.6) + math.exp(0.8) + math.exp(-0.6)))
    assert semantic_contrastive_loss(x, c, t, temperature=1.0).item() == pytest.approx(expected, abs=1e-6)
    # only directions matter: scaling x changes nothing
    assert semantic_contrastive_loss(7 * x, c, t, 1.0).item() == pytest.approx(expected, abs=1e-6)


def test_unlabelled_batch_gives_zero_with_a_graph():
    x = torch.randn(4, 2, requires_grad=True)
    t = torch.zeros(4, 2, dtype=torch.bool)
    for kind in ("contrastive", "cosine"):
        loss = semantic_loss(kind, x, E2, t)
        assert loss.item() == 0.0
        loss.backward()
        assert torch.equal(x.grad, torch.zeros_like(x))


def test_unlabelled_images_do_not_change_the_loss():
    x, t = _toy()
    full = semantic_contrastive_loss(x, E2, t, 0.1)
    only_labelled = semantic_contrastive_loss(x[:2], E2, t[:2], 0.1)
    assert full.item() == pytest.approx(only_labelled.item())


def test_gradient_steps_reduce_loss_and_align_to_concepts():
    torch.manual_seed(0)
    concepts = torch.nn.functional.normalize(torch.randn(5, 8), dim=-1)
    t = torch.zeros(16, 5, dtype=torch.bool)
    t[torch.arange(16), torch.arange(16) % 5] = True
    x = torch.randn(16, 8, requires_grad=True)
    opt = torch.optim.SGD([x], lr=0.5)
    first = None
    for _ in range(50):
        loss = semantic_contrastive_loss(x, concepts, t, 0.1)
        first = loss.item() if first is None else first
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < first
    pred = (torch.nn.functional.normalize(x, dim=-1) @ concepts.T).argmax(1)
    assert torch.equal(pred, torch.arange(16) % 5)


def test_bad_inputs_raise():
    x, t = _toy()
    with pytest.raises(ValueError, match="same E"):
        cosine_concept_loss(x, torch.zeros(2, 3), t)
    with pytest.raises(ValueError, match="targets must be"):
        cosine_concept_loss(x, E2, t[:2])
    with pytest.raises(TypeError, match="bool"):
        cosine_concept_loss(x, E2, t.float())
    with pytest.raises(ValueError, match="temperature"):
        semantic_contrastive_loss(x, E2, t, 0.0)
    with pytest.raises(ValueError, match="unknown"):
        semantic_loss("l2", x, E2, t)
