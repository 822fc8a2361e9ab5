"""Localisation metrics on hand-made heatmaps and masks with known answers."""

import math

import pytest
import torch

from xbyol.metrics import (
    blank_maps,
    class_mean,
    default_tolerance,
    energy_pointing_game,
    mask_bbox,
    mask_iou,
    pointing_game,
    pointing_location,
    relevance_mass,
    relevance_rank,
)

ALL = [pointing_game, energy_pointing_game, mask_iou, relevance_mass, relevance_rank]


def _mask() -> torch.Tensor:
    """8x8 mask, rows 2..4 x cols 1..5: 15 pixels."""
    m = torch.zeros(1, 8, 8, dtype=torch.bool)
    m[0, 2:5, 1:6] = True
    return m


@pytest.mark.parametrize("fn", ALL)
def test_perfect_heatmap_scores_one(fn):
    m = _mask()
    assert fn(m.float(), m).tolist() == [1.0]


@pytest.mark.parametrize("fn", ALL)
def test_inverted_heatmap_scores_zero(fn):
    m = _mask()
    assert fn((~m).float(), m).tolist() == [0.0]


@pytest.mark.parametrize("fn", ALL)
def test_empty_mask_is_nan(fn):
    m = _mask()
    masks = torch.stack([m[0], torch.zeros(8, 8, dtype=torch.bool)])
    out = fn(masks.float() + 0.5, masks)
    assert out.shape == (2,)
    assert not math.isnan(out[0].item())
    assert math.isnan(out[1].item())


@pytest.mark.parametrize("fn", ALL)
def test_non_finite_heatmap_is_nan_only_for_that_sample(fn):
    m = _mask().expand(2, 8, 8)
    h = m.float().clone()
    h[1, 0, 0] = float("nan")
    out = fn(h, m)
    assert out[0].item() == 1.0 and math.isnan(out[1].item())


def test_uniform_heatmap_gives_area_fraction():
    m = _mask()
    h = torch.ones(1, 8, 8)
    assert energy_pointing_game(h, m).item() == pytest.approx(15 / 64)
    assert relevance_mass(h, m).item() == pytest.approx(15 / 64)
    assert relevance_rank(h, m).item() == pytest.approx(15 / 64)  # expected value over tie breaks
    assert mask_iou(h, m).item() == pytest.approx(15 / 64)  # all tied: whole image highlighted
    assert math.isnan(pointing_game(h, m).item())  # a constant map points nowhere


def test_default_tolerance_scales_with_height():
    assert default_tolerance(224) == 15.0
    assert default_tolerance(32) == pytest.approx(15 * 32 / 224)


def test_pointing_game_tolerance_is_strict_euclidean():
    m = torch.zeros(1, 8, 8, dtype=torch.bool)
    m[0, 2, 2] = True
    h = torch.zeros(1, 8, 8)
    h[0, 2, 5] = 1.0  # 3 px right of the mask
    assert pointing_game(h, m, tolerance_px=4).item() == 1.0
    assert pointing_game(h, m, tolerance_px=2).item() == 0.0
    assert pointing_game(h, m, tolerance_px=3).item() == 0.0  # dist^2 < tol^2 is strict
    assert pointing_game(h, m, tolerance_px=3.01).item() == 1.0
    h2 = torch.zeros(1, 8, 8)
    h2[0, 5, 5] = 1.0  # diagonal, dist^2 = 18
    assert pointing_game(h2, m, tolerance_px=4.3).item() == 1.0  # 18.49
    assert pointing_game(h2, m, tolerance_px=4.2).item() == 0.0  # 17.64
    # Default at 8 px is 15 * 8 / 224 < 1: only the mask itself counts.
    assert pointing_game(h, m).item() == 0.0
    assert pointing_game(m.float(), m, tolerance_px=0).item() == 1.0


def test_pointing_game_huge_tolerance_hits_anywhere():
    m = torch.zeros(1, 8, 8, dtype=torch.bool)
    m[0, 0, 0] = True
    h = torch.zeros(1, 8, 8)
    h[0, 7, 7] = 1.0
    assert pointing_game(h, m, tolerance_px=1000).item() == 1.0


