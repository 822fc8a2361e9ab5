"""Calibration of the report's collapse warnings: monitor traces of healthy and of collapsed runs.

The trainer logs, for every ``"embed/"`` output of a method, the embedding std, its healthy
reference ``1/sqrt(d)`` and the RankMe effective rank (:mod:`xbyol.training.monitors`); the
report warns when they end low (:func:`xbyol.report.training.collapse_warnings`). This script
trains

- **healthy** runs: every preset in ``configs/`` whose data are on this machine, shortened to
  ``--steps`` optimiser steps (``cifar10_byol`` needs CIFAR-10 files and is skipped without them);
- **collapse** runs: the digits preset at 16 px with one thing broken that makes BYOL collapse
  (Grill et al. 2020, section 5; Chen & He 2021): no predictor, and no predictor with no
  moving-average target (tau 0);
- a **degraded** run: the same with a learning rate far too high, which learns badly but does not
  collapse (and, higher still, diverges: the trainer stops it);

then scores each with ``xbyol.eval`` (linear probe and kNN, trained and random-init backbone), so
a run's label rests on what it learnt, not on the monitors being calibrated. Every run's monitor
columns (step, ``*_std``, ``*_std_healthy``, ``*_rank``) and scores go to ``--json``; the test
``tests/report/test_collapse_calibration.py`` reads them back and checks that the warnings fire
on every collapsed run and on no healthy one.

    python benchmarks/collapse_calibration.py --json benchmarks/results/collapse_calibration.json
    python benchmarks/collapse_calibration.py --runs digits_byol no_predictor   # a subset; entries already in the JSON are kept
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Iterator
from unittest import mock

import torch
from torch import nn

from xbyol.config import load
from xbyol.eval.evaluate import evaluate
from xbyol.report.artifacts import read_metrics
from xbyol.report.sections.training import collapse_warnings
from xbyol.training import train

CONFIGS = Path(__file__).resolve().parent.parent / "configs"
BROKEN_BASE = ("digits_byol", ["data.image_size=16"])


@contextlib.contextmanager
def _no_predictor() -> Iterator[None]:
    """BYOL's predictor replaced by the identity (Grill et al. 2020, section 5: collapse)."""
    with mock.patch("xbyol.methods.byol.PredictionHead", lambda *args: nn.Identity()):
        yield


# name -> (label, preset, extra overrides, context that breaks the method or None)
RUNS: dict[str, tuple[str, str, list[str], Any]] = {
    "digits_byol": ("healthy", "digits_byol", [], None),
    "digits_xbyol": ("healthy", "digits_xbyol", [], None),
    "fashion_mnist_byol": ("healthy", "fashion_mnist_byol", [], None),
    "shapes_byol": ("healthy", "shapes_byol", [], None),
    "shapes_xbyol": ("healthy", "shapes_xbyol", [], None),
    "shapes_xmodal": ("healthy", "shapes_xmodal", [], None),
    "shapes_clip": ("healthy", "shapes_clip", [], None),
    "cifar10_byol": ("healthy", "cifar10_byol", [], None),
    "no_predictor": ("collapse", BROKEN_BASE[0], BROKEN_BASE[1], _no_predictor),
    "no_predictor_tau0": ("collapse", BROKEN_BASE[0], [*BROKEN_BASE[1], "method.tau_base=0.0"], _no_predictor),
    # 50x the preset's AdamW lr: trains badly without collapsing (lr 1.0 diverges at step 30 and the trainer stops it)
    "lr_too_high": ("degraded", BROKEN_BASE[0], [*BROKEN_BASE[1], "train.lr=0.1"], None),
}


def monitor_columns(metrics: dict[str, list[float]]) -> dict[str, list[float]]:
    """The rows of ``metrics.csv`` where the collapse monitors were logged, monitor columns only."""
    cols = ["step"] + [c for c in metrics if c.endswith(("_std", "_std_healthy", "_rank"))]
    first = next(c for c in cols if c != "step")
    keep = [i for i, v in enumerate(metrics[first]) if v == v]  # not NaN
    return {c: [metrics[c][i] for i in keep] for c in cols}


