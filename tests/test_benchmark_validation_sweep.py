"""benchmarks/validation_sweep.py end to end on digits at a tiny budget: equal-time steps, the JSON it keeps and
the paired verdicts of its table (its figures live in BENCHMARKS.md)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import yaml
from load_script import benchmark_script

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def sweep():
    with benchmark_script("validation_sweep") as module:
        yield module


@pytest.fixture
def preset(tmp_path):
    cfg = {"data": {"name": "digits", "image_size": 16, "batch_size": 128},
           "model": {"backbone": "resnet10_16", "proj_hidden": 64, "proj_dim": 32, "pred_hidden": 64},
           "train": {"steps": 200, "optimizer": "adamw", "lr": 2e-3, "progress": False}}
    path = tmp_path / "preset.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def test_equal_time_steps_scale_by_speed_and_batch(sweep, preset):
    # b64 halves the batch (128 -> 64): 0.5 of 200 steps x 1.1 (its images/s over base's) x 64 / 32 = 220
    assert sweep.equal_time_steps(preset, "b64", 0.5, {"base": 1.0, "b64": 1.1}) == 220
    assert sweep.equal_time_steps(preset, "predlr10", 0.5, {"base": 1.0}) == 100  # no arithmetic changed: same steps
    assert sweep.equal_time_steps(preset, "b64_predlr10", 0.5, {"base": 1.0, "b64": 1.1}) == 220  # timed as b64
    with pytest.raises(SystemExit, match="no speed ratio for arm 'res24'"):
        sweep.equal_time_steps(preset, "res24", 0.5, {"base": 1.0})


def test_speed_then_sweep_then_table(sweep, preset, tmp_path, capsys):
    speed_json, sweep_json = tmp_path / "speed.json", tmp_path / "sweep.json"
    sweep.main(["speed", "--config", str(preset), "--arms", "base", "b64", "--reps", "1", "--images", "640",
                "--json", str(speed_json)])
    speed = json.loads(speed_json.read_text())
    assert speed["ratio_to_base"]["base"] == 1.0 and speed["ratio_to_base"]["b64"] > 0
    assert [r["arm"] for r in speed["runs"]] == ["base", "b64"]
    sweep.main(["sweep", "--config", str(preset), "--arms", "base", "predlr10", "--seeds", "0", "1", "--fraction", "0.1",
                "--json", str(sweep_json), "--speed-json", str(speed_json)])
    data = json.loads(sweep_json.read_text())
    assert set(data["runs"]) == {"base", "predlr10"} and set(data["runs"]["base"]) == {"seed0", "seed1"}
    entry = data["runs"]["predlr10"]["seed1"]
    hits = entry["per_image"]["hit_linear_probe"]
    assert entry["steps"] == 20 and len(hits) == 287 == entry["n_eval"]  # digits' validation split: the last 20%
    assert entry["linear_probe"] == pytest.approx(hits.count("1") / 287)
    summary = sweep.sweep_summary(data)
    vs = summary["predlr10"]["knn_vs_base"]
    assert vs["seeds"] == ["seed0", "seed1"] and vs["verdict"] in ("higher", "lower", "no difference at this budget")
    lo, hi = vs["interval"]
    diff = summary["predlr10"]["knn"]["mean"] - summary["base"]["knn"]["mean"]
    assert lo < diff < hi
    table = sweep.sweep_table(data)
    assert "| predlr10 | `train.predictor_lr_scale=10` | 20 |" in table
    stated = "no difference" if vs["verdict"].startswith("no difference") else vs["verdict"]
    assert f"<!-- verdict fmnist_validation_sweep.json: runs/predlr10/*/knn vs runs/base/*/knn = {stated} -->" in table
    speed_rows = sweep.speed_table(speed, preset, 0.1).splitlines()
    assert speed_rows[2].startswith("| base | 1.000 | 20 |") and speed_rows[3].startswith("| b64 |")
    # a second call reuses every entry already there
    sweep.main(["sweep", "--config", str(preset), "--arms", "base", "predlr10", "--seeds", "0", "1", "--fraction", "0.1",
                "--json", str(sweep_json), "--speed-json", str(speed_json)])
    assert json.loads(sweep_json.read_text()) == data


def test_time_v_report_is_read(sweep):
    report = ("\tUser time (seconds): 2294.51\n\tSystem time (seconds): 104.20\n"
              "\tElapsed (wall clock) time (h:mm:ss or m:ss): 20:13.07\n")
    assert sweep.time_v_fields(report) == {"wall_s": pytest.approx(1213.07), "user_s": 2294.51, "system_s": 104.2}
    assert sweep.time_v_fields(report.replace("20:13.07", "1:02:03.5"))["wall_s"] == pytest.approx(3723.5)


def test_final_times_each_seed_and_scores_the_test_split(sweep, preset, tmp_path, monkeypatch):
    # a stand-in for GNU time (not installed everywhere): run the command, then print time -v's three lines
    shim = tmp_path / "fake_time.py"
    shim.write_text("import subprocess, sys\nrc = subprocess.call(sys.argv[1:])\n"
                    "print('User time (seconds): 1.5\\nSystem time (seconds): 0.5\\n"
                    "Elapsed (wall clock) time (h:mm:ss or m:ss): 0:02.25', file=sys.stderr)\nsys.exit(rc)\n")
    monkeypatch.setattr(sweep, "TIME_COMMAND", [sys.executable, str(shim)])
    out = tmp_path / "final.json"
    monkeypatch.setattr(sweep, "ROOT", tmp_path)  # the config's path is stored relative to the repository root
    sweep.main(["final", "--config", str(preset), "--seeds", "3", "--json", str(out), "train.steps=5"])
    entry = json.loads(out.read_text())["runs"]["seed3"]
    assert entry["wall_s"] == 2.25 and entry["user_s"] == 1.5 and entry["duration_s"] > 0
    assert entry["n_eval"] == 360 == len(entry["per_image"]["hit_knn"])  # digits' test split, not validation


def test_progressive_arm_averages_the_time_of_its_two_sizes(sweep, preset):
    # prog20: half the steps on views timed at 2x base's images/s, half at base's: 1 / (0.5 / 2 + 0.5) = 4/3
    assert sweep.early_fraction(preset, "prog20") == 0.5 and sweep.early_fraction(preset, "b64") is None
    assert sweep.arm_ratio(preset, "prog20", 2.0) == pytest.approx(4 / 3)
    assert sweep.arm_ratio(preset, "b64", 1.1) == 1.1
