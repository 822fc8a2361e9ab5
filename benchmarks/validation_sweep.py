"""Fashion-MNIST settings chosen on the validation split, then scored once on the test split (issue 31).

Three steps, each writing one JSON under ``benchmarks/results/``:

``speed``: images/s of each arm's training step, measured side by side in one call (short runs of every arm in
turn, the order rotated each repetition, the median of the logged throughput after a warm-up). The sweep gives
every arm the same wall time from these ratios (an arm at half the images/s trains half the images).

``sweep``: each arm trained on the first 50,000 training images (``data.validation=true``) for ``--fraction`` of
the preset's 20-minute budget, scored on the 10,000 held-out ones (frozen features, the preset's logistic
probe and weighted kNN), over ``--seeds``. Per-image hits are kept, so each arm is compared with ``base``
paired by seed with the validation set's own sampling noise counted (``bench_seeds.paired_interval``).

``final``: the preset as shipped (``configs/fashion_mnist_byol.yaml``), ``xbyol train`` timed end to end with
``/usr/bin/time`` beside ``run.json``'s duration, one seed after another, then scored on the test split as
``xbyol eval`` scores it (with per-image hits): the issue's figures. Run it on an idle machine, nothing else running.

    python benchmarks/validation_sweep.py speed --arms base b64 predlr10
    python benchmarks/validation_sweep.py sweep --arms base b64 predlr10 --seeds 0 1 2 --fraction 0.25
    python benchmarks/validation_sweep.py final --seeds 0 1 2 3 4
    python benchmarks/validation_sweep.py table        # the markdown rows in BENCHMARKS.md, from the JSON
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from bench_seeds import NO_DIFFERENCE, read_results, seed_summary, write_results
from verdicts import judge

import xbyol
from xbyol.data import build_dataset
from xbyol.eval.knn import knn_predict
from xbyol.eval.linear_probe import linear_probe
from xbyol.run import load_run
from xbyol.rundir import extract_features
from xbyol.training.trainer import train

ROOT = Path(__file__).resolve().parents[1]
PRESET = ROOT / "configs" / "fashion_mnist_byol.yaml"
RESULTS = ROOT / "benchmarks" / "results"
SPEED_JSON, SWEEP_JSON, FINAL_JSON = (RESULTS / f"fmnist_validation_{n}.json" for n in ("speed", "sweep", "final"))

TIME_COMMAND = ["/usr/bin/time", "-v"]  # GNU time: wall, user and system time of the whole process

# arm -> overrides of the preset; the step count follows from the wall time (``speed``)
ARMS: dict[str, list[str]] = {
    "base": [],
    # half the batch, twice the updates per image; tau_base 0.99 = 0.98^(1/2): the target averages over as many
    # images per halving as at batch 128 (as the move from batch 256 to 128 did)
    "b64": ["data.batch_size=64", "method.tau_base=0.99"],
    # the two that each beat base on seed 0 of the first sweep, together
    "b64_predlr10": ["data.batch_size=64", "method.tau_base=0.99", "train.predictor_lr_scale=10"],
    # smaller images, train and evaluation alike: about (24/28)^2 of the arithmetic per image, more steps in the time
    "res24": ["data.image_size=24"],
    # progressive resizing: the first half of the steps on 20 px views (about half the arithmetic), the rest at 28
    "prog20": ["aug.early_size=20", "aug.early_fraction=0.5"],
    # the predictor at 10x the learning rate (Tian et al. 2021; Chen & He 2021)
    "predlr10": ["train.predictor_lr_scale=10"],
}


# arms that change no arithmetic of a step (optimiser settings only): their images/s is the preset's by construction
SAME_COST = {"predlr10"}
SPEED_OF = {"b64_predlr10": "b64"}  # arms timed as another arm whose steps cost the same


def arm_overrides(arm: str) -> list[str]:
    if arm not in ARMS:
        raise SystemExit(f"unknown arm {arm!r}; choose from {', '.join(ARMS)}")
    return ARMS[arm]


def batch_size_of(preset: Path, overrides: list[str]) -> int:
    return xbyol.load_config(preset, overrides).data.batch_size


# ----------------------------------------------------------------------------- speed

def logged_throughput(run_dir: Path, warmup_steps: int) -> float:
    """Median images/s of the metrics rows after ``warmup_steps``."""
    with open(run_dir / "metrics.csv") as f:
        rows = [r for r in csv.DictReader(f) if int(r["step"]) > warmup_steps and r["images_per_s"]]
    return statistics.median(float(r["images_per_s"]) for r in rows)


def speed(args: argparse.Namespace) -> None:
    data = read_results(args.json, {"images_per_arm": args.images, "reps": args.reps}, {"runs": [], "ratio_to_base": {}})
    call = 1 + max((r.get("call", 0) for r in data["runs"]), default=0)  # each call pairs its arms with its own base
    mine: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        for rep in range(args.reps):
            order = args.arms[rep % len(args.arms):] + args.arms[: rep % len(args.arms)]
            for arm in order:
                ov = arm_overrides(arm)
                bs = batch_size_of(args.config, ov)
                steps = max(40, args.images // bs)
                if early_fraction(args.config, arm) is not None:  # time the small views alone; see arm_ratio
                    ov = [*ov, "aug.early_fraction=1.0"]
                cfg = xbyol.load_config(args.config, [*ov, "data.validation=true", f"train.steps={steps}", f"out_dir={tmp}",
                                                 f"name={arm}", "train.progress=false", "train.log_every=10",
                                                 "train.ckpt_minutes=null"])
                run_dir = train(cfg, overwrite=True)
                ips = logged_throughput(run_dir, warmup_steps=steps // 4)
                mine.append({"call": call, "rep": rep, "arm": arm, "batch_size": bs, "steps": steps, "images_per_s": ips})
                print(f"rep {rep} {arm}: {ips:.0f} images/s", flush=True)
    if "base" not in args.arms:
        raise SystemExit("speed: --arms must include base, the arm every ratio is measured against")
    base = {r["rep"]: r["images_per_s"] for r in mine if r["arm"] == "base"}
    data["runs"] += mine
    for arm in args.arms:
        measured = statistics.median(r["images_per_s"] / base[r["rep"]] for r in mine if r["arm"] == arm)
        data["ratio_to_base"][arm] = arm_ratio(args.config, arm, measured)
        if early_fraction(args.config, arm) is not None:
            data.setdefault("early_views_ratio_to_base", {})[arm] = measured
    write_results(args.json, data)
    print(json.dumps(data["ratio_to_base"], indent=1))


def early_fraction(preset: Path, arm: str) -> float | None:
    """The part of ``arm``'s steps made on smaller views (``aug.early_size``), None without progressive resizing."""
    aug = xbyol.load_config(preset, arm_overrides(arm)).aug
    return aug.early_fraction if aug.early_size is not None else None


