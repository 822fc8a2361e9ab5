"""Network dissection on shapes: BYOL with and without the interpretable conv layer, and random init.

Trains small BYOL runs on ``shapes`` at one fixed CPU budget -- plain, with
``model.interpretable_layer=true`` (Zhang et al. 2018) at the paper's template scale, and with
a larger ``--tau`` -- then dissects the top layer of each (its ``feature_layer``: the last
stage, or the interpretable conv; for the interpretable runs also the stage below it) and of
the randomly initialised twin of each, on the test split, and writes the table into
``benchmarks/BENCHMARKS.md`` under "Network dissection (shapes)".

    python benchmarks/dissection.py --seeds 0 1 2   # every cell mean ± sd; ~8-10 CPU-minutes per seed (1 thread)
    python benchmarks/dissection.py --steps 20 --no-write --json /tmp/d.json   # smoke run
    python benchmarks/dissection.py --table-only    # re-make the section from the results file
    python benchmarks/dissection.py --merge d1.json d2.json   # add seeds run elsewhere (same budget)

Results accumulate in one JSON (``--json``, default ``benchmarks/results/dissection.json``):
per-seed ``rows``, their mean and sd (``summary``) and the 95%-interval comparisons
(``comparisons``). Each seed is saved as soon as it is done, and a later call with other seeds
(same budget) adds to the file, so seeds can be run one per command; a seed run again replaces
its rows. The section's table is re-made from the whole file; a hand-written "Reading:"
paragraph already in the section is kept.
"""

from __future__ import annotations

import argparse
import csv
import json
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import torch
from bench_markdown import write_section
from bench_seeds import UNDECIDED, interval95, interval_verdict, mean_sd, read_results, seed_summary, write_results

ROOT = Path(__file__).resolve().parents[1]
SECTION = "## Network dissection (shapes)"
READING = "Reading:"
PLAIN, INTERP = "byol", "byol + interpretable layer"
COUNTS = ("detectors", "unique_paper", "unique_release")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
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
                    help="results (accumulate over calls): per-seed rows, summary (mean, sd), comparisons, seeds")
    ap.add_argument("--no-write", action="store_true", help="do not update BENCHMARKS.md")
    ap.add_argument("--table-only", action="store_true", help="re-make the section from --json instead of training")
    ap.add_argument("--merge", nargs="+", default=[], metavar="JSON",
                    help="add the seeds of other results files of the same budget to --json (a seed in both: theirs), "
                         "then re-make the section; trains nothing")
    return ap.parse_args(argv)


def budget(args: argparse.Namespace) -> dict[str, Any]:
    """The settings every seed of one results file shares (the file refuses seeds made otherwise)."""
    return {"steps": args.steps, "batch_size": args.batch_size, "num_train": args.num_train,
            "num_test": args.num_test, "weight": args.weight, "tau": args.tau}


def tau_label(tau: float) -> str:
    return f"{INTERP}, tau {tau:g}"


def variants(args: argparse.Namespace) -> dict[str, dict[str, Any]]:
    """Row label -> run name and config overrides of each trained model."""
    out: dict[str, dict[str, Any]] = {
        PLAIN: {"name": "byol"},
        INTERP: {"name": "byol_interp", "model.interpretable_layer": True, "model.interpretable_weight": args.weight},
    }
    if args.tau > 0:
        out[tau_label(args.tau)] = {"name": "byol_interp_tau", "model.interpretable_layer": True,
                                    "model.interpretable_weight": args.weight, "model.interpretable_tau": args.tau}
    return out


def last_metrics(run_dir: Path) -> dict[str, str]:
    rows = list(csv.DictReader(open(run_dir / "metrics.csv")))
    return rows[-1] if rows else {}


# ----------------------------------------------------------------------------- results file


def row_key(row: dict[str, Any]) -> tuple[str, str, str]:
    return row["model"], row["init"], row["layer"]


def add_seed_rows(data: dict[str, Any], rows: list[dict[str, Any]]) -> dict[str, Any]:
    """``data`` with the rows of every seed in ``rows`` replaced by ``rows``, ordered by seed
    (within a seed as measured)."""
    seeds = {r["seed"] for r in rows}
    kept = [r for r in data["rows"] if r["seed"] not in seeds]
    return {**data, "rows": sorted(kept + rows, key=lambda r: r["seed"])}


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