def test_pointing_game_scores_one_point_per_map_not_any_tied_maximum():
    m = torch.zeros(1, 8, 8, dtype=torch.bool)
    m[0, 0, 0] = True
    h = torch.zeros(2, 8, 8)
    h[:, 7, 7] = 1.0  # far maximum in both
    h[0, 0, 1] = 1.0  # sample 0: a tied maximum next to the mask, centre of mass (3.5, 4)
    h[1, 0, 1] = 0.9  # sample 1: near but below the maximum
    # tied pixels (0,1) and (7,7) are equally far (3.5^2 + 3^2) from (3.5, 4): the first in
    # row-major order, (0,1), is the point
    assert pointing_location(h).tolist() == [[0, 1], [7, 7]]
    assert pointing_game(h, m.expand(2, 8, 8), tolerance_px=1.5).tolist() == [1.0, 0.0]
    h[0, 6, 7] = 1.0  # a third tied pixel moves the centre of mass to (13/3, 5): (6,7) is nearest
    assert pointing_location(h[:1]).tolist() == [[6, 7]]
    assert pointing_game(h[:1], m, tolerance_px=1.5).tolist() == [0.0]


def test_pointing_location_of_a_plateau_is_its_centre_and_a_ring_does_not_point_into_its_hole():
    h = torch.zeros(2, 9, 9)
    h[0, 2:5, 3:8] = 1.0  # plateau rows 2..4, cols 3..7: centre (3, 5)
    h[1, 1:8, 1:8] = 1.0
    h[1, 2:7, 2:7] = 0.0  # ring around a hole centred at (4, 4)
    loc = pointing_location(h).tolist()
    assert loc[0] == [3, 5]
    assert loc[1] == [1, 4]  # nearest ring pixels to (4, 4) are (1,4), (4,1), (4,7), (7,4): first in row-major order
    hole = torch.zeros(1, 9, 9, dtype=torch.bool)
    hole[0, 3:6, 3:6] = True
    assert pointing_game(h[1:], hole, tolerance_px=0).item() == 0.0


def test_blank_and_non_finite_maps_are_nan_and_counted():
    m = _mask().expand(4, 8, 8)
    h = torch.rand(4, 8, 8, generator=torch.Generator().manual_seed(0))
    h[0] = 0.0  # all-zero map, e.g. Grad-CAM after its ReLU
    h[1] = 3.0  # any constant
    h[2, 4, 4] = float("inf")
    assert blank_maps(h).tolist() == [True, True, True, False]
    out = pointing_game(h, m, tolerance_px=1000)  # a huge tolerance would accept any point
    assert [math.isnan(v) for v in out.tolist()] == [True, True, True, False]
    assert out[3].item() == 1.0


def test_class_mean_averages_classes_then_pairs_mean_differs():
    # class 0: hits 1, 1, 1 (and one undefined); class 1: 0; class 2: 1, 0
    values = torch.tensor([1.0, 1.0, 1.0, math.nan, 0.0, 1.0, 0.0])
    classes = torch.tensor([0, 0, 0, 0, 1, 2, 2])
    assert class_mean(values, classes) == pytest.approx((1.0 + 0.0 + 0.5) / 3)
    assert float(values.nanmean()) == pytest.approx(4 / 6)  # the per-pair mean weighs class 0 thrice
    assert math.isnan(class_mean(torch.tensor([math.nan]), torch.tensor([3])))
    assert class_mean(torch.tensor([math.nan, 1.0]), torch.tensor([0, 1])) == 1.0  # a class with no defined value drops out
    with pytest.raises(ValueError, match="class_mean"):
        class_mean(torch.zeros(3), torch.zeros(2, dtype=torch.long))


