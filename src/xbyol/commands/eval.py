"""``xbyol eval``: linear probe + kNN (trained vs random init) and the registered evaluators."""

from __future__ import annotations

import argparse


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "eval",
        help="evaluate a run: linear probe, kNN, and method-specific scores",
        description=(
            "Evaluate the frozen encoder of RUN_DIR: standardised logistic-regression probe and weighted kNN "
            "(cosine, k and temperature from eval.*) on the dataset's train/test split, beside a randomly "
            "initialised backbone; then concept scores (SCS, SSCS) and retrieval where they apply. "
            "Writes RUN_DIR/eval.json and RUN_DIR/probe.pt."
        ),
    )
    p.add_argument("run_dir", metavar="RUN_DIR")
    p.add_argument("--device", default="cpu")
    p.add_argument("--only", action="append", metavar="NAME", help="run only this extra evaluator (repeatable)")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    # imported on use, not at the top: see xbyol.commands (--help must not load torch)
    from xbyol.eval.evaluate import evaluate, format_results

    results = evaluate(args.run_dir, device=args.device, progress=not args.no_progress, only=args.only)
    print(format_results(results))
    print(f"\nwritten: {args.run_dir}/eval.json")
    return 0