def one_run(name: str, steps: int | None, seed: int, monitor_every: int, root: Path) -> dict[str, Any]:
    label, preset, extra, broken = RUNS[name]
    overrides = [*([f"train.steps={steps}"] if steps else []), f"train.seed={seed}", f"train.monitor_every={monitor_every}",
                 f"eval.baseline={label != 'healthy'}", "train.progress=false", "train.ckpt_minutes=null",
                 f"out_dir={root}", f"name={name}", *extra]
    cfg = load(str(CONFIGS / f"{preset}.yaml"), overrides)
    t0 = time.perf_counter()
    with broken() if broken else contextlib.nullcontext():
        run_dir = train(cfg)
        seconds = time.perf_counter() - t0
        scores = evaluate(run_dir, progress=False, only=[])
    metrics = read_metrics(run_dir / "metrics.csv")
    assert metrics is not None, run_dir
    kept = [o for o in overrides if not o.startswith(("out_dir", "name", "train.progress", "train.ckpt"))]
    return {"label": label, "preset": preset, "overrides": kept, "batch_size": cfg.data.batch_size,
            "train_seconds": round(seconds, 1), "trained": scores["trained"], "random_init": scores.get("random_init"),
            "monitors": monitor_columns(metrics)}


def table(results: dict[str, Any]) -> str:
    """The markdown table of BENCHMARKS.md: each run's last monitors as fractions of their references
    (:func:`xbyol.methods.collapse.collapse_signs`' units) and whether the report warns."""
    lines = ["| run | label | steps, changes | probe / kNN (random init) | std x sqrt(d) | rank / min(d, batch) | warned |",
             "|---|---|---|---|---|---|---|"]
    for name, r in sorted(results.items(), key=lambda kv: (kv[1]["label"], kv[0])):
        m, b = r["monitors"], r["batch_size"]
        fracs = []
        for c in [c.removesuffix("_std_healthy") for c in m if c.endswith("_std_healthy")]:
            d = round(m[f"{c}_std_healthy"][-1] ** -2)
            fracs.append((c, m[f"{c}_std"][-1] * d ** 0.5, m[f"{c}_rank"][-1] / min(d, b)))
        scores = f"{r['trained']['linear_probe']:.3f} / {r['trained']['knn']:.3f}"
        if r.get("random_init"):
            scores += f" ({r['random_init']['linear_probe']:.3f} / {r['random_init']['knn']:.3f})"
        changes = ", ".join(o for o in r["overrides"] if o.startswith(("train.steps", "data.", "method.", "train.lr")))
        warned = "yes" if collapse_warnings(m, b) else "no"
        lines.append(f"| {name} | {r['label']} | {changes} | {scores} | " + ", ".join(f"{c} {s:.2f}" for c, s, _ in fracs)
                     + " | " + ", ".join(f"{c} {k:.3f}" for c, _, k in fracs) + f" | {warned} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", nargs="+", default=list(RUNS), choices=list(RUNS))
    ap.add_argument("--steps", type=int, help="optimiser steps of every run (default: each preset's own)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--monitor-every", type=int, default=20)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", type=Path, default=Path("benchmarks/results/collapse_calibration.json"))
    ap.add_argument("--table", action="store_true", help="print the markdown table of the runs in --json and exit")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    results = json.loads(args.json.read_text()) if args.json.exists() else {}
    if args.table:
        print(table(results))
        return
    command = "python benchmarks/collapse_calibration.py " + " ".join(sys.argv[1:] if argv is None else argv)
    for name in args.runs:
        if name == "cifar10_byol" and not Path("data/cifar-10-batches-py").is_dir():
            print(f"{name}: skipped, no CIFAR-10 files at data/cifar-10-batches-py")
            continue
        with tempfile.TemporaryDirectory() as tmp:
            entry = one_run(name, args.steps, args.seed, args.monitor_every, Path(tmp))
        entry["command"] = command.strip()
        results[name] = entry
        last = {c: round(v[-1], 4) for c, v in entry["monitors"].items()}
        print(f"{name} ({entry['label']}): {entry['trained']} random init {entry['random_init']} last monitors {last}", flush=True)
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    main()
