"""The trainer's collapse monitors read every ``embed/`` output and nothing else."""

import math

import pytest
import torch

from xbyol.training.monitors import monitor_stats


def test_monitor_stats_names_each_embedding_and_skips_other_outputs():
    collapsed = torch.tensor([[3.0, 4.0, 0.0, 0.0]]).repeat(8, 1)  # identical rows: std 0, rank 1
    isotropic = torch.eye(4)  # unit rows along the axes: singular values 1, 1, 1, 1 -> rank 4
    stats = monitor_stats({"loss": torch.tensor(1.0), "embed/text": collapsed, "embed/image": isotropic})
    assert set(stats) == {f"{n}_{s}" for n in ("text", "image") for s in ("std", "rank", "std_healthy")}
    assert stats["text_std"] == pytest.approx(0.0, abs=1e-7)
    assert stats["text_rank"] == pytest.approx(1.0, abs=1e-5)
    assert stats["image_rank"] == pytest.approx(4.0, abs=1e-5)
    # each column of eye(4) is (1, 0, 0, 0): mean 1/4, squared deviations 9/16 + 3/16 = 3/4, unbiased var 3/4 / 3
    assert stats["image_std"] == pytest.approx(math.sqrt(0.25))
    assert stats["image_std_healthy"] == stats["text_std_healthy"] == 0.5