def arm_ratio(preset: Path, arm: str, measured: float) -> float:
    """``arm``'s images/s over the whole run relative to ``base``. ``measured`` is its ratio as timed; for an arm
    with progressive resizing that is the small views' ratio ``r`` (timed alone), and a fraction ``f`` of the
    steps at ``r`` with the rest at the full size (base's speed) averages ``1 / (f / r + 1 - f)``."""
    f = early_fraction(preset, arm)
    return measured if f is None else 1.0 / (f / measured + 1.0 - f)


def equal_time_steps(preset: Path, arm: str, fraction: float, ratios: dict[str, float]) -> int:
    """Steps of ``arm`` in ``fraction`` of the preset's wall time: the preset's ``train.steps`` scaled by the arm's
    images/s ratio to ``base`` and by the batch sizes."""
    preset_steps = xbyol.load_config(preset).train.steps
    if preset_steps is None:
        raise SystemExit(f"{preset}: the sweep needs the preset's budget as train.steps, not train.epochs")
    if arm in SAME_COST:
        return round(fraction * preset_steps)
    arm_timed = SPEED_OF.get(arm, arm)
    if arm_timed not in ratios:
        raise SystemExit(f"no speed ratio for arm {arm_timed!r}; run `validation_sweep.py speed --arms base {arm_timed}`")
    bs_base, bs_arm = batch_size_of(preset, ARMS["base"]), batch_size_of(preset, ARMS[arm])
    return round(fraction * preset_steps * ratios[arm_timed] * bs_base / bs_arm)


