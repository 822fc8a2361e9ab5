"""Cross-modal BYOL vs CLIP on shapes captions at one small CPU budget.

Trains ``xmodal`` (configs/shapes_xmodal.yaml) and ``clip`` (configs/shapes_clip.yaml) with
the same data, steps, encoders and heads, then evaluates both with ``xbyol.evaluate``
(linear probe + kNN of the image backbone, and the ``retrieval`` evaluator: image<->text
Recall@1/5/10 and median rank with chance levels, plus embedding std / effective rank).

    python benchmarks/crossmodal.py                 # prints the table
    python benchmarks/crossmodal.py --write         # also updates benchmarks/BENCHMARKS.md (its ### subsections stay)
    python benchmarks/crossmodal.py --seeds 0 1 2 --projector-norm batch layer none --steps 200 \
        --json benchmarks/results/crossmodal_projector_norm.json   # the projector-norm ablation

Every (training seed, variant) is one entry of the results JSON (``--json``); an entry already
there is reused, so seeds and variants can be added one command at a time, and the JSON keeps
per-seed values with their mean and sd (``summary``). Variants: ``xmodal_<norm>`` for each
``--projector-norm`` and ``clip`` (projector_norm batch, as in configs/shapes_clip.yaml).

The data seed defaults to 1 so that the reported test split is not the one (seed 0) used
while choosing ``tau_base`` and the projector output BatchNorm.
"""

from __future__ import annotations

import argparse
import csv
import sys
import time
from pathlib import Path
from typing import Any

import torch
from bench_markdown import write_section
from bench_seeds import mean_sd, read_results, seed_summary, write_results

ROOT = Path(__file__).resolve().parent.parent
SECTION = "## Cross-modal BYOL vs CLIP (shapes)"
NORMS = ("batch", "layer", "none")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=400)
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--num-train", type=int, default=5000)
    p.add_argument("--num-test", type=int, default=1000)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--seed", type=int, default=1, help="data seed (train and test streams; the same for every training seed)")
    p.add_argument("--seeds", type=int, nargs="+", default=[0], help="training seeds (train.seed), one run per seed and variant")
    p.add_argument("--projector-norm", nargs="+", choices=NORMS, default=["batch"],
                   help="method.crossmodal.projector_norm of the xmodal runs, one variant each (clip keeps batch)")
    p.add_argument("--no-clip", action="store_true", help="train only the xmodal variants")
    p.add_argument("--out", default="runs/bench_crossmodal", help="parent of the run directories (OUT/seed<S>/<variant>)")
    p.add_argument("--json", default="benchmarks/results/crossmodal.json", help="results file (per-seed entries + summary)")
    p.add_argument("--write", action="store_true", help="update the section of benchmarks/BENCHMARKS.md")
    p.add_argument("--table-only", action="store_true", help="re-render from --json instead of training")
    return p.parse_args(argv)


def variants(args: argparse.Namespace) -> list[str]:
    """``xmodal_<norm>`` per requested projector norm, then ``clip``."""
    return [f"xmodal_{n}" for n in args.projector_norm] + ([] if args.no_clip else ["clip"])


def budget(args: argparse.Namespace) -> dict[str, Any]:
    """The settings every entry of one results file shares (the file refuses entries made otherwise)."""
    return {"steps": args.steps, "batch_size": args.batch_size, "num_train": args.num_train,
            "num_test": args.num_test, "data_seed": args.seed}


def config_for(args: argparse.Namespace, variant: str, seed: int):
    from xbyol.config import load

    method, _, norm = variant.partition("_")
    return load(
        ROOT / "configs" / f"shapes_{method}.yaml",
        {
            "name": variant,
            "out_dir": str(Path(args.out) / f"seed{seed}"),
            "data.num_train": args.num_train,
            "data.num_test": args.num_test,
            "data.batch_size": args.batch_size,
            "data.seed": args.seed,
            "method.crossmodal.projector_norm": norm or "batch",
            "train.steps": args.steps,
            "train.seed": seed,
            "train.progress": False,
            "train.log_every": 10,
            "train.monitor_every": 20,
            "eval.baseline": variant == variants(args)[0],  # one random-init probe serves all (same backbone)
        },
    )


def _last_monitors(run_dir: Path) -> dict[str, float]:
    rows = list(csv.DictReader((run_dir / "metrics.csv").open()))
    out: dict[str, float] = {}
    for row in reversed(rows):
        for k in ("image_std", "image_rank", "text_std", "text_rank", "image_std_healthy", "loss"):
            if k not in out and row.get(k):
                out[k] = float(row[k])
    return out


