import math

import pytest
import torch

from xbyol.losses.cross_modal import cross_modal_byol_loss, cross_modal_byol_terms


def test_hand_computed_value():
    p_image = torch.tensor([[1.0, 0.0]])
    z_text = torch.tensor([[0.0, 3.0]])  # orthogonal to p_image: 2 - 2*0 = 2
    p_text = torch.tensor([[1.0, 1.0]])
    z_image = torch.tensor([[5.0, 0.0]])  # cos = 1/sqrt(2): 2 - sqrt(2)
    i2t, t2i = cross_modal_byol_terms(p_image, p_text, z_image, z_text)
    assert i2t.tolist() == pytest.approx([2.0])
    assert t2i.tolist() == pytest.approx([2.0 - math.sqrt(2.0)])
    loss = cross_modal_byol_loss(p_image, p_text, z_image, z_text)
    assert loss.item() == pytest.approx(4.0 - math.sqrt(2.0))


def test_batch_mean_of_summed_directions():
    torch.manual_seed(0)
    p_i, p_t, z_i, z_t = (torch.randn(5, 8) for _ in range(4))
    cos = torch.nn.functional.cosine_similarity
    expected = ((2 - 2 * cos(p_i, z_t)) + (2 - 2 * cos(p_t, z_i))).mean()
    assert cross_modal_byol_loss(p_i, p_t, z_i, z_t).item() == pytest.approx(expected.item(), abs=1e-6)


def test_zero_when_predictions_match_targets_and_range():
    z_i, z_t = torch.randn(4, 6), torch.randn(4, 6)
    assert cross_modal_byol_loss(2 * z_t, 3 * z_i, z_i, z_t).item() == pytest.approx(0.0, abs=1e-6)
    assert cross_modal_byol_loss(-z_t, -z_i, z_i, z_t).item() == pytest.approx(8.0, abs=1e-5)


def test_stop_gradient_on_targets():
    p_i, p_t = torch.randn(3, 4, requires_grad=True), torch.randn(3, 4, requires_grad=True)
    z_i, z_t = torch.randn(3, 4, requires_grad=True), torch.randn(3, 4, requires_grad=True)
    cross_modal_byol_loss(p_i, p_t, z_i, z_t).backward()
    assert p_i.grad is not None and p_i.grad.abs().sum() > 0
    assert p_t.grad is not None and p_t.grad.abs().sum() > 0
    assert z_i.grad is None and z_t.grad is None


def test_bad_shapes_raise():
    with pytest.raises(ValueError, match="one shape"):
        cross_modal_byol_loss(torch.randn(3, 4), torch.randn(3, 4), torch.randn(3, 5), torch.randn(3, 4))
