"""SCS, concept accuracy and SSCS on hand-made inputs with hand-computed values."""

from __future__ import annotations

import math

import pytest
import torch

from xbyol.eval.concept_scores import (
    IGNORE,
    chance_scores,
    concept_accuracy,
    dense_predictions,
    iou_counts,
    masks_to_label_map,
    miou_from_counts,
    pooled_mask_scores,
    scs_per_image,
    semantic_consistency,
    sscs,
    sscs_counts,
)

CONCEPTS = torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]])
R2 = math.sqrt(0.5)


def test_scs_hand_values():
    reps = torch.tensor([[2.0, 0.0], [1.0, 1.0], [0.0, 3.0]])
    t = torch.tensor([[True, False, False], [True, True, False], [False, False, False]])
    match, nonmatch = scs_per_image(reps, CONCEPTS, t)
    assert match[:2].tolist() == pytest.approx([1.0, R2])
    assert nonmatch.tolist() == pytest.approx([-0.5, -R2, 1 / 3])  # image 2: mean of (0, 1, 0)
    assert math.isnan(match[2].item())
    s = semantic_consistency(reps, CONCEPTS, t)
    assert s["scs"] == pytest.approx((1 + R2) / 2)
    assert s["scs_nonmatch"] == pytest.approx((-0.5 - R2 + 1 / 3) / 3)
    assert s["scs_margin"] == pytest.approx(((1 + 0.5) + (R2 + R2)) / 2)  # images with both kinds only
    assert s["n_images"] == 2


def test_concept_accuracy_hand_values():
    # 4 concepts: group "shape" = {0, 1, 2}, group "colour" = {3}
    scores = torch.tensor([[0.9, 0.1, 0.0, 0.5], [0.2, 0.3, 0.8, 0.1], [0.1, 0.7, 0.2, 0.0]])
    t = torch.tensor([[True, False, False, True], [False, True, False, True], [True, True, False, False]])
    acc = concept_accuracy(scores, t, {"shape": [0, 1, 2], "colour": [3]})
    # image 0 picks 0 (true), image 1 picks 2 (false), image 2 picks 1 (true; two true shapes)
    assert acc["shape"] == pytest.approx(2 / 3)
    assert acc["shape_chance"] == pytest.approx((1 / 3 + 1 / 3 + 2 / 3) / 3)
    assert acc["colour"] == pytest.approx(1.0)  # image 2 has no colour: not counted
    assert acc["colour_chance"] == pytest.approx(1.0)


def test_label_map_background_and_overlap():
    masks = torch.zeros(1, 2, 1, 3, dtype=torch.bool)
    masks[0, 0, 0, 0] = masks[0, 1, 0, 1] = True
    masks[0, 0, 0, 2] = masks[0, 1, 0, 2] = True  # overlap -> ignored
    assert masks_to_label_map(masks)[0, 0].tolist() == [1, 2, IGNORE]


def _masks_case():
    torch.manual_seed(0)
    masks = torch.zeros(3, 2, 8, 8, dtype=torch.bool)
    masks[0, 0, 1:4, 1:4] = True
    masks[0, 1, 5:7, 4:8] = True
    masks[1, 1, 0:5, 0:3] = True
    masks[2, 0, 2:8, 2:8] = True
    return masks


def test_sscs_is_one_for_a_predictor_that_reproduces_the_masks():
    masks = _masks_case()
    scores = masks.float() * torch.rand(3, 2, 1, 1).add(0.5)  # any positive level inside, 0 outside
    out = sscs(scores, masks)
    assert out["miou"] == 1.0 and out["miou_concepts"] == 1.0


def test_sscs_hand_made_two_concept_case():
    # GT on a 2x3 image: A at (0,0),(0,1); B at (1,2); the rest background
    masks = torch.zeros(1, 2, 2, 3, dtype=torch.bool)
    masks[0, 0, 0, 0] = masks[0, 0, 0, 1] = True
    masks[0, 1, 1, 2] = True
    scores = torch.tensor([[[[0.9, 0.2, 0.1], [0.8, 0.1, 0.1]],    # concept A
                            [[0.1, 0.7, 0.3], [0.1, 0.2, 0.6]]]])  # concept B
    # best score [[.9A, .7B, .3B], [.8A, .2B, .6B]]; threshold .2 + .5 * (.9 - .2) = .55
    # prediction [[A, B, bg], [A, bg, B]]
    assert dense_predictions(scores)[0].tolist() == [[1, 2, 0], [1, 0, 2]]
    out = sscs(scores, masks)
    iou_bg, iou_a, iou_b = 2 / 3, 1 / 3, 1 / 2
    assert out["miou"] == pytest.approx((iou_bg + iou_a + iou_b) / 3)
    assert out["miou_concepts"] == pytest.approx((iou_a + iou_b) / 2)
    # with the ground-truth foreground only the concept identity is judged: A gets (0,0); (0,1) is B
    fg = masks.any(1)
    out_fg = sscs(scores, masks, foreground=fg)
    assert out_fg["miou"] == pytest.approx((1.0 + 1 / 2 + 1 / 2) / 3)


