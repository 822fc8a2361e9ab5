import pytest
import torch
from torch import nn

from xbyol.models.ema import copy_as_target, update_momentum


def test_update_momentum_matches_the_formula_and_copies_buffers():
    torch.manual_seed(0)
    online = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4))
    target = copy_as_target(online)
    with torch.no_grad():
        for p in target.parameters():
            p.fill_(1.0)
    online(torch.randn(8, 3))  # changes online BN running stats
    expected = [0.9 * 1.0 + 0.1 * p.detach().clone() for p in online.parameters()]
    update_momentum(online, target, 0.9)
    for e, t in zip(expected, target.parameters()):
        torch.testing.assert_close(t, e)
    torch.testing.assert_close(target[1].running_mean, online[1].running_mean)
    assert all(not p.requires_grad for p in target.parameters())


def test_tau_one_keeps_target_and_tau_zero_copies_online():
    online = nn.Linear(2, 2)
    target = copy_as_target(nn.Linear(2, 2))
    before = [p.clone() for p in target.parameters()]
    update_momentum(online, target, 1.0)
    for b, t in zip(before, target.parameters()):
        assert torch.equal(b, t)
    update_momentum(online, target, 0.0)
    for o, t in zip(online.parameters(), target.parameters()):
        assert torch.equal(o.detach(), t)


def test_tau_out_of_range_is_an_error():
    with pytest.raises(ValueError, match="tau"):
        update_momentum(nn.Linear(1, 1), nn.Linear(1, 1), 1.5)
