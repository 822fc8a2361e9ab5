"""Shared fixtures: a tiny seeded config and single-threaded torch for reproducible speed."""

from __future__ import annotations

import os

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
# One intra-op thread per test process: `make test` runs two pytest-xdist workers on
# CI's two cores, and over-subscribed OpenMP threads spin and slow everything down.
torch.set_num_threads(int(os.environ.get("XBYOL_TEST_THREADS", "1")))


TINY_OVERRIDES = {
    "data.num_train": 256,
    "data.num_test": 128,
    "data.batch_size": 64,
    "model.backbone": "resnet10_16",
    "model.proj_hidden": 128,
    "model.proj_dim": 32,
    "model.pred_hidden": 128,
    "train.steps": 6,
    "train.progress": False,
    "train.optimizer": "adamw",
    "train.lr": 1e-3,
    "train.log_every": 1,
    "train.monitor_every": 2,
}


@pytest.fixture(scope="session")
def tiny_overrides():
    """A copy of the tiny-run overrides (import-free access from any test module)."""
    return dict(TINY_OVERRIDES)


@pytest.fixture
def tiny_cfg(tmp_path, request):
    """A Config for a few-step run on 256 shapes images, written under tmp_path."""
    from xbyol.config import from_dict

    overrides = dict(TINY_OVERRIDES)
    overrides["out_dir"] = str(tmp_path / "runs")
    overrides["name"] = "tiny"
    return from_dict({}, overrides)


@pytest.fixture(autouse=True)
def _cache_dir(tmp_path_factory, monkeypatch):
    """Concept/text caches go to a per-session temp dir, never the user's home."""
    d = tmp_path_factory.getbasetemp() / "xbyol-cache"
    monkeypatch.setenv("XBYOL_CACHE_DIR", str(d))


@pytest.fixture(scope="session")
def tiny_run_dir(tmp_path_factory):
    """A trained (6 steps) and evaluated BYOL run on 256 shapes images, shared by a test session.

    Tests must treat it as read-only; copy it (shutil.copytree) to modify.
    """
    from xbyol.config import from_dict
    from xbyol.eval.evaluate import evaluate
    from xbyol.train import train

    overrides = dict(TINY_OVERRIDES)
    overrides["out_dir"] = str(tmp_path_factory.mktemp("shared-runs"))
    overrides["name"] = "tiny_byol"
    overrides["data.num_test"] = 64
    run_dir = train(from_dict({}, overrides))
    evaluate(run_dir, progress=False, only=[])
    return run_dir