def test_sscs_upsamples_coarse_scores():
    masks = torch.zeros(1, 2, 4, 4, dtype=torch.bool)
    masks[0, 0, :2, :2] = True
    masks[0, 1, 2:, 2:] = True
    coarse = torch.tensor([[[[1.0, 0.0], [0.0, 0.0]], [[0.0, 0.0], [0.0, 1.0]]]])  # one cell per quadrant
    assert sscs(coarse, masks)["miou"] == 1.0


def test_chance_level_with_ground_truth_foreground_is_one_third_per_concept():
    # two concepts of equal area, each pixel's concept drawn uniformly: IoU_A = (a/2) / (a + b/2) = 1/3
    # when a = b, and the given foreground makes the background IoU exactly 1
    masks = torch.zeros(4, 2, 64, 64, dtype=torch.bool)
    masks[:, 0, :, :24] = True
    masks[:, 1, :, 24:48] = True  # columns 48.. are background
    scores = chance_scores(masks, (64, 64), torch.Generator().manual_seed(0))
    assert scores.shape == (4, 2, 64, 64) and 0 <= scores.min() and scores.max() < 1
    inter, union = sscs_counts(scores, masks, foreground=masks.any(1))
    miou, iou = miou_from_counts(inter, union)
    assert iou.tolist() == pytest.approx([1.0, 1 / 3, 1 / 3], abs=0.01)
    assert miou == pytest.approx(5 / 9, abs=0.01)
    g1, g2 = torch.Generator().manual_seed(0), torch.Generator().manual_seed(0)
    assert torch.equal(chance_scores(masks, (4, 4), g1), chance_scores(masks, (4, 4), g2))  # reproducible


def test_resolution_ceiling_is_one_for_cell_aligned_masks_and_below_for_finer_ones():
    masks = torch.zeros(1, 2, 4, 4, dtype=torch.bool)
    masks[0, 0, :2, :2] = True  # exactly one cell of a 2 x 2 map
    masks[0, 1, 2:, 2:] = True
    pooled = pooled_mask_scores(masks, (2, 2))
    assert pooled[0, 0].tolist() == [[1.0, 0.0], [0.0, 0.0]]
    assert sscs(pooled, masks)["miou"] == 1.0
    # one pixel of concept 0 in the top-left cell: the cell holds 0.25, below the image's
    # background level 0 + 0.5 * (1 - 0), so a 2 x 2 map cannot show it even when perfect
    small = torch.zeros(1, 2, 4, 4, dtype=torch.bool)
    small[0, 0, 0, 0] = True
    small[0, 1, 2:, 2:] = True
    pooled = pooled_mask_scores(small, (2, 2))
    assert pooled[0, 0, 0, 0].item() == 0.25
    out = sscs(pooled, small)
    assert out["miou_concepts"] == pytest.approx((0 + 1) / 2)
    assert out["miou"] == pytest.approx((11 / 12 + 0 + 1) / 3)  # background: 11 true of 12 predicted
    assert sscs(pooled_mask_scores(small, (4, 4)), small)["miou"] == 1.0  # at full resolution the ceiling is 1


def test_iou_is_accumulated_over_the_dataset_not_averaged_per_image():
    gt = torch.tensor([[[1, 1, 1, 1]], [[1, 0, 0, 0]]])
    pred = torch.tensor([[[1, 1, 1, 1]], [[0, 0, 0, 0]]])
    inter, union = iou_counts(pred, gt, 2)
    assert inter.tolist() == [3.0, 4.0] and union.tolist() == [4.0, 5.0]
    miou, iou = miou_from_counts(inter, union)
    assert miou == pytest.approx((3 / 4 + 4 / 5) / 2)


def test_class_never_seen_nor_predicted_is_skipped():
    gt = torch.tensor([[[0, 1]]])
    miou, iou = miou_from_counts(*iou_counts(gt, gt, 3))
    assert miou == 1.0 and math.isnan(iou[2].item())


def test_bad_shapes_raise():
    with pytest.raises(ValueError):
        semantic_consistency(torch.zeros(2, 3), CONCEPTS, torch.zeros(2, 3, dtype=torch.bool))
    with pytest.raises(ValueError, match="background level"):
        dense_predictions(torch.zeros(1, 2, 2, 2), background=1.5)
