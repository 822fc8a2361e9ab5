"""Faithfulness of the concept "why": removing the top concept's direction, against a random concept's."""

import math

import pytest
import torch

from xbyol.explain.concept_faithfulness import (
    average_precision,
    concept_directions,
    direction_removal_faithfulness,
    project_out,
)


def test_concept_directions_hand_values():
    feats = torch.tensor([[2.0, 0.0], [0.0, 2.0], [0.0, 0.0]])
    targets = torch.tensor([[True, False, True], [False, True, True], [False, False, True]])
    d = concept_directions(feats, targets)
    # concept 0: (2, 0) - mean((0, 2), (0, 0)) = (2, -1); concept 1: (0, 2) - (1, 0) = (-1, 2)
    torch.testing.assert_close(d[0], torch.tensor([2.0, -1.0]) / math.sqrt(5))
    torch.testing.assert_close(d[1], torch.tensor([-1.0, 2.0]) / math.sqrt(5))
    assert torch.isnan(d[2]).all()  # every image has concept 2: no direction


def test_project_out_removes_only_the_direction():
    h = torch.tensor([[3.0, 4.0, 5.0]])
    out = project_out(h, torch.tensor([0.0, 2.0, 0.0]))  # unit (0, 1, 0) after normalising
    assert out.tolist() == [[3.0, 0.0, 5.0]]
    u = torch.tensor([1.0, 1.0, 0.0])
    assert project_out(h, u) @ u == pytest.approx(0.0, abs=1e-6)
    # with a centre, the coordinate along the axis becomes the centre's (2 here), the rest is kept
    assert project_out(h, torch.tensor([0.0, 1.0, 0.0]), center=torch.tensor([9.0, 2.0, 9.0])).tolist() == [[3.0, 2.0, 5.0]]


def test_average_precision_hand_value_and_sklearn():
    # ranking: pos, neg, pos, neg -> precisions at the positives 1/1 and 2/3
    scores = torch.tensor([0.9, 0.8, 0.7, 0.1])
    pos = torch.tensor([True, False, True, False])
    assert average_precision(scores, pos) == pytest.approx((1 + 2 / 3) / 2)
    assert math.isnan(average_precision(scores, torch.zeros(4, dtype=torch.bool)))
    from sklearn.metrics import average_precision_score

    g = torch.Generator().manual_seed(0)
    s, p = torch.rand(200, generator=g), torch.rand(200, generator=g) > 0.7
    assert average_precision(s, p) == pytest.approx(average_precision_score(p.numpy(), s.numpy()))


def _synthetic(n=400, k=4, noise=0.3, seed=0):
    """Representations that carry concept j along axis j (plus 4 nuisance axes)."""
    g = torch.Generator().manual_seed(seed)
    targets = torch.rand(n, k, generator=g) > 0.6
    feats = torch.cat([targets.float(), torch.zeros(n, 4)], 1) + noise * torch.randn(n, k + 4, generator=g)
    return feats, targets


def test_a_faithful_explanation_loses_its_top_concept_when_its_direction_is_removed():
    train_x, train_t = _synthetic(seed=0)
    test_x, test_t = _synthetic(seed=1)
    directions = concept_directions(train_x, train_t)

    def reads_the_concepts(h):  # weights = softmax over the concept axes
        return (h[:, :4] / 0.2).softmax(1)

    r = direction_removal_faithfulness(reads_the_concepts, test_x, test_t, directions)
    assert r["images"] == 400 and r["concepts"] == 4
    assert r["score_drop_top"] > r["score_drop_random"] + 0.3
    assert r["score_top_wins"] > 0.95
    assert r["ap_drop_top"] > r["ap_drop_random"] + 0.2
    assert r["ap_top_wins"] == 1.0


def test_an_explanation_that_ignores_the_concepts_is_not_judged_faithful():
    train_x, train_t = _synthetic(seed=0)
    test_x, test_t = _synthetic(seed=1)
    directions = concept_directions(train_x, train_t)
    mix = torch.randn(4, 4, generator=torch.Generator().manual_seed(2))

    def reads_nuisance_axes(h):  # the "why" comes from axes that carry no concept
        return (h[:, 4:] @ mix / 0.2).softmax(1)

    r = direction_removal_faithfulness(reads_nuisance_axes, test_x, test_t, directions)
    assert abs(r["score_drop_top"]) < 0.05 and abs(r["ap_drop_top"]) < 0.05
    assert r["score_top_wins"] < 0.7
