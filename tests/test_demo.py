"""`make demo` (examples/demo.py) runs end to end at a tiny budget; its numbers live in the README."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from load_script import load_script

import xbyol
from xbyol.config import DataCfg
from xbyol.data import mnist

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def demo():
    return load_script(ROOT / "examples" / "demo.py", "xbyol_demo")


def test_raw_pixel_baseline_is_the_one_of_the_quality_benchmark(demo, tmp_path):
    sys.path.insert(0, str(ROOT / "benchmarks"))  # quality.py imports bench_seeds as run from there
    try:
        quality = load_script(ROOT / "benchmarks" / "quality.py", "bench_quality_for_demo")
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))
    assert demo.raw_pixel_scores is quality.raw_pixel_scores  # one implementation, in xbyol.eval
    cfg = xbyol.load_config(ROOT / "configs" / "digits_byol.yaml", demo.DEMO_OVERRIDES + [f"out_dir={tmp_path}"])
    data = DataCfg(name="digits", image_size=16)
    splits = (xbyol.create_dataset(data, "train"), xbyol.create_dataset(data, "test"))
    scores = demo.raw_pixel_scores(*splits, cfg)
    assert scores["linear_probe"] > 0.9 and scores["knn"] > 0.9  # digits are easy from pixels: the bar BYOL must clear


def test_one_per_class_takes_the_first_image_of_each_class(demo):
    class Labels:
        labels = [3, 3, 1, 3, 0, 1, 2]

        def __len__(self):
            return len(self.labels)

    assert demo.one_per_class(Labels(), 3) == [0, 2, 4]
    assert demo.one_per_class(Labels(), 9) == [0, 2, 4, 6]  # fewer classes than asked: all of them


@pytest.mark.slow
def test_demo_trains_evaluates_explains_and_reports(demo, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(mnist, "FASHION_MNIST_DEFAULT_ROOT", tmp_path / "not_installed")
    assert demo.main(["train.steps=3", f"out_dir={tmp_path}", "train.progress=false"]) == 0
    out = capsys.readouterr().out
    run_dir = tmp_path / "demo_digits_byol"
    for row in ("BYOL (trained)", "random init", "raw pixels"):
        assert row in out
    assert (run_dir / "report.html").is_file() and f"report: {run_dir / 'report.html'}" in out
    assert len(list((run_dir / "explain").glob("test*_gradcam_*.png"))) == demo.N_EXPLAINED
    assert f"xbyol serve {run_dir}" in out
    assert "apt-get install dataset-fashion-mnist; xbyol train -c configs/fashion_mnist_byol.yaml" in out
