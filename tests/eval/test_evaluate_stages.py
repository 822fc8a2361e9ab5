"""`xbyol eval` says what it is doing: every stage announced, timed and recorded."""

from __future__ import annotations

import json
import shutil

from xbyol.eval.evaluate import evaluate


def test_every_stage_is_announced_timed_and_written(tiny_run_dir, tmp_path, capsys):
    run = tmp_path / "run"
    shutil.copytree(tiny_run_dir, run)
    results = evaluate(run, progress=True, only=[])
    stages = list(results["stage_seconds"])
    assert stages == [
        "loading the run and its datasets",
        "trained: features of 256 train + 64 test images",
        "trained: linear probe",
        "trained: kNN",
        "random init: features of 256 train + 64 test images",
        "random init: linear probe",
        "random init: kNN",
    ]
    err = capsys.readouterr().err
    for name in stages:
        assert f"eval: {name} ..." in err and f"eval: {name} done in " in err
    assert all(v >= 0 for v in results["stage_seconds"].values())
    assert json.loads((run / "eval.json").read_text())["stage_seconds"].keys() == results["stage_seconds"].keys()