# ----------------------------------------------------------------------------- sweep

def hit_string(hits: np.ndarray) -> str:
    """0/1 hits ``[N]`` as a string of "0" and "1", the per-image form ``verdicts.py`` reads."""
    return "".join("1" if h else "0" for h in hits)


def score_hits(run_dir: Path) -> dict[str, Any]:
    """Probe and kNN accuracy of a run on its evaluation split, with per-image hits."""
    run = load_run(run_dir, device="cpu")
    cfg = run.cfg
    tr_x, tr_y = extract_features(run.method.encode, build_dataset(cfg, "train"))
    te_x, te_y = extract_features(run.method.encode, build_dataset(cfg, "test"))
    probe = linear_probe(tr_x, tr_y, te_x, te_y, C=cfg.eval.probe_c, max_iter=cfg.eval.probe_max_iter, seed=cfg.train.seed)
    probe_hits = probe["classifier"].predict(te_x.double().numpy()) == te_y.numpy()
    knn_scores = knn_predict(te_x, tr_x, tr_y, int(max(tr_y.max(), te_y.max())) + 1, k=cfg.eval.knn_k, t=cfg.eval.knn_t)
    knn_hits = (knn_scores.argmax(1) == te_y).numpy()
    return {"linear_probe": float(probe_hits.mean()), "knn": float(knn_hits.mean()), "n_eval": len(te_y),
            "per_image": {"hit_linear_probe": hit_string(probe_hits), "hit_knn": hit_string(knn_hits)}}


def sweep(args: argparse.Namespace) -> None:
    ratios = json.loads(args.speed_json.read_text())["ratio_to_base"] if args.speed_json.is_file() else {"base": 1.0}
    budget = {"fraction": args.fraction, "preset_steps": xbyol.load_config(args.config).train.steps}
    if args.config != PRESET:
        budget["config"] = str(args.config)
    data = read_results(args.json, budget, {"runs": {}})
    for seed in args.seeds:
        for arm in args.arms:
            if f"seed{seed}" in data["runs"].get(arm, {}):
                continue
            steps = equal_time_steps(args.config, arm, args.fraction, ratios)
            with tempfile.TemporaryDirectory() as tmp:
                cfg = xbyol.load_config(args.config, [*arm_overrides(arm), "data.validation=true", f"train.steps={steps}",
                                                 f"train.seed={seed}", f"out_dir={tmp}", f"name={arm}",
                                                 "train.progress=false", "train.log_every=50"])
                t0 = time.perf_counter()
                run_dir = train(cfg, overwrite=True)
                train_s = time.perf_counter() - t0
                entry = {"steps": steps, "overrides": arm_overrides(arm), "train_s": train_s, **score_hits(run_dir)}
            data["runs"].setdefault(arm, {})[f"seed{seed}"] = entry
            write_results(args.json, data)
            print(f"{arm} seed {seed}: {steps} steps, {train_s:.0f} s; probe {entry['linear_probe']:.4f} "
                  f"kNN {entry['knn']:.4f}", flush=True)
    print(sweep_table(data))


