import pytest
import torch
from torch import nn

from xbyol.config import TrainCfg
from xbyol.training.optim import LARS, build_optimizer, split_decay_groups


def test_lars_step_matches_hand_computation():
    w = nn.Parameter(torch.tensor([3.0, 4.0]))  # ||w|| = 5
    b = nn.Parameter(torch.tensor([1.0]))
    opt = LARS([{"params": [w]}, {"params": [b], "lars_exclude": True, "weight_decay": 0.0}],
               lr=0.1, momentum=0.9, weight_decay=0.01, eta=0.001)
    w.grad = torch.tensor([0.0, 1.0])
    b.grad = torch.tensor([2.0])
    opt.step()
    g = torch.tensor([0.0, 1.0]) + 0.01 * torch.tensor([3.0, 4.0])  # [0.03, 1.04]
    trust = 0.001 * 5.0 / torch.linalg.vector_norm(g)
    torch.testing.assert_close(w.detach(), torch.tensor([3.0, 4.0]) - 0.1 * trust * g)
    torch.testing.assert_close(b.detach(), torch.tensor([1.0 - 0.1 * 2.0]))  # excluded: plain SGD


def test_lars_momentum_accumulates():
    w = nn.Parameter(torch.tensor([1.0]))
    opt = LARS([{"params": [w], "lars_exclude": True}], lr=1.0, momentum=0.5)
    for _ in range(2):
        w.grad = torch.tensor([1.0])
        opt.step()
    # buffers: 1, then 0.5*1 + 1 = 1.5 -> w = 1 - 1 - 1.5
    assert w.item() == pytest.approx(-1.5)


def test_biases_and_norm_parameters_are_excluded_from_decay():
    m = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.Linear(4, 2, bias=False))
    regular, excluded = split_decay_groups(m)
    assert [p.shape for p in regular] == [torch.Size([4, 3]), torch.Size([2, 4])]
    assert len(excluded) == 3  # linear bias, bn weight, bn bias
    for name in ("lars", "sgd", "adamw"):
        opt = build_optimizer(m, TrainCfg(optimizer=name, weight_decay=0.1), lr=0.1)
        decays = sorted(g["weight_decay"] for g in opt.param_groups)
        assert decays == [0.0, 0.1]


def test_frozen_parameters_are_not_optimised():
    m = nn.Linear(2, 2)
    for p in m.parameters():
        p.requires_grad_(False)
    with pytest.raises(ValueError, match="no trainable parameters"):
        build_optimizer(m, TrainCfg(), lr=0.1)
