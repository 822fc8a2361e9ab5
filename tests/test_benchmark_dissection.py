"""benchmarks/dissection.py: seeds accumulate in one results file, 95% intervals decide the verdicts,
and the section's table is re-made while its hand-written reading is kept."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from load_script import benchmark_script

from xbyol.config import from_dict
from xbyol.data.shapes import ShapesDataset
from xbyol.methods.base import create_method
from xbyol.models.interpretable import InterpretableBackbone

ROOT = Path(__file__).resolve().parents[1]
T_975_2 = 4.302652729911275  # Student t, 97.5% quantile, 2 degrees of freedom (printed t tables: 4.303)


@pytest.fixture(scope="module")
def dis():
    with benchmark_script("dissection") as module:
        yield module


def _row(seed: int, model: str, init: str, layer: str, detectors: int, loss: str = "", loss_filter: str = "",
         train_s: float | None = None) -> dict:
    return {"seed": seed, "model": model, "init": init, "layer": layer, "units": 128, "detectors": detectors,
            "unique_paper": detectors // 4, "unique_release": 3, "paper_per_group": {"shape": 0, "colour": 1},
            "release_per_group": {"shape": 1, "colour": 2}, "loss": loss, "loss_filter": loss_filter,
            "train_s": train_s, "dissect_s": 30.0}


def _seed_rows(seed: int, tau: str = "byol + interpretable layer, tau 0.5") -> list[dict]:
    """Plain BYOL well above random init (20-22 vs 10-12 detectors); the interpretable layer equal to it."""
    out = [_row(seed, "byol", "trained", "stages.3", 20 + seed, "1.5", train_s=60.0),
           _row(seed, "byol", "random init", "stages.3", 10 + seed)]
    for model, lf in (("byol + interpretable layer", "-0.0003"), (tau, f"-0.2{seed}")):
        out += [_row(seed, model, "trained", "interpretable", 11 + seed, "1.4", lf, train_s=60.0),
                _row(seed, model, "random init", "interpretable", 10 + seed),
                _row(seed, model, "trained", "stages.3", 20 + seed, "1.4", lf),
                _row(seed, model, "random init", "stages.3", 10 + seed)]
    return out


def _budget(dis, json_path: Path, *extra: str):
    return dis.parse_args(["--json", str(json_path), "--no-write", *extra])


def test_interval95_is_the_t_interval_of_the_mean(dis):
    s = {"values": [1.0, 2.0, 3.0], "n": 3, "mean": 2.0, "sd": 1.0}
    lo, hi = dis.interval95(s)
    half = T_975_2 / 3 ** 0.5  # = 2.484: the "mean ± 2.48 sd over 3 seeds" rule
    assert (lo, hi) == pytest.approx((2.0 - half, 2.0 + half)) and half == pytest.approx(2.4841, abs=1e-4)
    assert dis.interval95({"values": [4.0], "n": 1, "mean": 4.0, "sd": None}) is None


def test_compare_calls_a_difference_only_without_overlap(dis):
    def s(*v: float) -> dict:
        return dis.seed_summary(list(v))

    assert dis.compare(s(20, 21, 22), s(10, 11, 12))["verdict"] == "higher"  # [18.5, 23.5] vs [8.5, 13.5]
    assert dis.compare(s(10, 11, 12), s(20, 21, 22))["verdict"] == "lower"
    assert dis.compare(s(10, 11, 12), s(12, 13, 14))["verdict"] == "no difference at this budget"  # [8.5, 13.5] vs [10.5, 15.5]
    assert dis.compare(s(11, 11, 11), s(12, 12, 12))["verdict"] == "lower"  # zero spread: the intervals are points
    assert dis.compare(s(3, 3, 3), s(3, 3, 3))["verdict"] == "no difference at this budget"
    assert dis.compare(s(5), s(1, 2, 3))["verdict"].startswith("undecided")


def test_comparisons_cover_random_init_interpretable_and_tau(dis):
    summary = dis.summarise([r for s in (0, 1, 2) for r in _seed_rows(s)])
    comps = {c["what"]: c["metrics"] for c in dis.comparisons(summary, 0.5)}
    assert list(comps) == [
        "byol `stages.3`: trained vs random init",
        "byol + interpretable layer `interpretable`: trained vs random init",
        "byol + interpretable layer `stages.3`: trained vs random init",
        "byol + interpretable layer, tau 0.5 `interpretable`: trained vs random init",
        "byol + interpretable layer, tau 0.5 `stages.3`: trained vs random init",
        "byol + interpretable layer `interpretable` vs byol `stages.3` (trained)",
        "byol + interpretable layer `stages.3` vs byol `stages.3` (trained)",
        "byol + interpretable layer, tau 0.5 `interpretable` vs byol `stages.3` (trained)",
        "byol + interpretable layer, tau 0.5 `stages.3` vs byol `stages.3` (trained)",
        "tau 0.5 vs the paper's tau, `interpretable` (trained)",
        "tau 0.5 vs the paper's tau, `stages.3` (trained)",
    ]
    assert comps["byol `stages.3`: trained vs random init"]["detectors"]["verdict"] == "higher"
    assert comps["byol + interpretable layer `interpretable` vs byol `stages.3` (trained)"]["detectors"]["verdict"] == "lower"
    assert comps["byol + interpretable layer `stages.3` vs byol `stages.3` (trained)"]["detectors"]["verdict"] == (
        "no difference at this budget")  # identical values
    assert comps["byol `stages.3`: trained vs random init"]["unique_release"]["verdict"] == "no difference at this budget"
    tau_top = comps["tau 0.5 vs the paper's tau, `interpretable` (trained)"]
    assert tau_top["loss_filter"]["verdict"] == "lower"  # -0.20..-0.22 vs -0.0003 on every seed
    assert "loss_filter" not in comps["tau 0.5 vs the paper's tau, `stages.3` (trained)"]  # same run, same loss


def test_seeds_accumulate_over_calls_and_a_rerun_replaces_its_seed(dis, tmp_path, monkeypatch):
    path = tmp_path / "d.json"
    calls = []

    def fake_measure(args, seed):
        calls.append(seed)
        rows = _seed_rows(seed)
        rows[0]["detectors"] += 100 * calls.count(seed) - 100  # a second run of a seed measures differently
        return rows

    monkeypatch.setattr(dis, "measure_seed", fake_measure)
    assert dis.main(["--json", str(path), "--no-write", "--seeds", "0"]) == 0
    assert json.loads(path.read_text())["seeds"] == [0]
    assert dis.main(["--json", str(path), "--no-write", "--seeds", "2", "1"]) == 0
    data = json.loads(path.read_text())
    assert data["seeds"] == [0, 1, 2] and [r["seed"] for r in data["rows"]] == [0] * 10 + [1] * 10 + [2] * 10
    assert data["summary"][0]["detectors"]["values"] == [20.0, 21.0, 22.0]
    assert data["budget"] == {"steps": 150, "batch_size": 128, "num_train": 4000, "num_test": 1000, "weight": 0.1, "tau": 0.5}
    assert dis.main(["--json", str(path), "--no-write", "--seeds", "1"]) == 0  # seed 1 again: replaced, not appended
    data = json.loads(path.read_text())
    assert len(data["rows"]) == 30 and data["summary"][0]["detectors"]["values"] == [20.0, 121.0, 22.0]
    with pytest.raises(SystemExit, match="budget"):  # another budget is refused before any training
        dis.main(["--json", str(path), "--no-write", "--seeds", "3", "--steps", "7"])
    assert calls == [0, 2, 1, 1]
    before = path.read_text()
    assert dis.main(["--json", str(path), "--no-write", "--table-only"]) == 0  # re-renders, trains nothing
    assert calls == [0, 2, 1, 1] and json.loads(path.read_text()) == json.loads(before)


def test_merge_adds_the_seeds_of_other_files_of_the_same_budget(dis, tmp_path):
    empty = {"budget": dis.budget(_budget(dis, tmp_path / "x.json")), "rows": []}
    for seed in (1, 2):
        dis.save_results(tmp_path / f"s{seed}.json", dis.add_seed_rows(empty, _seed_rows(seed)))
    main = tmp_path / "d.json"
    dis.save_results(main, dis.add_seed_rows(empty, _seed_rows(0) + _seed_rows(1)))
    changed = _seed_rows(1)
    changed[0]["detectors"] = 50
    dis.save_results(tmp_path / "s1.json", dis.add_seed_rows(empty, changed))
    assert dis.main(["--json", str(main), "--no-write", "--merge", str(tmp_path / "s1.json"), str(tmp_path / "s2.json")]) == 0
    data = json.loads(main.read_text())
    assert data["seeds"] == [0, 1, 2] and len(data["rows"]) == 30
    assert data["summary"][0]["detectors"]["values"] == [20.0, 50.0, 22.0]  # seed 1 taken from the merged file
    assert dis.main(["--json", str(main), "--no-write", "--merge", str(tmp_path / "gone.json")]) == 2
    other = dis.parse_args(["--steps", "7"])
    dis.save_results(tmp_path / "s7.json", dis.add_seed_rows({"budget": dis.budget(other), "rows": []}, _seed_rows(3)))
    with pytest.raises(SystemExit, match="budget"):
        dis.main(["--json", str(main), "--no-write", "--merge", str(tmp_path / "s7.json")])
    assert json.loads(main.read_text())["seeds"] == [0, 1, 2]  # nothing written


def test_table_only_without_results_is_one_line_and_exit_2(dis, tmp_path, capsys):
    assert dis.main(["--json", str(tmp_path / "none.json"), "--no-write", "--table-only"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "none.json: no results" in err
    assert not (tmp_path / "none.json").exists()


def test_section_names_seeds_command_json_and_keeps_the_reading(dis, tmp_path):
    path = tmp_path / "d.json"
    data = dis.save_results(path, dis.add_seed_rows({"budget": dis.budget(_budget(dis, path)), "rows": []},
                                                    [r for s in (0, 1, 2) for r in _seed_rows(s)]))
    body = dis.section_text(data, "benchmarks/results/dissection.json", 1)
    assert "training seeds 0, 1, 2 (`train.seed`; data seed 0), every cell the mean ± sd" in body
    assert "| byol | trained | `stages.3` | 21.0 ± 1.0 / 128 | 5.0 ± 0.0 | 3.0 ± 0.0 |" in body
    assert "| byol `stages.3`: trained vs random init | **higher**: [18.5, 23.5] vs [8.5, 13.5] |" in body
    assert ("--weight 0.1 --tau 0.5 --seeds 0 1 2`; results: `benchmarks/results/dissection.json`") in body
    assert "60 s per run (60-60 s over 9 runs), training and dissection 8.0, 8.0, 8.0 min per seed" in body  # 3x60 + 10x30 s

    md = tmp_path / "BENCHMARKS.md"
    md.write_text("# Benchmarks\n\n## Other\n\nkeep me\n\n## Network dissection (shapes)\n\nold table\n\n"
                  "Reading: the hand-written part.\n\nSecond paragraph.\n\n## Last\n\nalso kept\n")
    dis.write_markdown(md, body)
    text = md.read_text()
    assert "old table" not in text and body in text
    assert text.index(body) < text.index("Reading: the hand-written part.\n\nSecond paragraph.\n\n## Last\n\nalso kept")
    assert text.startswith("# Benchmarks\n\n## Other\n\nkeep me\n\n## Network dissection (shapes)\n\n")
    md.write_text("# Benchmarks\n\n## Network dissection (shapes)\n\ntable only\n")  # no reading yet: none kept
    dis.write_markdown(md, body)
    assert md.read_text() == f"# Benchmarks\n\n## Network dissection (shapes)\n\n{body.strip()}\n"


def test_the_interpretable_variant_is_wired_by_the_method_itself(dis):
    """No benchmark shim: methods/byol.py builds the interpretable backbone from the variant's overrides."""
    args = dis.parse_args([])
    for label in ("byol + interpretable layer", "byol + interpretable layer, tau 0.5"):
        extra = {k: v for k, v in dis.variants(args)[label].items() if k != "name"}
        cfg = from_dict({}, {**extra, "model.proj_hidden": 8, "model.pred_hidden": 8, "model.proj_dim": 8})
        backbone = create_method(cfg, ShapesDataset("train", num=1)).backbone
        assert isinstance(backbone, InterpretableBackbone) and backbone.weight == 0.1
        assert backbone.interpretable.tau == (0.5 if label.endswith("tau 0.5") else None)  # None: the paper's 0.5/(h*w)
    assert not hasattr(dis, "ensure_interpretable_byol")
