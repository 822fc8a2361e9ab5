"""The benchmark scripts run end to end at a tiny budget (their figures live in BENCHMARKS.md).

These are not speed or quality targets: they check that ``benchmarks/quality.py`` and
``benchmarks/train_throughput.py`` still work against the library and that the pieces
that do not depend on training length behave as their docstrings say.
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import re
import statistics
import sys
import types
from pathlib import Path

import numpy as np
import pytest
import torch
from load_script import benchmark_script, load_script

from xbyol.augment import blur, preprocessing, views
from xbyol.concepts.projection import run_bank
from xbyol.config import from_dict
from xbyol.data.idx import write_idx
from xbyol.eval.concept_eval import concept_scores
from xbyol.eval.evaluate import probe_and_knn
from xbyol.run import load_run
from xbyol.training import train

ROOT = Path(__file__).resolve().parents[1]


def _load(name: str):
    return load_script(ROOT / "benchmarks" / f"{name}.py", f"bench_{name}")


@pytest.fixture(scope="module")
def bench_markdown():
    return _load("bench_markdown")


def test_replace_section_swaps_one_section_with_its_subsections(bench_markdown):
    md = "# Benchmarks\n\n## A\n\nold a\n\n### A detail\n\nold detail\n\n## B\n\nb\n"
    out = bench_markdown.replace_section(md, "## A", "## A\n\nnew a\n")
    assert out == "# Benchmarks\n\n## A\n\nnew a\n\n## B\n\nb\n"
    # the last section runs to the end of the file
    out = bench_markdown.replace_section(md, "## B", "## B\n\nnew b")
    assert out == "# Benchmarks\n\n## A\n\nold a\n\n### A detail\n\nold detail\n\n## B\n\nnew b\n"


def test_replace_section_appends_a_missing_section_and_titles_an_empty_file(bench_markdown, tmp_path):
    assert bench_markdown.replace_section("# Benchmarks\n\n## A\n\na\n", "## C", "## C\n\nc\n") == (
        "# Benchmarks\n\n## A\n\na\n\n## C\n\nc\n"
    )
    path = tmp_path / "BENCHMARKS.md"
    bench_markdown.write_section(path, "## C", "## C\n\nc\n")
    assert path.read_text() == "# Benchmarks\n\n## C\n\nc\n"


def test_write_section_keeps_the_hand_written_reading_after_generated_subsections(bench_markdown, tmp_path):
    """explainable.py renders '### ' tables of its own, so only the part from '### Reading' is kept."""
    path = tmp_path / "BENCHMARKS.md"
    path.write_text("# Benchmarks\n\n## A\n\nold\n\n### Table\n\nold t\n\n### Reading\n\n- by hand\n\n## B\n\nb\n")
    bench_markdown.write_section(path, "## A", "## A\n\nnew\n\n### Table\n\nnew t\n", keep="### Reading")
    assert path.read_text() == ("# Benchmarks\n\n## A\n\nnew\n\n### Table\n\nnew t\n\n### Reading\n\n- by hand\n\n"
                                "## B\n\nb\n")
    assert bench_markdown.hand_written_tail(path.read_text(), "## B", "### Reading") == ""  # no such line in B
    assert bench_markdown.hand_written_tail("# Benchmarks\n", "## A", "### Reading") == ""  # no section A


@pytest.fixture(scope="module")
def quality():
    with benchmark_script("quality") as module:  # it imports its sibling helpers
        yield module


@pytest.fixture(scope="module")
def throughput():
    with benchmark_script("train_throughput") as module:  # it imports its sibling helpers
        yield module


def test_quality_raw_pixel_baseline_on_digits_is_strong(quality, tmp_path):
    """Digits are nearly linearly separable in pixel space: the raw-pixel probe must be far above chance (0.1)."""
    cfg = quality.make_cfg("digits", 2, str(tmp_path), [])
    splits = (quality.build_dataset(cfg, "train"), quality.build_dataset(cfg, "test"))
    scores = quality.score_pixels(splits, cfg)
    assert scores["linear_probe"] > 0.85
    assert scores["knn"] > 0.85


def test_quality_run_dataset_reports_every_representation(quality, tmp_path):
    overrides = ["data.num_train=96", "data.num_test=48", "data.batch_size=32", "train.log_every=1",
                 "model.proj_hidden=32", "model.proj_dim=16", "model.pred_hidden=32"]
    res = quality.run_dataset("shapes", 2, str(tmp_path), overrides)
    assert (res["dataset"], res["steps"], res["batch_size"]) == ("shapes", 2, 32)
    assert (res["train_images"], res["test_images"]) == (96, 48)
    for key in ("byol", "random_init", "raw_pixels", "supervised"):
        assert set(res[key]) == {"linear_probe", "knn"}
        for value in res[key].values():
            assert 0.0 <= value <= 1.0
            # 48 test images: every accuracy is a multiple of 1/48
            assert abs(value * 48 - round(value * 48)) < 1e-4
    assert res["byol_train_s"] > 0 and res["supervised_train_s"] > 0


@pytest.mark.parametrize("concat", ["true", "false"])
def test_throughput_limit_step_trains_and_updates_the_target(throughput, tmp_path, monkeypatch, concat):
    # tau 0.5 and a large step: the EMA formula below tells tau 0.5 from any other tau by far more than float error
    over = (f"method.concat_views={concat}", "method.tau_base=0.5", "train.lr=0.05")
    cfg = throughput.make_cfg("resnet10_16", 8, 1, str(tmp_path), over)
    cfg.model.proj_hidden, cfg.model.proj_dim, cfg.model.pred_hidden = 32, 16, 32
    built = {}
    real_setup = throughput._setup

    def keep(*args, **kwargs):
        out = real_setup(*args, **kwargs)
        built["method"] = method = out[2]
        built["start"] = [p.detach().clone() for p in method.target_projector.parameters()]
        return out

    monkeypatch.setattr(throughput, "_setup", keep)
    times = throughput.limit_step_times(cfg, warmup=0, steps=1)
    assert len(times) == 1
    # one optimiser step moved the online projector; the target (its copy at the start) took the EMA step
    # of the first of one steps, tau = tau_base = 0.5: target = (start + online) / 2
    method = built["method"]
    targets, onlines = method.target_projector.parameters(), method.projector.parameters()
    for start, target, online in zip(built["start"], targets, onlines):
        assert (online - start).abs().max() > 1e-3
        torch.testing.assert_close(target, 0.5 * start + 0.5 * online)


def test_throughput_resolves_auto_as_the_trainer_does(throughput, tmp_path):
    cfg = throughput.make_cfg("resnet10_16", 8, 3, str(tmp_path), ("train.precision=auto", "train.channels_last=auto", "method.concat_views=auto"))
    r = throughput.resolved(cfg, torch.device("cpu"))
    assert r.train.channels_last is True and r.method.concat_views is True
    assert r.train.precision == ("bf16" if torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported() else "fp32")


def test_throughput_full_step_clock_sees_every_step(throughput, tmp_path, monkeypatch):
    cfg = throughput.make_cfg("resnet10_16", 8, 4, str(tmp_path))
    cfg.model.proj_hidden, cfg.model.proj_dim, cfg.model.pred_hidden = 32, 16, 32
    assert cfg.train.steps == 4 and cfg.data.num_train == 32
    walls, cpus = itertools.count(), itertools.count()  # a fake clock: the k-th mark reads k^2 s wall, 10 k s CPU
    fake_time = types.SimpleNamespace(perf_counter=lambda: float(next(walls) ** 2),
                                      process_time=lambda: 10.0 * next(cpus))
    monkeypatch.setattr(throughput, "time", fake_time)
    times = throughput.full_step_times(cfg, warmup=1)
    # one mark after each of the 4 steps, at 0, 1, 4, 9 s: a step is the time since the mark before it, so
    # the first step (no mark before it) is the one discarded
    assert times == [(1.0, 10.0), (3.0, 10.0), (5.0, 10.0)]


def test_throughput_main_runs_every_setting_end_to_end(throughput, capsys, monkeypatch, tmp_path):
    monkeypatch.setattr(throughput, "DEFAULT_STEPS", {"resnet10_16": (1, 2)})
    real_make_cfg = throughput.make_cfg

    def small(backbone, batch_size, steps, out_dir, overrides=()):
        cfg = real_make_cfg(backbone, batch_size, steps, out_dir, overrides)
        cfg.model.proj_hidden, cfg.model.proj_dim, cfg.model.pred_hidden = 32, 16, 32
        return cfg

    monkeypatch.setattr(throughput, "make_cfg", small)
    threads = torch.get_num_threads()
    settings = ["fp32 NCHW concat (old defaults)", "bf16 CL concat", "auto (defaults)"]
    out_json = tmp_path / "throughput.json"
    try:
        code = throughput.main(["--backbones", "resnet10_16", "--batch-sizes", "8", "--reps", "1", "--threads", "1",
                                "--settings", *settings, "--stages", "--json", str(out_json)])
    finally:
        torch.set_num_threads(threads)
    out = capsys.readouterr().out
    for setting in settings:
        assert f"| resnet10_16 | 8 | {setting} |" in out
    rows = json.loads(out_json.read_text())["rows"]
    assert [r["setting"] for r in rows] == settings
    assert all(abs(sum(r["stage_share"].values()) - 1) < 1e-6 for r in rows)
    assert code in (0, 1)  # PASS or FAIL depends on this machine's timing; the verdict is checked below



def test_throughput_device_reaches_every_run_and_a_missing_one_is_one_line(throughput, capsys, monkeypatch):
    seen = []
    monkeypatch.setattr(throughput, "limit_step_times", lambda cfg, warmup, steps: seen.append(cfg.train.device) or [(0.1, 0.1)])
    monkeypatch.setattr(throughput, "full_step_times", lambda cfg, warmup: seen.append(cfg.train.device) or [(0.1, 0.1)])
    threads = torch.get_num_threads()
    try:
        code = throughput.main(["--backbones", "resnet10_16", "--batch-sizes", "8", "--reps", "1", "--threads", "1",
                                "--pairing", "runs", "--device", "cpu", "--settings", "bf16 CL separate", "bf16 CL concat"])
        assert code == 0 and seen == ["cpu"] * 4
        monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
        assert throughput.main(["--device", "cuda", "--threads", "1"]) == 2
    finally:
        torch.set_num_threads(threads)
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["train_throughput.py: --device: train.device: 'cuda' requested but CUDA is not available"]


def test_throughput_swaps_which_arm_runs_first_every_repetition(throughput, monkeypatch):
    order = []
    monkeypatch.setattr(throughput, "limit_step_times", lambda cfg, warmup, steps: order.append("limit") or [(0.1, 0.1)])
    monkeypatch.setattr(throughput, "full_step_times", lambda cfg, warmup: order.append("full") or [(0.1, 0.1)])
    threads = torch.get_num_threads()
    try:
        throughput.main(["--backbones", "resnet10_16", "--batch-sizes", "8", "--reps", "3", "--threads", "1",
                         "--pairing", "runs", "--settings", "bf16 CL concat"])
    finally:
        torch.set_num_threads(threads)
    assert order == ["limit", "full", "full", "limit", "limit", "full"]


def _timings(throughput, monkeypatch, limit, full):
    """Make the benchmark's clocks return fixed step times: ``limit`` and ``full`` list, per repetition,
    the (wall, CPU) seconds of each timed step; stage_times gives fixed per-stage seconds."""
    calls = {"limit": iter(limit), "full": iter(full)}
    monkeypatch.setattr(throughput, "limit_step_times", lambda cfg, warmup, steps: next(calls["limit"]))
    monkeypatch.setattr(throughput, "full_step_times", lambda cfg, warmup: next(calls["full"]))
    stages = {"data": [1, 3], "to_device": [0, 0], "augment": [2, 2], "forward_backward": [4, 4], "optimizer": [1, 1],
              "ema": [0, 0]}  # medians 2, 0, 2, 4, 1, 0 of a 9 s step
    monkeypatch.setattr(throughput, "stage_times", lambda cfg, warmup, steps: stages)


def test_throughput_main_medians_ratio_and_verdict_from_known_step_times(throughput, capsys, monkeypatch, tmp_path):
    # batch 8, three repetitions (img/s = 8 / median step seconds):
    #   limit 0.1 and 0.3 s -> 40 img/s, full 0.1 s -> 80 img/s: ratio 2.0
    #   limit 0.1 s -> 80 img/s, full 0.25 s -> 32 img/s: ratio 0.4
    #   limit 0.05 s -> 160 img/s, full 0.2 s -> 40 img/s: ratio 0.25
    # CPU seconds: limit 0.2 (40 img/s) each time, full 0.4, 0.4, 0.1: ratios 0.5, 0.5, 2.0
    limit = [[(0.1, 0.2), (0.3, 0.2)], [(0.1, 0.2), (0.1, 0.2)], [(0.05, 0.2), (0.05, 0.2)]]
    full = [[(0.1, 0.4), (0.1, 0.4)], [(0.25, 0.4), (0.25, 0.4)], [(0.2, 0.1), (0.2, 0.1)]]
    _timings(throughput, monkeypatch, limit, full)
    threads = torch.get_num_threads()
    out_json = tmp_path / "fail.json"
    try:
        code = throughput.main(["--backbones", "resnet10_16", "--batch-sizes", "8", "--reps", "3", "--threads", "1",
                                "--pairing", "runs", "--settings", "bf16 CL concat", "--stages", "--json", str(out_json)])
    finally:
        torch.set_num_threads(threads)
    (row,) = json.loads(out_json.read_text())["rows"]
    assert row["full_img_s"] == pytest.approx(40.0)  # median of 80, 32, 40
    assert row["limit_img_s"] == pytest.approx(80.0)  # median of 40, 80, 160
    assert row["ratios"] == pytest.approx([2.0, 0.4, 0.25])
    assert row["ratio"] == pytest.approx(0.4)  # the median of the repetitions' ratios
    assert row["ratio_cpu_time"] == pytest.approx(0.5)
    assert row["stage_share"] == pytest.approx({"data": 2 / 9, "to_device": 0.0, "augment": 2 / 9,
                                                "forward_backward": 4 / 9, "optimizer": 1 / 9, "ema": 0.0})
    # ratios 2.0, 0.4, 0.25: mean 0.88333, sample sd 0.96997 (squared deviations 1.24694, 0.23361, 0.40111, over 2);
    # t(0.975, 2) = 4.30265, half-width 4.30265 * 0.96997 / sqrt(3) = 2.40954: the interval (-1.52620, 3.29287)
    # holds 0.95
    assert row["ratio_mean"] == pytest.approx(0.88333, abs=1e-5)
    assert row["ratio_interval95"] == pytest.approx([-1.52620, 3.29287], abs=1e-4)
    assert row["verdict"] == "undecided"
    out = capsys.readouterr().out
    row_line = ("| resnet10_16 | 8 | bf16 CL concat | 40.0 | 80.0 | **0.400** | 0.883 (-1.526 to 3.293) | undecided | "
                "2.00, 0.40, 0.25 | 0.50 | 22, 0, 22, 44, 11, 0 |")
    assert row_line in out
    assert code == 1 and out.splitlines()[-1].endswith(": FAIL")  # 0.4 < 0.95
    # a full step as fast as the limit passes
    _timings(throughput, monkeypatch, [[(0.2, 0.2), (0.2, 0.2)]], [[(0.2, 0.2), (0.2, 0.2)]])
    try:
        code = throughput.main(["--backbones", "resnet10_16", "--batch-sizes", "8", "--reps", "1", "--threads", "1",
                                "--pairing", "runs", "--settings", "bf16 CL concat"])
    finally:
        torch.set_num_threads(threads)
    assert code == 0 and capsys.readouterr().out.splitlines()[-1].endswith(": PASS")


def test_throughput_verdict_places_the_interval_against_the_target(throughput):
    assert throughput.verdict((0.95, 1.2)) == "met"  # touching 0.95 from above counts
    assert throughput.verdict((0.90, 0.949)) == "missed"
    assert throughput.verdict((0.94, 0.96)) == "undecided"
    assert throughput.verdict(None) == "undecided"  # one repetition: no interval


def test_throughput_paired_ratio_is_the_median_of_the_pairs(throughput):
    # wall: full 0.2, 0.1, 0.4 s and limit 0.18, 0.09, 0.1 s; pairs 0.9, 0.9, 0.25 -> median 0.9, while the
    # medians alone (0.1 / 0.2 = 0.5) would compare steps taken at different moments
    full = [(0.2, 1.0), (0.1, 1.0), (0.4, 1.0)]
    limit = [(0.18, 0.5), (0.09, 2.0), (0.1, 1.0)]
    paired = throughput.repetition_figures(full, limit, 8, paired=True)
    assert paired["ratio"] == pytest.approx(0.9)
    assert paired["ratio_cpu_time"] == pytest.approx(1.0)  # CPU pairs 0.5, 2.0, 1.0
    assert paired["full_img_s"] == pytest.approx(8 / 0.2) and paired["limit_img_s"] == pytest.approx(8 / 0.1)
    unpaired = throughput.repetition_figures(full, limit, 8, paired=False)
    assert unpaired["ratio"] == pytest.approx(0.5) and unpaired["ratio_cpu_time"] == pytest.approx(1.0)
    with pytest.raises(ValueError):  # pairs need equal counts
        throughput.repetition_figures(full, limit[:2], 8, paired=True)


def _tiny_throughput_cfg(throughput, tmp_path, steps: int):
    cfg = throughput.make_cfg("resnet10_16", 8, steps, str(tmp_path))
    cfg.model.proj_hidden, cfg.model.proj_dim, cfg.model.pred_hidden = 32, 16, 32
    return cfg


def test_throughput_interleaved_clock_splits_full_and_bare_steps(throughput, tmp_path, monkeypatch):
    cfg = _tiny_throughput_cfg(throughput, tmp_path, 4)
    calls = []
    monkeypatch.setattr(throughput, "_bare_step", lambda cfg: lambda i, total: calls.append((i, total)))
    # each optimiser step reads the clock twice: when it ends and when the bare step after it ends
    walls = iter([0.0, 1.0, 4.0, 5.0, 9.0, 12.0, 20.0, 21.0])
    cpus = itertools.count(step=10)
    monkeypatch.setattr(throughput, "time", types.SimpleNamespace(perf_counter=lambda: next(walls),
                                                                  process_time=lambda: float(next(cpus))))
    full, limit = throughput.interleaved_step_times(cfg, warmup=1)
    # full steps 2-4 run from the end of the bare step before them: 4 - 1, 9 - 5, 20 - 12; the bare steps
    # after steps 2-4 take 5 - 4, 12 - 9, 21 - 20; step 1 of each kind is the warm-up
    assert full == [(3.0, 10.0), (4.0, 10.0), (8.0, 10.0)]
    assert limit == [(1.0, 10.0), (3.0, 10.0), (1.0, 10.0)]
    assert calls == [(0, 4), (1, 4), (2, 4), (3, 4)]
    with pytest.raises(ValueError, match="warmup"):
        throughput.interleaved_step_times(cfg, warmup=0)


def test_throughput_interleaved_bare_steps_leave_the_run_unchanged(throughput, tmp_path):
    cfg = _tiny_throughput_cfg(throughput, tmp_path, 3)
    full, limit = throughput.interleaved_step_times(cfg, warmup=1)
    assert len(full) == len(limit) == 2 and all(w > 0 for w, _ in full + limit)
    interleaved = load_run(cfg.out_dir + "/" + cfg.name).backbone.state_dict()
    alone = load_run(train(cfg, overwrite=True)).backbone.state_dict()
    assert interleaved.keys() == alone.keys()
    assert all(torch.equal(interleaved[k], alone[k]) for k in alone)  # bit for bit: same data, same steps


def test_throughput_main_pairs_steps_by_default(throughput, capsys, monkeypatch, tmp_path):
    # two repetitions of three pairs: wall pair ratios 0.9, 0.9, 0.25 (median 0.9) and 1.0, 0.96, 0.96 (0.96)
    reps = iter([([(0.2, 1.0), (0.1, 1.0), (0.4, 1.0)], [(0.18, 1.0), (0.09, 1.0), (0.1, 1.0)]),
                 ([(0.1, 1.0), (0.1, 1.0), (0.1, 1.0)], [(0.1, 1.0), (0.096, 1.0), (0.096, 1.0)])])
    monkeypatch.setattr(throughput, "interleaved_step_times", lambda cfg, warmup: next(reps))
    monkeypatch.setattr(throughput, "limit_step_times", lambda *a: pytest.fail("runs pairing used"))
    threads = torch.get_num_threads()
    out_json = tmp_path / "steps.json"
    try:
        code = throughput.main(["--backbones", "resnet10_16", "--batch-sizes", "8", "--reps", "2", "--threads", "1",
                                "--settings", "auto (defaults)", "--json", str(out_json)])
    finally:
        torch.set_num_threads(threads)
    data = json.loads(out_json.read_text())
    (row,) = data["rows"]
    assert data["pairing"] == "steps" and data["reps"] == 2
    assert row["ratios"] == pytest.approx([0.9, 0.96])
    assert row["ratio"] == pytest.approx(0.93)  # the median of two is their mean
    assert code == 1 and "full and bare steps in turn" in capsys.readouterr().out


# a one-step shapes run small enough for the suite: 64 / 32 images and narrow heads
TINY_QUALITY_OVERRIDES = ["data.num_train=64", "data.num_test=32", "data.batch_size=32",
                          "model.proj_hidden=32", "model.proj_dim=16", "model.pred_hidden=32"]


def test_quality_byol_only_skips_the_baselines(quality, tmp_path):
    res = quality.run_dataset("shapes", 1, str(tmp_path), TINY_QUALITY_OVERRIDES, byol_only=True)
    assert set(res["byol"]) == {"linear_probe", "knn"}
    assert not {"random_init", "raw_pixels", "supervised"} & set(res)


def test_quality_baselines_only_skips_byol_and_matches_the_full_run(quality, tmp_path):
    res = quality.run_dataset("shapes", 1, str(tmp_path), TINY_QUALITY_OVERRIDES, baselines_only=True)
    assert "byol" not in res and "byol_train_s" not in res
    full = quality.run_dataset("shapes", 1, str(tmp_path), TINY_QUALITY_OVERRIDES)
    for key in ("random_init", "raw_pixels", "supervised"):
        assert res[key] == full[key], key  # the baselines do not depend on the BYOL run
    with pytest.raises(ValueError, match="exclude"):
        quality.run_dataset("shapes", 1, str(tmp_path), TINY_QUALITY_OVERRIDES, byol_only=True, baselines_only=True)


def test_quality_random_init_is_the_runs_random_init_twin(quality, tmp_path):
    cfg = quality.make_cfg("shapes", 1, str(tmp_path), TINY_QUALITY_OVERRIDES + ["train.seed=3"])
    twin = load_run(train(cfg, overwrite=True)).random_init_backbone(seed=3).state_dict()
    ours = quality.random_init(cfg).state_dict()
    assert ours.keys() == twin.keys() and all(torch.equal(ours[k], twin[k].cpu()) for k in ours)


def test_quality_byol_only_writes_the_json_it_is_asked_for(quality, tmp_path):
    out = tmp_path / "quality.json"
    code = quality.main(["--byol-only", "--steps", "1", "--threads", str(torch.get_num_threads()),
                         "--json", str(out), *TINY_QUALITY_OVERRIDES, "--datasets", "shapes"])
    assert code == 0
    (res,) = json.loads(out.read_text())
    assert res["dataset"] == "shapes" and res["steps"] == 1
    assert set(res["byol"]) == {"linear_probe", "knn"}


def test_quality_rejects_an_override_read_as_a_dataset_name(quality, capsys):
    """`--datasets shapes train.lr=1` takes the override as a dataset: argparse must name it before any training."""
    with pytest.raises(SystemExit) as exc:
        quality.main(["--datasets", "shapes", "train.lr=1"])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "invalid choice: 'train.lr=1'" in err
    assert "'digits', 'fashion-mnist', 'shapes'" in err


def test_quality_interval95_is_the_t_interval_of_the_mean(quality):
    # three seeds 0.1, 0.2, 0.3: mean 0.2, sample sd 0.1; t(0.975, 2) = 4.303 (t table), so the
    # half-width is 4.303 * 0.1 / sqrt(3) = 0.2484 (the "2.48 sd over 3 seeds" of BENCHMARKS.md)
    s = {"values": [0.1, 0.2, 0.3], "n": 3, "mean": 0.2, "sd": 0.1}
    lo, hi = quality.interval95(s)
    assert lo == pytest.approx(0.2 - 0.24842, abs=1e-4) and hi == pytest.approx(0.2 + 0.24842, abs=1e-4)
    two = {"values": [0.1, 0.3], "n": 2, "mean": 0.2, "sd": 0.02 ** 0.5}  # t(0.975, 1) = 12.706
    assert quality.interval95(two)[1] == pytest.approx(0.2 + 12.706 * 0.1, abs=1e-3)
    one = {"values": [0.5], "n": 1, "mean": 0.5, "sd": None}
    assert quality.interval95(one) is None  # one seed: no spread, no interval
    assert quality.interval95(one, exact=True) == (0.5, 0.5)  # raw pixels: a value without a seed
    assert quality.interval_verdict((0.6, 0.7), (0.5, 0.59)) == "higher"
    assert quality.interval_verdict((0.4, 0.5), (0.51, 0.52)) == "lower"
    assert quality.interval_verdict((0.4, 0.5), (0.5, 0.5)) == "no difference at this budget"  # touching intervals overlap
    assert quality.interval_verdict(None, (0.5, 0.5)).startswith("undecided")


def _fake_entry(calls):
    """A stand-in for ``run_entry``: known accuracies per representation and seed, each call recorded."""
    table = {"byol": [0.90, 0.91, 0.92], "random_init": [0.50, 0.50, 0.51], "supervised": [0.99, 0.98, 0.97]}

    def run_entry(dataset, rep, seed, steps, out_dir, overrides):
        calls.append((dataset, rep, seed))
        if rep == "raw_pixels":
            return {"linear_probe": 0.915, "knn": 0.4, "steps": steps}
        v = table[rep][seed]
        return {"linear_probe": v, "knn": v, "steps": steps, "train_s": 10.0 * (seed + 1), "overrides": overrides}
    return run_entry


def test_quality_seeds_per_seed_entries_summary_verdicts_and_resume(quality, tmp_path, monkeypatch, capsys):
    calls: list = []
    monkeypatch.setattr(quality, "run_entry", _fake_entry(calls))
    path = tmp_path / "q.json"
    argv = ["--threads", str(torch.get_num_threads()), "--json", str(path), "--seeds", "0", "1", "2",
            "--datasets", "shapes"]
    # BYOL alone first (a cut-short command), then the whole command: only the missing entries run
    assert quality.main(["--byol-only", *argv]) == 0
    assert calls == [("shapes", "byol", s) for s in (0, 1, 2)]
    calls.clear()
    code = quality.main(argv)
    assert calls == [("shapes", "raw_pixels", None)] + [("shapes", r, s) for r in ("random_init", "supervised")
                                                         for s in (0, 1, 2)]
    data = json.loads(path.read_text())
    assert data["seeds"] == [0, 1, 2] and set(data["runs"]["shapes"]) == {"seed0", "seed1", "seed2"}
    assert data["budget"]["steps"]["shapes"] == 300 and data["budget"]["threads"] == torch.get_num_threads()
    byol = data["summary"]["shapes"]["byol"]
    assert byol["seeds"] == [0, 1, 2] and byol["linear_probe"]["values"] == [0.90, 0.91, 0.92]
    assert byol["linear_probe"]["mean"] == pytest.approx(0.91) and byol["linear_probe"]["sd"] == pytest.approx(0.01)
    assert byol["train_s"]["mean"] == pytest.approx(20.0)
    assert data["summary"]["shapes"]["raw_pixels"]["linear_probe"]["values"] == [0.915]
    out = capsys.readouterr().out
    assert "| shapes | BYOL | 0.910 ± 0.010 (0.900, 0.910, 0.920) | 0.910 ± 0.010 (0.900, 0.910, 0.920) | 0, 1, 2 | 20 s (mean) |" in out
    assert "| shapes | raw pixels | 0.915 | 0.400 | - (no seed) | - |" in out
    assert "- shapes, linear_probe: BYOL vs random init: higher" in out
    # 0.915 lies inside BYOL's probe interval 0.91 +- 0.025: no win; the kNN interval is above 0.4
    assert "- shapes, linear_probe: BYOL vs raw pixels: no difference at this budget" in out
    assert "- shapes, knn: BYOL vs raw pixels: higher" in out
    assert code == 1 and out.splitlines()[-1].endswith(": FAIL")
    # again: everything is in the file, nothing runs; another budget is refused
    calls.clear()
    assert quality.main(argv) == 1 and calls == []
    with pytest.raises(SystemExit, match="budget"):
        quality.main([*argv, "--steps", "7"])
    assert quality.main(["train.seed=3", *argv]) == 2  # --seeds owns train.seed
    assert "drop the train.seed override" in capsys.readouterr().err


def test_quality_seeds_commands_on_two_datasets_fill_one_file(quality, tmp_path, monkeypatch):
    """A command saving its entries keeps those another command (another dataset) wrote meanwhile."""
    path = tmp_path / "q.json"
    args = argparse.Namespace(steps=None, overrides=[], threads=1)
    mine = quality.read_results(path, quality.seeds_budget(args), {"runs": {}, "raw_pixels": {}})
    other = quality.read_results(path, quality.seeds_budget(args), {"runs": {}, "raw_pixels": {}})  # read before any write
    other["runs"]["digits"] = {"seed0": {"byol": {"linear_probe": 0.9, "knn": 0.8}}}
    other["raw_pixels"]["digits"] = {"linear_probe": 0.95, "knn": 0.96}
    quality.save_seeded(path, other)
    mine["runs"]["shapes"] = {"seed1": {"byol": {"linear_probe": 0.4, "knn": 0.3}}}
    quality.save_seeded(path, mine)
    data = json.loads(path.read_text())
    assert data["runs"] == {"shapes": {"seed1": {"byol": {"linear_probe": 0.4, "knn": 0.3}}},
                            "digits": {"seed0": {"byol": {"linear_probe": 0.9, "knn": 0.8}}}}
    assert data["raw_pixels"]["digits"]["knn"] == 0.96 and data["seeds"] == [0, 1]
    assert data["summary"]["digits"]["byol"]["linear_probe"]["values"] == [0.9]


def test_quality_seeds_end_to_end_at_a_tiny_budget(quality, tmp_path):
    path = tmp_path / "q.json"
    code = quality.main(["--steps", "1", "--threads", str(torch.get_num_threads()), "--json", str(path),
                         *TINY_QUALITY_OVERRIDES, "--seeds", "0", "1", "--datasets", "shapes"])
    assert code in (0, 1)  # a one-step BYOL may or may not beat the baselines; the bookkeeping is the test
    data = json.loads(path.read_text())
    for seed in (0, 1):
        entry = data["runs"]["shapes"][f"seed{seed}"]
        assert set(entry) == {"byol", "random_init", "supervised"}
        assert entry["byol"]["overrides"][-1] == f"train.seed={seed}" and entry["byol"]["steps"] == 1
        assert entry["byol"]["train_images"] == 64 and entry["supervised"]["train_s"] > 0
    assert data["raw_pixels"]["shapes"]["test_images"] == 32
    assert "train.seed=0" not in data["raw_pixels"]["shapes"]["overrides"]
    knn = data["summary"]["shapes"]["random_init"]["knn"]
    assert knn["values"] == [data["runs"]["shapes"][f"seed{s}"]["random_init"]["knn"] for s in (0, 1)]


# ----------------------------------------------------------------------------- gpu_check.py


@pytest.fixture(scope="module")
def gpu_check():
    with benchmark_script("gpu_check") as module:  # it imports its sibling helpers
        yield module


@pytest.fixture(scope="module")
def explainable():
    with benchmark_script("explainable") as module:  # it imports its sibling helpers
        yield module


@pytest.mark.slow  # ~40 s: the CUDA test selection, four torchrun runs, three throughput settings, the explainers
def test_gpu_check_runs_end_to_end_on_the_cpu(tmp_path):
    """The one-command GPU check at tiny sizes on the CPU: every section runs and reports, JSON under $OUT."""
    import os
    import subprocess

    env = dict(os.environ, OUT=str(tmp_path))
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "gpu_check.py"), "--device", "cpu", "--tiny",
                           "--threads", "1"], env=env, capture_output=True, text=True, timeout=900)
    res = json.loads((tmp_path / "gpu_check.json").read_text())
    assert "errors" not in res, res.get("errors")
    assert done.returncode == (0 if res["ok"] else 1), done.stderr[-2000:]
    # 1. the CUDA tests are selected and all skip here
    tests = res["tests"]
    assert tests["ok"] and tests["failures"] == tests["errors"] == 0
    assert tests["skipped"] == tests["tests"] >= 21
    # 2. one torchrun process with gloo; resuming at an epoch boundary is exact
    (ddp,) = res["ddp"]
    assert (ddp["nproc"], ddp["world_size"], ddp["backend"], ddp["run_json_world_size"]) == (1, 1, "gloo", 1)
    assert ddp["run_to_run_max_diff"] == 0.0 and ddp["run_errors"] == {}
    assert ddp["resume"]["epoch_boundary"] == {"ok": True, "stopped_at": 2, "max_diff": 0.0}
    mid = ddp["resume"]["mid_epoch"]
    assert mid["stopped_at"] == 1 and mid["ok"] == (mid["max_diff"] == 0.0)
    assert "fp16" not in res  # fp16 autocast needs CUDA
    # 3. throughput: every precision variant, and a per-stage split that adds up
    assert [r["variant"] for r in res["throughput"]] == ["fp32", "bf16", "bf16+channels_last+eager_views", "bf16+channels_last"]
    for row in res["throughput"]:
        assert row["full_img_s"] > 0 and row["limit_img_s"] > 0 and row["peak_mib"] is None
        assert row["ratio"] == pytest.approx(row["full_img_s"] / row["limit_img_s"], rel=1e-9)
    (split,) = res["stages"]
    assert list(split["ms"]) == ["data", "to_device", "augment", "forward_backward", "optimizer", "ema"]
    assert sum(split["share"].values()) == pytest.approx(1.0)
    assert sum(split["ms"].values()) == pytest.approx(split["step_ms"])
    # 4. real resolutions: full step vs limit on a JPEG folder, with the stage split
    (real,) = res["realres"]
    assert (real["backbone"], real["size"], real["workers"]) == ("resnet18", 32, 0)  # num_workers auto: 0 on the CPU
    assert real["full_img_s"] > 0 and real["limit_img_s"] > 0 and real["peak_mib"] is None
    assert list(real["stages"]["ms"]) == list(split["ms"]) and 0 < real["decode_per_worker_share"]
    # 5. peers: without torchvision both are skipped with their reason; xbyol's row still runs
    peer_res = res["peers"]
    assert set(peer_res["skipped"]) == {"lightly", "byol-pytorch"}
    assert all("does not import here" in why for why in peer_res["skipped"].values())
    assert [(r["library"], r["size"]) for r in peer_res["rows"]] == [("xbyol", 32), ("xbyol", 40)]  # shapes, JPEGs
    assert all(r["img_s"] > 0 for r in peer_res["rows"])
    assert peer_res["vs_fastest_peer"] == []
    assert "lightly: skipped: lightly 1.6.0 does not import here" in done.stdout
    # 6. Grad-CAM agrees with Captum's LayerGradCam; integrated gradients is timed
    assert res["explain"]["ok"] and res["explain"]["gradcam_rel_diff"] < 1e-5
    assert res["explain"]["ig_maps_s"] > 0
    # 7. the Markdown report on stdout
    assert "| resnet10_16 | 8 | bf16+channels_last |" in done.stdout
    assert done.stdout.rstrip().endswith(f"JSON: {tmp_path / 'gpu_check.json'}")


def test_gpu_check_without_cuda_says_so_in_one_line(gpu_check, monkeypatch, capsys):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(SystemExit) as exc:
        gpu_check.parse_args([])
    assert exc.value.code == 2
    assert "--device cuda: CUDA is not available on this machine" in capsys.readouterr().err


def test_gpu_check_collects_only_the_modules_with_cuda_tests(gpu_check):
    names = {p.name for p in gpu_check.cuda_test_files()}
    assert {"test_train_cuda.py", "test_metrics_cuda.py", "test_cam_registry.py", "test_views.py"} <= names
    assert "test_app.py" not in names  # the explorer's tests import Flask, absent on GPU images


def test_gpu_check_skips_sections_once_its_time_budget_is_spent(gpu_check, tmp_path, capsys):
    path = tmp_path / "check.json"
    code = gpu_check.main(["--device", "cpu", "--tiny", "--sections", "explain", "peers", "--budget-s", "0",
                           "--json", str(path)])
    res = json.loads(path.read_text())
    assert code == 1 and not res["ok"] and set(res["skipped_sections"]) == {"explain", "peers"}
    assert "| section `peers` | SKIPPED | the time budget (--budget-s) was spent" in capsys.readouterr().out


def test_gpu_check_peer_ratios_take_the_fastest_peer_per_setting(gpu_check):
    rows = [{"library": "xbyol", "backbone": "resnet50", "size": 224, "batch": 128, "img_s": 300.0},
            {"library": "lightly", "backbone": "resnet50", "size": 224, "batch": 128, "img_s": 200.0},
            {"library": "byol-pytorch", "backbone": "resnet50", "size": 224, "batch": 128, "img_s": 260.0},
            {"library": "xbyol", "backbone": "resnet18_cifar", "size": 32, "batch": 256, "img_s": 900.0},
            {"library": "lightly", "backbone": "resnet18_cifar", "size": 32, "batch": 256, "error": "OOM"}]
    (r50,) = gpu_check.peer_ratios(rows)  # the 32 px setting has no peer left to compare with
    assert r50["fastest_peer"] == "byol-pytorch" and r50["ratio"] == pytest.approx(300 / 260)
    assert (r50["target"], r50["met"]) == (1.2, False)


def test_gpu_check_peers_say_why_they_cannot_run(gpu_check, monkeypatch):
    import importlib

    def missing(name):
        raise ModuleNotFoundError(f"No module named {name!r}")

    monkeypatch.setattr(importlib, "import_module", missing)
    why = gpu_check.peers.unavailable("byol-pytorch")
    assert why == "byol-pytorch 0.9.1 does not import here (ModuleNotFoundError: No module named 'torchvision')"


def test_gpu_check_resume_points_are_a_boundary_and_mid_epoch(gpu_check):
    # two epochs of steps // 2 steps each
    assert gpu_check.resume_points(20) == {"epoch_boundary": 10, "mid_epoch": 5}
    assert gpu_check.resume_points(4) == {"epoch_boundary": 2, "mid_epoch": 1}


def test_gpu_check_weight_diff_and_targets(gpu_check):
    a = {"w": torch.tensor([1.0, 2.0]), "n": torch.tensor(3)}
    assert gpu_check.max_weight_diff(a, {"w": torch.tensor([1.5, 1.0]), "n": torch.tensor(4)}) == 1.0
    with pytest.raises(ValueError, match="differ in keys"):
        gpu_check.max_weight_diff(a, {"w": a["w"]})
    row = {"backbone": "resnet18_cifar", "batch": 256}
    rows = [dict(row, variant="fp32", full_img_s=100.0, ratio=0.95), dict(row, variant="bf16", full_img_s=180.0, ratio=0.85),
            dict(row, variant="bf16+channels_last", full_img_s=200.0, ratio=0.92)]
    real = [{"backbone": "resnet50", "size": 224, "ratio": 0.88}, {"backbone": "resnet18", "size": 96, "ratio": 0.99}]
    peer = {"vs_fastest_peer": [{"size": 32, "met": True}, {"size": 224, "met": False}]}
    assert gpu_check.targets({"throughput": rows, "realres": real, "peers": peer}) == {
        "resnet18_full_over_limit_min": 0.85, "resnet18_ratio_ok": False, "resnet18_bf16_cl_ratio_ok": True,
        "resnet50_224_ratio_ok": False, "peers_met": {"32px": True, "224px": False},
        "bf16_faster_than_fp32_everywhere": True}
    assert set(gpu_check.targets({}).values()) == {None}


def test_explainable_mean_sd_variants_and_budget_guard(explainable, tmp_path):
    assert explainable.mean_sd([0.1, 0.3]) == "0.200 ± 0.141"  # sample sd: sqrt(0.02)
    assert explainable.mean_sd([0.5, float("nan")]) == "0.500 (n=1)"
    assert explainable.mean_sd([None, float("nan")]) == "-"
    assert explainable.variant_overrides("xbyol_w0.3") == {"method.name": "xbyol", "method.semantic.weight": 0.3}
    assert explainable.variant_overrides("xbyol_nofusion")["method.semantic.fusion"] is False
    with pytest.raises(ValueError, match="unknown variant"):
        explainable.variant_overrides("simclr")
    args = explainable.parse_args(["--json", str(tmp_path / "r.json")])
    path = tmp_path / "r.json"
    explainable.save_results(path, explainable.load_results(path, args))
    with pytest.raises(SystemExit, match="budget"):
        explainable.load_results(path, explainable.parse_args(["--steps", "7"]))
    # the Fashion-MNIST evaluation subset is part of the budget every entry must share; shapes has none
    fashion = explainable.parse_args(["--dataset", "fashion-mnist"])
    assert explainable.budget(fashion)["eval_train"] == 10000 and "eval_train" not in explainable.budget(args)
    assert explainable.budget(explainable.parse_args(["--dataset", "fashion-mnist", "--eval-train", "60000"]))["eval_train"] == 60000
    # run directories follow the results file: shapes' default stays runs/bench_explainable, and the Fashion-MNIST
    # tables of two budgets never share a folder (restore_run would trust the other budget's checkpoint)
    assert explainable.parse_args([]).out == "runs/bench_explainable"
    assert fashion.out == "runs/bench_explainable_fashion_mnist" and args.out == "runs/bench_r"
    full = explainable.parse_args(["--dataset", "fashion-mnist", "--json", "x/explainable_fashion_mnist_full.json"])
    assert full.out == "runs/bench_explainable_fashion_mnist_full"
    for bad in (["--eval-train", "100"], ["--dataset", "fashion-mnist", "--eval-train", "0"]):
        with pytest.raises(SystemExit):
            explainable.parse_args(bad)


def test_fashion_section_is_remade_from_its_json_and_the_label_matched_budget_gets_its_own(explainable):
    """The committed 350-step section re-renders byte for byte from its JSON and command; the full-budget,
    label-matched results (maps fitted on all 60,000 images) get another heading, so --write cannot replace it."""
    md = (ROOT / "benchmarks" / "BENCHMARKS.md").read_text()
    at = md.index(explainable.FASHION_SECTION + "\n")
    section = md[at:md.index("\n## ", at + 1)]
    command = re.search(r"Command: `python benchmarks/explainable.py (.*?)`", section).group(1)
    data = json.loads((ROOT / "benchmarks" / "results" / "explainable_fashion_mnist.json").read_text())
    args = explainable.parse_args(command.split())
    text = explainable.fashion_section(args, data, "python benchmarks/explainable.py " + command)
    assert text.rstrip() == section[:section.index("### Reading")].rstrip()
    assert "binary cross-entropy" in text and "byol_ft_matched" not in text
    data["budget"]["eval_train"] = 60000
    matched = explainable.fashion_section(args, data, "cmd")
    assert text.startswith(explainable.FASHION_SECTION + "\n")
    assert matched.startswith(explainable.FASHION_MATCHED_SECTION + "\n")
    assert "softmax cross-entropy over the ten class" in matched and "`byol_ft_matched` is BYOL for half" in matched
    assert "**Label-matched:** the probe, the kNN bank and every post-hoc map are fitted on the whole 60,000" in matched


def test_runs_needed_names_the_run_directories_a_call_reads_for_rows_and_checks_not_yet_stored(explainable):
    """A stored row is not re-trained unless a new row or check reads its run: rank faithfulness reads every
    trained row, faithfulness and explain-eval read byol and xbyol (random init is byol's run, re-initialised)."""
    rows = ["raw_pixels", "random_init", "byol", "xbyol", "byol_ft_matched", "supervised_ml"]
    scored = {v: {} for v in rows + ["byol_half"]}
    args = explainable.parse_args(["--variants", *rows])
    data = {"runs": {"seed0": dict(scored)}}
    assert explainable.runs_needed(args, data, 0) == set()  # every row stored, no check asked for
    assert explainable.runs_needed(args, {"runs": {"seed0": {"xbyol": {}}}}, 0) == {"byol", "byol_half"}  # new rows
    rank = explainable.parse_args(["--variants", *rows, "--rank-faithfulness"])
    assert explainable.runs_needed(rank, data, 0) == {"byol", "xbyol", "byol_ft_matched", "byol_half"}
    data["faithfulness_rank"] = {"seed0": {v: {} for v in rows}}
    assert explainable.runs_needed(rank, data, 0) == set()
    graded = explainable.parse_args(["--variants", *rows, "--explain-eval", "--faithfulness"])
    data["faithfulness"] = {"seed0": {v: {} for v in explainable.EXPLAINED}}
    current = {"protocol": {"surrogate_samples": "2M + 2048"}}  # explain-eval at today's LIME / KernelSHAP default
    data["explain"] = {"seed0": {"byol": current, "random_init": current}}
    assert explainable.runs_needed(graded, data, 0) == {"xbyol"}  # explain-eval of xbyol is missing
    del data["explain"]["seed0"]["random_init"]
    assert explainable.runs_needed(graded, data, 0) == {"byol", "xbyol"}
    # a seed with nothing stored: every run is named, but run_all restores only rows already in data["runs"]
    assert explainable.runs_needed(graded, data, 1) == {"byol", "xbyol", "byol_half"}


def test_explain_eval_entries_of_an_earlier_sampler_default_are_re_made_and_never_averaged_with_current_ones(explainable):
    proto = {"pairs": 25, "images": 8, "robust_pairs": 8}
    old = {"protocol": proto, "methods": {}}  # made before the protocol recorded the LIME / KernelSHAP default
    new = {"protocol": {**proto, "surrogate_samples": "2M + 2048"}, "methods": {}}
    assert not explainable.explain_current(old) and explainable.explain_current(new)
    assert not explainable.explain_current(None)
    data = {"explain": {"seed1": {"byol": old, "xbyol": old}, "seed0": {"byol": old, "xbyol": old}}}
    assert list(explainable.explain_entries(data)) == ["seed0", "seed1"]  # none current: the stored ones, in order
    data["explain"]["seed1"]["xbyol"] = new
    assert explainable.explain_entries(data) == {"seed1": {"xbyol": new}}  # one current: only current ones
    # the section names the sampler default of the entries it shows
    args = explainable.parse_args(["--variants", "byol", "xbyol", "--explain-eval"])
    assert "LIME and KernelSHAP perturb each image 2M + 2048 times for M superpixels." in explainable.explain_section(
        args, data, "cmd")
    data["explain"]["seed1"]["xbyol"] = old
    assert ("perturb each image 50 (LIME) and 2M (KernelSHAP) times, their defaults before they were raised, for M "
            "superpixels.") in explainable.explain_section(args, data, "cmd")
    data["explain"]["seed1"]["xbyol"] = new
    data["runs"] = {"seed1": {"byol": {}, "xbyol": {}}}
    assert explainable.runs_needed(args, data, 1) == {"byol"}  # its stale byol and missing random init entries


def _tiny_fashion_run(tmp_path: Path, tiny_overrides: dict, method: str) -> Path:
    """A 2-step run on 96 / 32 tiny Fashion-MNIST-format images (8 px, label k % 10, a ramp per image)."""
    root = tmp_path / "fm"
    root.mkdir(exist_ok=True)
    rng = np.random.default_rng(0)
    for prefix, n in (("train", 96), ("t10k", 32)):
        labels = np.arange(n) % 10
        images = rng.integers(0, 256, (n, 8, 8)) // 2 + labels[:, None, None] * 12  # (n, 8, 8): brighter per class
        write_idx(root / f"{prefix}-images-idx3-ubyte.gz", images.astype(np.uint8))
        write_idx(root / f"{prefix}-labels-idx1-ubyte.gz", labels.astype(np.uint8))
    overrides = dict(tiny_overrides, out_dir=str(tmp_path / "runs"), name=method)
    overrides.update({"data.name": "fashion-mnist", "data.root": str(root), "data.image_size": 8,
                      "data.batch_size": 32, "train.steps": 2, "method.name": method, "eval.knn_k": 5})
    return Path(train(from_dict({}, overrides)))


@pytest.mark.parametrize("method", ["byol", "xbyol"])
def test_explainable_one_feature_pass_gives_the_library_scores(explainable, tmp_path, tiny_overrides, method):
    """Data without masks: the probe, kNN and concept scores from one feature pass per split equal those of
    ``probe_and_knn`` and ``concept_scores`` (which encode the splits again), for the learned and post-hoc maps."""
    run = load_run(_tiny_fashion_run(tmp_path, tiny_overrides, method))
    got = explainable.scores_without_masks(run, method)
    probe, _ = probe_and_knn(run.backbone, run.dataset("train"), run.dataset("test"), run.cfg, run.device)
    assert got["probe"] == probe
    expected = {"concepts": concept_scores(run, class_concepts=True)}
    if method == "byol":
        expected["concepts_backbone"] = concept_scores(run, use_projector=False, class_concepts=True)
    assert expected["concepts"]["map"] == ("learned" if method == "xbyol" else "post-hoc")
    for key, want in expected.items():
        assert set(got[key]) == set(want) | {"per_image"}, key
        for name in ("scs", "scs_nonmatch", "scs_margin"):
            assert got[key][name] == pytest.approx(want[name], abs=1e-5), (key, name)
        per = got[key]["per_image"]  # per-image values for paired test-set intervals: their means are the scores
        margins = [m for m in per["scs_margin"] if m is not None]
        assert sum(margins) / len(margins) == pytest.approx(want["scs_margin"], abs=1e-3)
        hits = [int(h) for h in per["hit_class"] if h != "-"]
        assert sum(hits) / len(hits) == pytest.approx(want["concept_accuracy"]["class"], abs=1e-9)
        assert got[key]["concept_accuracy"] == pytest.approx(want["concept_accuracy"], abs=1e-9), key
    assert set(got["stage_s"]) >= {"features", "eval: linear probe", "eval: kNN", "concept map"}
    if method == "byol":  # --eval-train: the first n training images, the same features and positives as the full pass

        bank = run_bank(run)
        full = explainable.split_features(run.backbone, run, "train", bank)
        first = explainable.split_features(run.backbone, run, "train", bank, limit=40)
        assert first.x.shape[0] == first.y.shape[0] == first.t.shape[0] == 40
        assert torch.equal(first.x, full.x[:40]) and torch.equal(first.y, full.y[:40]) and torch.equal(first.t, full.t[:40])
        assert first.y.tolist() == [k % 10 for k in range(40)] and first.t.nonzero()[:, 1].tolist() == first.y.tolist()


def test_explainable_threads_bound_numpy_and_openmp_pools(explainable, tmp_path, monkeypatch):
    """--threads holds for the probe's BLAS and OpenMP pools too (2 OpenBLAS threads on shared cores slowed lbfgs 12x)."""
    import threadpoolctl

    seen = []
    monkeypatch.setattr(explainable, "run_all", lambda args, data, path: seen.append(
        {d["user_api"]: d["num_threads"] for d in threadpoolctl.threadpool_info()}))
    assert explainable.main(["--json", str(tmp_path / "r.json"), "--threads", "1"]) == 0
    assert seen and "blas" in seen[0] and set(seen[0].values()) == {1}, seen


def test_step_profile_finds_every_part_of_the_step(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))  # the script imports its siblings as run from there
    step_profile = _load("step_profile")
    out = tmp_path / "profile.json"
    assert step_profile.main(["--batch-size", "16", "--steps", "3", "--threads", "1", "--json", str(out)]) == 0
    ms = json.loads(out.read_text())["ms_per_step"]
    # each part's function was found in the profile (a renamed function would read 0 ms)
    assert set(ms) == {"views", "batches", "forward", "backward", "optimizer", "ema", "rest of the loop"}
    assert all(ms[part] > 0 for part in ("views", "batches", "forward", "backward", "optimizer", "ema"))
    # the forward is reported without the views it contains, and the parts add up to the step
    assert ms["forward"] > 0 and sum(ms.values()) == pytest.approx(json.loads(out.read_text())["step_ms"], rel=1e-6)


