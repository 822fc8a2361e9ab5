"""Optimisers: LARS (You et al. 2017, as used by BYOL), SGD and AdamW, with biases and
normalisation parameters excluded from weight decay (and from LARS adaptation)."""

from __future__ import annotations

from typing import Any, Iterable

import torch
from torch import nn

from xbyol.config import ConfigError, TrainCfg


class LARS(torch.optim.Optimizer):
    """SGD with momentum and a layer-wise trust ratio ``eta * ||w|| / ||g + wd w||``.

    Parameter groups with ``lars_exclude=True`` (biases, norm layers) get neither weight
    decay nor adaptation, as in BYOL (DeepMind ``byol/utils/optimizers.py``).

    Args:
        params: parameters or groups.
        lr: learning rate.
        momentum: momentum factor.
        weight_decay: L2 coefficient added to the gradient before the trust ratio.
        eta: trust coefficient (1e-3 in the paper).
    """

    def __init__(self, params: Iterable, lr: float, momentum: float = 0.9, weight_decay: float = 0.0, eta: float = 1e-3) -> None:
        defaults = dict(lr=lr, momentum=momentum, weight_decay=weight_decay, eta=eta, lars_exclude=False)
        super().__init__(params, defaults)

    @torch.no_grad()
    def step(self, closure=None):  # type: ignore[override]
        loss = closure() if closure is not None else None
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                g = p.grad
                if not group["lars_exclude"]:
                    if group["weight_decay"] != 0:
                        g = g.add(p, alpha=group["weight_decay"])
                    w_norm = torch.linalg.vector_norm(p)
                    g_norm = torch.linalg.vector_norm(g)
                    trust = torch.where(
                        (w_norm > 0) & (g_norm > 0), group["eta"] * w_norm / g_norm, torch.ones_like(w_norm)
                    )
                    g = g.mul(trust)
                state = self.state[p]
                if "momentum_buffer" not in state:
                    state["momentum_buffer"] = torch.clone(g).detach()
                else:
                    state["momentum_buffer"].mul_(group["momentum"]).add_(g)
                p.add_(state["momentum_buffer"], alpha=-group["lr"])
        return loss


def split_decay_groups(module: nn.Module) -> tuple[list[nn.Parameter], list[nn.Parameter]]:
    """(regular, excluded): parameters of dimension <= 1 (biases, norm scales) are excluded."""
    regular: list[nn.Parameter] = []
    excluded: list[nn.Parameter] = []
    for p in module.parameters():
        if not p.requires_grad:
            continue
        (excluded if p.ndim <= 1 else regular).append(p)
    return regular, excluded


def build_optimizer(module: nn.Module, cfg: TrainCfg, lr: float) -> torch.optim.Optimizer:
    """The optimiser named by ``cfg.optimizer`` over the trainable parameters of ``module``.

    Every group carries ``lr_scale``: the trainer sets a group's learning rate to the schedule's value times it.
    With ``cfg.predictor_lr_scale != 1`` the parameters of ``module.predictor`` get their own groups at that
    scale (a method without a ``predictor`` attribute is refused with a :class:`ConfigError`).
    """
    scale = cfg.predictor_lr_scale
    predictor = getattr(module, "predictor", None)
    if scale != 1.0 and not isinstance(predictor, nn.Module):
        raise ConfigError(f"train.predictor_lr_scale: {scale!r} needs a method with a predictor; "
                          f"{type(module).__name__} has none (leave it at 1)")
    scaled = {id(p) for p in predictor.parameters()} if scale != 1.0 and predictor is not None else set()
    regular, excluded = split_decay_groups(module)
    if not regular and not excluded:
        raise ValueError("the method has no trainable parameters")
    lars = cfg.optimizer == "lars"
    groups: list[dict[str, Any]] = []
    for params, decay in ((regular, cfg.weight_decay), (excluded, 0.0)):
        parts = [(1.0, [p for p in params if id(p) not in scaled])]
        if scaled:
            parts.append((scale, [p for p in params if id(p) in scaled]))
        for group_scale, members in parts:
            group: dict[str, Any] = {"params": members, "weight_decay": decay, "lr_scale": group_scale}
            if lars and params is excluded:
                group["lars_exclude"] = True
            groups.append(group)
    if lars:
        return LARS(groups, lr=lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay, eta=cfg.lars_eta)
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=lr, momentum=cfg.momentum)
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(groups, lr=lr)
    raise ValueError(f"train.optimizer: unknown optimiser {cfg.optimizer!r}; choose lars, sgd or adamw")
