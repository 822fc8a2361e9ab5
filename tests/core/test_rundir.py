"""RunDir: paths, atomic JSON, the writers' lock (with real processes: a second writer exits 2
naming the holder's pid; a lock left by a killed process is taken over with a warning)."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from xbyol.rundir import LOCK, RunDir, RunInUseError

HOLD = """
import sys, time
from xbyol.rundir import RunDir
with RunDir(sys.argv[1]).lock(create=True):
    print("locked", flush=True)
    time.sleep(600)
"""


def _env(tmp_path: Path) -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "XBYOL_CACHE_DIR": str(tmp_path / "cache")}


def _holder(run_dir: Path, env: dict[str, str]) -> subprocess.Popen:
    """A real process holding the run's lock (returns once it holds it)."""
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(run_dir)], stdout=subprocess.PIPE, text=True, env=env)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "locked"
    return proc


def _xbyol(*argv: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "xbyol", *argv], capture_output=True, text=True, env=env, timeout=300)


def test_paths_are_spelled_once(tmp_path):
    d = RunDir(tmp_path / "run")
    assert d.config == tmp_path / "run" / "config.yaml"
    assert d.checkpoint() == tmp_path / "run" / "checkpoints" / "last.pt"
    assert d.checkpoint("prev") == tmp_path / "run" / "checkpoints" / "prev.pt"
    assert (d.metrics.name, d.run_info.name, d.eval.name, d.probe.name) == ("metrics.csv", "run.json", "eval.json", "probe.pt")


def test_json_round_trip_and_errors(tmp_path):
    d = RunDir(tmp_path)
    assert d.read_json(d.eval) is None
    d.write_json(d.eval, {"a": 1})
    assert d.read_json(d.eval) == {"a": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["eval.json"]  # no temporary file left
    d.eval.write_text("[1]")
    with pytest.raises(ValueError, match="expected a JSON object"):
        d.read_json(d.eval)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        RunDir(tmp_path / "nope").read_config()
    with pytest.raises(FileNotFoundError, match="config.yaml is missing"):
        d.read_config()


def test_cache_dir_is_outside_the_run_and_keyed_by_the_checkpoint(tmp_path, monkeypatch):
    monkeypatch.setenv("XBYOL_CACHE_DIR", str(tmp_path / "cache"))
    d = RunDir(tmp_path / "run")
    d.checkpoints.mkdir(parents=True)
    d.checkpoint().write_bytes(b"abc")
    # sha256("abc"), a published test vector (FIPS 180-2, appendix B.1)
    assert d.checkpoint_sha256() == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    assert d.cache_dir() == tmp_path / "cache" / "runs" / "ba7816bf8f01cfea"
    d.checkpoint().write_bytes(b"abd")
    assert d.cache_dir() != tmp_path / "cache" / "runs" / "ba7816bf8f01cfea"


def test_lock_records_the_pid_nests_and_leaves_no_pid(tmp_path):
    d = RunDir(tmp_path / "run")
    with pytest.raises(FileNotFoundError, match="does not exist"):  # a reader's typo never creates a directory
        with d.lock():
            pass
    assert not d.root.exists()
    with d.lock(create=True):
        assert (tmp_path / "run" / LOCK).read_text().strip() == str(os.getpid())
        with d.lock():  # the same process: shared, not a deadlock
            pass
        assert (tmp_path / "run" / LOCK).read_text().strip() == str(os.getpid())
    assert (tmp_path / "run" / LOCK).read_text() == ""


def test_a_second_process_is_refused_naming_the_holder(tmp_path):
    env = _env(tmp_path)
    holder = _holder(tmp_path / "run", env)
    try:
        with pytest.raises(RunInUseError, match=rf"in use by another xbyol process \(pid {holder.pid}"):
            with RunDir(tmp_path / "run").lock():
                pass
    finally:
        holder.kill()
        holder.wait()
    with RunDir(tmp_path / "run").lock():  # the kernel released it with the process
        pass


def test_second_writer_commands_exit_2_with_one_line(tiny_run_dir, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(tiny_run_dir, run)
    env = _env(tmp_path)
    holder = _holder(run, env)
    try:
        metrics_before = (run / "metrics.csv").read_bytes()
        for argv, command in (
            (["eval", str(run), "--no-progress"], "eval"),
            (["train", "--resume", str(run), "--set", "train.progress=false"], "train"),
        ):
            res = _xbyol(*argv, env=env)
            assert res.returncode == 2, res.stderr
            lines = res.stderr.strip().splitlines()
            assert len(lines) == 1 and "Traceback" not in res.stderr, res.stderr
            assert lines[0].startswith(f"xbyol {command}: error: {run} is in use by another xbyol process (pid {holder.pid}")
        assert (run / "metrics.csv").read_bytes() == metrics_before
        assert holder.poll() is None
    finally:
        holder.kill()
        holder.wait()


def test_a_stale_lock_is_taken_over_with_a_warning(tiny_run_dir, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(tiny_run_dir, run)
    env = _env(tmp_path)
    holder = _holder(run, env)
    holder.send_signal(signal.SIGKILL)  # dies holding it: the lock file keeps its pid
    holder.wait()
    assert (run / LOCK).read_text().strip() == str(holder.pid)
    res = _xbyol("eval", str(run), "--no-progress", "--only", "none", env=env)
    assert res.returncode == 0, res.stderr
    assert f"taking over the stale lock of {run} left by pid {holder.pid} (no longer running)" in res.stderr
    assert (run / LOCK).read_text() == ""  # released cleanly: no pid left behind