def sweep_summary(data: dict[str, Any]) -> dict[str, Any]:
    """Per arm: seeds, steps, mean/sd of each metric, and against ``base`` on the shared seeds the paired 95%
    interval of the difference with the validation set's noise from the per-image hits (``verdicts.judge``, the
    function that checks the verdicts written in BENCHMARKS.md)."""
    out: dict[str, Any] = {}
    for arm, seeds in data["runs"].items():
        keys = sorted(seeds, key=lambda k: int(k.removeprefix("seed")))
        row: dict[str, Any] = {"seeds": [int(k.removeprefix("seed")) for k in keys],
                               "steps": sorted({seeds[k]["steps"] for k in keys})}
        for m in ("linear_probe", "knn"):
            row[m] = seed_summary([seeds[k][m] for k in keys])
            if arm != "base" and "base" in data["runs"]:
                verdict, interval, shared, _ = judge(data, SWEEP_JSON.name, f"runs/{arm}/*/{m}", f"runs/base/*/{m}")
                row[f"{m}_vs_base"] = {"seeds": shared, "interval": interval, "verdict": verdict}
        out[arm] = row
    return out


def speed_table(speed: dict[str, Any], preset: Path, fraction: float) -> str:
    """Each timed arm's images/s ratio to ``base`` (median over repetitions; a progressive arm's small views and
    its whole-run average) and the steps it gets in ``fraction`` of the preset's time."""
    lines = ["| arm | images/s / base's (median of the repetitions) | steps |", "|---|---|---|"]
    for arm, ratio in speed["ratio_to_base"].items():
        small = speed.get("early_views_ratio_to_base", {}).get(arm)
        cell = f"{ratio:.3f}" if small is None else \
            f"{ratio:.3f} (its small views {small:.3f}, {early_fraction(preset, arm):.0%} of the steps)"
        lines.append(f"| {arm} | {cell} | {equal_time_steps(preset, arm, fraction, speed['ratio_to_base'])} |")
    return "\n".join(lines)


def sweep_table(data: dict[str, Any]) -> str:
    lines = ["| arm | overrides | steps | validation probe | validation kNN | probe - base (95%, paired) | kNN - base (95%, paired) | seeds |",
             "|---|---|---|---|---|---|---|---|"]
    for arm, row in sweep_summary(data).items():
        cells = []
        for m in ("linear_probe", "knn"):
            s = row[m]
            cells.append(f"{s['mean']:.4f} ± {s['sd']:.4f}" if s["sd"] is not None else f"{s['mean']:.4f}")
        diffs = []
        for m in ("linear_probe", "knn"):
            d = row.get(f"{m}_vs_base")
            if d is None or d["interval"] is None:
                diffs.append("-")
                continue
            stated = "no difference" if d["verdict"] == NO_DIFFERENCE else d["verdict"]
            marker = f"<!-- verdict {SWEEP_JSON.name}: runs/{arm}/*/{m} vs runs/base/*/{m} = {stated} -->"
            diffs.append(f"{d['interval'][0]:+.4f} to {d['interval'][1]:+.4f}: {d['verdict']}{marker}")
        ov = " ".join(ARMS.get(arm, [])) or "the preset"
        lines.append(f"| {arm} | `{ov}` | {', '.join(map(str, row['steps']))} | {cells[0]} | {cells[1]} | {diffs[0]} | {diffs[1]} | "
                     f"{', '.join(map(str, row['seeds']))} |")
    return "\n".join(lines)


# ----------------------------------------------------------------------------- final

def final(args: argparse.Namespace) -> None:
    cfg = xbyol.load_config(args.config, list(args.overrides))
    data = read_results(args.json, {"config": str(args.config.resolve().relative_to(ROOT)), "overrides": list(args.overrides),
                                    "steps": cfg.train.steps}, {"runs": {}})
    for seed in args.seeds:
        key = f"seed{seed}"
        if key in data["runs"]:
            continue
        with tempfile.TemporaryDirectory() as tmp:
            cmd = [*TIME_COMMAND, sys.executable, "-m", "xbyol", "train", "-c", str(args.config),
                   "--set", f"train.seed={seed}", "--set", f"out_dir={tmp}", "--set", "name=final",
                   "--set", "train.progress=false", *[x for o in args.overrides for x in ("--set", o)]]
            load_before = os.getloadavg()[0]
            proc = subprocess.run(cmd, capture_output=True, text=True)
            if proc.returncode != 0:
                raise SystemExit(f"seed {seed}: xbyol train exited {proc.returncode}:\n{proc.stderr[-2000:]}")
            run_dir = Path(tmp) / "final"
            run_json = json.loads((run_dir / "run.json").read_text())
            entry = {"seed": seed, "duration_s": sum(seg["duration_s"] for seg in run_json["segments"]),
                     **time_v_fields(proc.stderr), "load_before": load_before, **score_hits(run_dir)}
        data["runs"][key] = entry
        write_results(args.json, data)
        print(f"{key}: trained {entry['duration_s']:.0f} s; probe {entry['linear_probe']:.4f} kNN {entry['knn']:.4f}", flush=True)


