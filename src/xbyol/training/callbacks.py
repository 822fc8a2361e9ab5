"""Step callbacks: code that watches a training run without reaching into the trainer.

Pass them as ``train(cfg, callbacks=[...])``. Within one optimiser step the trainer runs
the forward and backward passes, the optimiser, the method's ``after_optimizer_step``
(the EMA update), then :meth:`Callback.on_step_end`; at a log interval it then writes the
``metrics.csv`` row and calls :meth:`Callback.on_log` with it (rank 0 only). Benchmarks
time steps and profile runs through these hooks; the progress display is one too.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch


@dataclass
class StepInfo:
    """What one optimiser step did.

    Attributes:
        total: the run's total optimiser steps.
        lr: the learning rate the step used.
        images: images the step trained on, over all processes.
        outputs: the method's ``training_step`` outputs (device tensors: reading one waits for the device).
        logs: the scalars ``after_optimizer_step`` returned (e.g. ``tau``).
    """

    total: int
    lr: float
    images: int
    outputs: dict[str, torch.Tensor]
    logs: dict[str, float]


class Callback:
    """Hooks called by the trainer; each does nothing unless a subclass overrides it."""

    def on_train_start(self, step: int, total: int) -> None:
        """Before the first step of this session (``step`` > 0 on a resume)."""

    def on_step_end(self, step: int, info: StepInfo) -> None:
        """After optimiser step ``step`` (1-based) and the method's EMA update, on every process."""

    def on_log(self, step: int, row: dict[str, Any]) -> None:
        """After the ``metrics.csv`` row of ``step`` is written (rank 0 only)."""

    def on_train_end(self, step: int, status: str) -> None:
        """When the session ends at ``step``: finished, stopped, interrupted, diverged or failed."""
