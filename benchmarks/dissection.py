"""Network dissection on shapes: BYOL with and without the interpretable conv layer, and random init.

Trains two small BYOL runs on ``shapes`` at the same fixed CPU budget -- one plain, one with
``model.interpretable_layer=true`` (Zhang et al. 2018) -- then dissects the top layer of each
(its ``feature_layer``: the last stage, or the interpretable conv) and of the randomly
initialised twin of each, on the test split, and writes the table into
``benchmarks/BENCHMARKS.md`` under "Network dissection (shapes)".

    python benchmarks/dissection.py                 # ~10 min on one shared CPU core
    python benchmarks/dissection.py --steps 20 --no-write --json /tmp/d.json   # smoke run
    python benchmarks/dissection.py --seeds 0 1 2   # every cell mean ± sd over training seeds

Per-seed rows, their mean and sd (``summary``) and the seeds go to one JSON (``--json``,
default ``benchmarks/results/dissection.json``).

If ``xbyol.methods.byol`` does not yet honour ``model.interpretable_layer`` (the wiring lives
in the method), this script installs, for its own process only, a BYOL subclass that wraps
the backbone with :func:`xbyol.models.interpretable.wrap_interpretable` and adds its
``aux_loss()`` to the loss -- the same two lines the method is meant to carry.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

import torch
from bench_markdown import write_section
from bench_seeds import mean_sd, seed_summary

ROOT = Path(__file__).resolve().parents[1]
SECTION = "## Network dissection (shapes)"


def ensure_interpretable_byol() -> bool:
    """Make ``method.name=byol`` honour ``model.interpretable_layer``; True when a shim was needed."""
    from xbyol.config import from_dict
    from xbyol.data.shapes import ShapesDataset
    from xbyol.methods import METHODS
    from xbyol.methods.base import create_method
    from xbyol.methods.byol import BYOL
    from xbyol.models.ema import copy_as_target
    from xbyol.models.interpretable import InterpretableBackbone, wrap_interpretable

    probe_cfg = from_dict({}, {"model.interpretable_layer": True, "model.proj_hidden": 8, "model.pred_hidden": 8, "model.proj_dim": 8})
    if isinstance(create_method(probe_cfg, ShapesDataset("train", num=1)).backbone, InterpretableBackbone):
        return False

    class InterpretableBYOL(BYOL):
        def __init__(self, cfg, dataset) -> None:
            super().__init__(cfg, dataset)
            if cfg.model.interpretable_layer:
                self.backbone = wrap_interpretable(
                    self.backbone, cfg.model.interpretable_weight, tau=cfg.model.interpretable_tau
                )
                self.target_backbone = copy_as_target(self.backbone)

        def training_step(self, batch):
            out = super().training_step(batch)
            if isinstance(self.backbone, InterpretableBackbone):
                aux = self.backbone.aux_loss()
                out["loss_filter"] = aux.detach()
                out["loss"] = out["loss"] + aux
            return out

    METHODS.register("byol", replace=True)(InterpretableBYOL)
    return True


def last_metrics(run_dir: Path) -> dict[str, str]:
    rows = list(csv.DictReader(open(run_dir / "metrics.csv")))
    return rows[-1] if rows else {}


COUNTS = ("detectors", "unique_paper", "unique_release")


def row_key(row: dict[str, Any]) -> tuple[str, str, str]:
    return row["model"], row["init"], row["layer"]


def summarise(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One entry per (model, init, layer) in first-seen order: seeds, units and every count as
    :func:`bench_seeds.seed_summary` over the seeds (per-group counts under ``paper_per_group`` /
    ``release_per_group``), and the final losses of the trained rows."""
    keys = list(dict.fromkeys(row_key(r) for r in rows))
    out = []
    for key in keys:
        rs = [r for r in rows if row_key(r) == key]
        groups = list(rs[0]["release_per_group"])
        entry: dict[str, Any] = {"model": key[0], "init": key[1], "layer": key[2], "units": rs[0]["units"],
                                 "seeds": [r["seed"] for r in rs]}
        for k in COUNTS:
            entry[k] = seed_summary([r[k] for r in rs])
        for k in ("paper_per_group", "release_per_group"):
            entry[k] = {g: seed_summary([r[k][g] for r in rs]) for g in groups}
        for k in ("loss", "loss_filter"):
            entry[k] = seed_summary([float(r[k]) if r[k] not in ("", None) else None for r in rs])
        out.append(entry)
    return out


