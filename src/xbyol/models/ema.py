"""Exponential moving average of the online network into the target network."""

from __future__ import annotations

import copy

import torch
from torch import nn


@torch.no_grad()
def update_momentum(online: nn.Module, target: nn.Module, tau: float) -> None:
    """xi <- tau * xi + (1 - tau) * theta for every parameter, with fused foreach ops.

    Buffers (BatchNorm running statistics) are copied from the online network, as in
    the reference implementation, so the target's normalisation tracks the data.

    Args:
        online: the network being trained (theta).
        target: its EMA copy (xi), same architecture.
        tau: momentum in [0, 1]; 1 keeps the target unchanged.
    """
    if not 0.0 <= tau <= 1.0:
        raise ValueError(f"tau must be in [0, 1], got {tau}")
    t_params: list[torch.Tensor] = list(target.parameters())
    o_params = [p.detach() for p in online.parameters()]
    if len(t_params) != len(o_params):
        raise ValueError("online and target networks have different parameter lists")
    torch._foreach_mul_(t_params, tau)
    torch._foreach_add_(t_params, o_params, alpha=1.0 - tau)
    for tb, ob in zip(target.buffers(), online.buffers()):
        tb.copy_(ob)


def copy_as_target(online: nn.Module) -> nn.Module:
    """A deep copy of ``online`` with gradients disabled, to serve as the EMA target."""
    target = copy.deepcopy(online)
    for p in target.parameters():
        p.requires_grad_(False)
    return target
