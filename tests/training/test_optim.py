import pytest
import torch
from torch import nn

from xbyol.config import ConfigError, TrainCfg
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


class _WithPredictor(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.backbone = nn.Linear(2, 2)
        self.predictor = nn.Linear(2, 2)


def test_predictor_lr_scale_puts_the_predictor_in_its_own_groups():
    m = _WithPredictor()
    opt = build_optimizer(m, TrainCfg(optimizer="sgd", weight_decay=0.1, predictor_lr_scale=10.0), lr=0.1)
    by_scale = {(g["lr_scale"], g["weight_decay"]): {id(p) for p in g["params"]} for g in opt.param_groups}
    assert by_scale == {
        (1.0, 0.1): {id(m.backbone.weight)}, (10.0, 0.1): {id(m.predictor.weight)},
        (1.0, 0.0): {id(m.backbone.bias)}, (10.0, 0.0): {id(m.predictor.bias)},
    }


def test_predictor_lr_scale_multiplies_the_trainers_rate(tmp_path, tiny_overrides):
    """One trainer step of plain SGD from the same init and views: scale 0 leaves the predictor at its init w0,
    scale 10 moves it 10x as far as scale 1; the other parameters move the same under every scale."""
    from xbyol.config import from_dict
    from xbyol.training import train

    weights = {}
    for scale in (0.0, 1.0, 10.0):
        cfg = from_dict({}, {**tiny_overrides, "out_dir": str(tmp_path), "name": f"s{scale}", "train.steps": 1,
                             "train.warmup_steps": 0, "train.optimizer": "sgd", "train.momentum": 0.0,
                             "train.lr": 0.1, "train.weight_decay": 0.0, "train.precision": "fp32",
                             "train.predictor_lr_scale": scale})
        state = torch.load(train(cfg) / "checkpoints" / "last.pt", weights_only=True)["method"]
        weights[scale] = {k: v.float() for k, v in state.items() if k.startswith(("predictor.", "projector."))}
    w0, w1, w10 = weights[0.0], weights[1.0], weights[10.0]
    pred = [k for k in w0 if k.startswith("predictor.") and k.endswith("weight")]
    assert pred
    for k in pred:
        assert (w1[k] - w0[k]).abs().max() > 0
        torch.testing.assert_close(w10[k] - w0[k], 10 * (w1[k] - w0[k]), rtol=1e-3, atol=1e-6)
    for k in (k for k in w0 if k.startswith("projector.") and k.endswith("weight")):
        torch.testing.assert_close(w0[k], w10[k])


def test_predictor_lr_scale_needs_a_predictor():
    with pytest.raises(ConfigError, match="train.predictor_lr_scale"):
        build_optimizer(nn.Linear(2, 2), TrainCfg(predictor_lr_scale=10.0), lr=0.1)
