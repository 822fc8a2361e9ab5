"""Every marked verdict of benchmarks/BENCHMARKS.md is what the paired rule gives on the committed JSON."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from load_script import benchmark_script

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def verdicts():
    with benchmark_script("verdicts") as module:
        yield module


def test_every_marked_verdict_in_benchmarks_md_matches_the_json(verdicts):
    found = verdicts.check(ROOT / "benchmarks" / "BENCHMARKS.md", ROOT / "benchmarks" / "results")
    assert len(found) >= 30, "the explainability, quality and cross-modal readings carry their verdict markers"
    bad = [f"line {v.line}: {v.a} vs {v.b}: text says {v.stated}, the JSON gives {v.computed}" for v in found if not v.ok]
    assert not bad, "\n".join(bad)


def _write(tmp_path: Path, md: str, data: dict) -> tuple[Path, Path]:
    (tmp_path / "r").mkdir()
    (tmp_path / "r" / "explainable.json").write_text(json.dumps(data))
    (tmp_path / "B.md").write_text(md)
    return tmp_path / "B.md", tmp_path / "r"


def _one_verdict(verdicts, tmp_path: Path, file: str, data: dict, marker: str):
    """The one verdict of a BENCHMARKS.md holding ``<!-- verdict file: marker -->`` over ``data`` as ``file``."""
    (tmp_path / "r").mkdir()
    (tmp_path / "r" / file).write_text(json.dumps(data))
    (tmp_path / "B.md").write_text(f"<!-- verdict {file}: {marker} -->\n")
    (v,) = verdicts.check(tmp_path / "B.md", tmp_path / "r")
    return v


def test_a_wrong_stated_verdict_is_caught_and_pairing_is_by_seed(verdicts, tmp_path):
    # per-seed a - b = 0.05 exactly: the paired interval is (0.05, 0.05), "higher", although the unpaired
    # intervals of a (0.5, 0.6, 0.7) and b (0.45, 0.55, 0.65) overlap
    runs = {f"seed{i}": {"x": {"m": a}, "y": {"m": b}} for i, (a, b) in enumerate([(0.5, 0.45), (0.6, 0.55), (0.7, 0.65)])}
    md, res = _write(tmp_path, "text <!-- verdict explainable.json: runs/*/x/m vs runs/*/y/m = no difference --> "
                     "more <!-- verdict explainable.json: runs/*/x/m vs runs/*/y/m = higher -->\n", {"runs": runs})
    found = verdicts.check(md, res)
    assert [v.ok for v in found] == [False, True]
    assert found[0].computed == "higher" and found[0].interval == pytest.approx((0.05, 0.05))
    assert verdicts.main(["--md", str(md), "--results", str(res)]) == 1


def test_fixed_test_set_adds_the_binomial_error_and_mean_of_groups(verdicts, tmp_path):
    # quality_seeds layout, digits (360 fixed test images): per-seed differences 0.017 exactly, so the seed part is 0
    # and the half-width is 1.96 * sqrt(0.978 * 0.022 / 360 + 0.961 * 0.039 / 360) = 0.025090 -> no difference
    data = {"runs": {"digits": {f"seed{i}": {"byol": {"knn": 0.978}} for i in range(3)}},
            "raw_pixels": {"digits": {"knn": 0.961}}}
    v = _one_verdict(verdicts, tmp_path, "quality_seeds.json", data,
                     "runs/digits/*/byol/knn vs raw_pixels/digits/knn = no difference")
    assert v.ok and v.interval == pytest.approx((0.017 - 0.025090, 0.017 + 0.025090), abs=1e-6)
    # "@mean" is the mean of a dict's groups, leaving out the "_chance" entries
    assert verdicts.side_values({"runs": {"seed0": {"x": {"a": 0.2, "a_chance": 0.9, "b": 0.4}}}},
                                "runs/*/x/@mean") == {"seed0": pytest.approx(0.3)}


def test_fixed_test_set_uses_per_image_scores_when_the_file_has_them(verdicts, tmp_path):
    # Fashion-MNIST layout: hits per image as "1"/"0"/"-". Seeds: a = 1101, 1001 (0.75, 0.5), b = 1000, 0000 (0.25, 0).
    # Per-seed differences 0.5, 0.5 -> seed part 0. Per image, the mean over seeds of a - b: 0.5, 0.5, 0, 1 ->
    # sample sd 0.408248 / sqrt(4) = 0.204124; half = 1.959964 * 0.204124 = 0.400076 -> (0.099924, 0.900076), "higher".
    # The fifth image has no true concept ("-") and is left out of both.
    def entry(hits: str) -> dict:
        acc = hits.replace("-", "").count("1") / len(hits.replace("-", ""))
        return {"concepts": {"concept_accuracy": {"class": acc}, "per_image": {"hit_class": hits}}}
    runs = {"seed0": {"x": entry("1101-"), "y": entry("1000-")}, "seed1": {"x": entry("1001-"), "y": entry("0000-")}}
    v = _one_verdict(verdicts, tmp_path, "explainable_fashion_mnist.json", {"runs": runs},
                     "runs/*/x/concepts/concept_accuracy/class vs runs/*/y/concepts/concept_accuracy/class = higher")
    assert v.ok and v.note == "per-image"
    assert v.interval == pytest.approx((0.5 - 0.400076, 0.5 + 0.400076), abs=1e-6)


def test_probe_and_knn_hits_per_image_give_the_paired_test_error(verdicts, tmp_path):
    # validation-sweep layout: runs/<arm>/<seed>/linear_probe with per_image/hit_linear_probe. Hits of a: 1101, 1011;
    # of b: 1001, 1001 (accuracies 0.75, 0.75 vs 0.5, 0.5: per-seed differences 0.25, 0.25, seed part 0). Per image,
    # the mean over seeds of a - b: 0, 0.5, 0.5, 0 -> sample sd 0.288675 / sqrt(4) = 0.144338; half = 1.959964 *
    # 0.144338 = 0.282897 -> (-0.032897, 0.532897): no difference, where the binomial bound would be wider still.
    def entry(hits: str) -> dict:
        return {"linear_probe": hits.count("1") / len(hits), "per_image": {"hit_linear_probe": hits}}
    runs = {"a": {"seed0": entry("1101"), "seed1": entry("1011")}, "base": {"seed0": entry("1001"), "seed1": entry("1001")}}
    v = _one_verdict(verdicts, tmp_path, "fmnist_validation_sweep.json", {"runs": runs},
                     "runs/a/*/linear_probe vs runs/base/*/linear_probe = no difference")
    assert v.ok and v.note == "per-image"
    assert v.interval == pytest.approx((0.25 - 0.282897, 0.25 + 0.282897), abs=1e-6)


def test_near_flip_rule_on_hand_worked_intervals(verdicts):
    near = verdicts.near_flip
    # no difference: flagged where |mean| >= half-width / 2 (five seeds' interval, about half as wide, could decide it)
    assert near((-0.01, 0.05))  # mean 0.02, half-width 0.03: 0.02 >= 0.015
    assert not near((-0.03, 0.03))  # centred on 0
    assert not near((-0.02, 0.03))  # mean 0.005 < half-width 0.025 / 2
    # decided: flagged where the edge nearest 0 is within one half-width of it (|mean| < 2 half-widths)
    assert near((0.005, 0.035))  # mean 0.02, half-width 0.015: edge 0.005 < 0.015
    assert near((-0.035, -0.005))  # the same below 0
    assert not near((0.10, 0.12))  # edge 0.10, half-width 0.01
    assert not near(None)  # undecided: no interval


def test_near_flip_listing_names_the_verdict_and_its_seeds(verdicts, tmp_path, capsys):
    data = {"runs": {f"seed{i}": {"a": {"s": a}, "b": {"s": 0.0}} for i, a in enumerate((0.01, 0.02, 0.03))}}
    md, results = _write(tmp_path, "<!-- verdict explainable.json: runs/*/a/s vs runs/*/b/s = no difference -->\n", data)
    assert verdicts.main(["--md", str(md), "--results", str(results), "--near-flip"]) == 0
    out = capsys.readouterr().out
    # differences 0.01, 0.02, 0.03: mean 0.02, sd 0.01, half-width 4.303 * 0.01 / sqrt(3) = 0.0248: 0 inside, and
    # |mean| 0.02 >= 0.0124, so near flipping
    assert "near flipping (1):\n  line 1: explainable.json runs/*/a/s vs runs/*/b/s: no difference at this budget" in out
    assert "(-0.0048 .. +0.0448; seeds seed0, seed1, seed2)" in out
