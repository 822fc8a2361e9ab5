"""Progressive resizing: smaller BYOL views for the first part of a run (``aug.early_size``).

A step's arithmetic grows with the square of the view side, so views of side ``early_size``
instead of ``data.image_size`` for the first ``aug.early_fraction`` of the steps buy more steps
in the same time (the fully convolutional backbones end in global pooling, so they take either
size); the rest of the run, and every evaluation, sees the full size. The trainer installs
:class:`EarlyViewSize` as a step callback when ``aug.early_size`` is set. Whether it pays is
measured on the Fashion-MNIST validation split (BENCHMARKS.md, "Fashion-MNIST").
"""

from __future__ import annotations

from torch import nn

from xbyol.augment import ByolViews
from xbyol.config import AugCfg, ConfigError
from xbyol.training.callbacks import Callback, StepInfo


def early_steps(fraction: float, total: int) -> int:
    """Steps made with the small views: ``round(fraction * total)``."""
    return round(fraction * total)


class EarlyViewSize(Callback):
    """Give ``method.views`` side ``early_size`` before step ``early_steps(fraction, total)`` and the full side after.

    Args:
        method: a method whose ``views`` attribute is a :class:`~xbyol.augment.ByolViews` (BYOL, xbyol).
        aug: the run's augmentation settings (the small views use them unchanged, with the blur kernel sized for
            the small side).
        early_size: side of the early views, pixels.
        fraction: the part of the run's steps made with them.
    """

    def __init__(self, method: nn.Module, aug: AugCfg, early_size: int, fraction: float) -> None:
        views = getattr(method, "views", None)
        if not isinstance(views, ByolViews):
            raise ConfigError(f"aug.early_size: {type(method).__name__} makes no BYOL views to resize; leave it null")
        if early_size >= views.image_size:
            raise ConfigError(f"aug.early_size: {early_size} must be below data.image_size ({views.image_size})")
        self.method, self.fraction = method, fraction
        self.full, self.early = views, ByolViews(aug, early_size)
        self.switch_at = 0

    def on_train_start(self, step: int, total: int) -> None:
        self.switch_at = early_steps(self.fraction, total)
        self.method.views = self.early if step < self.switch_at else self.full

    def on_step_end(self, step: int, info: StepInfo) -> None:
        if step == self.switch_at:
            self.method.views = self.full
