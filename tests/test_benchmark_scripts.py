"""The benchmark scripts run end to end at a tiny budget (their figures live in BENCHMARKS.md).

These are not speed or quality targets: they check that ``benchmarks/quality.py`` and
``benchmarks/train_throughput.py`` still work against the library and that the pieces
that do not depend on training length behave as their docstrings say.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]


def _load(name: str):
    spec = importlib.util.spec_from_file_location(f"bench_{name}", ROOT / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


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


@pytest.fixture(scope="module")
def quality():
    return _load("quality")


@pytest.fixture(scope="module")
def throughput():
    return _load("train_throughput")


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


def test_throughput_limit_step_trains_and_updates_the_target(throughput, tmp_path):
    cfg = throughput.make_cfg("resnet10_16", 8, 3, str(tmp_path))
    cfg.model.proj_hidden, cfg.model.proj_dim, cfg.model.pred_hidden = 32, 16, 32
    times = throughput.limit_step_times(cfg, warmup=1, steps=2)
    assert len(times) == 2
    assert all(wall > 0 and cpu >= 0 for wall, cpu in times)


def test_throughput_full_step_clock_sees_every_step(throughput, tmp_path):
    cfg = throughput.make_cfg("resnet10_16", 8, 4, str(tmp_path))
    cfg.model.proj_hidden, cfg.model.proj_dim, cfg.model.pred_hidden = 32, 16, 32
    assert cfg.train.steps == 4 and cfg.data.num_train == 32
    times = throughput.full_step_times(cfg, warmup=1)
    assert len(times) == 3  # 4 steps, the first discarded
    assert all(wall > 0 for wall, _ in times)
    # the clock is removed afterwards: the method's hook is the original again
    assert throughput.BYOL.after_optimizer_step.__name__ == "after_optimizer_step"


def test_throughput_main_reports_ratio_and_exit_code(throughput, capsys, monkeypatch):
    monkeypatch.setattr(throughput, "DEFAULT_STEPS", {"resnet10_16": (1, 2)})
    real_make_cfg = throughput.make_cfg

    def small(backbone, batch_size, steps, out_dir):
        cfg = real_make_cfg(backbone, batch_size, steps, out_dir)
        cfg.model.proj_hidden, cfg.model.proj_dim, cfg.model.pred_hidden = 32, 16, 32
        return cfg

    monkeypatch.setattr(throughput, "make_cfg", small)
    threads = torch.get_num_threads()
    try:
        code = throughput.main(["--backbones", "resnet10_16", "--batch-sizes", "8", "--reps", "1", "--threads", "1"])
    finally:
        torch.set_num_threads(threads)
    out = capsys.readouterr().out
    assert "| resnet10_16 | 8 |" in out
    assert code == (0 if "PASS" in out.splitlines()[-1] else 1)


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
    from xbyol.run import load_run
    from xbyol.training.trainer import train

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
