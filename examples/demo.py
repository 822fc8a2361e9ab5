"""`make demo`: a first look at xbyol in a few minutes on a CPU, with no data to fetch.

1. Train BYOL on scikit-learn's bundled handwritten digits (1,437 train / 360 test images,
   ``configs/digits_byol.yaml`` with the demo's shorter budget below).
2. Evaluate: linear probe and kNN of the trained encoder next to the same network at
   random init and next to raw pixels (the protocol of ``benchmarks/quality.py``).
3. Explain: the top concepts of a few test images, and Grad-CAM heatmaps of each image's
   top concept written as PNG overlays.
4. Write the run's ``report.html`` and print the commands to try next.

Measured wall time and numbers: README.md, "The demo". Run it directly with extra config
overrides, e.g.::

    python examples/demo.py train.steps=100
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import torch  # noqa: E402

import xbyol  # noqa: E402
from xbyol.augment import preprocess  # noqa: E402
from xbyol.data.mnist import default_root  # noqa: E402
from xbyol.eval.evaluate import raw_pixel_scores  # noqa: E402
from xbyol.explain import explain, save_overlay  # noqa: E402
from xbyol.explain.spec import parse_target  # noqa: E402
from xbyol.report import ReportOptions, write_report  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
DEMO_OVERRIDES = [
    "name=demo_digits_byol",
    "data.image_size=16",  # the digits are 8x8: 16 px keeps them sharp at a quarter of the 32 px cost
    "train.epochs=0",
    "train.steps=1200",
]
N_EXPLAINED = 4


def one_per_class(test_set, n: int) -> list[int]:
    """The first test image of each of the first ``n`` classes met."""
    seen: dict[int, int] = {}
    for i in range(len(test_set)):
        seen.setdefault(int(test_set.labels[i]), i)
        if len(seen) == n:
            break
    return list(seen.values())


def main(argv: list[str]) -> int:
    t_start = time.perf_counter()
    cfg = xbyol.load_config(ROOT / "configs" / "digits_byol.yaml", DEMO_OVERRIDES + argv)
    print(f"1/4 training {cfg.method.name} on {cfg.data.name} ({cfg.model.backbone}, {cfg.data.image_size} px, "
          f"{cfg.train.steps} steps x {cfg.data.batch_size}) -> {cfg.run_dir}", flush=True)
    run_dir = xbyol.train(cfg, overwrite=True)
    t_train = time.perf_counter() - t_start

    print("2/4 evaluating: linear probe and kNN (k=20) on frozen features", flush=True)
    results = xbyol.evaluate(run_dir, progress=False)
    run = xbyol.load_run(run_dir)
    train_set, test_set = run.dataset("train"), run.dataset("test")
    rows = {"BYOL (trained)": results["trained"], "random init": results["random_init"],
            "raw pixels": raw_pixel_scores(train_set, test_set, cfg)}
    print(f"\n{'representation':<16} {'linear probe':>12} {'kNN':>7}")
    for name, r in rows.items():
        print(f"{name:<16} {r['linear_probe']:>12.3f} {r['knn']:>7.3f}")
    for base in ("random init", "raw pixels"):
        gains = [100 * (rows["BYOL (trained)"][m] - rows[base][m]) for m in ("linear_probe", "knn")]
        print(f"BYOL over {base}: {gains[0]:+.1f} probe points, {gains[1]:+.1f} kNN points")

    print("\n3/4 explaining: top concepts of test images (concept map fitted on the train labels)", flush=True)
    indices = one_per_class(test_set, N_EXPLAINED)
    images = torch.stack([test_set[i]["image"] for i in indices])  # (N, 3, S, S) uint8
    tops = xbyol.explain_embedding(run, images, top_k=3)
    heat_dir = run.paths.explain
    for i, img, top in zip(indices, images, tops):
        print(f"  test[{i}] ({test_set[i]['caption']}): "
              + ", ".join(f"{concept} {weight:.2f}" for concept, weight in top))
        target = parse_target(f"concept:{top[0][0]}", run)
        heat = explain(run.backbone, preprocess(img[None].to(run.device)), target, method="gradcam")  # (1, 1, S, S)
        save_overlay(heat_dir / f"test{i}_gradcam_{top[0][0]}.png", img, heat[0].detach().cpu())
    print(f"  Grad-CAM heatmaps of each image's top concept -> {heat_dir}/")

    print("\n4/4 writing the report", flush=True)
    report = write_report(run_dir, options=ReportOptions(gallery_indices=indices, progress=False))
    total = time.perf_counter() - t_start
    print(f"\nreport: {report}")
    print(f"done in {total:.0f} s ({t_train:.0f} s of training)\n")
    print("next:")
    print(f"  xbyol serve {run_dir}    # explore the run in the browser (127.0.0.1)")
    print(f"  xbyol concepts {run_dir} --indices 0 1 2    # top concepts of any test image")
    fashion = "xbyol train -c configs/fashion_mnist_byol.yaml --eval    # Fashion-MNIST: 60,000 garment photos"
    if default_root("fashion-mnist") is None:
        fashion = "apt-get install dataset-fashion-mnist; " + fashion
    print(f"  {fashion}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
