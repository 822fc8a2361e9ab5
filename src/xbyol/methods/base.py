"""The method contract: a module that turns a batch into a loss. No loop inside.

The trainer, per optimiser step::

    out = method.training_step(batch)        # batch: collated samples on the device
    out["loss"].backward(); optimizer.step()
    tau = tau_at(step, total_steps, cfg.method.tau_base)   # the trainer owns the schedules
    logs = method.after_optimizer_step(tau)   # e.g. the EMA update with momentum tau

``training_step`` returns a dict with ``"loss"`` (scalar tensor) and any number of
scalar tensors to log (``"loss_byol"``, ...). Tensors under keys starting with
``"embed/"`` (``[B, D]``, detached) are the embeddings the trainer's collapse monitors
read every ``train.monitor_every`` steps (per-dimension std, effective rank).

For evaluation and explanation a method exposes ``backbone`` (the online encoder,
whose ``forward`` gives the representation ``[B, D]``) and ``encode(images)``.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from xbyol.config import Config, ConfigError
from xbyol.data.base import SampleDataset
from xbyol.registry import Registry

METHODS: Registry["Method"] = Registry("method")


class Method(nn.Module):
    """Base class of training objectives.

    Args:
        cfg: the run's config.
        dataset: the training dataset (for its metadata: concept vocabulary, captions, ...).
    """

    backbone: nn.Module

    def __init__(self, cfg: Config, dataset: SampleDataset) -> None:
        super().__init__()
        self.cfg = cfg

    def training_step(self, batch: dict[str, Any]) -> dict[str, torch.Tensor]:  # pragma: no cover - abstract
        raise NotImplementedError

    @torch.no_grad()
    def after_optimizer_step(self, tau: float) -> dict[str, float]:
        """Called after every optimiser step with that step's EMA momentum ``tau`` (from the
        trainer's schedule); returns scalars to log."""
        return {}

    @torch.no_grad()
    def encode(self, images: torch.Tensor) -> torch.Tensor:
        """Representation ``[B, D]`` of preprocessed float images ``[B, 3, H, W]``."""
        return self.backbone(images)

    def extra_state(self) -> dict[str, Any]:
        """Non-tensor state to store in checkpoints (must be weights_only-loadable)."""
        return {}


def check_method_name(name: str) -> None:
    """Raise :class:`ConfigError` naming ``method.name`` and the registered methods unless ``name`` is one."""
    if name not in METHODS:
        raise ConfigError(f"method.name: {name!r} is not allowed; choose one of {', '.join(METHODS.names())}")


def create_method(cfg: Config, dataset: SampleDataset) -> Method:
    """Build the method named by ``cfg.method.name``."""
    check_method_name(cfg.method.name)
    return METHODS.create(cfg.method.name, cfg=cfg, dataset=dataset)
