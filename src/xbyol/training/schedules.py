"""Schedules indexed by the global optimiser step, so a resume needs only ``step``."""

from __future__ import annotations

import math


def tau_at(step: int, total_steps: int, tau_base: float) -> float:
    """BYOL target momentum: ``1 - (1 - tau_base) * (cos(pi k / K) + 1) / 2``.

    Evaluated once per optimiser step ``k`` (0-based), ``K = total_steps``; reaches 1
    at ``k = K`` (Grill et al. 2020, App. A; DeepMind byol/utils/schedules.py).
    """
    if total_steps <= 0:
        raise ValueError(f"total_steps must be positive, got {total_steps}")
    k = min(max(step, 0), total_steps)
    return float(1.0 - (1.0 - tau_base) * (math.cos(math.pi * k / total_steps) + 1.0) / 2.0)


def lr_at(step: int, total_steps: int, base_lr: float, warmup_steps: int, final_lr: float = 0.0) -> float:
    """Linear warm-up from 0 over ``warmup_steps``, then cosine decay to ``final_lr`` at ``total_steps``."""
    if total_steps <= 0:
        raise ValueError(f"total_steps must be positive, got {total_steps}")
    if warmup_steps > 0 and step < warmup_steps:
        return float(base_lr * (step + 1) / warmup_steps)
    span = max(total_steps - warmup_steps, 1)
    progress = min(max(step - warmup_steps, 0), span) / span
    return float(final_lr + (base_lr - final_lr) * 0.5 * (1.0 + math.cos(math.pi * progress)))
