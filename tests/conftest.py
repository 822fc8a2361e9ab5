"""Shared fixtures: a tiny seeded config and single-threaded torch for reproducible speed."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
# One intra-op thread per test process: `make test` runs two pytest-xdist workers on
# CI's two cores, and over-subscribed OpenMP threads spin and slow everything down.
TEST_THREADS = int(os.environ.get("XBYOL_TEST_THREADS", "1"))
torch.set_num_threads(TEST_THREADS)


@pytest.fixture(autouse=True)
def _one_thread():
    """Every test starts with TEST_THREADS intra-op threads, whatever an earlier test set."""
    torch.set_num_threads(TEST_THREADS)
    yield
    torch.set_num_threads(TEST_THREADS)


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
    from xbyol.training import train

    overrides = dict(TINY_OVERRIDES)
    overrides["out_dir"] = str(tmp_path_factory.mktemp("shared-runs"))
    overrides["name"] = "tiny_byol"
    overrides["data.num_test"] = 64
    run_dir = train(from_dict({}, overrides))
    evaluate(run_dir, progress=False, only=[])
    return run_dir


# ----------------------------------------------------------------------------- report and explorer

REPO = Path(__file__).resolve().parents[1]  # the repository root (tests/ is one level down)
ARTIFACTS = REPO / "test-artifacts"

def train_tiny(out_dir: Path, name: str = "tiny", method: str = "byol") -> Path:
    """Train a 3-step run on 256 shapes images; returns its run directory."""
    from xbyol.config import from_dict
    from xbyol.training import train

    overrides = dict(TINY_OVERRIDES, out_dir=str(out_dir), name=name)
    overrides["train.steps"] = 3
    overrides["method.name"] = method
    return Path(train(from_dict({}, overrides)))


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory) -> Path:
    """A freshly trained tiny byol run: config.yaml, metrics.csv, run.json, checkpoints/last.pt."""
    return train_tiny(tmp_path_factory.mktemp("runs"))


@pytest.fixture
def artifacts_dir() -> Path:
    """``test-artifacts/`` at the repository root (gitignored): screenshots of the browser tests."""
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def chromium_executable() -> str | None:
    """The system Chromium (Debian package ``chromium``); ``$XBYOL_CHROMIUM`` overrides."""
    for candidate in (os.environ.get("XBYOL_CHROMIUM"), "chromium", "chromium-browser"):
        if candidate and (path := shutil.which(candidate)):
            return path
    return None


@pytest.fixture(scope="module")
def browser():
    """Headless system Chromium driven by Playwright; absent: fail in CI, skip locally."""
    reason = None
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        reason = "playwright is not installed (pip install -e '.[dev]')"
    exe = chromium_executable()
    if reason is None and exe is None:
        reason = "chromium not found: run .ci/install-browser (apt-get install chromium)"
    if reason is not None:
        if in_ci():
            pytest.fail(f"browser test cannot run in CI: {reason}")
        pytest.skip(reason)
    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=exe, headless=True, args=["--no-sandbox"])
        yield b
        b.close()
