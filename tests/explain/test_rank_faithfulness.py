"""Rank-scale faithfulness against the permuted-names null, on hand-built explainers worked out by hand."""

from __future__ import annotations

import pytest
import torch

from xbyol.explain.rank_faithfulness import derangement, rank_faithfulness, rank_gaps, rank_of

IDENTITY = torch.eye(3)  # concept k's direction is axis k


def test_rank_of_counts_ties_against_the_concept():
    w = torch.tensor([[0.1, 0.5, 0.5], [0.9, 0.2, 0.1]])
    assert rank_of(w, torch.tensor([1, 0])).tolist() == [2, 1]
    assert rank_of(w, torch.tensor([0, 2])).tolist() == [3, 3]


def test_derangement_has_no_fixed_point():
    for s in range(20):
        p = derangement(5, torch.Generator().manual_seed(s))
        assert sorted(p.tolist()) == list(range(5)) and bool((p != torch.arange(5)).all())
    assert derangement(2, torch.Generator().manual_seed(0)).tolist() == [1, 0]
    with pytest.raises(ValueError, match="at least 2"):
        derangement(1, torch.Generator())


def test_a_faithful_explainer_passes_and_its_permuted_null_fails():
    """Weights = the representation itself, directions = the axes: the explanation names what it reads."""
    feats = torch.tensor([[3.0, 2.0, 1.0], [1.0, 3.0, 2.0]])
    # image 0: top 0; removing axis 0 -> (0, 2, 1): concept 0 ranks 3; removing axis 1 -> (3, 0, 1): rank 1; gap 2
    # image 1: top 1; removing axis 1 -> (1, 0, 2): rank 3; removing axis 2 -> (1, 3, 0): rank 1; gap 2
    gaps = rank_gaps(lambda h: h, feats, IDENTITY, None, torch.tensor([1, 2]))
    assert gaps.tolist() == [2.0, 2.0]
    # names permuted by (1, 2, 0): w' = (h1, h2, h0). image 0: w' = (2, 1, 3), named top 2; removing axis 2 leaves
    # w' = (2, 0, 3): rank 1; removing axis 0 (the control) gives w' = (2, 1, 0): rank 3 -> gap -2.
    # image 1: w' = (3, 2, 1), named top 0; removing axis 0 -> (3, 2, 0): rank 1; control axis 1 -> (0, 2, 1): rank 3
    null = rank_gaps(lambda h: h, feats, IDENTITY, None, torch.tensor([0, 1]), torch.tensor([1, 2, 0]))
    assert null.tolist() == [-2.0, -2.0]
    assert rank_gaps(lambda h: h, feats, IDENTITY, None, torch.tensor([0, 2])).isnan().tolist() == [True, False]


def test_the_summary_passes_a_faithful_explainer_and_fails_one_that_ignores_the_directions():
    g = torch.Generator().manual_seed(0)
    feats = torch.rand(200, 4, generator=g)  # axes 0-2 carry the concepts, axis 3 does not
    directions = torch.eye(4)[:3]
    # faithful: weights are the concept axes -> removing the top concept's own axis always sinks it to rank 3 while
    # a random other axis leaves it on top: gap exactly 2 on every image; the null's gap is <= 0 on every image
    good = rank_faithfulness(lambda h: h[:, :3], feats, directions, None, seed=1)
    assert good["gap"] == 2.0 and good["gap_null"] <= 0.0 and good["excess"] >= 2.0
    assert len(good["excess_per_image"]) == 200 and good["images"] == 200
    # unfaithful: the weights read axis 3 only (a fixed ranking scaled by it), untouched by any concept direction
    bad = rank_faithfulness(lambda h: h[:, 3:] * torch.tensor([[1.0, 2.0, 3.0]]), feats, directions, None, seed=1)
    assert bad["gap"] == 0.0 and bad["gap_null"] == 0.0 and bad["excess"] == 0.0
    with pytest.raises(ValueError, match="NaN rows"):
        rank_faithfulness(lambda h: h[:, :3], feats, torch.full((3, 4), float("nan")), None)
