"""Reference representations of the concept scores, against values worked by hand."""

from __future__ import annotations

import pytest
import torch

from xbyol.concepts.bank import ConceptBank
from xbyol.eval.concept_eval import scores_of_representations
from xbyol.eval.concept_nulls import chance_representations, label_prior_representation, oracle_representations


def test_label_prior_is_the_frequency_weighted_sum_of_unit_embeddings():
    emb = torch.tensor([[2.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 3.0]])  # normalised to the unit axes
    train = torch.tensor([[1, 0, 0], [1, 1, 0]], dtype=torch.bool)  # p = (1, 0.5, 0)
    assert label_prior_representation(train, emb).tolist() == [1.0, 0.5, 0.0]


def test_oracle_margin_is_the_norm_of_the_true_minus_false_mean():
    emb = torch.eye(3)  # unit embeddings e_0, e_1, e_2
    targets = torch.tensor([[1, 0, 0], [1, 1, 0]], dtype=torch.bool)
    m = oracle_representations(targets, emb)
    # image 0: e0 - (e1 + e2) / 2 = (1, -0.5, -0.5); image 1: (e0 + e1) / 2 - e2 = (0.5, 0.5, -1)
    assert m.tolist() == [[1.0, -0.5, -0.5], [0.5, 0.5, -1.0]]
    bank = ConceptBank(["a", "b", "c"], emb)
    s = scores_of_representations(m, targets, bank)
    # margin of r = m_i is ||m_i|| = sqrt(1.5) for both images: cos to e0 is 1/sqrt(1.5), to e1, e2 -0.5/sqrt(1.5)
    assert s["scs_margin"] == pytest.approx(1.5 ** 0.5)
    # no representation does better on an image: a random unit vector's margin is below sqrt(1.5)
    r = torch.randn(200, 3, generator=torch.Generator().manual_seed(0))
    per = scores_of_representations(r, targets[:1].expand(200, -1), bank)["scs_margin"]
    assert per < 1.5 ** 0.5


def test_oracle_is_zero_without_a_true_or_a_false_concept_and_chance_is_seeded():
    emb = torch.eye(2)
    assert oracle_representations(torch.tensor([[1, 1], [0, 0]], dtype=torch.bool), emb).tolist() == [[0.0, 0.0]] * 2
    g = torch.Generator
    assert torch.equal(chance_representations(4, 3, g().manual_seed(1)), chance_representations(4, 3, g().manual_seed(1)))
    with pytest.raises(ValueError, match=r"targets \[N, K\]"):
        oracle_representations(torch.ones(2, 3, dtype=torch.bool), emb)
