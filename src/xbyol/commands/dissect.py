"""``xbyol dissect``: network dissection of a run's layer (Bau et al. 2017)."""

from __future__ import annotations

import argparse
import contextlib


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "dissect",
        help="network dissection: which units of a layer detect which concepts",
        description=(
            "Network dissection (Bau et al. 2017) of RUN_DIR's encoder on the concept masks of its dataset: "
            "per unit, a threshold at the top QUANTILE of its activations over the dataset, then the IoU of "
            "the upsampled, thresholded maps with every concept's masks, accumulated over the dataset; a unit "
            "detects its best concept when IoU > THRESHOLD. Writes iou.csv (all unit x concept pairs), "
            "units.csv (best concept per unit), summary.json and top_units.png under RUN_DIR/dissect/<layer>/ "
            "(random/ beside it with --baseline random)."
        ),
    )
    p.add_argument("run_dir", metavar="RUN_DIR")
    p.add_argument("--layer", help="dotted module name in the backbone, e.g. stages.3 (default: the feature layer)")
    p.add_argument("--quantile", type=float, default=0.005, help="top activation quantile per unit (default 0.005)")
    p.add_argument("--iou-threshold", type=float, default=0.04, help="detector IoU threshold (default 0.04)")
    p.add_argument("--split", choices=["train", "test"], default="test")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--baseline", choices=["none", "random"], default="none", help="also dissect a random-init twin")
    p.add_argument("--top-units", type=int, default=8, help="units shown in the figure")
    p.add_argument("--top-images", type=int, default=5, help="images per unit in the figure")
    p.add_argument("--out", help="output directory (default RUN_DIR/dissect/<layer>)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    # imported on use, not at the top: see xbyol.commands (--help must not load torch)
    from xbyol.explain.dissection_run import dissect_run, format_summary
    from xbyol.run import load_run
    from xbyol.rundir import RunDir

    if not 0 < args.quantile < 1:
        raise ValueError(f"--quantile must be in (0, 1), got {args.quantile}")
    if args.batch_size < 1:
        raise ValueError(f"--batch-size must be >= 1, got {args.batch_size}")
    paths = RunDir(args.run_dir)
    with paths.lock() if args.out is None else contextlib.nullcontext():  # its default output is in the run directory
        results = dissect_run(
            load_run(args.run_dir, device=args.device), args.layer, args.quantile, args.iou_threshold, args.split,
            args.batch_size, None if args.baseline == "none" else args.baseline, args.out, args.top_units,
            args.top_images, progress=not args.no_progress,
        )
    print(format_summary(results))
    out = args.out or paths.dissect / results["trained"].layer
    print(f"\nwritten: {out}/ (tables, summary and top_units.png)")
    return 0