def test_step_profile_views_against_a_revision_times_both_in_turn(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    step_profile = _load("step_profile")
    out = tmp_path / "against.json"
    args = ["--views", "--batch-size", "8", "--repeats", "1", "--threads", "1"]
    assert step_profile.main([*args, "--against", "HEAD", "--reps", "3", "--json", str(out)]) == 0
    res = json.loads(out.read_text())
    assert res["against"] == "HEAD" and len(res["ms_now"]) == len(res["ms_then"]) == len(res["ratios"]) == 3
    assert res["ratios"] == pytest.approx([t / n for n, t in zip(res["ms_now"], res["ms_then"])])
    assert res["max_abs_diff"] < 1e-3  # HEAD's views and this checkout's agree up to float rounding
    # a file instead of a revision (a copy without git history): this checkout's own views.py, the same code
    assert step_profile.main([*args, "--against", str(ROOT / "src/xbyol/augment/views.py"), "--reps", "1", "--json", str(out)]) == 0
    assert json.loads(out.read_text())["max_abs_diff"] == 0.0
    capsys.readouterr()
    assert step_profile.main([*args, "--against", "no-such-revision"]) == 2
    assert capsys.readouterr().err.strip().startswith("step_profile.py: --against no-such-revision: git cannot show")


def test_view_copies_times_every_variant_and_undoes_the_blocking_copies(tmp_path, monkeypatch, capsys):
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    view_copies = _load("view_copies")

    blocking_calls = []
    real_blocking = view_copies._blocking_move
    monkeypatch.setattr(view_copies, "_blocking_move", lambda *a, **k: blocking_calls.append(1) or real_blocking(*a, **k))
    out = tmp_path / "copies.json"
    args = ["--device", "cpu", "--backbones", "resnet10_16", "--batch-size", "8", "--steps", "2", "--warmup", "1",
            "--reps", "2", "--threads", "1"]
    threads = torch.get_num_threads()
    try:
        assert view_copies.main([*args, "--against", "HEAD", "--json", str(out)]) == 0
    finally:
        torch.set_num_threads(threads)
    (row,) = json.loads(out.read_text())["rows"]
    assert list(row["ms"]) == ["now", "now, blocking copies", "HEAD"] and all(len(v) == 2 for v in row["ms"].values())
    assert row["ratios"]["HEAD / now"] == pytest.approx([t / n for n, t in zip(row["ms"]["now"], row["ms"]["HEAD"])])
    assert row["ratio"]["now, blocking copies / now"] == pytest.approx(statistics.median(row["ratios"]["now, blocking copies / now"]))
    # the blocking variant's steps went through the blocking copy; afterwards every module has the non-blocking one again
    assert blocking_calls
    assert views.move_like is blur.move_like is preprocessing.move_like is view_copies.NON_BLOCKING
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    capsys.readouterr()
    assert view_copies.main(["--device", "cuda"]) == 2
    assert capsys.readouterr().err.strip() == "view_copies.py: --device: CUDA is not available"


def test_step_profile_views_times_every_step_of_both_views(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    step_profile = _load("step_profile")
    out = tmp_path / "views.json"
    assert step_profile.main(["--views", "--batch-size", "8", "--repeats", "2", "--threads", "1", "--json", str(out)]) == 0
    ms = json.loads(out.read_text())["ms"]
    # the shapes preset: jitter and grayscale in both views, solarisation in view 2 only, no blur at 32 px
    steps = [f"{v}: {op}" for v in ("view1", "view2") for op in ("crop + flip", "ColorJitter", "RandomGrayscale")]
    assert set(ms) == {"both views", "to float", *steps, "view2: RandomSolarize", "view1: normalise", "view2: normalise",
                       "adjust_brightness", "adjust_contrast", "adjust_saturation", "adjust_hue"}
    assert all(v > 0 for v in ms.values())


def test_explainable_label_matched_rows_share_xbyol_total_steps(explainable, tmp_path):
    """byol_ft_matched: BYOL for half of xbyol's steps, fine-tuned on the labels for the other half (100 = 50 + 50,
    101 = 50 + 51); byol_ft starts from the full BYOL run (twice the steps)."""
    for steps, half, rest in ((100, 50, 50), (101, 50, 51)):
        args = explainable.parse_args(["--steps", str(steps), "--out", str(tmp_path)])
        xbyol = explainable.config_for(args, "xbyol", 0)
        first = explainable.config_for(args, "byol_half", 0)
        second = explainable.config_for(args, "byol_ft_matched", 0)
        assert (first.train.steps, second.train.steps) == (half, rest) and half + rest == xbyol.train.steps
        assert first.method.name == "byol" and second.train.init_from == str(tmp_path / "seed0" / "byol_half")
        assert second.method.semantic.byol_weight == 0.0 and second.method.semantic.fusion is False
        assert explainable.config_for(args, "byol_ft", 0).train.steps == steps


def test_explainable_chunked_training_resumes_to_the_full_run(explainable, tmp_path, tiny_cfg):
    """--chunk-steps: each call trains at most N more steps from the newest checkpoint and says when the run is
    unfinished; the finished run is the one a single call makes (exact resume)."""
    cfg = dataclasses.replace(tiny_cfg, train=dataclasses.replace(tiny_cfg.train, steps=3))
    args = explainable.parse_args(["--chunk-steps", "2"])
    with pytest.raises(explainable.Unfinished, match="step 2 of 3"):
        explainable.train_chunk(args, cfg)
    run_dir = explainable.train_chunk(args, cfg)  # steps 3 of 3
    assert explainable.train_chunk(args, cfg) == run_dir  # finished: nothing more to train
    whole = dataclasses.replace(cfg, out_dir=str(tmp_path / "whole"))
    one_go = explainable.train_chunk(explainable.parse_args([]), whole)
    a = torch.load(run_dir / "checkpoints" / "last.pt", weights_only=True)
    b = torch.load(one_go / "checkpoints" / "last.pt", weights_only=True)
    assert a["step"] == b["step"] == 3
    for (name, x), (_, y) in zip(a["method"].items(), b["method"].items()):
        assert torch.equal(x, y), name
    with pytest.raises(SystemExit):
        explainable.parse_args(["--chunk-steps", "0"])


# ----------------------------------------------------------------------------- decode_rate.py


def test_decode_rate_reports_every_row(tmp_path):
    out = tmp_path / "decode.json"
    with benchmark_script("decode_rate") as decode_rate:  # it imports its sibling jpeg_folder
        assert decode_rate.main(["--num", "6", "--repeats", "1", "--json", str(out)]) == 0
    rows = json.loads(out.read_text())["rows"]
    assert [(r["source"], r["size"], r["draft"]) for r in rows] == [
        (f"{w}x{h}", s, d) for w, h, s, d in decode_rate.ROWS]
    assert all(r["images"] == 6 and r["img_s_wall"] > 0 and r["img_s_cpu"] > 0 for r in rows)  # too few per class for a test split


def test_explainable_with_backbone_swaps_the_encoder_and_the_run_dir_only(explainable, tmp_path, tiny_run_dir):
    """The untrained and supervised rows reuse the seed's BYOL run (data, bank, config) with another encoder."""
    byol = load_run(tiny_run_dir)
    backbone = byol.random_init_backbone(seed=1)
    run = explainable.with_backbone(byol, backbone, explainable.parse_args(["--out", str(tmp_path)]), 1, "random_init")
    assert run.run_dir == tmp_path / "seed1" / "random_init" and run.run_dir.is_dir() and run.backbone is backbone
    assert byol.run_dir == Path(tiny_run_dir) and byol.backbone is not backbone
