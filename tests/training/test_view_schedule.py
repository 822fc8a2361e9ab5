"""Progressive resizing (aug.early_size): which view side each step of a run trains on."""

from __future__ import annotations

import pytest
from torch import nn

from xbyol.augment import ByolViews
from xbyol.config import AugCfg, ConfigError, from_dict
from xbyol.training.trainer import Trainer
from xbyol.training.view_schedule import EarlyViewSize


class _Method(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.views = ByolViews(AugCfg(), 32)


def test_the_switch_follows_the_step_and_a_resume():
    method = _Method()
    cb = EarlyViewSize(method, AugCfg(), 16, 0.3)
    cb.on_train_start(0, 10)  # round(0.3 * 10) = 3 early steps
    sizes = []
    for step in range(1, 11):
        sizes.append(method.views.image_size)
        cb.on_step_end(step, None)  # type: ignore[arg-type]  # the callback reads only the step
    assert sizes == [16, 16, 16] + [32] * 7
    cb.on_train_start(2, 10)  # resumed before the switch: small again
    assert method.views.image_size == 16
    cb.on_train_start(3, 10)  # resumed at the switch: full size
    assert method.views.image_size == 32


def test_bad_settings_are_refused_with_the_key():
    with pytest.raises(ConfigError, match=r"aug.early_size: 32 must be below data.image_size \(32\)"):
        EarlyViewSize(_Method(), AugCfg(), 32, 0.5)
    with pytest.raises(ConfigError, match="aug.early_size: Linear makes no BYOL views"):
        EarlyViewSize(nn.Linear(2, 2), AugCfg(), 16, 0.5)


def test_a_run_trains_its_first_steps_on_small_views(tmp_path, tiny_overrides):
    cfg = from_dict({}, {**tiny_overrides, "out_dir": str(tmp_path), "name": "prog", "train.steps": 5,
                         "data.image_size": 32, "aug.early_size": 16, "aug.early_fraction": 0.4})
    trainer = Trainer(cfg)
    seen: list[int] = []
    trainer.method.backbone.register_forward_hook(lambda mod, args, out: seen.append(args[0].shape[-1]))
    trainer.run()
    assert seen == [16, 16, 32, 32, 32]  # one online forward per step (both views concatenated)
