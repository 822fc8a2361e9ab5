"""Representation quality of BYOL after a fixed CPU budget, next to three baselines.

For each dataset (``shapes``, ``digits``; ``fashion-mnist`` on request, its full 60,000 / 10,000 split)
and the small backbone ``resnet10_16``:

- **BYOL**: ``xbyol.train`` on the dataset's preset (``PRESETS``) for a fixed number of
  optimiser steps (the budget; the wall time is measured and printed).
- **random init**: the same architecture, freshly initialised (seed of the run).
- **raw pixels**: the preprocessed image flattened to ``3 * H * W`` values, each
  standardised with the training split's mean and std.
- **supervised**: the same backbone plus a linear head trained with cross-entropy on the
  labels for the same number of steps, batch size, optimiser, learning-rate schedule and
  precision as BYOL, on light augmentation (the BYOL preset's random resized crop and
  flip, no colour, blur or solarisation).

Every representation is scored the same way with ``xbyol.eval``: frozen features of the
whole train and test splits (``extract_features``), the standardised logistic-regression
probe (``linear_probe``) and the weighted kNN (``knn_accuracy``, k=20, t=0.07), with the
settings of the dataset's preset. The backbone's own head and projector are not used.

    python benchmarks/quality.py                                    # the table in BENCHMARKS.md
    python benchmarks/quality.py --datasets digits --steps 100      # quicker
    python benchmarks/quality.py --threads 1 train.lr=1e-3          # extra config overrides (BYOL and supervised)
    python benchmarks/quality.py --datasets shapes --byol-only method.tau_base=0.996   # one sweep point

Over training seeds (``--seeds``; ``train.seed``, the data stay the same): one run per dataset,
seed and representation (raw pixels once per dataset: they have no seed), each an entry of the
results JSON (``--json``, default ``benchmarks/results/quality_seeds.json``) with the per-seed
values and their mean and sd (``summary``). An entry already there is reused, so an interrupted
command picks up where it stopped; the file refuses entries made with another budget. BYOL is
called better or worse than a baseline only where the 95% intervals of the mean do not overlap
(:func:`interval95`; raw pixels are one exact value):

    python benchmarks/quality.py --threads 1 --seeds 0 1 2    # the table in BENCHMARKS.md

Fashion-MNIST (needs ``apt-get install dataset-fashion-mnist``; BENCHMARKS.md has the timings):

    python benchmarks/quality.py --threads 1 train.seed=0 --datasets fashion-mnist

shapes at the larger budget where BYOL beats raw pixels on the probe (BENCHMARKS.md; about 2 h of BYOL per seed on two cores, 75 s
on an H200 with ``train.device=cuda``, which moves BYOL, the supervised model and the encoders' forward passes to
the GPU; the probe and kNN stay on the CPU):

    python benchmarks/quality.py --steps 1200 --seeds 0 1 2 --threads 8 --json benchmarks/results/quality_shapes64.json --datasets shapes \
        data.image_size=64 model.backbone=resnet10_32 train.optimizer=lars train.lr=1.0 train.weight_decay=1e-5 train.device=cuda
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import torch
import torch.nn.functional as F
from bench_seeds import interval95, interval_verdict, mean_sd, read_results, seed_summary, write_results
from torch import nn

import xbyol
from xbyol.augment import ByolViews
from xbyol.config import Config
from xbyol.data import build_dataset
from xbyol.eval.evaluate import probe_and_knn, raw_pixel_scores
from xbyol.models import create_backbone
from xbyol.run import load_run
from xbyol.training.optim import build_optimizer
from xbyol.training.precision import resolve_channels_last, resolve_precision
from xbyol.training.sampler import batch_indices, steps_per_epoch
from xbyol.training.schedules import lr_at
from xbyol.training.trainer import resolve_device, train

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_STEPS = {"shapes": 300, "digits": 1200, "fashion-mnist": 6200}
# the preset of each dataset (configs/<file>)
PRESETS = {"shapes": "shapes_byol.yaml", "digits": "digits_byol.yaml", "fashion-mnist": "fashion_mnist_byol.yaml"}
# shapes at the demo's size: 8192 train images (32 steps per epoch at batch 256, ~9 epochs in the
# budget) and 2048 test images (sampling noise about +-1 point); digits has its fixed 1437 / 360 split
DATA_OVERRIDES = {"shapes": ["data.num_train=8192", "data.num_test=2048"]}
DEFAULT_SEEDS_JSON = ROOT / "benchmarks" / "results" / "quality_seeds.json"
METRICS = ("linear_probe", "knn")


def make_cfg(dataset: str, steps: int, out_dir: str, overrides: list[str]) -> Config:
    """The dataset's BYOL preset with the step budget, on the CPU unless an override sets ``train.device``."""
    return xbyol.load_config(
        ROOT / "configs" / PRESETS[dataset],
        [f"name=quality_{dataset}_byol", f"out_dir={out_dir}", f"train.steps={steps}", "train.progress=false",
         "train.device=cpu", *overrides],
    )