def _cell(s: dict[str, Any], digits: int = 1, count: bool = True) -> str:
    """mean ± sd over several seeds; one seed's value as it is (a count as an integer); '' for none."""
    if s["n"] > 1:
        return mean_sd(s["values"], digits)
    if not s["n"]:
        return ""
    return f"{s['values'][0]:g}" if count else f"{s['values'][0]:.{digits}f}"


def table_rows(summary: list[dict[str, Any]]) -> list[str]:
    """Markdown rows of the dissection table: with one seed the counts, with several mean ± sd."""
    groups = list(summary[0]["release_per_group"])
    lines = [
        "| model | init | layer | detectors / units | unique (paper) | unique (release) | "
        + " | ".join(f"{g} (p/r)" for g in groups) + " | final loss |",
        "|---|---|---|---|---|---|" + "---|" * len(groups) + "---|",
    ]
    for e in summary:
        loss = ""
        if e["init"] == "trained" and e["loss"]["n"]:
            loss = _cell(e["loss"], 3, count=False)
            if e["loss_filter"]["n"]:
                loss += f" (filter {_cell(e['loss_filter'], 4, count=False)})"
        lines.append(
            f"| {e['model']} | {e['init']} | `{e['layer']}` | {_cell(e['detectors'])} / {e['units']} | "
            f"{_cell(e['unique_paper'])} | {_cell(e['unique_release'])} | "
            + " | ".join(f"{_cell(e['paper_per_group'][g])} / {_cell(e['release_per_group'][g])}" for g in groups)
            + f" | {loss} |"
        )
    return lines


