"""What training and evaluation print where the output goes to a file or a pipe: plain lines,
no carriage-return redraws, no Python warning format; step callbacks see every step."""

from __future__ import annotations

import io
import json
import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from xbyol.config import from_dict, to_dict
from xbyol.training import train
from xbyol.training.callbacks import Callback, StepInfo
from xbyol.training.progress import PlainLog, ProgressBar, duration, progress_display

TINY = {
    "model.backbone": "resnet10_16", "model.proj_hidden": 32, "model.proj_dim": 16, "model.pred_hidden": 32,
    "train.optimizer": "adamw", "train.lr": 1e-3, "train.monitor_every": 2, "data.image_size": 8,
}
BROKEN = ["apple/broken.png", "box/late.jpg", "box/zz_broken.png"]


def _env() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1"}


def _encoded(fmt: str) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (24, 24, 3), dtype=np.uint8)).save(buf, fmt)
    return buf.getvalue()


def _folder(tmp_path: Path) -> tuple[Path, Path]:
    """16 training files (3 unreadable: every batch of 4 reads them each epoch) and a 4-file test folder."""
    root, test_root = tmp_path / "train", tmp_path / "test"
    for c, name in enumerate(("apple", "box")):
        (root / name).mkdir(parents=True)
        (test_root / name).mkdir(parents=True)
        for k in range(8 - sum(b.startswith(name) for b in BROKEN)):
            Image.new("RGB", (8, 8), (40 * c + 10, 20 * k, 100)).save(root / name / f"img{k}.png")
        for k in range(2):
            Image.new("RGB", (8, 8), (40 * c + 10, 20 * k + 5, 100)).save(test_root / name / f"img{k}.png")
    (root / "apple" / "broken.png").write_bytes(_encoded("PNG")[:200])  # cut short
    (root / "box" / "late.jpg").write_bytes(_encoded("JPEG")[:-10])  # fails only on decode
    (root / "box" / "zz_broken.png").write_bytes(b"not an image at all")
    (test_root / "box" / "bad.png").write_bytes(b"not an image either")
    (root / "captions.jsonl").write_text('{"file": "apple/img0.png", "caption": "a red apple"}\nnot json\n')
    return root, test_root


@pytest.fixture(scope="module")
def folder_run(tmp_path_factory) -> tuple[Path, subprocess.CompletedProcess]:
    """``xbyol train`` on the folder, stdout and stderr pipes (no terminal), the progress setting at its default."""
    tmp = tmp_path_factory.mktemp("out")
    root, test_root = _folder(tmp)
    sets = {**TINY, "data.name": "folder", "data.root": root, "data.test_root": test_root, "data.batch_size": 4,
            "train.steps": 6, "train.log_every": 2, "out_dir": tmp / "runs", "name": "f"}
    argv = [sys.executable, "-m", "xbyol", "train"] + [a for k, v in sets.items() for a in ("--set", f"{k}={v}")]
    proc = subprocess.run(argv, capture_output=True, text=True, env=_env(), timeout=600)
    assert proc.returncode == 0, proc.stderr
    return tmp / "runs" / "f", proc


def test_a_piped_run_prints_the_summary_and_one_plain_line_per_log_interval(folder_run):
    run_dir, proc = folder_run
    assert "\r" not in proc.stdout and "\r" not in proc.stderr  # no progress-bar redraws
    lines = proc.stdout.splitlines()
    assert lines[0] == f"opening folder data at {run_dir.parent.parent / 'train'} ..."
    assert lines[1] == f"run directory: {run_dir} (new run)"
    assert lines[2].startswith("data: folder, train split 16 images, 2 classes; batch 4 x 1 process(es)")
    steps = [line for line in lines if line.startswith("step ")]
    # logged steps: the first, every log_every (2) and the last
    assert [s.split()[1] for s in steps] == ["1/6", "2/6", "4/6", "6/6"]
    for s in steps:
        assert re.fullmatch(r"step \d/6  loss \d+\.\d{4}  images/s \d+  ETA \d+:\d\d:\d\d", s), s
    assert re.fullmatch(r"finished at step 6/6 in \d+:\d\d:\d\d", lines[-2]) and lines[-1] == f"run directory: {run_dir}"


def test_unreadable_files_are_one_line_per_epoch_and_listed_in_the_run_dir(folder_run):
    run_dir, proc = folder_run
    line = f"folder: 3 of 16 files unreadable, replaced by their neighbours; listed in {run_dir / 'unreadable.txt'}"
    # 4 steps per epoch: the end of epoch 1 (step 4) and the end of the run (step 6)
    assert proc.stdout.splitlines().count(line) == 2
    listed = (run_dir / "unreadable.txt").read_text().splitlines()
    assert [Path(p).relative_to(run_dir.parent.parent / "train").as_posix() for p in listed] == BROKEN
    # no Python warning format (category, source line) anywhere a user looks; a warning is one plain line
    for text in (proc.stdout, proc.stderr):
        assert "Warning" not in text and "warnings.warn" not in text and ".py:" not in text
    assert proc.stderr.splitlines() == [f"xbyol train: warning: folder {run_dir.parent.parent / 'train'} [train]: skipped 1 "
                                        f"malformed line(s) of {run_dir.parent.parent / 'train' / 'captions.jsonl'}: line 2 "
                                        "(not JSON (Expecting value)); 15 image(s) have no caption in "
                                        f"{run_dir.parent.parent / 'train' / 'captions.jsonl'}; using 'a photo of a <class>'"]