def test_energy_bbox_uses_rows_then_columns():
    m = torch.zeros(1, 8, 8, dtype=torch.bool)
    m[0, 1, 1] = True
    m[0, 2, 6] = True  # box: rows 1..2, cols 1..6 (2 x 6, non-square)
    expected_box = torch.zeros(1, 8, 8, dtype=torch.bool)
    expected_box[0, 1:3, 1:7] = True
    assert torch.equal(mask_bbox(m), expected_box)
    h = torch.zeros(1, 8, 8)
    h[0, 1, 4] = 1.0  # inside the box
    h[0, 5, 2] = 3.0  # inside the transposed box [x1:x2, y1:y2] only
    h[0, 7, 7] = 4.0  # outside both
    assert energy_pointing_game(h, m, use_bbox=True).item() == pytest.approx(1 / 8)
    assert energy_pointing_game(h, m).item() == 0.0  # mask pixels themselves carry no energy


def test_energy_clamps_negative_values_and_zero_energy_is_nan():
    m = _mask()
    h = torch.full((1, 8, 8), -5.0)
    h[m] = 1.0
    assert energy_pointing_game(h, m).item() == 1.0
    assert math.isnan(energy_pointing_game(-torch.ones(1, 8, 8), m).item())


def test_relevance_mass_signed_and_absolute():
    m = torch.zeros(1, 2, 2, dtype=torch.bool)
    m[0, 0, 0] = True
    h = torch.tensor([[[2.0, -1.0], [0.0, 0.0]]])
    assert relevance_mass(h, m).item() == pytest.approx(2.0)  # 2 / (2 - 1)
    assert relevance_mass(h, m, absolute=True).item() == pytest.approx(2 / 3)
    assert math.isnan(relevance_mass(torch.tensor([[[1.0, -1.0], [0.0, 0.0]]]), m).item())


def test_relevance_rank_ties_counted_by_expectation():
    m = torch.zeros(1, 4, 4, dtype=torch.bool)
    m[0, 0, 0] = m[0, 0, 1] = True  # K = 2
    h = torch.zeros(1, 4, 4)
    h[0, 0, 0] = 2.0  # rank 1, in mask
    h[0, 0, 1] = 1.0  # tied with 3 pixels outside the mask
    h[0, 3, 0] = h[0, 3, 1] = h[0, 3, 2] = 1.0
    assert relevance_rank(h, m).item() == pytest.approx((1 + 1 * 1 / 4) / 2)


def test_mask_iou_top_fraction_and_threshold():
    m = torch.zeros(1, 4, 4, dtype=torch.bool)
    m[0, 0:2, 0:2] = True  # flat indices 0, 1, 4, 5
    h = (15 - torch.arange(16.0)).view(1, 4, 4)  # top row is the most salient
    assert mask_iou(h, m, top_fraction=0.25).item() == pytest.approx(2 / 6)  # {0,1,2,3}
    assert mask_iou(h, m, threshold=13.5).item() == pytest.approx(2 / 4)  # {0, 1}
    assert mask_iou(torch.arange(16.0).view(1, 4, 4), m, top_fraction=0.25).item() == 0.0
    # Zero relevance is never highlighted, even when the fraction asks for more pixels.
    assert mask_iou(m.float(), m, top_fraction=1.0).item() == 1.0
    with pytest.raises(ValueError, match="top_fraction"):
        mask_iou(h, m, top_fraction=0.0)


def test_batched_equals_per_sample():
    g = torch.Generator().manual_seed(0)
    h = torch.rand(4, 8, 8, generator=g)
    m = torch.rand(4, 8, 8, generator=g) > 0.7
    for fn in ALL:
        single = torch.cat([fn(h[i : i + 1], m[i : i + 1]) for i in range(4)])
        assert torch.equal(fn(h, m), single), fn.__name__


def test_accepts_channel_dim_and_rejects_bad_inputs():
    m = _mask()
    assert pointing_game(m.float()[:, None], m).item() == 1.0
    with pytest.raises(TypeError, match="bool"):
        pointing_game(m.float(), m.float())
    with pytest.raises(ValueError, match="shape"):
        energy_pointing_game(torch.ones(1, 4, 4), m)
    with pytest.raises(ValueError, match="tolerance"):
        pointing_game(m.float(), m, tolerance_px=-1)