def _shown(path: Path) -> str:
    """``path`` relative to the repository when inside it (as the table names it)."""
    path = path.resolve()
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=150)
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--num-train", type=int, default=4000)
    ap.add_argument("--num-test", type=int, default=1000)
    ap.add_argument("--weight", type=float, default=0.1, help="model.interpretable_weight")
    ap.add_argument(
        "--tau", type=float, default=0.5,
        help="also train with model.interpretable_tau=TAU (0: skip); the paper's tau is 0.5/(h*w) = 0.03125 at 4x4",
    )
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0], help="training seeds (train.seed; the data stays seed 0)")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "runs" / "dissection"), help="parent of OUT/seed<S>/<run>")
    ap.add_argument("--json", default=str(ROOT / "benchmarks" / "results" / "dissection.json"),
                    help="results: per-seed rows, summary (mean, sd), seeds")
    ap.add_argument("--no-write", action="store_true", help="do not update BENCHMARKS.md")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)

    from xbyol.config import from_dict
    from xbyol.explain.dissection import dissect
    from xbyol.explain.dissection_run import random_twin
    from xbyol.run import load_run
    from xbyol.training import train

    shim = ensure_interpretable_byol()
    base = {
        "data.name": "shapes", "data.image_size": 32, "data.num_train": args.num_train, "data.num_test": args.num_test,
        "data.batch_size": args.batch_size, "model.backbone": "resnet10_16", "model.proj_hidden": 512,
        "model.proj_dim": 128, "model.pred_hidden": 512, "train.steps": args.steps, "train.optimizer": "adamw",
        "train.lr": 2e-3, "train.progress": False, "train.precision": "fp32", "train.channels_last": False, "method.concat_views": True,
    }
    variants = {
        "byol": {"name": "byol"},
        "byol + interpretable layer": {"name": "byol_interp", "model.interpretable_layer": True, "model.interpretable_weight": args.weight},
    }
    if args.tau > 0:
        variants[f"byol + interpretable layer, tau {args.tau:g}"] = {
            "name": "byol_interp_tau", "model.interpretable_layer": True, "model.interpretable_weight": args.weight,
            "model.interpretable_tau": args.tau,
        }
    rows = []
    t_all = time.time()
    for seed in args.seeds:
        for label, extra in variants.items():
            cfg = from_dict({}, {**base, "train.seed": seed, "out_dir": str(Path(args.out) / f"seed{seed}"), **extra})
            t0 = time.time()
            run_dir = train(cfg, overwrite=True)
            t_train = time.time() - t0
            run = load_run(run_dir)
            test = run.dataset("test")
            metrics = last_metrics(run_dir)
            layers = [None] + (["stages.3"] if extra.get("model.interpretable_layer") else [])
            twin = random_twin(run)
            for layer, (init, net) in [(la, m) for la in layers for m in (("trained", run.backbone), ("random init", twin))]:
                t1 = time.time()
                res = dissect(net, test, layer, 0.005, 0.04, 128, "cpu", progress=False)
                res.write(Path(run_dir) / "dissect" / res.layer / ("trained" if init == "trained" else "random"))
                s = res.summary
                rows.append({
                    "seed": seed, "model": label, "init": init, "layer": res.layer, "units": s["units"],
                    "detectors": s["detectors"], "unique_paper": s["unique_paper"], "unique_release": s["unique_release"],
                    "paper_per_group": s["unique_paper_per_group"], "release_per_group": s["unique_release_per_group"],
                    "detectors_per_group": s["detectors_per_group"],
                    "loss": metrics.get("loss", "") if init == "trained" else "",
                    "loss_filter": metrics.get("loss_filter", "") if init == "trained" else "",
                    "train_s": round(t_train, 1) if init == "trained" and layer is None else None, "dissect_s": round(time.time() - t1, 1),
                    "exact": res.exact_thresholds,
                })
                print(json.dumps(rows[-1]), flush=True)
    total = time.time() - t_all
    summary = summarise(rows)
    results = {"seeds": list(args.seeds), "budget": {k: v for k, v in vars(args).items() if k not in ("out", "json", "no_write")},
               "rows": rows, "summary": summary}
    json_path = Path(args.json)
    json_path.parent.mkdir(parents=True, exist_ok=True)
    json_path.with_suffix(".json.tmp").write_text(json.dumps(results, indent=1))
    os.replace(json_path.with_suffix(".json.tmp"), json_path)

    groups = list(rows[0]["release_per_group"])
    seeds_text = ", ".join(map(str, args.seeds))
    lines = [
        f"BYOL on `shapes` (32x32, {args.num_train} train images), `resnet10_16`, {args.steps} steps x batch "
        f"{args.batch_size} (AdamW, lr 2e-3), training seed(s) {seeds_text} (`train.seed`; data seed 0)"
        + (", every cell the mean ± sd over them" if len(args.seeds) > 1 else "")
        + f", then dissection of the top layer on the {args.num_test} "
        f"test images (quantile 0.005, IoU > 0.04; concept groups: {', '.join(groups)}). Interpretable layer: a 3x3 conv with the "
        f"Zhang et al. 2018 filter loss, weight {args.weight}, on top of the last stage (its output is the "
        "dissected layer; the last stage below it, `stages.3`, is shown too), with the paper's template scale tau = 0.5/(h*w) or the larger tau named in the row. "
        "'final loss' is the training loss of the last logged step (BYOL + weight x filter loss). "
        "'random init' = the same architecture freshly initialised with the same seed. "
        "Unique = distinct concepts detected, by the paper rule (each unit's best concept) / the NetDissect "
        "release rule (per group, each unit's best concept within the group).",
        "",
        *table_rows(summary),
    ]
    train_times = [r["train_s"] for r in rows if r["train_s"] is not None]
    lines += [
        "",
        f"Budget: {args.steps} steps per run; training took {', '.join(f'{t:.0f} s' for t in train_times)}, "
        f"everything {total / 60:.1f} min on {platform.processor() or platform.machine()} with "
        f"{args.threads} torch thread(s) on a shared 2-core machine"
        + (" (the interpretable BYOL came from the benchmark's own shim: methods/byol.py did not wire it yet)" if shim else "")
        + ".",
        f"Command: `python benchmarks/dissection.py --steps {args.steps} --batch-size {args.batch_size} "
        f"--num-train {args.num_train} --num-test {args.num_test} --weight {args.weight} --tau {args.tau:g} "
        f"--seeds {' '.join(map(str, args.seeds))}`; results: `{_shown(json_path)}` "
        "(per-seed `rows`, mean and sd under `summary`).",
    ]
    body = "\n".join(lines)
    print("\n" + body)
    if not args.no_write:
        path = ROOT / "benchmarks" / "BENCHMARKS.md"
        write_section(path, SECTION, f"{SECTION}\n\n{body.strip()}\n")
        print(f"\nwritten: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
