"""``xbyol explain-eval``: every explainer scored against the dataset's concept masks."""

from __future__ import annotations

import argparse


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "explain-eval",
        help="score every explainer against ground-truth concept masks",
        description=(
            "For each test image and each of its shape/colour concepts, explain 'concept:<concept>' with every "
            "method and score the heatmap against that concept's mask: pointing game, energy pointing game, "
            "top-20%% IoU, deletion/insertion AUC, max-sensitivity, model-randomisation correlation, ms/image. "
            "Needs a dataset with masks (shapes). Writes RUN_DIR/explain_eval.json."
        ),
    )
    p.add_argument("run_dir", metavar="RUN_DIR")
    p.add_argument("--method", "-m", action="append", help="explainer to score (repeatable; default: all)")
    p.add_argument("--n-images", type=int, default=32, help="test images (default 32)")
    p.add_argument("--n-robust", type=int, default=8, help="pairs for max-sensitivity and randomisation (default 8)")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--device", default="cpu")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    # imported on use, not at the top: see xbyol.commands (--help must not load torch)
    from xbyol.explain.evaluation import explain_eval, format_table
    from xbyol.run import load_run
    from xbyol.rundir import RunDir

    paths = RunDir(args.run_dir)
    with paths.lock():
        result = explain_eval(
            load_run(args.run_dir, device=args.device),
            methods=args.method,
            n_images=args.n_images,
            batch_size=args.batch_size,
            n_robust=args.n_robust,
            progress=not args.no_progress,
        )
    print(format_table(result))
    print(f"\nwritten: {paths.explain_eval}")
    return 0
