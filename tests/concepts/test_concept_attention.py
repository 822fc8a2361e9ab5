"""Concept attention: weights form a distribution, the gate stays in (0, 1), hand value."""

from __future__ import annotations

import math

import pytest
import torch

from xbyol.concepts.attention import ConceptAttention


def test_hand_computed_fusion():
    att = ConceptAttention(2)
    with torch.no_grad():
        att.log_scale.fill_(math.log(math.sqrt(2.0)))  # scores = cos(z, e_k)
    concepts = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    out = att(torch.tensor([[5.0, 0.0]]), concepts)
    a0 = math.e / (math.e + 1.0)
    assert out.alpha[0].tolist() == pytest.approx([a0, 1 - a0], abs=1e-6)
    assert out.gate.item() == pytest.approx(0.5)  # zero-initialised gate
    assert out.context[0].tolist() == pytest.approx([a0, 1 - a0], abs=1e-6)
    assert out.fused[0].tolist() == pytest.approx([0.5 + 0.5 * a0, 0.5 * (1 - a0)], abs=1e-6)


def test_initial_attention_is_the_contrastive_softmax():
    torch.manual_seed(0)
    att = ConceptAttention(16, init_temperature=0.1)
    concepts = torch.nn.functional.normalize(torch.randn(7, 16), dim=-1)
    z = torch.randn(3, 16)
    cos = torch.nn.functional.normalize(z, dim=-1) @ concepts.T
    assert torch.allclose(att(z, concepts).alpha, (cos / 0.1).softmax(-1), atol=1e-5)


def test_weights_sum_to_one_and_gate_in_open_interval_even_when_saturated():
    torch.manual_seed(1)
    att = ConceptAttention(8)
    concepts = torch.nn.functional.normalize(torch.randn(5, 8), dim=-1)
    z = torch.randn(32, 8) * 100
    for bias in (-1e4, 0.0, 1e4):  # sigmoid saturates to exactly 0 / 1 in float32 at +-1e4
        with torch.no_grad():
            att.gate.bias.fill_(bias)
            att.gate.weight.normal_(0, 10)
        out = att(z, concepts)
        assert torch.allclose(out.alpha.sum(-1), torch.ones(32), atol=1e-6)
        assert bool((out.alpha >= 0).all())
        assert bool((out.gate > 0).all()) and bool((out.gate < 1).all())


def test_gradients_reach_gate_and_scale():
    torch.manual_seed(2)
    att = ConceptAttention(8)
    concepts = torch.nn.functional.normalize(torch.randn(5, 8), dim=-1)
    z = torch.randn(4, 8, requires_grad=True)
    (att(z, concepts).fused @ concepts[0]).sum().backward()
    assert att.gate.weight.grad.abs().sum() > 0
    assert att.log_scale.grad.abs() > 0
    assert z.grad.abs().sum() > 0


def test_shape_errors():
    att = ConceptAttention(4)
    with pytest.raises(ValueError, match="expected z"):
        att(torch.randn(2, 3), torch.randn(5, 4))
