"""``xbyol train``: train a method from a YAML config plus dotted overrides."""

from __future__ import annotations

import argparse


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "train",
        help="train BYOL / explainable BYOL / cross-modal BYOL / CLIP",
        description=(
            "Train a method. The resolved config is saved to RUN_DIR/config.yaml (RUN_DIR = out_dir/name); "
            "checkpoints go to RUN_DIR/checkpoints/, the training log to RUN_DIR/metrics.csv. "
            "Launch several processes with: torchrun --nproc_per_node=N -m xbyol train ..."
        ),
        epilog="Keys: run `xbyol config` to list every config key with its default and meaning.",
    )
    p.add_argument("--config", "-c", help="YAML config file (default: built-in defaults)")
    p.add_argument("--set", "-s", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config key, e.g. --set train.lr=0.1 (repeatable)")
    p.add_argument("--resume", metavar="RUN_DIR", help="continue the run in RUN_DIR from its last checkpoint")
    p.add_argument("--overwrite", action="store_true", help="train from scratch into an existing run directory")
    p.add_argument("--stop-after", type=int, metavar="STEP", help="stop with a checkpoint at this global step")
    p.add_argument("--eval", action="store_true", help="run `xbyol eval` on the run afterwards")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import sys

    from xbyol.config import load, load_run_config, from_dict, to_dict
    from xbyol.training import TrainingDiverged, train

    if args.resume:
        base = to_dict(load_run_config(args.resume))
        cfg = from_dict(base, args.overrides)
    else:
        cfg = load(args.config, args.overrides)
    try:
        run_dir = train(cfg, resume=bool(args.resume), overwrite=args.overwrite, stop_after=args.stop_after)
    except TrainingDiverged as e:
        print(f"xbyol train: {e}", file=sys.stderr)
        return 3
    except FileExistsError as e:
        print(f"xbyol train: error: {e}", file=sys.stderr)
        return 2
    from xbyol.training import distributed

    if distributed.is_main():
        print(f"run directory: {run_dir}")
        if args.eval:
            from xbyol.eval.evaluate import evaluate, format_results

            print(format_results(evaluate(run_dir)))
    return 0