def run_one(args: argparse.Namespace, variant: str, seed: int) -> dict[str, Any]:
    from xbyol.eval.evaluate import evaluate
    from xbyol.training.trainer import train

    cfg = config_for(args, variant, seed)
    t0 = time.perf_counter()
    run_dir = train(cfg, overwrite=True)
    train_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    res = evaluate(run_dir, progress=False, only=["retrieval"])
    out = {
        "train_s": train_s,
        "eval_s": time.perf_counter() - t0,
        "probe": res["trained"],
        "random_init": res.get("random_init"),
        "retrieval": res["retrieval"],
        "train_monitors": _last_monitors(run_dir),
    }
    print(f"seed {seed} {variant}: trained {train_s:.0f}s, evaluated {out['eval_s']:.0f}s", flush=True)
    return out


def step_seconds(args: argparse.Namespace, names: list[str], repeats: int = 6) -> dict[str, float]:
    """Median seconds of one training step (forward, backward, AdamW, EMA) per variant.

    The variants alternate on one fixed batch, so load from other processes on a shared
    machine affects all alike (wall-clock training times above do not have that property).
    """
    from xbyol.data import build_dataset, collate
    from xbyol.methods import create_method
    from xbyol.training.schedules import tau_at

    cfgs = {v: config_for(args, v, 0) for v in names}
    ds = build_dataset(cfgs[names[0]], "train")
    batch = collate([ds[i] for i in range(min(args.batch_size, len(ds)))])
    setups = {}
    for m, cfg in cfgs.items():
        method = create_method(cfg, ds).to(memory_format=torch.channels_last).train()
        opt = torch.optim.AdamW([p for p in method.parameters() if p.requires_grad], lr=cfg.train.lr)
        setups[m] = (method, opt)
    times: dict[str, list[float]] = {m: [] for m in names}
    for k in range(repeats + 1):
        for m, (method, opt) in setups.items():
            t0 = time.perf_counter()
            with torch.autocast("cpu", dtype=torch.bfloat16):
                out = method.training_step(batch)
            opt.zero_grad(set_to_none=True)
            out["loss"].backward()
            opt.step()
            method.after_optimizer_step(tau_at(k, 100, cfgs[m].method.tau_base))
            if k > 0:  # the first step warms up
                times[m].append(time.perf_counter() - t0)
    return {m: sorted(v)[len(v) // 2] for m, v in times.items()}


# ----------------------------------------------------------------------------- results file


def load_results(path: Path, args: argparse.Namespace) -> dict[str, Any]:
    return read_results(path, budget(args), {"runs": {}})


def _seed_keys(data: dict[str, Any]) -> list[str]:
    return sorted(data["runs"], key=lambda s: int(s.removeprefix("seed")))


def metrics_of(entry: dict[str, Any]) -> dict[str, float | None]:
    """The scalar figures of one run, by name (retrieval in [0, 1], ranks, probe, times)."""
    out: dict[str, float | None] = {}
    for direction in ("image_to_text", "text_to_image"):
        r = entry["retrieval"][direction]
        for k in ("R@1", "R@5", "R@10", "median_rank"):
            out[f"{direction}/{k}"] = r[k]
    emb = entry["retrieval"]["embeddings"]
    for k in ("image_rank", "text_rank", "image_std", "text_std"):
        out[f"test/{k}"] = emb[k]
    for k in ("image_rank", "text_rank"):
        out[f"train/{k}"] = entry["train_monitors"].get(k)
    out["linear_probe"] = entry["probe"]["linear_probe"]
    out["knn"] = entry["probe"]["knn"]
    out["train_s"] = entry["train_s"]
    return out


RATIO_KEYS = ("image_to_text/R@1", "text_to_image/R@1")


def ratio_to_clip(data: dict[str, Any], variant: str, key: str) -> list[float]:
    """``variant``'s ``key`` over clip's, one ratio per training seed on which both ran.

    Paired by seed (same data, same initialisation seed), so the spread is that of the ratio
    itself, not of two independent means.
    """
    runs = [data["runs"][s] for s in _seed_keys(data)]
    return [metrics_of(r[variant])[key] / metrics_of(r["clip"])[key] for r in runs if variant in r and "clip" in r]


def summarise(data: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """``{variant: {metric: {"values", "n", "mean", "sd"}}}`` over the seeds in ``data["runs"]``.

    xmodal variants also get ``<key>/over_clip`` for the R@1 keys: the per-seed ratio to clip.
    """
    seeds = _seed_keys(data)
    names = sorted({v for s in seeds for v in data["runs"][s]})
    out: dict[str, dict[str, Any]] = {}
    for v in names:
        entries = [metrics_of(data["runs"][s][v]) for s in seeds if v in data["runs"][s]]
        out[v] = {"seeds": [int(s.removeprefix("seed")) for s in seeds if v in data["runs"][s]]}
        for k in entries[0]:
            out[v][k] = seed_summary([e[k] for e in entries])
        if v != "clip" and "clip" in names:
            for k in RATIO_KEYS:
                out[v][f"{k}/over_clip"] = seed_summary(ratio_to_clip(data, v, k))
    return out


def save_results(path: Path, data: dict[str, Any]) -> None:
    data["seeds"] = [int(s.removeprefix("seed")) for s in _seed_keys(data)]
    data["summary"] = summarise(data)
    write_results(path, data)


# ----------------------------------------------------------------------------- tables


def _p(x: float) -> str:
    return f"{100 * x:.1f}"


def _label(variant: str) -> str:
    if variant == "clip":
        return "clip"
    return f"xmodal, projector_norm {variant.partition('_')[2]}"


def table(data: dict[str, Any], names: list[str]) -> str:
    """One column per variant, every cell the mean ± sd over the seeds present (percent for rates)."""
    seeds = _seed_keys(data)
    cols = {v: [metrics_of(data["runs"][s][v]) for s in seeds if v in data["runs"][s]] for v in names}
    first = next(e for s in seeds for e in data["runs"][s].values())
    ret = first["retrieval"]
    def header(v: str) -> str:  # a column with fewer seeds than the table names its own
        own = [s.removeprefix("seed") for s in seeds if v in data["runs"][s]]
        return _label(v) + (f" (seeds {', '.join(own)} only)" if len(own) < len(seeds) else "")

    rows = ["| metric | " + " | ".join(header(v) for v in names) + " | chance |",
            "|---|" + "---|" * (len(names) + 1)]

    def add(name: str, key: str, scale: float = 1.0, digits: int = 1, chance: str = "") -> None:
        cells = [mean_sd([None if e[key] is None else scale * e[key] for e in cols[v]], digits) for v in names]
        rows.append(f"| {name} | " + " | ".join(cells) + f" | {chance} |")

    for direction, label in (("image_to_text", "image->text"), ("text_to_image", "text->image")):
        for k in (1, 5, 10):
            bold = "**" if k == 1 else ""
            add(f"{bold}{label} R@{k}, %{bold}", f"{direction}/R@{k}", 100.0, chance=_p(ret[direction][f"chance_R@{k}"]))
        add(f"{label} median rank", f"{direction}/median_rank", chance=f"{ret[direction]['chance_median_rank']:g}")
        if "clip" in names and len(names) > 1:
            cells = ["" if v == "clip" else mean_sd([100 * x for x in ratio_to_clip(data, v, f"{direction}/R@1")], 1)
                     for v in names]
            rows.append(f"| {label} R@1, xmodal / clip, % (per seed) | " + " | ".join(cells) + " |  |")
    add("test embeddings: image effective rank (RankMe)", "test/image_rank")
    add("test embeddings: text effective rank (RankMe)", "test/text_rank")
    dims = sorted({int(data["runs"][s][v]["retrieval"]["embeddings"]["dim"]) for s in seeds for v in names if v in data["runs"][s]})
    add("test embeddings: image std", "test/image_std", digits=4,
        chance="healthy " + ", ".join(f"1/sqrt({d}) = {d ** -0.5:.4f}" for d in dims))
    add("last training step: image effective rank", "train/image_rank")
    add("last training step: text effective rank", "train/text_rank")
    rnd = [e["random_init"]["linear_probe"] for s in seeds for e in data["runs"][s].values() if e.get("random_init")]
    chance_probe = f"{_p(1 / 5)} (random-init backbone {mean_sd([100 * x for x in rnd], 1)})" if rnd else _p(1 / 5)
    add("**linear probe accuracy, %** (image backbone; label = shape of the largest object)", "linear_probe", 100.0, chance=chance_probe)
    add("kNN accuracy, %", "knn", 100.0)
    add("training time, s", "train_s", digits=0)
    if data.get("step_s"):
        rows.append("| one training step, s (interleaved, same batch) | "
                    + " | ".join(f"{data['step_s'][v]:.3f}" if v in data["step_s"] else "-" for v in names) + " |  |")
    return "\n".join(rows)


def _single_run(data: dict[str, Any]) -> bool:
    """Whether some variant in ``data`` has only one training seed (its cells carry no spread)."""
    counts: dict[str, int] = {}
    for runs in data["runs"].values():
        for v in runs:
            counts[v] = counts.get(v, 0) + 1
    return min(counts.values(), default=0) == 1


def section(args: argparse.Namespace, data: dict[str, Any], names: list[str], command: str) -> str:
    seeds = _seed_keys(data)
    first = next(e for s in seeds for e in data["runs"][s].values())
    n_q = first["retrieval"]
    return "\n".join(
        [
            SECTION,
            "",
            f"Command: `{command}`; results: `{args.json}` (per-seed entries under `runs`, mean and sd under `summary`).",
            "",
            f"Budget: shapes 32 px, {args.num_train} train / {args.num_test} test images (data seed {args.seed}), "
            f"{args.steps} steps x batch {args.batch_size} for every run (AdamW lr 2e-3, wd 1e-4, bf16 autocast, "
            f"{args.threads} thread(s) on a shared 2-core x86_64 CPU). Training seeds "
            f"{', '.join(s.removeprefix('seed') for s in seeds)} (`train.seed`); every cell is the mean ± sd over them"
            + ("; a cell marked (n=1) is a single run with no spread: a reference, not a claim. " if _single_run(data) else ". ")
            + "Same towers for all: resnet10_16 "
            "image encoder; frozen bundled all-MiniLM-L6-v2 (cached features) + residual adapter as text encoder; "
            "projectors 512 -> 128 ending in the normalisation named in the column (`method.crossmodal.projector_norm`: "
            "batch = non-affine BatchNorm, layer = non-affine LayerNorm, none). xmodal adds predictors and EMA targets "
            "(tau_base 0.9, cosine to 1), clip a learnable temperature (init 1/0.07). Images are paired with their "
            "captions unaugmented (`image_aug: none`); no intra-modal terms.",
            "",
            f"Retrieval on the test split ({n_q['image_to_text']['queries']:.0f} images; gallery of "
            f"{n_q['image_to_text']['gallery']:.0f} distinct captions for image->text, "
            f"{n_q['text_to_image']['queries']:.0f} caption queries over {n_q['text_to_image']['gallery']:.0f} images for "
            "text->image). Rule: a retrieved item is correct when its caption string equals the query's (shapes images "
            "that share a caption all count); ties with a wrong item count against the query. Chance = exact "
            "expectation for a random ranking, `1 - C(G - r, K) / C(G, K)` averaged over queries (r correct items "
            "in a gallery of G). xmodal scores a pair by the mean of the two cosines it trains, "
            "cos(q_img, z'_txt) and cos(z'_img, q_txt); clip by the cosine of the projections.",
            "",
            table(data, names),
            "",
        ]
    )


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    command = ("python benchmarks/crossmodal.py " + " ".join(sys.argv[1:] if argv is None else argv)).strip()
    command = command.replace(" --table-only", "")
    path = Path(args.json)
    data = load_results(path, args)
    names = variants(args)
    if not args.table_only:
        for v in names:  # one variant over all seeds before the next: a cut-short command leaves whole rows
            for seed in args.seeds:
                runs = data["runs"].setdefault(f"seed{seed}", {})
                if v not in runs:
                    runs[v] = run_one(args, v, seed)
                    save_results(path, data)
        missing = [v for v in names if v not in data.get("step_s", {})]
        if missing:
            data.setdefault("step_s", {}).update(step_seconds(args, names))
            save_results(path, data)
    if not data["runs"]:
        raise SystemExit(f"{path}: no runs to tabulate")
    text = section(args, data, [v for v in names if any(v in r for r in data["runs"].values())], command)
    print(text)
    if args.write:
        md = Path(__file__).resolve().parent / "BENCHMARKS.md"
        write_section(md, SECTION, text, keep="### ")  # the hand-written subsections (longer budget, Reading) stay
    return 0


if __name__ == "__main__":
    sys.exit(main())
