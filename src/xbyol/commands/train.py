"""``xbyol train``: train a method from a YAML config plus dotted overrides, or resume a run."""

from __future__ import annotations

import argparse
import sys


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "train",
        help="train BYOL / explainable BYOL / cross-modal BYOL / CLIP",
        description=(
            "Train a method. The resolved config is saved to RUN_DIR/config.yaml (RUN_DIR = out_dir/name); "
            "checkpoints go to RUN_DIR/checkpoints/ (last.pt and the one before, prev.pt; by default every "
            "epoch and every 10 minutes), the training log to RUN_DIR/metrics.csv. Ctrl-C or SIGTERM finishes "
            "the current step, saves a checkpoint and exits with 130/143; a second Ctrl-C aborts at once. "
            "Launch several processes with: torchrun --nproc_per_node=N -m xbyol train ..."
        ),
        epilog="Keys: run `xbyol config` to list every config key with its default and meaning.",
    )
    p.add_argument("--config", "-c", help="YAML config file (default: built-in defaults)")
    p.add_argument("--set", "-s", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config key, e.g. --set train.lr=0.1 (repeatable)")
    p.add_argument("--resume", metavar="RUN_DIR",
                   help="continue the run in RUN_DIR exactly, from its newest checkpoint; reads and writes only RUN_DIR. "
                        "With --set only runtime keys may change (progress, log/checkpoint cadence, workers, device)")
    p.add_argument("--extend", action="store_true",
                   help="with --resume: also accept keys that change the run (e.g. train.steps=2000); the changes are "
                        "printed and recorded in RUN_DIR/run.json")
    p.add_argument("--overwrite", action="store_true", help="train from scratch into an existing run directory")
    p.add_argument("--stop-after", type=int, metavar="STEP", help="stop with a checkpoint at this global step")
    p.add_argument("--eval", action="store_true", help="run `xbyol eval` on the run afterwards")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    # imported here, not at the top: `xbyol --help` builds every sub-parser and must not load torch
    # imported on use, not at the top: see xbyol.commands (--help must not load torch)
    from xbyol.config import load
    from xbyol.training import TrainingDiverged, TrainingInterrupted, distributed, resume_run, train

    if args.extend and not args.resume:
        print("xbyol train: error: --extend only applies with --resume RUN_DIR", file=sys.stderr)
        return 2
    try:
        if args.resume:
            run_dir = resume_run(args.resume, args.overrides, extend=args.extend, stop_after=args.stop_after)
        else:
            run_dir = train(load(args.config, args.overrides), overwrite=args.overwrite, stop_after=args.stop_after)
    except TrainingInterrupted as e:
        print(f"xbyol train: {e}", file=sys.stderr)
        return e.exit_code
    except TrainingDiverged as e:
        print(f"xbyol train: {e}", file=sys.stderr)
        return 3
    except FileExistsError as e:
        print(f"xbyol train: error: {e}", file=sys.stderr)
        return 2
    if distributed.is_main():
        print(f"run directory: {run_dir}")
        if args.eval:
            # imported on use, not at the top: see xbyol.commands (--help must not load torch)
            from xbyol.eval.evaluate import evaluate, format_results

            print(format_results(evaluate(run_dir)))
    return 0
