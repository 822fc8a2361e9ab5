"""Seeded benchmarks: the shared mean ± sd helper and the cross-modal / dissection seed bookkeeping."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from load_script import load_script

ROOT = Path(__file__).resolve().parents[1]


def _load(name: str):
    return load_script(ROOT / "benchmarks" / f"{name}.py", f"bench_{name}")


@pytest.fixture(scope="module")
def benchmarks_on_path():
    sys.path.insert(0, str(ROOT / "benchmarks"))  # the scripts import their sibling helpers as run from there
    try:
        yield
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))


def test_seed_summary_and_mean_sd_reference_values(benchmarks_on_path):
    seeds = _load("bench_seeds")
    s = seeds.seed_summary([0.1, 0.3, None, float("nan")])
    assert s["values"] == [0.1, 0.3] and s["n"] == 2
    assert s["mean"] == pytest.approx(0.2) and s["sd"] == pytest.approx(0.02 ** 0.5)  # sample sd
    assert seeds.seed_summary([0.5]) == {"values": [0.5], "n": 1, "mean": 0.5, "sd": None}
    assert seeds.mean_sd([1.0, 2.0, 3.0], 2) == "2.00 ± 1.00"
    # the explainable and cross-modal benchmarks use this helper, not a copy
    assert _load("explainable").mean_sd.__module__ == "bench_seeds"
    assert _load("crossmodal").mean_sd.__module__ == "bench_seeds"


def _entry(r1: float, probe: float) -> dict:
    direction = {"R@1": r1, "R@5": 0.9, "R@10": 1.0, "median_rank": 1.0, "chance_R@1": 0.001, "chance_R@5": 0.005,
                 "chance_R@10": 0.01, "chance_median_rank": 473.0, "queries": 1000, "gallery": 946}
    return {
        "retrieval": {"image_to_text": direction, "text_to_image": {**direction, "R@1": r1 / 2},
                      "embeddings": {"image_rank": 50.0, "text_rank": 40.0, "image_std": 0.06, "text_std": 0.06,
                                     "dim": 256, "healthy_std": 0.0625}},
        "train_monitors": {"image_rank": 20.0},
        "probe": {"linear_probe": probe, "knn": 0.3},
        "train_s": 10.0,
    }


def test_crossmodal_variants_configs_and_per_seed_summary(benchmarks_on_path, tmp_path):
    xm = _load("crossmodal")
    args = xm.parse_args(["--seeds", "0", "2", "--projector-norm", "layer", "none", "--out", str(tmp_path / "runs"),
                          "--json", str(tmp_path / "r.json")])
    assert xm.variants(args) == ["xmodal_layer", "xmodal_none", "clip"]
    cfg = xm.config_for(args, "xmodal_none", 2)
    assert (cfg.method.name, cfg.method.crossmodal.projector_norm, cfg.train.seed, cfg.data.seed) == ("xmodal", "none", 2, 1)
    assert Path(cfg.out_dir) == tmp_path / "runs" / "seed2"
    clip = xm.config_for(args, "clip", 0)
    assert (clip.method.name, clip.method.crossmodal.projector_norm, clip.train.seed) == ("clip", "batch", 0)

    path = tmp_path / "r.json"
    data = xm.load_results(path, args)
    data["runs"] = {"seed0": {"xmodal_layer": _entry(0.5, 0.3)}, "seed2": {"xmodal_layer": _entry(0.7, 0.4)}}
    xm.save_results(path, data)
    saved = json.loads(path.read_text())
    assert saved["seeds"] == [0, 2]
    r1 = saved["summary"]["xmodal_layer"]["image_to_text/R@1"]
    assert r1["values"] == [0.5, 0.7] and r1["mean"] == pytest.approx(0.6) and r1["sd"] == pytest.approx(0.02 ** 0.5)
    assert saved["summary"]["xmodal_layer"]["text_to_image/R@1"]["mean"] == pytest.approx(0.3)
    assert saved["summary"]["xmodal_layer"]["seeds"] == [0, 2]
    assert "| **image->text R@1, %** | 60.0 ± 14.1 |" in xm.table(saved, ["xmodal_layer"])
    with pytest.raises(SystemExit, match="budget") as stop:
        xm.load_results(path, xm.parse_args(["--steps", "7", "--json", str(path)]))
    assert stop.value.code == 2  # bad input: exit status 2, the line names the file


def test_crossmodal_ratio_to_clip_is_paired_by_seed(benchmarks_on_path, tmp_path):
    xm = _load("crossmodal")
    args = xm.parse_args(["--json", str(tmp_path / "r.json")])
    data = xm.load_results(tmp_path / "r.json", args)
    # seed 1 has no clip run: it must not enter the ratio; ratios 0.5/1.0 and 0.7/0.7
    data["runs"] = {"seed0": {"xmodal_batch": _entry(0.5, 0.3), "clip": _entry(1.0, 0.4)},
                    "seed1": {"xmodal_batch": _entry(0.9, 0.3)},
                    "seed2": {"xmodal_batch": _entry(0.7, 0.3), "clip": _entry(0.7, 0.4)}}
    assert xm.ratio_to_clip(data, "xmodal_batch", "image_to_text/R@1") == pytest.approx([0.5, 1.0])
    summary = xm.summarise(data)
    ratio = summary["xmodal_batch"]["text_to_image/R@1/over_clip"]  # text->image R@1 is half, so the same ratios
    assert ratio["mean"] == pytest.approx(0.75) and ratio["sd"] == pytest.approx(0.125 ** 0.5)
    assert "image_to_text/R@1/over_clip" not in summary["clip"]
    rendered = xm.table(data, ["xmodal_batch", "clip"])
    assert "| image->text R@1, xmodal / clip, % (per seed) | 75.0 ± 35.4 |  |  |" in rendered
    assert "| **image->text R@1, %** | 70.0 ± 20.0 | 85.0 ± 21.2 | 0.1 |" in rendered
    assert "clip (seeds 0, 2 only)" in rendered.splitlines()[0]
    assert "(n=1) is a single run" not in xm.section(args, data, ["xmodal_batch", "clip"], "cmd")
    del data["runs"]["seed2"]["clip"]  # clip now has one seed: its cells have no spread, and the text says so
    assert "a cell marked (n=1) is a single run with no spread" in xm.section(args, data, ["xmodal_batch", "clip"], "cmd")


def test_crossmodal_write_keeps_hand_written_subsections(benchmarks_on_path, tmp_path):
    xm = _load("crossmodal")
    path = tmp_path / "BENCHMARKS.md"
    path.write_text("# Benchmarks\n\n" + xm.SECTION + "\n\nold table\n\n### Longer budget\n\nby hand\n\n### Reading\n\n"
                    "- kept\n\n## Next section\n\nother\n")
    xm.write_section(path, xm.SECTION, xm.SECTION + "\n\nnew table\n", keep="### ")
    assert path.read_text() == ("# Benchmarks\n\n" + xm.SECTION + "\n\nnew table\n\n### Longer budget\n\nby hand\n\n"
                                "### Reading\n\n- kept\n\n## Next section\n\nother\n")


def _dissection_row(seed: int, init: str, detectors: int, loss: str) -> dict:
    return {"seed": seed, "model": "byol", "init": init, "layer": "stages.3", "units": 128, "detectors": detectors,
            "unique_paper": 2, "unique_release": 3, "paper_per_group": {"shape": 0, "colour": seed},
            "release_per_group": {"shape": 1, "colour": 2}, "loss": loss, "loss_filter": ""}


def test_dissection_rows_become_mean_sd_over_seeds(benchmarks_on_path):
    dis = _load("dissection")
    rows = [_dissection_row(0, "trained", 20, "1.5"), _dissection_row(0, "random init", 11, ""),
            _dissection_row(1, "trained", 30, "1.7"), _dissection_row(1, "random init", 11, "")]
    summary = dis.summarise(rows)
    assert [(e["init"], e["seeds"]) for e in summary] == [("trained", [0, 1]), ("random init", [0, 1])]
    assert summary[0]["detectors"]["mean"] == 25 and summary[0]["detectors"]["sd"] == pytest.approx(50 ** 0.5)
    assert summary[0]["paper_per_group"]["colour"]["values"] == [0.0, 1.0]
    assert summary[1]["loss"]["n"] == 0  # random-init rows have no training loss
    lines = dis.table_rows(summary)
    assert lines[2] == ("| byol | trained | `stages.3` | 25.0 ± 7.1 / 128 | 2.0 ± 0.0 | 3.0 ± 0.0 | 0.0 ± 0.0 / 1.0 ± 0.0 "
                        "| 0.5 ± 0.7 / 2.0 ± 0.0 | 1.600 ± 0.141 |")
    assert lines[3].endswith("| 11.0 ± 0.0 / 128 | 2.0 ± 0.0 | 3.0 ± 0.0 | 0.0 ± 0.0 / 1.0 ± 0.0 | 0.5 ± 0.7 / 2.0 ± 0.0 |  |")
    one_seed = dis.table_rows(dis.summarise(rows[:2]))
    assert "| 20 / 128 | 2 | 3 | 0 / 1 | 0 / 2 | 1.500 |" in one_seed[2]


# ----------------------------------------------------------------------------- paired comparisons (hand-worked)

T2 = 4.302652729911275  # t(0.975, 2 degrees of freedom), from a printed t table
Z = 1.959963984540054  # the standard normal's 0.975 quantile


def test_paired_interval_is_the_t_interval_of_per_seed_differences(benchmarks_on_path):
    seeds = _load("bench_seeds")
    # d = (0.1, 0.2, 0.3): mean 0.2, sd 0.1, half = 4.3027 * 0.1 / sqrt(3) = 0.24841
    lo, hi = seeds.paired_interval([0.5, 0.6, 0.7], [0.4, 0.4, 0.4])
    assert (lo, hi) == pytest.approx((0.2 - T2 * 0.1 / 3 ** 0.5, 0.2 + T2 * 0.1 / 3 ** 0.5))
    assert (lo, hi) == pytest.approx((-0.04841, 0.44841), abs=1e-5)
    assert seeds.difference_verdict((lo, hi)) == "no difference at this budget"
    # d = (0.20, 0.21, 0.22): mean 0.21, sd 0.01, half 0.024841 -> wholly above 0
    iv = seeds.paired_interval([0.7, 0.71, 0.72], [0.5, 0.5, 0.5])
    assert iv == pytest.approx((0.185159, 0.234841), abs=1e-6)
    assert seeds.difference_verdict(iv) == "higher"
    assert seeds.difference_verdict(seeds.paired_interval([0.5, 0.5, 0.5], [0.7, 0.71, 0.72])) == "lower"
    # a fixed test set adds its standard error: half = sqrt(0.024841^2 + (1.96 * 0.01)^2) = 0.031643
    iv = seeds.paired_interval([0.7, 0.71, 0.72], [0.5, 0.5, 0.5], test_se=0.01)
    assert iv == pytest.approx((0.21 - 0.031643, 0.21 + 0.031643), abs=1e-6)
    assert ((iv[1] - iv[0]) / 2) ** 2 == pytest.approx((T2 * 0.01 / 3 ** 0.5) ** 2 + (Z * 0.01) ** 2)
    # pairing matters: unpaired intervals of a = (0.5, 0.6, 0.7) and b = a - 0.05 overlap, the paired one excludes 0
    assert seeds.difference_verdict(seeds.paired_interval([0.5, 0.6, 0.7], [0.45, 0.55, 0.65])) == "higher"
    assert seeds.interval_verdict(seeds.interval95(seeds.seed_summary([0.5, 0.6, 0.7])),
                                  seeds.interval95(seeds.seed_summary([0.45, 0.55, 0.65]))) == "no difference at this budget"
    assert seeds.paired_interval([0.5], [0.4]) is None
    assert seeds.difference_verdict(None).startswith("undecided")
    assert seeds.difference_verdict((0.0, 0.3)) == "no difference at this budget"  # 0 on an end counts as inside
    with pytest.raises(ValueError, match="same seeds"):
        seeds.paired_interval([0.5, 0.6], [0.4])


def test_test_set_standard_errors_hand_worked(benchmarks_on_path):
    seeds = _load("bench_seeds")
    assert seeds.binomial_se(0.9, 100) == pytest.approx(0.03)  # sqrt(0.9 * 0.1 / 100)
    assert seeds.accuracy_difference_se(0.9, 0.8, 100) == pytest.approx(0.05)  # sqrt(0.0009 + 0.0016)
    # one seed, 4 images: hits a = 1101, b = 1000 -> d = 0,1,0,1: sample sd sqrt(1/3), se = sqrt(1/3) / 2 = 0.288675
    se = seeds.paired_test_se([[1, 1, 0, 1]], [[1, 0, 0, 0]])
    assert se == pytest.approx(0.288675, abs=1e-6)
    # McNemar's standard error with b = 2, c = 0 discordant images: sqrt(2 - 4 / 4) / 4 = 0.25, times sqrt(4 / 3)
    assert se == pytest.approx(0.25 * (4 / 3) ** 0.5)
    # two seeds: D_j is the mean over seeds of the per-image difference: (0.5, 0.5, 0, 1) -> sd 0.408248, / 2
    se2 = seeds.paired_test_se([[1, 1, 0, 1], [1, 0, 0, 1]], [[1, 0, 0, 0], [0, 0, 0, 0]])
    assert se2 == pytest.approx(0.204124, abs=1e-6)
    with pytest.raises(ValueError, match="same shape"):
        seeds.paired_test_se([[1, 0]], [[1, 0, 1]])
