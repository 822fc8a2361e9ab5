import math

import pytest
import torch

from xbyol.losses.clip import MAX_LOG_SCALE, clamp_log_scale_, clip_loss, equal_caption_mask

EYE = torch.tensor([[1.0, 0.0], [0.0, 1.0]])


def test_hand_computed_matched_pairs():
    # logits = 2 * I: each row's CE is -log(e^2 / (e^2 + 1)) = log(1 + e^-2), both directions alike
    loss = clip_loss(EYE, 3 * EYE, logit_scale=2.0)
    assert loss.item() == pytest.approx(math.log(1 + math.exp(-2)), rel=1e-6)


def test_hand_computed_asymmetric():
    text = torch.tensor([[1.0, 0.0], [2.0, 0.0]])  # both captions point along image 0
    # logits = [[2, 2], [0, 0]]; image->text: log 2 for both rows
    # text->image rows [2, 0] and [2, 0] with targets 0 and 1: log(1+e^-2), log(1+e^2)
    expected = 0.5 * (math.log(2) + 0.5 * (math.log(1 + math.exp(-2)) + math.log(1 + math.exp(2))))
    assert clip_loss(EYE, text, 2.0).item() == pytest.approx(expected, rel=1e-6)


def test_soft_targets_for_equal_captions():
    text = torch.tensor([[1.0, 0.0], [2.0, 0.0]])
    pos = torch.ones(2, 2, dtype=torch.bool)
    # image->text: uniform targets over [2, 2] and [0, 0]: log 2 each
    # text->image: rows [2, 0], uniform target: log(1 + e^2) - 1 each
    expected = 0.5 * (math.log(2) + math.log(1 + math.exp(2)) - 1)
    assert clip_loss(EYE, text, 2.0, positives=pos).item() == pytest.approx(expected, rel=1e-6)
    # with only the diagonal positive it is CLIP's one-hot loss
    torch.manual_seed(0)
    a, b = torch.randn(6, 4), torch.randn(6, 4)
    eye = torch.eye(6, dtype=torch.bool)
    assert clip_loss(a, b, 5.0, positives=eye).item() == pytest.approx(clip_loss(a, b, 5.0).item(), rel=1e-6)


def test_equal_logits_give_log_batch():
    img = torch.ones(8, 4)
    assert clip_loss(img, img, 10.0).item() == pytest.approx(math.log(8), rel=1e-6)


def test_gradient_reaches_logit_scale_and_both_towers():
    log_scale = torch.tensor(math.log(1 / 0.07), requires_grad=True)
    img, txt = torch.randn(4, 3, requires_grad=True), torch.randn(4, 3, requires_grad=True)
    clip_loss(img, txt, log_scale.exp()).backward()
    assert log_scale.grad is not None and img.grad is not None and txt.grad is not None


def test_equal_caption_mask():
    m = equal_caption_mask(["a", "b", "a"])
    assert m.tolist() == [[True, False, True], [False, True, False], [True, False, True]]


def test_clamp():
    p = torch.nn.Parameter(torch.tensor(7.0))
    clamp_log_scale_(p)
    assert p.item() == pytest.approx(MAX_LOG_SCALE) and MAX_LOG_SCALE == pytest.approx(math.log(100))
    p.data.fill_(-1.0)
    clamp_log_scale_(p)
    assert p.item() == 0.0


def test_bad_inputs_raise():
    with pytest.raises(ValueError, match="one shape"):
        clip_loss(torch.randn(3, 4), torch.randn(2, 4), 1.0)
    with pytest.raises(ValueError, match="diagonal"):
        clip_loss(torch.randn(2, 4), torch.randn(2, 4), 1.0, positives=torch.zeros(2, 2, dtype=torch.bool))
