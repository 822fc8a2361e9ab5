"""Real processes, real signals: Ctrl-C and SIGTERM save a checkpoint and say how to
continue; SIGKILL at random moments (one during a checkpoint write) never leaves an
unloadable checkpoint, and the resumed run ends bitwise equal to an uninterrupted one."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from xbyol.training.checkpoint import load_checkpoint

TINY = {
    "data.num_train": 128,
    "data.batch_size": 32,
    "model.backbone": "resnet10_16",
    "model.proj_hidden": 128,
    "model.proj_dim": 32,
    "model.pred_hidden": 128,
    "train.optimizer": "adamw",
    "train.lr": 1e-3,
    "train.progress": False,
    "train.log_every": 1,
}


def _argv(out_dir: Path, name: str, **overrides) -> list[str]:
    sets = {**TINY, "out_dir": str(out_dir), "name": name, **overrides}
    argv = [sys.executable, "-m", "xbyol", "train"]
    for k, v in sets.items():
        argv += ["--set", f"{k}={v}"]
    return argv


def _env() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1"}


def _wait_for(predicate, proc: subprocess.Popen, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def _logged_steps(run_dir: Path) -> int:
    path = run_dir / "metrics.csv"
    return max(len(path.read_text().splitlines()) - 1, 0) if path.is_file() else 0


@pytest.mark.parametrize("sig, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_signal_finishes_the_step_saves_and_says_how_to_continue(tmp_path, sig, code):
    run_dir = tmp_path / "r"
    proc = subprocess.Popen(_argv(tmp_path, "r", **{"train.steps": 500}), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=_env())
    _wait_for(lambda: _logged_steps(run_dir) >= 2, proc)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == code, err
    assert "Traceback" not in err
    last = err.strip().splitlines()[-1]
    name = signal.Signals(sig).name
    assert last.startswith(f"xbyol train: interrupted ({name}) at step ")
    step = int(last.split(" at step ")[1].split("/")[0])
    assert f"checkpoint saved to {run_dir / 'checkpoints' / 'last.pt'}; continue with: xbyol train --resume {run_dir}" in last
    assert load_checkpoint(run_dir / "checkpoints" / "last.pt")["step"] == step == _logged_steps(run_dir)


def test_a_second_ctrl_c_aborts_at_once(tmp_path):
    run_dir = tmp_path / "r"
    # 64 px images make a step long enough for the second signal to land inside it
    proc = subprocess.Popen(_argv(tmp_path, "r", **{"train.steps": 500, "data.image_size": 64}),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env())
    _wait_for(lambda: _logged_steps(run_dir) >= 1, proc)
    proc.send_signal(signal.SIGINT)
    assert "finishing the current step" in proc.stderr.readline() + proc.stderr.readline()
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "Traceback" not in err
    assert err.strip().splitlines()[-1].startswith("xbyol train: aborted (SIGINT) at step ")


@pytest.mark.slow
def test_random_sigkills_never_lose_the_run_and_resume_is_exact(tmp_path):
    """Seeded kills at random moments, at least one inside a checkpoint write (seen as its
    temporary file); after each, every checkpoint on disk loads weights-only, and the
    resumed run's final weights equal an uninterrupted run's bitwise."""
    steps = 80  # long enough for five kills and restarts on an idle machine
    # proj_hidden 1024 makes a checkpoint big enough (~10 MB) to catch a write in progress
    extra = {"train.steps": steps, "train.ckpt_every": 1, "model.proj_hidden": 1024, "model.pred_hidden": 1024}
    ref = subprocess.run(_argv(tmp_path, "straight", **extra), capture_output=True, text=True, env=_env())
    assert ref.returncode == 0, ref.stderr
    run_dir = tmp_path / "killed"
    ckpt_dir = run_dir / "checkpoints"
    rng = random.Random(0)
    kills, kills_in_write = 0, 0
    argv = _argv(tmp_path, "killed", **extra)
    while kills < 5 or kills_in_write < 1:
        assert kills < 40, "no kill landed inside a checkpoint write"
        proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=_env())
        started = _logged_steps(run_dir)
        _wait_for(lambda: _logged_steps(run_dir) > started or proc.poll() is not None, proc)  # noqa: B023 (called here)
        if proc.poll() is not None:
            break  # the run finished before this kill
        in_write = kills_in_write == 0 and kills >= 2
        if in_write:  # poll for a temporary checkpoint file and kill while it exists
            _wait_for(lambda: bool(list(ckpt_dir.glob("*.tmp*"))), proc)
        else:
            time.sleep(rng.uniform(0.0, 1.5))
        proc.kill()
        proc.wait()
        kills += 1
        kills_in_write += bool(list(ckpt_dir.glob("*.tmp*")))
        for path in ckpt_dir.glob("*.pt"):
            ck = torch.load(path, weights_only=True)
            assert 1 <= ck["step"] <= steps
        if list(ckpt_dir.glob("*.pt")):
            argv = [sys.executable, "-m", "xbyol", "train", "--resume", str(run_dir)]
        # else: killed before its first checkpoint; the same fresh command starts it again
    final = subprocess.run([sys.executable, "-m", "xbyol", "train", "--resume", str(run_dir)],
                           capture_output=True, text=True, env=_env())
    assert final.returncode == 0, final.stderr
    assert kills >= 5 and kills_in_write >= 1
    assert not list(ckpt_dir.glob("*.tmp*"))
    a = load_checkpoint(tmp_path / "straight" / "checkpoints" / "last.pt")
    b = load_checkpoint(ckpt_dir / "last.pt")
    assert a["step"] == b["step"] == steps
    for k in a["method"]:
        assert torch.equal(a["method"][k], b["method"][k]), k
