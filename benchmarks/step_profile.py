"""Where a training step's time goes, by cProfile over ``xbyol.train`` (one setting, one run).

Trains ``--steps`` steps of the ``shapes_byol`` preset with a setting of
``train_throughput.py`` (after an untimed warm-up run of the same length, so oneDNN's
kernels exist), under cProfile, and splits the wall time of the training loop into: the
two augmented views (``ByolViews.forward``), reading batches (the trainer's DataLoader),
the forward passes without the views, the backward pass, the optimiser step, the EMA and
everything else of the loop (logging, monitors, checks). cProfile adds its own cost to
every Python call, so the shares are approximate; "Training throughput" in
benchmarks/BENCHMARKS.md quotes them next to the stage split of ``train_throughput.py``.

    python benchmarks/step_profile.py --json benchmarks/results/step_profile.json
"""

from __future__ import annotations

import argparse
import cProfile
import inspect
import os
import pstats
import sys
import tempfile
from pathlib import Path

import torch
from bench_seeds import write_results
from train_throughput import SETTINGS, make_cfg

from xbyol.augment import ByolViews
from xbyol.methods.byol import BYOL
from xbyol.training import train, trainer


def _key(fn) -> tuple[str, int, str]:  # type: ignore[no-untyped-def]
    """The (file, first line, name) under which cProfile records the Python function ``fn``."""
    code = inspect.unwrap(fn).__code__
    return code.co_filename, code.co_firstlineno, code.co_name


# part -> the function whose cumulative time it is (the optimiser: AdamW, the preset's)
PARTS = {
    "loop": _key(trainer.Trainer._loop),
    "views": _key(ByolViews.forward),
    "batches": _key(trainer._batches),
    "forward": _key(trainer._StepModule.forward),
    "backward": _key(torch.Tensor.backward),
    "optimizer": _key(torch.optim.AdamW.step),
    "ema": _key(BYOL.after_optimizer_step),
}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--backbone", default="resnet10_16")
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--setting", default="auto (defaults)", choices=list(SETTINGS))
    p.add_argument("--steps", type=int, default=40)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--json", type=Path)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        cfg = make_cfg(args.backbone, args.batch_size, args.steps, tmp, SETTINGS[args.setting])
        train(cfg, overwrite=True)  # warm-up: oneDNN kernels, allocator pages
        profile = cProfile.Profile()
        profile.enable()
        train(cfg, overwrite=True)
        profile.disable()
    stats = pstats.Stats(profile)
    recorded = stats.stats  # type: ignore[attr-defined]  # {(file, line, name): (calls, calls, own, cumulative, callers)}
    seconds = {part: recorded[key][3] if key in recorded else 0.0 for part, key in PARTS.items()}
    # the views run inside the method's forward: report the forward without them
    seconds["forward"] -= seconds["views"]
    seconds["rest of the loop"] = seconds["loop"] - sum(v for k, v in seconds.items() if k != "loop")
    loop = seconds.pop("loop")
    step_ms = 1e3 * loop / args.steps
    print(f"{args.backbone}, batch {args.batch_size}, {args.setting}: {step_ms:.0f} ms per step under cProfile "
          f"(load average {os.getloadavg()[0]:.1f})\n")
    print("| part | ms per step | % of the step |\n|---|---|---|")
    for part, sec in seconds.items():
        print(f"| {part} | {1e3 * sec / args.steps:.1f} | {100 * sec / loop:.1f} |")
    if args.json:
        write_results(args.json, {"backbone": args.backbone, "batch_size": args.batch_size, "setting": args.setting,
                                  "steps": args.steps, "threads": args.threads, "step_ms": step_ms,
                                  "ms_per_step": {k: 1e3 * v / args.steps for k, v in seconds.items()}})
    return 0


if __name__ == "__main__":
    sys.exit(main())