def test_eval_into_a_pipe_draws_no_progress_bars(folder_run):
    run_dir, _ = folder_run
    proc = subprocess.run([sys.executable, "-m", "xbyol", "eval", str(run_dir), "--only", "none"],
                          capture_output=True, text=True, env=_env(), timeout=600)
    assert proc.returncode == 0, proc.stderr
    assert "\r" not in proc.stdout and "\r" not in proc.stderr
    assert "linear probe" in proc.stdout
    # the stage lines are the log: each stage starts and ends in one plain line
    assert any(re.fullmatch(r"eval: .* done in \d+\.\d s", s) for s in proc.stderr.splitlines())
    # unreadable files (3 in the train split, 1 in test_root): one line per split, and the counts in eval.json
    for line in ("folder: 3 of 16 files of the train split unreadable, replaced by their neighbours",
                 "folder: 1 of 5 files of the test split unreadable, replaced by their neighbours"):
        assert line in proc.stderr.splitlines()
    assert json.loads((run_dir / "eval.json").read_text())["unreadable_files"] == {"train": 3, "test": 1}


def test_progress_false_prints_the_summary_and_plain_lines(tiny_cfg, capsys):
    train(from_dict(to_dict(tiny_cfg), {"train.progress": False, "train.steps": 2}))
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("run directory: ") and out[1].startswith("data: shapes")
    assert [s.split()[1] for s in out if s.startswith("step ")] == ["1/2", "2/2"]


def test_the_bar_only_where_stdout_and_stderr_are_terminals(monkeypatch):
    for stdout_tty, stderr_tty, progress, kind in [(True, True, True, ProgressBar), (True, True, False, PlainLog),
                                                    (False, True, True, PlainLog), (True, False, True, PlainLog)]:
        monkeypatch.setattr(sys.stdout, "isatty", lambda v=stdout_tty: v)
        monkeypatch.setattr(sys.stderr, "isatty", lambda v=stderr_tty: v)
        assert type(progress_display(progress, "train byol")) is kind
    assert duration(0) == "0:00:00" and duration(3723.9) == "1:02:03"


class Recorder(Callback):
    def __init__(self) -> None:
        self.calls: list[tuple] = []

    def on_train_start(self, step: int, total: int) -> None:
        self.calls.append(("start", step, total))

    def on_step_end(self, step: int, info: StepInfo) -> None:
        assert info.outputs["loss"].ndim == 0 and info.images == 64 and "tau" in info.logs
        self.calls.append(("step", step, info.total))

    def on_log(self, step: int, row: dict) -> None:
        self.calls.append(("log", step, row["step"]))

    def on_train_end(self, step: int, status: str) -> None:
        self.calls.append(("end", step, status))


def test_callbacks_see_every_step_log_and_end_and_a_resume_starts_where_it_stopped(tiny_cfg):
    cfg = from_dict(to_dict(tiny_cfg), {"train.steps": 4, "train.log_every": 2})
    first, second = Recorder(), Recorder()
    train(cfg, stop_after=3, callbacks=[first])
    assert first.calls == [("start", 0, 4), ("step", 1, 4), ("log", 1, 1), ("step", 2, 4), ("log", 2, 2),
                           ("step", 3, 4), ("end", 3, "stopped")]
    train(cfg, resume=True, callbacks=[second])
    assert second.calls == [("start", 3, 4), ("step", 4, 4), ("log", 4, 4), ("end", 4, "finished")]


_UNION_SCRIPT = r'''
import sys
from pathlib import Path
import torch
import torch.distributed as dist
from xbyol.training.run_files import UnreadableFiles

dist.init_process_group("gloo")
rank = dist.get_rank()


class Folder:  # what UnreadableFiles reads of a dataset
    dataset_name, paths = "folder", [f"img{i}.png" for i in range(10)]

    def __len__(self):
        return 10


files = UnreadableFiles(Path(sys.argv[1]), Folder())
# rank 0 read indices 0-4 and found 3 replaced by 4; rank 1 read 5-9 and found 7 and 9 replaced
requested, returned = ([0, 1, 2, 3, 4], [0, 1, 2, 4, 4]) if rank == 0 else ([5, 6, 7, 8, 9], [5, 6, 8, 8, 0])
files.add(requested, torch.tensor(returned))
files.report(4, gather=True)
files.report(4)  # the same step again: no second line
dist.destroy_process_group()
'''


def test_unreadable_files_of_every_rank_are_reported_once_by_rank_0(tmp_path):
    script = tmp_path / "union.py"
    script.write_text(_UNION_SCRIPT)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = dict(_env(), MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), WORLD_SIZE="2")
    procs = [subprocess.Popen([sys.executable, str(script), str(tmp_path)], env=dict(env, RANK=str(r)),
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for r in range(2)]
    outs = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    assert outs[0][0].splitlines() == [f"folder: 3 of 10 files unreadable, replaced by their neighbours; "
                                       f"listed in {tmp_path / 'unreadable.txt'}"]
    assert outs[1][0] == ""  # only rank 0 speaks
    assert (tmp_path / "unreadable.txt").read_text().splitlines() == ["img3.png", "img7.png", "img9.png"]
