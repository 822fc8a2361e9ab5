"""Explainable BYOL vs plain BYOL with a post-hoc concept map, on ``shapes``, same budget.

Both methods train with the same config (backbone, heads, optimiser, batch, steps, seed);
only ``method.name`` differs. Each run is then scored by the core evaluation (linear
probe, kNN) and the ``concepts`` evaluator (SCS, concept accuracy, SSCS). Plain BYOL gets
its concept map after training, fitted on the same training labels with the same
semantic loss (``xbyol.concepts.projection``): once on its projector output (the same
architecture as xbyol's map) and once directly on the backbone representation.

Usage (CPU; 12-25 minutes on a shared 2-core machine, depending on its load)::

    python benchmarks/explainable.py --write          # also updates benchmarks/BENCHMARKS.md
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import torch  # noqa: E402
from bench_markdown import write_section  # noqa: E402

SECTION = "## Explainable BYOL (shapes)"
GROUPS = ("shape", "colour", "size", "position")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=100)
    p.add_argument("--batch-size", type=int, default=96)
    p.add_argument("--num-train", type=int, default=4000)
    p.add_argument("--num-test", type=int, default=1000)
    p.add_argument("--image-size", type=int, default=32)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="runs/bench_explainable")
    p.add_argument("--write", action="store_true", help="update the section of benchmarks/BENCHMARKS.md")
    return p.parse_args(argv)


def config_for(args: argparse.Namespace, method: str):
    from xbyol.config import from_dict

    return from_dict({}, {
        "name": method, "out_dir": args.out,
        "data.name": "shapes", "data.image_size": args.image_size, "data.num_train": args.num_train,
        "data.num_test": args.num_test, "data.batch_size": args.batch_size, "data.seed": args.seed,
        "aug.crop_scale_min": 0.3,
        "model.backbone": "resnet10_16", "model.proj_hidden": 512, "model.proj_dim": 128, "model.pred_hidden": 512,
        "method.name": method, "method.tau_base": 0.99,
        "train.steps": args.steps, "train.optimizer": "adamw", "train.lr": args.lr, "train.weight_decay": 1e-4,
        "train.precision": "bf16", "train.channels_last": True, "train.seed": args.seed, "train.progress": False,
        "train.log_every": 10, "eval.baseline": False,
    })


def run_one(args: argparse.Namespace, method: str) -> dict[str, Any]:
    from xbyol.eval.concept_eval import concept_scores
    from xbyol.eval.evaluate import evaluate
    from xbyol.run import load_run
    from xbyol.training import train

    t0 = time.perf_counter()
    run_dir = train(config_for(args, method), overwrite=True)
    train_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    res = evaluate(run_dir, progress=False, only=["concepts"])
    out = {"train_s": train_s, "probe": res["trained"], "concepts": res.get("concepts")}
    if method == "byol":
        out["concepts_backbone"] = concept_scores(load_run(run_dir), use_projector=False)
    out["eval_s"] = time.perf_counter() - t0
    print(f"{method}: trained {train_s:.0f}s, evaluated {out['eval_s']:.0f}s", flush=True)
    return out


def _f(x: float | None, digits: int = 3) -> str:
    return "-" if x is None else f"{x:.{digits}f}"


def table(byol: dict[str, Any], xbyol: dict[str, Any]) -> str:
    cols = [("BYOL + post-hoc map (projector)", byol["concepts"]),
            ("BYOL + post-hoc map (backbone)", byol["concepts_backbone"]),
            ("xbyol (learned map)", xbyol["concepts"])]
    rows = [("metric", *[c for c, _ in cols], "chance")]

    def add(name: str, get, chance: str = "") -> None:
        rows.append((name, *[get(c) for _, c in cols], chance))

    add("SCS match (mean cos to true concepts)", lambda c: _f(c["scs"]))
    add("SCS non-match (mean cos to others)", lambda c: _f(c["scs_nonmatch"]))
    add("**SCS margin**", lambda c: _f(c["scs_margin"]))
    for g in GROUPS:
        add(f"concept accuracy: {g}", lambda c, g=g: _f(c["concept_accuracy"][g]),
            _f(xbyol["concepts"]["concept_accuracy"][f"{g}_chance"]))
    add("**concept accuracy, mean of groups**",
        lambda c: _f(sum(c["concept_accuracy"][g] for g in GROUPS) / len(GROUPS)))
    for g in GROUPS:
        add(f"SSCS mIoU: {g}", lambda c, g=g: _f(c["sscs"][g]))
    add("**SSCS mIoU, mean of groups**", lambda c: _f(c["sscs"]["mean"]))
    add("SSCS mIoU with ground-truth foreground, mean", lambda c: _f(c["sscs_gt_foreground"]["mean"]))
    rows.append(("**linear probe accuracy** (backbone, label = shape of the largest object)",
                 _f(byol["probe"]["linear_probe"]), _f(byol["probe"]["linear_probe"]), _f(xbyol["probe"]["linear_probe"]), "0.200"))
    rows.append(("kNN accuracy", _f(byol["probe"]["knn"]), _f(byol["probe"]["knn"]), _f(xbyol["probe"]["knn"]), ""))
    rows.append(("training time, s", f"{byol['train_s']:.0f}", f"{byol['train_s']:.0f}", f"{xbyol['train_s']:.0f}", ""))
    rows.append(("evaluation time (probe, kNN, both post-hoc fits, concept scores), s",
                 f"{byol['eval_s']:.0f}", f"{byol['eval_s']:.0f}", f"{xbyol['eval_s']:.0f}", ""))
    lines = ["| " + " | ".join(rows[0]) + " |", "|" + "---|" * len(rows[0])]
    lines += ["| " + " | ".join(r) + " |" for r in rows[1:]]
    return "\n".join(lines)


def section(args: argparse.Namespace, byol: dict[str, Any], xbyol: dict[str, Any], command: str) -> str:
    import platform

    budget = (f"shapes {args.image_size} px, {args.num_train} train / {args.num_test} test images, resnet10_16, "
              f"proj 512->128, pred 512, AdamW lr {args.lr:g}, wd 1e-4, batch {args.batch_size}, {args.steps} steps "
              f"(~{args.steps * args.batch_size / args.num_train:.1f} epochs) for both methods, tau_base 0.99, bf16 autocast, "
              f"{args.threads} CPU threads ({platform.processor() or platform.machine()}, shared machine), seed {args.seed}")
    return "\n".join([
        SECTION, "",
        f"Command: `{command}`", "",
        f"Budget: {budget}. xbyol adds the semantic loss (contrastive, lambda 1, T 0.1, all-MiniLM-L6-v2 "
        "embeddings of the 24 concept names, no prompt) on the un-augmented images and concept attention.", "",
        "Concept scores on the test split. BYOL's concept map is fitted after training on the same training labels "
        "with the same semantic loss (300 full-batch Adam steps, lr 0.01; `xbyol.concepts.projection`), either on its "
        "frozen projector output (the same architecture as xbyol's learned map: projector -> linear) or on the backbone "
        "representation. SSCS background rule: a pixel is background when its best in-group score is below "
        "min + 0.5 (max - min) of that image; the ground-truth-foreground row scores the concept identity alone.", "",
        table(byol, xbyol), "",
    ])


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    command = "python benchmarks/explainable.py " + " ".join(sys.argv[1:] if argv is None else argv)
    results = {m: run_one(args, m) for m in ("byol", "xbyol")}
    Path(args.out).mkdir(parents=True, exist_ok=True)
    (Path(args.out) / "results.json").write_text(json.dumps(results, indent=1))
    text = section(args, results["byol"], results["xbyol"], command.strip())
    print(text)
    if args.write:
        write_section(Path(__file__).resolve().parent / "BENCHMARKS.md", SECTION, text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