def run_device(cfg: Config) -> torch.device:
    """Where this benchmark trains and encodes: ``train.device`` (the CPU unless overridden; the probe and
    kNN always run on the CPU)."""
    return resolve_device(cfg.train.device)


def score(encode: Callable[[torch.Tensor], torch.Tensor], splits: tuple[Any, Any], cfg: Config) -> dict[str, float]:
    """Linear-probe and kNN accuracy of ``encode`` (preprocessed images on :func:`run_device` -> [B, D]) with the
    preset's eval settings."""
    result, _ = probe_and_knn(encode, splits[0], splits[1], cfg, run_device(cfg))
    return result


def score_pixels(splits: tuple[Any, Any], cfg: Config) -> dict[str, float]:
    """Probe and kNN on raw pixels (:func:`xbyol.eval.evaluate.raw_pixel_scores`)."""
    return raw_pixel_scores(*splits, cfg)


class Supervised(nn.Module):
    """Backbone + linear classifier; ``backbone`` is what gets evaluated."""

    def __init__(self, backbone_name: str, num_classes: int) -> None:
        super().__init__()
        self.backbone = create_backbone(backbone_name)
        self.head = nn.Linear(self.backbone.num_features, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(x))  # (B, classes)


def train_supervised(cfg: Config, num_outputs: int | None = None,
                     loss_fn: Callable[[torch.Tensor, dict[str, Any]], torch.Tensor] | None = None,
                     whole: bool = False) -> nn.Module:
    """Supervised training with BYOL's budget, optimiser, schedule and precision; returns the backbone
    (``whole``: the whole :class:`Supervised` model, head included, in eval mode).

    By default a cross-entropy classifier of ``batch["label"]``; ``num_outputs`` and
    ``loss_fn(logits [B, num_outputs] float32, batch) -> loss`` train another head (e.g. a
    multi-label one, ``benchmarks/explainable.py``).
    """
    t = cfg.train
    device = run_device(cfg)
    torch.manual_seed(t.seed)
    dataset = build_dataset(cfg, "train")
    model = Supervised(cfg.model.backbone, num_outputs or len(dataset.class_names))
    loss_fn = loss_fn or (lambda logits, batch: F.cross_entropy(logits, batch["label"]))
    fmt = torch.channels_last if resolve_channels_last(t.channels_last, model.backbone) else torch.contiguous_format
    model = model.to(device, memory_format=fmt).train()
    light = dataclasses.replace(
        cfg.aug, jitter_p=0.0, grayscale_p=0.0, blur_p=(0.0, 0.0), solarize_p=(0.0, 0.0)
    )  # crop + flip only
    views = ByolViews(light, cfg.data.image_size)
    bs = cfg.data.batch_size
    total = t.steps if t.steps is not None else t.epochs * steps_per_epoch(len(dataset), bs, 1)
    warmup = t.warmup_steps if t.warmup_steps is not None else int(0.1 * total)
    base_lr = t.lr * bs / 256 if t.optimizer in ("lars", "sgd") else t.lr
    optimizer = build_optimizer(model, t, base_lr)
    precision = resolve_precision(t.precision, device)
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision)
    scaler = torch.amp.GradScaler(device.type, enabled=precision == "fp16")  # fp16 (CUDA only) needs loss scaling
    spe = steps_per_epoch(len(dataset), bs, 1)
    step = 0
    while step < total:
        for idx in batch_indices(len(dataset), bs, t.seed, step // spe, 0, 1):
            if step >= total:
                break
            batch = {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in dataset.get_batch(idx, masks=False).items()}
            x, _ = views(batch["image"].contiguous(memory_format=fmt))  # (B, 3, S, S), one light view
            for group in optimizer.param_groups:
                group["lr"] = lr_at(step, total, base_lr, warmup)
            with torch.autocast(device.type, dtype=dtype or torch.float32, enabled=dtype is not None):
                loss = loss_fn(model(x).float(), batch)
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
            step += 1
    return model.eval() if whole else model.backbone.eval()


def random_init(cfg: Config) -> nn.Module:
    """The preset's backbone, freshly initialised with the run's seed (as ``LoadedRun.random_init_backbone``),
    on :func:`run_device`."""
    with torch.random.fork_rng():
        torch.manual_seed(cfg.train.seed)
        return create_backbone(cfg.model.backbone).to(run_device(cfg)).eval()


BASELINES = ("random_init", "raw_pixels", "supervised")


def run_dataset(dataset: str, steps: int, out_dir: str, overrides: list[str], byol_only: bool = False,
                baselines_only: bool = False, baselines: tuple[str, ...] = BASELINES) -> dict[str, Any]:
    """Train and score BYOL on ``dataset`` and the ``baselines``; ``byol_only`` / ``baselines_only`` skip the others."""
    if byol_only and baselines_only:
        raise ValueError("byol_only and baselines_only exclude each other")
    cfg = make_cfg(dataset, steps, out_dir, overrides)
    res: dict[str, Any] = {"dataset": dataset, "steps": steps, "batch_size": cfg.data.batch_size,
                           "backbone": cfg.model.backbone, "overrides": overrides}
    if not baselines_only:
        t0 = time.perf_counter()
        run_dir = train(cfg, overwrite=True)
        res["byol_train_s"] = time.perf_counter() - t0
    splits = (build_dataset(cfg, "train"), build_dataset(cfg, "test"))
    res["train_images"], res["test_images"] = len(splits[0]), len(splits[1])
    if not baselines_only:
        res["byol"] = score(load_run(run_dir, device=run_device(cfg)).method.encode, splits, cfg)
    if byol_only:
        return res
    if "random_init" in baselines:
        res["random_init"] = score(random_init(cfg), splits, cfg)
    if "raw_pixels" in baselines:
        res["raw_pixels"] = score_pixels(splits, cfg)
    if "supervised" in baselines:
        t0 = time.perf_counter()
        sup = train_supervised(cfg)
        res["supervised_train_s"] = time.perf_counter() - t0
        res["supervised"] = score(sup, splits, cfg)
    return res


# ----------------------------------------------------------------------------- over training seeds

SEEDED = ("byol", "random_init", "supervised")  # raw pixels have no training seed: scored once per dataset
NAMES = {"byol": "BYOL", "random_init": "random init", "raw_pixels": "raw pixels", "supervised": "supervised"}


def run_entry(dataset: str, rep: str, seed: int | None, steps: int, out_dir: str, overrides: list[str]) -> dict[str, Any]:
    """One representation (``byol``, a baseline) of ``dataset`` at training seed ``seed`` (None: the preset's),
    as a results entry: its probe and kNN accuracy, training wall time (``train_s``, trained ones) and setting."""
    ov = overrides if seed is None else [*overrides, f"train.seed={seed}"]
    if rep == "byol":
        r = run_dataset(dataset, steps, out_dir, ov, byol_only=True)
    else:
        r = run_dataset(dataset, steps, out_dir, ov, baselines_only=True, baselines=(rep,))
    entry = {**r[rep], **{k: r[k] for k in ("steps", "batch_size", "backbone", "overrides", "train_images", "test_images")}}
    if f"{rep}_train_s" in r:
        entry["train_s"] = r[f"{rep}_train_s"]
    return entry


def seeds_budget(args: argparse.Namespace) -> dict[str, Any]:
    """What every entry of one seeded results file shares (steps per dataset, overrides, threads)."""
    return {"steps": {d: args.steps or n for d, n in DEFAULT_STEPS.items()}, "data_overrides": DATA_OVERRIDES,
            "overrides": list(args.overrides), "threads": args.threads}


def _seed_keys(runs: dict[str, Any]) -> list[str]:
    return sorted(runs, key=lambda s: int(s.removeprefix("seed")))


def summarise(data: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """``{dataset: {representation: {"seeds", metric: seed_summary}}}``; raw pixels with ``"seeds": []``."""
    out: dict[str, dict[str, Any]] = {}
    for ds in [*data["runs"], *(d for d in data["raw_pixels"] if d not in data["runs"])]:
        runs = data["runs"].get(ds, {})
        out[ds] = {}
        for rep in SEEDED:
            keys = [k for k in _seed_keys(runs) if rep in runs[k]]
            if keys:
                out[ds][rep] = {"seeds": [int(k.removeprefix("seed")) for k in keys],
                                **{m: seed_summary([runs[k][rep].get(m) for k in keys]) for m in (*METRICS, "train_s")}}
        if ds in data["raw_pixels"]:
            out[ds]["raw_pixels"] = {"seeds": [], **{m: seed_summary([data["raw_pixels"][ds][m]]) for m in METRICS}}
    return out


def save_seeded(path: Path, data: dict[str, Any]) -> None:
    """Write ``data`` with its seeds and ``summary`` refreshed, atomically (a killed run leaves the last good file).

    Entries another command added to the file since this one read it are kept, so commands on
    different datasets can fill one file at the same time (``--datasets shapes`` beside ``--datasets digits``).
    """
    if path.is_file():
        disk = json.loads(path.read_text())
        for ds, runs in disk["runs"].items():
            for seed, reps in runs.items():
                for rep, entry in reps.items():
                    data["runs"].setdefault(ds, {}).setdefault(seed, {}).setdefault(rep, entry)
        for ds, entry in disk["raw_pixels"].items():
            data["raw_pixels"].setdefault(ds, entry)
    data["seeds"] = sorted({int(k.removeprefix("seed")) for runs in data["runs"].values() for k in runs})
    data["summary"] = summarise(data)
    write_results(path, data)


def _cell(s: dict[str, Any], digits: int = 3) -> str:
    if s["n"] < 2:
        return mean_sd(s["values"], digits).replace(" (n=1)", "")
    return f"{mean_sd(s['values'], digits)} ({', '.join(f'{v:.{digits}f}' for v in s['values'])})"


def seeded_table(summary: dict[str, dict[str, Any]]) -> str:
    """Markdown rows: every cell mean ± sd over the seeds with the per-seed values; raw pixels as one value."""
    rows = ["| dataset | representation | linear probe | kNN (k=20) | seeds | train wall time |", "|---|---|---|---|---|---|"]
    for ds, reps in summary.items():
        for rep in ("byol", "random_init", "raw_pixels", "supervised"):
            if rep not in reps:
                continue
            r = reps[rep]
            seeds = ", ".join(map(str, r["seeds"])) or "- (no seed)"
            wall = f"{r['train_s']['mean']:.0f} s (mean)" if r.get("train_s", {}).get("mean") is not None else "-"
            rows.append(f"| {ds} | {NAMES[rep]} | {_cell(r['linear_probe'])} | {_cell(r['knn'])} | {seeds} | {wall} |")
    return "\n".join(rows)


def verdicts(summary: dict[str, dict[str, Any]]) -> list[tuple[str, str, str, str]]:
    """``(dataset, baseline, metric, interval_verdict(BYOL, baseline))`` for random init and raw pixels, where both are present."""
    out = []
    for ds, reps in summary.items():
        for base in ("random_init", "raw_pixels"):
            if "byol" in reps and base in reps:
                for m in METRICS:
                    out.append((ds, base, m, interval_verdict(interval95(reps["byol"][m]),
                                                              interval95(reps[base][m], exact=base == "raw_pixels"))))
    return out


def main_seeded(args: argparse.Namespace, command: str) -> int:
    """Run every missing (dataset, representation, seed) entry, saving after each, then print the table."""
    if any(o.startswith("train.seed=") for o in args.overrides):
        print("quality.py: --seeds sets train.seed; drop the train.seed override", file=sys.stderr)
        return 2
    path = args.json or DEFAULT_SEEDS_JSON
    data = read_results(path, seeds_budget(args), {"runs": {}, "raw_pixels": {}})
    reps = [r for r in SEEDED if not (args.baselines_only and r == "byol") and not (args.byol_only and r != "byol")
            and (r == "byol" or r in args.baselines)]
    with tempfile.TemporaryDirectory() as tmp:
        for ds in args.datasets:
            steps, overrides = args.steps or DEFAULT_STEPS[ds], DATA_OVERRIDES.get(ds, []) + args.overrides
            if "raw_pixels" in args.baselines and not args.byol_only and ds not in data["raw_pixels"]:
                data["raw_pixels"][ds] = run_entry(ds, "raw_pixels", None, steps, tmp, overrides)
                save_seeded(path, data)
            for rep in reps:  # one representation over all seeds before the next: a cut-short command leaves whole rows
                for seed in args.seeds:
                    runs = data["runs"].setdefault(ds, {}).setdefault(f"seed{seed}", {})
                    if rep not in runs:
                        runs[rep] = run_entry(ds, rep, seed, steps, tmp, overrides)
                        save_seeded(path, data)
                        print(f"{ds} seed {seed} {rep}: {json.dumps(runs[rep])}", flush=True)
    save_seeded(path, data)
    print(f"\nCommand: `{command}`; results: `{path}`\n")
    print(seeded_table(data["summary"]))
    found = verdicts(data["summary"])
    print("\nBYOL against each baseline (95% intervals of the mean, 2.48 sd over 3 seeds; raw pixels exact):")
    for ds, base, m, verdict in found:
        print(f"- {ds}, {m}: BYOL vs {NAMES[base]}: {verdict}")
    if args.byol_only or args.baselines_only:
        return 0
    ok = all(v == "higher" for *_, v in found) and all(sum(f[0] == ds for f in found) == 4 for ds in args.datasets)
    print(f"BYOL above random init and raw pixels on both metrics for every dataset: {'PASS' if ok else 'FAIL'}")
    return 0 if ok else 1


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--datasets", nargs="+", choices=sorted(DEFAULT_STEPS), default=["shapes", "digits"],  # fashion-mnist: on request
                   help="datasets to run; put config overrides before this flag (or after '--'), or they read as dataset names")
    p.add_argument("--steps", type=int, default=None, help="optimiser steps of BYOL and supervised (default: "
                   + ", ".join(f"{d} {n}" for d, n in DEFAULT_STEPS.items()) + ")")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--json", type=Path, default=None, help="also write the results here (with --seeds: the results "
                   f"file, entries reused; default {DEFAULT_SEEDS_JSON.relative_to(ROOT)})")
    p.add_argument("--seeds", type=int, nargs="+", default=None,
                   help="training seeds (train.seed): one run per dataset, seed and representation, mean ± sd over them")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--byol-only", action="store_true", help="score BYOL alone (for sweeps: the baselines do not depend on BYOL's settings)")
    mode.add_argument("--baselines-only", action="store_true", help="score random init, raw pixels and supervised alone (no BYOL run)")
    p.add_argument("--baselines", nargs="+", choices=BASELINES, default=list(BASELINES),
                   help="which baselines to score (default all; raw pixels do not depend on the seed)")
    p.add_argument("overrides", nargs="*", help="extra config overrides for every run, e.g. train.lr=1e-3")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {args.threads} threads, load average {os.getloadavg()[0]:.1f}", flush=True)
    if args.seeds is not None:
        return main_seeded(args, "python benchmarks/quality.py " + " ".join(sys.argv[1:] if argv is None else argv))
    t_all = time.perf_counter()
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for ds in args.datasets:
            steps = args.steps or DEFAULT_STEPS[ds]
            r = run_dataset(ds, steps, tmp, DATA_OVERRIDES.get(ds, []) + args.overrides, byol_only=args.byol_only,
                            baselines_only=args.baselines_only, baselines=tuple(args.baselines))
            results.append(r)
            print(json.dumps(r), flush=True)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    if args.byol_only:
        for r in results:
            print(f"{r['dataset']}: BYOL linear probe {r['byol']['linear_probe']:.3f}, kNN {r['byol']['knn']:.3f} "
                  f"({r['steps']} x {r['batch_size']}, {r['byol_train_s']:.0f} s; overrides {' '.join(r['overrides'])})")
        return 0
    if args.baselines_only:
        for r in results:
            print(f"{r['dataset']}: " + ", ".join(f"{k} {r[k]['linear_probe']:.3f} / {r[k]['knn']:.3f}"
                                                  for k in ("random_init", "raw_pixels", "supervised")))
        return 0
    print()
    print("| dataset | steps x batch | representation | linear probe | kNN (k=20) | train wall time |")
    print("|---|---|---|---|---|---|")
    ok = True
    for r in results:
        for key, name in (("byol", "BYOL"), ("random_init", "random init"), ("raw_pixels", "raw pixels"), ("supervised", "supervised")):
            wall = {"byol": f"{r['byol_train_s']:.0f} s", "supervised": f"{r['supervised_train_s']:.0f} s"}.get(key, "-")
            print(f"| {r['dataset']} | {r['steps']} x {r['batch_size']} | {name} | {r[key]['linear_probe']:.3f} | "
                  f"{r[key]['knn']:.3f} | {wall} |")
        for base in ("random_init", "raw_pixels"):
            ok &= all(r["byol"][m] > r[base][m] for m in ("linear_probe", "knn"))
    print(f"\ntotal {time.perf_counter() - t_all:.0f} s, load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    print(f"BYOL beats random init and raw pixels on both metrics for every dataset: {'PASS' if ok else 'FAIL'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
