"""``benchmarks/collapse_calibration.py`` at a tiny budget: a broken run is trained, scored and its
monitor trace recorded; entries already in the JSON are kept."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from load_script import load_script

ROOT = Path(__file__).resolve().parents[1]
calibration = load_script(ROOT / "benchmarks" / "collapse_calibration.py", "bench_collapse_calibration")


def test_monitor_columns_keep_only_the_rows_where_the_monitors_were_logged():
    nan = math.nan
    metrics = {"step": [1.0, 2.0, 3.0], "loss": [3.0, 2.0, 1.0], "projection_std": [0.1, nan, 0.05],
               "projection_std_healthy": [0.125, nan, 0.125], "projection_rank": [20.0, nan, 3.0], "lr": [1.0, 1.0, 1.0]}
    assert calibration.monitor_columns(metrics) == {
        "step": [1.0, 3.0], "projection_std": [0.1, 0.05], "projection_std_healthy": [0.125, 0.125],
        "projection_rank": [20.0, 3.0]}


def test_a_broken_run_is_recorded_with_its_scores_and_monitors(tmp_path):
    out = tmp_path / "cal.json"
    out.write_text(json.dumps({"earlier": {"label": "healthy"}}))
    calibration.main(["--runs", "no_predictor", "--steps", "2", "--monitor-every", "1", "--json", str(out)])
    runs = json.loads(out.read_text())
    assert runs["earlier"] == {"label": "healthy"}  # kept
    run = runs["no_predictor"]
    assert run["label"] == "collapse" and run["batch_size"] == 128 and "data.image_size=16" in run["overrides"]
    assert set(run["trained"]) == {"linear_probe", "knn"} and set(run["random_init"]) == {"linear_probe", "knn"}
    assert run["monitors"]["step"] == [1.0, 2.0] and len(run["monitors"]["projection_rank"]) == 2
    assert run["monitors"]["projection_std_healthy"] == pytest.approx([1 / math.sqrt(128)] * 2, rel=1e-6)
    row = calibration.table({"no_predictor": run}).splitlines()[2]
    assert row.startswith("| no_predictor | collapse | train.steps=2, data.image_size=16 | ") and row.count("|") == 8
