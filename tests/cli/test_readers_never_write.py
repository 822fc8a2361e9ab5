"""Readers never write: explain, concepts and the explorer work on a read-only run directory
(``chmod -R a-w``) and leave it exactly as it was; the post-hoc concept map they need is
cached outside it, keyed by the checkpoint.

Tests run as root here, where ``chmod`` does not stop a write, so the listing, sizes and
modification times of every file and directory are compared as well."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from xbyol.rundir import CONCEPT_MAP, RunDir


def _snapshot(root: Path) -> list[tuple[str, int, int]]:
    """(relative path, size, mtime in ns) of the run directory and everything in it."""
    paths = [root, *sorted(root.rglob("*"))]
    return [(str(p.relative_to(root)), p.stat().st_size, p.stat().st_mtime_ns) for p in paths]


def _chmod_tree(root: Path, writable: bool) -> None:
    for p in [root, *root.rglob("*")]:
        mode = p.stat().st_mode
        p.chmod(mode | stat.S_IWUSR if writable else mode & ~(stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))


@pytest.fixture
def read_only_run(tiny_run_dir, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(tiny_run_dir, run)
    _chmod_tree(run, writable=False)
    yield run
    _chmod_tree(run, writable=True)


def _xbyol(*argv: str, cache: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "XBYOL_CACHE_DIR": str(cache)}
    return subprocess.run([sys.executable, "-m", "xbyol", *argv], capture_output=True, text=True, env=env, timeout=300)


@pytest.mark.slow
def test_explain_and_concepts_leave_a_read_only_run_untouched(read_only_run, tmp_path):
    before = _snapshot(read_only_run)
    cache = tmp_path / "cache"
    res = _xbyol("explain", str(read_only_run), "--target", "concept:red circle", "--indices", "0", "1",
                 "--out", str(tmp_path / "heatmaps"), cache=cache)
    assert res.returncode == 0, res.stderr
    assert sorted(p.name for p in (tmp_path / "heatmaps").iterdir()) == ["heatmaps_gradcam.npy", "test0_gradcam.png",
                                                                        "test1_gradcam.png"]
    res = _xbyol("concepts", str(read_only_run), "--indices", "0", "-k", "3", cache=cache)
    assert res.returncode == 0, res.stderr
    assert res.stdout.startswith("test[0]") and len(res.stdout.strip().splitlines()) == 4
    assert _snapshot(read_only_run) == before
    # the post-hoc concept map (a byol run has no learned one) went to the cache, keyed by the checkpoint
    cached = cache / "runs" / RunDir(read_only_run).checkpoint_sha256()[:16]
    assert [p.name.startswith(CONCEPT_MAP.removesuffix(".pt")) for p in cached.glob("*.pt")] == [True]


@pytest.mark.slow
def test_the_explorer_serves_a_read_only_run_without_writing(read_only_run, tmp_path, monkeypatch):
    from xbyol.web.app import create_app

    monkeypatch.setenv("XBYOL_CACHE_DIR", str(tmp_path / "cache"))
    before = _snapshot(read_only_run)
    client = create_app(str(read_only_run), methods=["gradcam"]).test_client()
    assert client.get("/").status_code == 200
    assert client.get("/api/images?page=1").status_code == 200
    r = client.post("/api/explain", json={"index": 0, "concept": "red circle", "methods": ["gradcam"]})
    assert r.status_code == 200, r.get_json()
    assert client.post("/api/concepts", json={"index": 0}).status_code == 200
    assert _snapshot(read_only_run) == before
