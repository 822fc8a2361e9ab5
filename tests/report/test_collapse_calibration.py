"""The report's collapse warnings against recorded runs: every run that really collapsed is warned,
no healthy run of any preset is.

The monitor traces (``metrics.csv`` rows with the collapse monitors) and the scores of each run
were recorded by ``benchmarks/collapse_calibration.py`` into
``benchmarks/results/collapse_calibration.json``; BENCHMARKS.md, section "Collapse warnings",
has the command and the table.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from xbyol.report.sections.training import collapse_warnings

ROOT = Path(__file__).resolve().parents[2]
RUNS = json.loads((ROOT / "benchmarks" / "results" / "collapse_calibration.json").read_text())
COLLAPSED = {"no_predictor", "no_predictor_tau0"}


@pytest.mark.parametrize("name", sorted(n for n, r in RUNS.items() if r["label"] in ("healthy", "collapse")))
def test_collapsed_runs_are_warned_and_healthy_runs_are_not(name):
    run = RUNS[name]
    warnings = collapse_warnings(run["monitors"], run["batch_size"])
    assert bool(warnings) == (run["label"] == "collapse"), (name, warnings)


def test_the_record_covers_every_preset_and_every_broken_run():
    presets = {p.stem for p in (ROOT / "configs").glob("*.yaml")} - {"cifar10_byol"}  # no CIFAR-10 files on this machine
    assert presets <= {r["preset"] for r in RUNS.values() if r["label"] == "healthy"}
    assert COLLAPSED == {n for n, r in RUNS.items() if r["label"] == "collapse"}
    for name in COLLAPSED:  # collapsed in what they learnt too, not only in the monitors: kNN below the untrained net
        assert RUNS[name]["trained"]["knn"] < RUNS[name]["random_init"]["knn"], name


def test_the_healthy_fashion_mnist_run_of_issue_32_is_not_warned():
    # the preset's full run (probe 0.881) ended with std 90% of 1/sqrt(128) and effective rank 30 of 128
    m = {"step": [6200.0], "projection_std": [0.9 / math.sqrt(128)], "projection_std_healthy": [1 / math.sqrt(128)],
         "projection_rank": [30.0]}
    assert collapse_warnings(m, batch_size=128) == []
