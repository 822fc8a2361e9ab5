"""Runs that survive interruptions: exact resume from any step, checkpoint cadence and
rotation, resume reading and writing only RUN_DIR, changed keys, non-finite weights."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from xbyol.config import ConfigError, from_dict, to_dict
from xbyol.errors import CheckpointError
from xbyol.training import TrainingDiverged, resume_run, train
from xbyol.training import checkpoint as ckpt_mod
from xbyol.training.checkpoint import load_checkpoint

# 128 images in batches of 32: 4 steps per epoch, so 6 steps cross an epoch boundary.
SMALL = {"data.num_train": 128, "data.batch_size": 32, "train.steps": 6}


def _cfg(tiny_cfg, **overrides):
    return from_dict(to_dict(tiny_cfg), {**SMALL, **overrides})


def _state(run_dir: Path, name: str = "last.pt") -> dict:
    return load_checkpoint(run_dir / "checkpoints" / name)["method"]


def _assert_bitwise_equal(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


def test_resume_is_bitwise_exact_from_every_step(tiny_cfg):
    """Stopped after step 1, resumed, stopped after 2, ... up to the last step: the same
    weights as one uninterrupted run. Mid-epoch steps (1-3, 5) are the ones that broke."""
    straight = _cfg(tiny_cfg, name="straight")
    train(straight)
    chained = _cfg(tiny_cfg, name="chained")
    train(chained, stop_after=1)
    for k in range(2, 7):
        assert load_checkpoint(chained.run_dir / "checkpoints" / "last.pt")["step"] == k - 1
        resume_run(chained.run_dir, stop_after=k)
    _assert_bitwise_equal(_state(straight.run_dir), _state(chained.run_dir))
    # resuming a finished run (at its last step) changes nothing
    before = _state(chained.run_dir)
    resume_run(chained.run_dir)
    _assert_bitwise_equal(before, _state(chained.run_dir))
    rows = (chained.run_dir / "metrics.csv").read_text().splitlines()[1:]
    assert [int(r.split(",")[0]) for r in rows] == [1, 2, 3, 4, 5, 6]


def test_resume_with_data_loader_workers_is_exact(tiny_cfg):
    straight = _cfg(tiny_cfg, name="straight", **{"data.num_workers": 1})
    train(straight)
    split = _cfg(tiny_cfg, name="split", **{"data.num_workers": 1})
    train(split, stop_after=3)
    resume_run(split.run_dir)
    _assert_bitwise_equal(_state(straight.run_dir), _state(split.run_dir))


def test_resume_reads_and_writes_only_run_dir_from_another_cwd(tiny_cfg, tmp_path, monkeypatch):
    # the run lives in elsewhere/runs/x, saved with the relative out_dir "runs"
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    cfg = _cfg(tiny_cfg, out_dir="runs", name="x")
    train(cfg, stop_after=2)
    # a different run of the same name sits under the new working directory
    here = tmp_path / "here"
    (here / "runs").mkdir(parents=True)
    monkeypatch.chdir(here)
    decoy = _cfg(tiny_cfg, out_dir="runs", name="x", **{"train.seed": 7, "train.steps": 2})
    train(decoy)
    snapshot = {p: p.read_bytes() for p in (here / "runs").rglob("*") if p.is_file()}
    run_dir = resume_run(elsewhere / "runs" / "x")
    assert Path(run_dir).resolve() == (elsewhere / "runs" / "x").resolve()
    assert load_checkpoint(elsewhere / "runs" / "x" / "checkpoints" / "last.pt")["step"] == 6
    assert {p: p.read_bytes() for p in (here / "runs").rglob("*") if p.is_file()} == snapshot
    assert "out_dir: runs" in (elsewhere / "runs" / "x" / "config.yaml").read_text()


def test_checkpoints_every_epoch_by_default_and_keep_the_previous_one(tiny_cfg, monkeypatch):
    saved = []
    real = ckpt_mod.save_checkpoint
    monkeypatch.setattr("xbyol.training.trainer.save_checkpoint", lambda p, payload, **kw: (saved.append(payload["step"]), real(p, payload, **kw)))
    cfg = _cfg(tiny_cfg, **{"train.steps": 9, "train.ckpt_minutes": None})
    assert cfg.train.ckpt_every is None and tiny_cfg.train.ckpt_minutes == 10.0
    train(cfg)
    assert saved == [4, 8, 9]  # each epoch (4 steps) and the end
    assert load_checkpoint(cfg.run_dir / "checkpoints" / "last.pt")["step"] == 9
    assert load_checkpoint(cfg.run_dir / "checkpoints" / "prev.pt")["step"] == 8


def test_time_based_checkpoints_keep_resume_exact(tiny_cfg, monkeypatch):
    saved = []
    real = ckpt_mod.save_checkpoint
    monkeypatch.setattr("xbyol.training.trainer.save_checkpoint", lambda p, payload, **kw: (saved.append(payload["step"]), real(p, payload, **kw)))
    straight = _cfg(tiny_cfg, name="straight", **{"train.ckpt_minutes": None})
    train(straight)
    timed = _cfg(tiny_cfg, name="timed", **{"train.ckpt_minutes": 0.0})  # due after every step
    saved.clear()
    train(timed)
    assert saved == [1, 2, 3, 4, 5, 6]
    _assert_bitwise_equal(_state(straight.run_dir), _state(timed.run_dir))


def test_resume_removes_stale_temporaries_and_falls_back_to_prev(tiny_cfg):
    cfg = _cfg(tiny_cfg, **{"train.ckpt_every": 1})
    train(cfg, stop_after=3)
    ck = cfg.run_dir / "checkpoints"
    (ck / "last.pt.tmp12345").write_bytes(b"half a checkpoint")
    (ck / "last.pt").write_bytes((ck / "last.pt").read_bytes()[:1000])  # a torn newest file
    with pytest.warns(ckpt_mod.CheckpointWarning, match=r"last\.pt is truncated or corrupt.*prev\.pt \(step 2\)"):
        resume_run(cfg.run_dir, stop_after=4)
    assert not list(ck.glob("*.tmp*"))
    assert load_checkpoint(ck / "last.pt")["step"] == 4  # continued from prev.pt (step 2)
    rows = (cfg.run_dir / "metrics.csv").read_text().splitlines()[1:]
    assert [int(r.split(",")[0]) for r in rows] == [1, 2, 3, 4]


def test_resume_refuses_keys_that_change_the_run_unless_extended(tiny_cfg):
    cfg = _cfg(tiny_cfg)
    train(cfg, stop_after=2)
    with pytest.raises(ConfigError, match=r"train\.steps: 6 -> 10.*--extend"):
        resume_run(cfg.run_dir, ["train.steps=10"])
    with pytest.raises(ConfigError, match=r"train\.lr"):
        resume_run(cfg.run_dir, ["train.lr=0.5", "train.log_every=3"])
    resume_run(cfg.run_dir, ["train.log_every=3", "train.progress=false", "train.retain_freed_memory=false"], stop_after=3)  # runtime keys are free
    resume_run(cfg.run_dir, ["train.steps=10"], extend=True)
    assert load_checkpoint(cfg.run_dir / "checkpoints" / "last.pt")["step"] == 10
    info = json.loads((cfg.run_dir / "run.json").read_text())
    assert info["segments"][-1]["changed_keys"] == {"train.steps": {"from": 6, "to": 10}}
    assert "steps: 10" in (cfg.run_dir / "config.yaml").read_text()


def test_resume_with_a_changed_model_names_the_key(tiny_cfg):
    cfg = _cfg(tiny_cfg)
    train(cfg, stop_after=2)
    with pytest.raises(ConfigError, match=r"model\.proj_dim: 32 -> 16"):
        resume_run(cfg.run_dir, ["model.proj_dim=16"])
    with pytest.raises(CheckpointError, match=r"model\.proj_dim \(32 in the checkpoint, 16 now\)"):
        resume_run(cfg.run_dir, ["model.proj_dim=16"], extend=True)


def test_run_json_sums_the_segments_and_determinism_is_restored(tiny_cfg):
    assert not torch.are_deterministic_algorithms_enabled()
    cfg = _cfg(tiny_cfg, **{"train.deterministic": True})
    train(cfg, stop_after=2)
    assert not torch.are_deterministic_algorithms_enabled()
    resume_run(cfg.run_dir)
    info = json.loads((cfg.run_dir / "run.json").read_text())
    segs = info["segments"]
    assert [(s["start_step"], s["end_step"], s["status"]) for s in segs] == [(0, 2, "stopped"), (2, 6, "finished")]
    assert info["num_segments"] == 2 and info["finished"] is True
    assert info["duration_s"] == pytest.approx(segs[0]["duration_s"] + segs[1]["duration_s"])


@pytest.mark.parametrize("optimizer", ["sgd", "adamw", "lars"])
def test_a_diverging_run_stops_and_keeps_only_finite_checkpoints(tiny_cfg, optimizer):
    cfg = _cfg(tiny_cfg, **{"train.optimizer": optimizer, "train.lr": 1e6, "train.warmup_steps": 0,
                            "train.ckpt_every": 1, "train.steps": 12, "train.log_every": 1})
    with pytest.raises(TrainingDiverged, match=r"at step \d+; stopped") as e:
        train(cfg)
    for name in ("last.pt", "prev.pt"):
        path = cfg.run_dir / "checkpoints" / name
        if path.exists():
            ck = load_checkpoint(path)
            assert ckpt_mod.first_bad_tensor(ck["method"].items(), max_abs=cfg.train.max_abs_weight) is None
            assert f"step {ck['step']}" in str(e.value) or name == "prev.pt"


def test_first_bad_tensor_names_the_tensor_and_its_peak():
    named = [("a", torch.tensor([1.0, -2.0])), ("steps", torch.tensor(5)), ("b", torch.tensor([3.0, float("inf")]))]
    assert ckpt_mod.first_bad_tensor(named) == ("b", float("inf"))
    assert ckpt_mod.first_bad_tensor([("a", torch.tensor([1.0, float("nan")]))])[0] == "a"
    assert ckpt_mod.first_bad_tensor(named[:2]) is None
    assert ckpt_mod.first_bad_tensor(named[:2], max_abs=1.5) == ("a", 2.0)


def test_eval_refuses_a_checkpoint_with_non_finite_tensors(tiny_run_dir, tmp_path):
    import shutil

    from xbyol.run import load_run

    run = tmp_path / "run"
    shutil.copytree(tiny_run_dir, run)
    path = run / "checkpoints" / "last.pt"
    ck = torch.load(path, weights_only=True)
    key = next(k for k in ck["method"] if k.endswith("running_var"))
    ck["method"][key] = ck["method"][key] * float("inf")
    torch.save(ck, path)
    with pytest.raises(CheckpointError, match=f"{path}.*non-finite values in {key}"):
        load_run(run)


def test_one_data_loader_serves_every_epoch(tiny_cfg, monkeypatch):
    """No loader (and no worker pool) is rebuilt at each epoch: one serves the whole run."""
    import torch.utils.data as tud

    built = []
    real = tud.DataLoader

    class Counting(real):
        def __init__(self, *a, **k):
            built.append(k.get("num_workers"))
            super().__init__(*a, **k)

    monkeypatch.setattr(tud, "DataLoader", Counting)
    cfg = _cfg(tiny_cfg, **{"train.steps": 10, "data.num_workers": 1})  # 2.5 epochs
    train(cfg)
    assert built == [1]
