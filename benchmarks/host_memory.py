"""Images/s of ``xbyol.train`` with freed host memory kept in the process vs glibc's defaults.

``train.retain_freed_memory`` (on by default) stops glibc from handing freed memory back
to the kernel after every step (``xbyol.training.host_memory``). The setting is
process-wide and cannot be undone in a running process, so each arm runs in a fresh
process; the two arms alternate, their order swapped every repetition, so both see the
same machine load. Each figure is the median step of one run after its warm-up steps
(the same full-step clock as ``train_throughput.py``); the table gives the median over
repetitions of images/s and of the per-repetition ratio kept / default.

    python benchmarks/host_memory.py --json benchmarks/results/host_memory.json

``--micro`` times three single operations instead, each arm in a fresh process (median of
60 calls, 2 threads): a ReLU over a 33 MB bf16 activation (ResNet-18 at batch 256), the two
augmented views of a 256-image ``shapes`` batch (the ``shapes_byol`` preset), and reading
that batch with ``dataset.get_batch`` (with and without the concept masks, which training
leaves out) vs collating ``dataset[i]`` one by one.

    python benchmarks/host_memory.py --micro --reps 3 --json benchmarks/results/host_memory_micro.json
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import torch
from bench_seeds import write_results
from train_throughput import DEFAULT_STEPS, SETTINGS, full_step_times, make_cfg

HERE = Path(__file__).resolve().parent


def child(backbone: str, batch_size: int, setting: str, keep: bool, warmup: int, steps: int, threads: int) -> float:
    """Median wall seconds of one full training step, in this process, with the allocator setting ``keep``."""
    torch.set_num_threads(threads)
    with tempfile.TemporaryDirectory() as tmp:
        overrides = (*SETTINGS[setting], f"train.retain_freed_memory={str(keep).lower()}")
        cfg = make_cfg(backbone, batch_size, warmup + steps, tmp, overrides)
        return statistics.median(t[0] for t in full_step_times(cfg, warmup))


def micro(keep: bool, threads: int) -> dict[str, float]:
    """Median milliseconds of the three single operations of ``--micro``, in this process."""
    import random
    import time

    import xbyol
    from xbyol.augment import ByolViews
    from xbyol.data import build_dataset
    from xbyol.data.base import collate
    from xbyol.training.host_memory import retain_freed_memory

    if keep:
        retain_freed_memory()
    torch.set_num_threads(threads)

    def ms(fn) -> float:  # type: ignore[no-untyped-def]
        fn()
        times = []
        for _ in range(60):
            t0 = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t0)
        return 1e3 * statistics.median(times)

    cfg = xbyol.load_config(HERE.parent / "configs" / "shapes_byol.yaml", [])
    dataset = build_dataset(cfg, "train")
    idx = random.Random(0).sample(range(len(dataset)), 256)
    images = dataset.get_batch(idx)["image"].contiguous(memory_format=torch.channels_last)  # (256, 3, 32, 32)
    views = ByolViews(cfg.aug, cfg.data.image_size)
    activation = torch.randn(256, 64, 32, 32, dtype=torch.bfloat16)  # 33.5 MB
    return {
        "relu_33mb_bf16_ms": ms(lambda: torch.relu(activation)),
        "two_views_256_ms": ms(lambda: views(images)),
        "get_batch_256_ms": ms(lambda: dataset.get_batch(idx)),
        "get_batch_256_no_masks_ms": ms(lambda: dataset.get_batch(idx, masks=False)),  # as the trainer reads it
        "collate_256_ms": ms(lambda: collate([dataset[i] for i in idx])),
    }


def run_arm(args: argparse.Namespace, backbone: str, keep: bool, warmup: int, steps: int) -> float:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", "keep" if keep else "default",
           "--backbones", backbone, "--batch-size", str(args.batch_size), "--setting", args.setting,
           "--warmup", str(warmup), "--steps", str(steps), "--threads", str(args.threads)]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True, cwd=HERE.parent)
    return float(out.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--backbones", nargs="+", default=["resnet10_16", "resnet18_cifar"])
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--setting", default="auto (defaults)", choices=list(SETTINGS))
    p.add_argument("--reps", type=int, default=3, help="alternating (kept, default) repetitions per backbone")
    p.add_argument("--warmup", type=int, default=None, help="discarded steps per run (default as train_throughput.py)")
    p.add_argument("--steps", type=int, default=None, help="timed steps per run (default as train_throughput.py)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--json", type=Path, help="write the rows here")
    p.add_argument("--micro", action="store_true", help="time single operations (see the module docstring) instead of training steps")
    p.add_argument("--child", choices=["keep", "default"], help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child and args.micro:
        print(json.dumps(micro(args.child == "keep", args.threads)))
        return 0
    if args.micro:
        return main_micro(args)
    if args.child:
        w, s = args.warmup, args.steps
        print(child(args.backbones[0], args.batch_size, args.setting, args.child == "keep", w, s, args.threads))
        return 0
    load0 = os.getloadavg()[0]
    rows = []
    for backbone in args.backbones:
        warmup, steps = DEFAULT_STEPS.get(backbone, (2, 4))
        warmup = warmup if args.warmup is None else args.warmup
        steps = steps if args.steps is None else args.steps
        kept, default = [], []
        for rep in range(args.reps):
            order = (True, False) if rep % 2 == 0 else (False, True)
            got = {keep: run_arm(args, backbone, keep, warmup, steps) for keep in order}
            kept.append(args.batch_size / got[True])
            default.append(args.batch_size / got[False])
            print(f"  {backbone} rep {rep + 1}: kept {kept[-1]:.1f} / default {default[-1]:.1f} img/s "
                  f"= {kept[-1] / default[-1]:.2f}x (load {os.getloadavg()[0]:.1f})", flush=True)
        rows.append({
            "backbone": backbone, "batch_size": args.batch_size, "setting": args.setting,
            "kept_img_s": statistics.median(kept), "default_img_s": statistics.median(default),
            "ratio": statistics.median(k / d for k, d in zip(kept, default)),
            "ratios": [k / d for k, d in zip(kept, default)],
        })
    load1 = os.getloadavg()[0]
    print("\n| backbone | batch | setting | memory kept (img/s) | glibc defaults (img/s) | **kept / default** | per repetition |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['backbone']} | {r['batch_size']} | {r['setting']} | {r['kept_img_s']:.1f} | {r['default_img_s']:.1f} | "
              f"**{r['ratio']:.2f}** | {', '.join(f'{x:.2f}' for x in r['ratios'])} |")
    print(f"\nload average {load0:.1f} at the start, {load1:.1f} at the end; {args.threads} torch threads; "
          f"{args.reps} alternating repetitions")
    if args.json:
        write_results(args.json, {"threads": args.threads, "load": [load0, load1], "rows": rows})
    return 0


def main_micro(args: argparse.Namespace) -> int:
    """``--micro``: both arms in fresh processes, alternating, ``--reps`` times; medians over repetitions."""
    cmd = [sys.executable, str(Path(__file__).resolve()), "--micro", "--threads", str(args.threads), "--child"]
    arms: dict[str, list[dict[str, float]]] = {"keep": [], "default": []}
    load0 = os.getloadavg()[0]
    for rep in range(args.reps):
        for arm in (("keep", "default") if rep % 2 == 0 else ("default", "keep")):
            out = subprocess.run([*cmd, arm], capture_output=True, text=True, check=True, cwd=HERE.parent)
            arms[arm].append(json.loads(out.stdout.strip().splitlines()[-1]))
            print(f"  rep {rep + 1} {arm}: " + ", ".join(f"{k} {v:.2f}" for k, v in arms[arm][-1].items()), flush=True)
    med = {arm: {k: statistics.median(r[k] for r in runs) for k in runs[0]} for arm, runs in arms.items()}
    print("\n| operation (ms, median) | memory kept | glibc defaults |\n|---|---|---|")
    for k in med["keep"]:
        print(f"| {k} | {med['keep'][k]:.2f} | {med['default'][k]:.2f} |")
    load1 = os.getloadavg()[0]
    print(f"\nload average {load0:.1f} at the start, {load1:.1f} at the end; {args.threads} torch threads; {args.reps} alternating repetitions")
    if args.json:
        write_results(args.json, {"threads": args.threads, "load": [load0, load1], "median": med, "runs": arms})
    return 0


if __name__ == "__main__":
    sys.exit(main())