def compare(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    """Verdict on ``a`` vs ``b`` (two seed summaries) by :func:`bench_seeds.interval_verdict` on their
    95% intervals, with the intervals."""
    ia, ib = interval95(a), interval95(b)
    return {"a": ia, "b": ib, "verdict": interval_verdict(ia, ib)}


def comparison_pairs(summary: list[dict[str, Any]], tau: float) -> list[tuple[str, tuple, tuple, tuple[str, ...]]]:
    """The comparisons the section's reading rests on: ``(what, key_a, key_b, metrics)`` for the rows
    present -- each trained layer vs its random-init twin; the interpretable layer's output (and the
    stage below it) vs plain BYOL's top layer; the larger tau vs the paper's tau."""
    keys = {row_key(e) for e in summary}
    top = {m: next(e["layer"] for e in summary if e["model"] == m) for m in dict.fromkeys(e["model"] for e in summary)}
    pairs = []
    for m, _, layer in [k for k in dict.fromkeys(row_key(e) for e in summary) if k[1] == "trained"]:
        if (m, "random init", layer) in keys:
            pairs.append((f"{m} `{layer}`: trained vs random init", (m, "trained", layer), (m, "random init", layer), COUNTS))
    if PLAIN in top:
        plain_top = (PLAIN, "trained", top[PLAIN])
        for m in (INTERP, tau_label(tau)):
            for layer in dict.fromkeys([top.get(m), "stages.3"]):
                if (m, "trained", layer) in keys:
                    pairs.append((f"{m} `{layer}` vs {PLAIN} `{top[PLAIN]}` (trained)", (m, "trained", layer), plain_top, COUNTS))
    if INTERP in top and tau_label(tau) in top:
        for layer in dict.fromkeys([top[INTERP], "stages.3"]):
            a, b = (tau_label(tau), "trained", layer), (INTERP, "trained", layer)
            if a in keys and b in keys:
                metrics = (*COUNTS, "loss_filter") if layer == top[INTERP] else COUNTS  # one run, one filter loss
                pairs.append((f"tau {tau:g} vs the paper's tau, `{layer}` (trained)", a, b, metrics))
    return pairs


def comparisons(summary: list[dict[str, Any]], tau: float) -> list[dict[str, Any]]:
    """:func:`compare` on every metric of every :func:`comparison_pairs` entry."""
    by_key = {row_key(e): e for e in summary}
    return [
        {"what": what, "a": list(a), "b": list(b), "metrics": {k: compare(by_key[a][k], by_key[b][k]) for k in metrics}}
        for what, a, b, metrics in comparison_pairs(summary, tau)
    ]


def save_results(path: Path, data: dict[str, Any]) -> dict[str, Any]:
    """Write ``data`` with its ``seeds``, ``summary`` and ``comparisons`` re-made from its rows (atomically)."""
    data["seeds"] = sorted({r["seed"] for r in data["rows"]})
    data["summary"] = summarise(data["rows"])
    data["comparisons"] = comparisons(data["summary"], data["budget"]["tau"])
    write_results(path, data)
    return data


# ----------------------------------------------------------------------------- section


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


def _verdict_cell(c: dict[str, Any] | None, digits: int) -> str:
    if c is None:
        return ""
    if c["verdict"] == UNDECIDED:
        return "n/a (1 seed)"
    (a0, a1), (b0, b1) = c["a"], c["b"]
    word = f"**{c['verdict']}**" if c["verdict"] in ("higher", "lower") else "no difference"
    return f"{word}: [{a0:.{digits}f}, {a1:.{digits}f}] vs [{b0:.{digits}f}, {b1:.{digits}f}]"


def comparison_table(comps: list[dict[str, Any]]) -> list[str]:
    """Markdown rows: per comparison A vs B, each metric's verdict and the two 95% intervals."""
    lines = ["| A vs B | detectors | unique (paper) | unique (release) | filter loss |", "|---|---|---|---|---|"]
    for c in comps:
        m = c["metrics"]
        lines.append(f"| {c['what']} | " + " | ".join(_verdict_cell(m.get(k), 1) for k in COUNTS)
                     + f" | {_verdict_cell(m.get('loss_filter'), 4)} |")
    return lines


def section_text(data: dict[str, Any], json_shown: str, threads: int) -> str:
    """The section body (without heading) re-made from the whole results file."""
    b, rows, summary = data["budget"], data["rows"], data["summary"]
    groups = list(rows[0]["release_per_group"])
    seeds = data["seeds"]
    several = len(seeds) > 1
    lines = [
        f"BYOL on `shapes` (32x32, {b['num_train']} train images), `resnet10_16`, {b['steps']} steps x batch "
        f"{b['batch_size']} (AdamW, lr 2e-3), training seeds {', '.join(map(str, seeds))} (`train.seed`; data seed 0)"
        + (", every cell the mean ± sd (sample sd) over them" if several else "")
        + f", then dissection of the top layer on the {b['num_test']} "
        f"test images (quantile 0.005, IoU > 0.04; concept groups: {', '.join(groups)}). Interpretable layer: a 3x3 conv with the "
        f"Zhang et al. 2018 filter loss, weight {b['weight']:g}, on top of the last stage (its output is the "
        "dissected layer; the last stage below it, `stages.3`, is shown too), with the paper's template scale tau = 0.5/(h*w) "
        "or the larger tau named in the row. "
        "'final loss' is the training loss of the last logged step (BYOL + weight x filter loss). "
        "'random init' = the same architecture freshly initialised with the same seed. "
        "Unique = distinct concepts detected, by the paper rule (each unit's best concept) / the NetDissect "
        "release rule (per group, each unit's best concept within the group).",
        "",
        *table_rows(summary),
    ]
    if several:
        lines += [
            "",
            "Differences, by the 95% interval of each mean (t interval over the seeds: mean ± 2.48 sd over 3 seeds): "
            "A is called higher or lower than B only where the two intervals do not overlap, otherwise "
            "'no difference' (at this budget).",
            "",
            *comparison_table(data["comparisons"]),
        ]
    train_s = [r["train_s"] for r in rows if r["train_s"] is not None]
    per_seed_min = [sum((r["train_s"] or 0) + r["dissect_s"] for r in rows if r["seed"] == s) / 60 for s in seeds]
    lines += [
        "",
        f"Budget: {b['steps']} steps per run; training took {statistics.mean(train_s):.0f} s per run "
        f"({min(train_s):.0f}-{max(train_s):.0f} s over {len(train_s)} runs), training and dissection "
        f"{', '.join(f'{m:.1f}' for m in per_seed_min)} min per seed, on {platform.processor() or platform.machine()} with "
        f"{threads} torch thread(s) on a shared 2-core machine.",
        f"Command: `python benchmarks/dissection.py --steps {b['steps']} --batch-size {b['batch_size']} "
        f"--num-train {b['num_train']} --num-test {b['num_test']} --weight {b['weight']:g} --tau {b['tau']:g} "
        f"--seeds {' '.join(map(str, seeds))}`; results: `{json_shown}` "
        "(per-seed `rows`, mean and sd under `summary`, intervals and verdicts under `comparisons`).",
    ]
    return "\n".join(lines)


def write_markdown(path: Path, body: str) -> None:
    """Replace the section in ``path`` with ``body``, keeping its hand-written reading (from ``Reading:``)."""
    write_section(path, SECTION, f"{SECTION}\n\n{body.strip()}\n", keep=READING)


def _shown(path: Path) -> str:
    """``path`` relative to the repository when inside it (as the table names it)."""
    path = path.resolve()
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


# ----------------------------------------------------------------------------- measuring


def measure_seed(args: argparse.Namespace, seed: int) -> list[dict[str, Any]]:
    """Train every variant with ``train.seed=seed`` and dissect its layers, trained and random init."""
    from xbyol.config import from_dict
    from xbyol.explain.dissection import dissect
    from xbyol.explain.dissection_run import random_twin
    from xbyol.run import load_run
    from xbyol.training import train

    base = {
        "data.name": "shapes", "data.image_size": 32, "data.num_train": args.num_train, "data.num_test": args.num_test,
        "data.batch_size": args.batch_size, "model.backbone": "resnet10_16", "model.proj_hidden": 512,
        "model.proj_dim": 128, "model.pred_hidden": 512, "train.steps": args.steps, "train.optimizer": "adamw",
        "train.lr": 2e-3, "train.progress": False, "train.precision": "fp32", "train.channels_last": False, "method.concat_views": True,
    }
    rows = []
    for label, extra in variants(args).items():
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
                "train_s": round(t_train, 1) if init == "trained" and layer is None else None,
                "dissect_s": round(time.time() - t1, 1),
                "exact": res.exact_thresholds,
            })
            print(json.dumps(rows[-1]), flush=True)
    return rows


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    json_path = Path(args.json)
    data = read_results(json_path, budget(args), {"rows": []})  # before training: a wrong budget stops here
    for other in map(Path, args.merge):
        if not other.is_file():
            print(f"{other}: no such results file to merge", file=sys.stderr)
            return 2
        data = add_seed_rows(data, read_results(other, budget(args), {"rows": []})["rows"])
    if args.table_only or args.merge:
        if not data["rows"]:
            print(f"{json_path}: no results to make the table from; run without --table-only first", file=sys.stderr)
            return 2
        body = section_text(save_results(json_path, data), _shown(json_path), args.threads)
        print(body)
        if not args.no_write:
            write_markdown(ROOT / "benchmarks" / "BENCHMARKS.md", body)
        return 0
    for seed in args.seeds:
        data = save_results(json_path, add_seed_rows(data, measure_seed(args, seed)))
        body = section_text(data, _shown(json_path), args.threads)
        print(f"\nseed {seed} saved to {json_path}\n\n{body}", flush=True)
        if not args.no_write:
            write_markdown(ROOT / "benchmarks" / "BENCHMARKS.md", body)
    return 0


if __name__ == "__main__":
    sys.exit(main())