def table(args: argparse.Namespace) -> None:
    """Print the speed table (when its JSON is there) and the sweep table, as BENCHMARKS.md holds them."""
    data = json.loads(args.json.read_text())
    if args.speed_json.is_file():
        print(speed_table(json.loads(args.speed_json.read_text()), args.config, data["budget"]["fraction"]) + "\n")
    print(sweep_table(data))


def time_v_fields(stderr: str) -> dict[str, float]:
    """Wall, user and system seconds from ``/usr/bin/time -v``'s report."""
    wall = re.search(r"Elapsed \(wall clock\) time.*: (?:(\d+):)?(\d+):([\d.]+)", stderr)
    user = re.search(r"User time \(seconds\): ([\d.]+)", stderr)
    system = re.search(r"System time \(seconds\): ([\d.]+)", stderr)
    if not (wall and user and system):
        raise SystemExit("/usr/bin/time -v printed no timing report")
    h, m, sec = (float(g or 0) for g in wall.groups())
    return {"wall_s": h * 3600 + m * 60 + sec, "user_s": float(user[1]), "system_s": float(system[1])}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("speed", help="images/s of each arm, side by side")
    arms_help = "arms to run (default: all); each is a set of preset overrides, listed in ARMS at the top of this file"
    s.add_argument("--arms", nargs="+", default=list(ARMS), choices=list(ARMS), metavar="ARM", help=arms_help)
    s.add_argument("--reps", type=int, default=3, help="repetitions of every arm, the order rotated (default 3)")
    s.add_argument("--images", type=int, default=25600, help="training images per short run")
    s.add_argument("--json", type=Path, default=SPEED_JSON, help="ratios, merged with the file's earlier calls")
    w = sub.add_parser("sweep", help="arms on the validation split at equal wall time")
    w.add_argument("--arms", nargs="+", default=list(ARMS), choices=list(ARMS), metavar="ARM", help=arms_help)
    w.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2], help="training seeds (default 0 1 2)")
    w.add_argument("--fraction", type=float, default=0.25,
                   help="of the preset's 20-minute budget in wall time (default 0.25; 1 is the full budget)")
    w.add_argument("--json", type=Path, default=SWEEP_JSON, help="results; entries already there are reused")
    f = sub.add_parser("final", help="the preset, timed, on the test split")
    f.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2, 3, 4], help="training seeds (default 0-4)")
    f.add_argument("--json", type=Path, default=FINAL_JSON, help="results; entries already there are reused")
    f.add_argument("overrides", nargs="*", help="config overrides (none: the preset as shipped)")
    t = sub.add_parser("table", help="print the sweep table from its JSON")
    t.add_argument("--json", type=Path, default=SWEEP_JSON, help="the sweep results to tabulate")
    for sp in (s, w, f, t):
        sp.add_argument("--config", type=Path, default=PRESET, help="the preset the arms change (default: Fashion-MNIST's)")
    for sp in (w, t):
        sp.add_argument("--speed-json", type=Path, default=SPEED_JSON, help="the ratios written by `speed`")
    args = p.parse_args(argv)
    {"speed": speed, "sweep": sweep, "final": final, "table": table}[args.cmd](args)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
