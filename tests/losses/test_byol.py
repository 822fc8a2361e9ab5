import math

import pytest
import torch

from xbyol.losses.byol import byol_loss, byol_pair_loss


def test_pair_loss_hand_values():
    p = torch.tensor([[1.0, 0.0], [1.0, 0.0], [1.0, 0.0]])
    z = torch.tensor([[2.0, 0.0], [0.0, 3.0], [-1.0, 0.0]])
    # cos = 1, 0, -1  ->  2 - 2cos = 0, 2, 4
    torch.testing.assert_close(byol_pair_loss(p, z), torch.tensor([0.0, 2.0, 4.0]))


def test_symmetric_loss_sums_both_directions():
    p1 = torch.tensor([[1.0, 0.0]])
    p2 = torch.tensor([[0.0, 1.0]])
    z1 = torch.tensor([[1.0, 1.0]])
    z2 = torch.tensor([[0.0, 1.0]])
    # cos(p1, z2) = 0 -> 2 ; cos(p2, z1) = 1/sqrt(2) -> 2 - sqrt(2)
    expected = 2.0 + (2.0 - math.sqrt(2.0))
    assert byol_loss(p1, p2, z1, z2).item() == pytest.approx(expected, abs=1e-6)
    assert byol_loss(p1, p2, z1, z2).item() == pytest.approx(byol_loss(p2, p1, z2, z1).item(), abs=1e-6)


def test_no_gradient_reaches_the_target():
    p = torch.randn(4, 8, requires_grad=True)
    z = torch.randn(4, 8, requires_grad=True)
    byol_pair_loss(p, z).sum().backward()
    assert p.grad is not None and z.grad is None


def test_loss_decreases_under_gradient_steps_and_is_bounded():
    torch.manual_seed(0)
    p = torch.randn(16, 8, requires_grad=True)
    z = torch.randn(16, 8)
    opt = torch.optim.SGD([p], lr=1.0)
    first = None
    for _ in range(300):
        loss = byol_loss(p, p, z, z)
        first = first if first is not None else loss.item()
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert 0.0 <= loss.item() < first * 0.1 and first <= 8.0


def test_bad_shapes_raise():
    with pytest.raises(ValueError, match="same shape"):
        byol_pair_loss(torch.randn(2, 3), torch.randn(2, 4))
