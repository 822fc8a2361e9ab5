"""What blocking host-to-device copies of the views' parameters cost in whole training steps.

The views draw every random parameter on the CPU (so a seed gives the same views on every
device) and move it to the images' device. A blocking copy makes PyTorch synchronise the
CUDA stream, so the host waits for every kernel queued before it; the views now move their
parameters with non-blocking copies (``xbyol.augment.preprocessing.move_like``). This
times, in one process and in turn, whole BYOL steps (both views, forward, backward,
optimiser, EMA; the device synchronised only at step ends, as the trainer runs) with:

- ``now``: this checkout's views;
- ``now, blocking copies``: the same views with ``move_like`` made blocking;
- ``REV`` (``--against``): the views at that git revision, e.g. ``feaa5af`` (blocking
  copies and the slower CPU kernels of that time).

Each repetition times every variant once (``--steps`` steps, the first ``--warmup``
discarded, the median kept), the order reversed every other repetition; the ratios are
per repetition, then their median. On a CPU the two copies are the same operation, so
the first ratio measures only noise there.

    python benchmarks/view_copies.py --device cuda --against feaa5af --json benchmarks/results/view_copies_h100.json
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch
from bench_seeds import write_results
from step_profile import views_module_at
from train_throughput import _autocast, _backward_and_step, _setup, make_cfg, sync

import xbyol.augment.blur as blur_module
import xbyol.augment.preprocessing as preprocessing_module
import xbyol.augment.views as views_module
from xbyol.augment import ByolViews
from xbyol.config import Config
from xbyol.data import build_dataset
from xbyol.data.base import SampleDataset

NON_BLOCKING = preprocessing_module.move_like
_USERS = (preprocessing_module, views_module, blur_module)  # the modules that call move_like


def _blocking_move(t: torch.Tensor, x: torch.Tensor, dtype: torch.dtype | None = None) -> torch.Tensor:
    return t.to(device=x.device, dtype=x.dtype if dtype is None else dtype)


def _use_move(move: Callable[..., torch.Tensor]) -> None:
    for module in _USERS:
        module.move_like = move  # type: ignore[attr-defined]


def step_ms(cfg: Config, dataset: SampleDataset, views: torch.nn.Module, warmup: int, steps: int, blocking: bool) -> float:
    """Median ms of whole BYOL steps on fresh modules with ``views`` as the method's views
    (``blocking``: with blocking parameter copies), one batch of ``dataset`` throughout."""
    device, fmt, method, optimizer, scaler, dataset, cfg = _setup(cfg, dataset)
    images = dataset.get_batch(range(cfg.data.batch_size), masks=False)["image"].to(device).contiguous(memory_format=fmt)
    method.views = views
    _use_move(_blocking_move if blocking else NON_BLOCKING)
    try:
        times = []
        for _ in range(warmup + steps):
            sync(device)
            t0 = time.perf_counter()
            with _autocast(device, cfg.train.precision):
                v1, v2 = method.views(images)
                terms, _ = method.byol_terms(v1, v2)
            _backward_and_step(terms["loss_byol"], optimizer, scaler)
            method.after_optimizer_step(cfg.method.tau_base)
            sync(device)
            times.append(time.perf_counter() - t0)
    finally:
        _use_move(NON_BLOCKING)
    return 1e3 * statistics.median(times[warmup:])


def compare(cfg: Config, against: str | None, warmup: int, steps: int, reps: int) -> dict[str, object]:
    """``{"ms": {variant: [median ms per repetition]}, "ratios": {variant / now: [...]}, "ratio": {...: median}}``."""
    variants: dict[str, tuple[torch.nn.Module, bool]] = {
        "now": (ByolViews(cfg.aug, cfg.data.image_size), False),
        "now, blocking copies": (ByolViews(cfg.aug, cfg.data.image_size), True),
    }
    if against:
        variants[against] = (views_module_at(against).ByolViews(cfg.aug, cfg.data.image_size), False)
    dataset = build_dataset(cfg, "train")
    names = list(variants)
    for name in names:  # untimed: kernels and allocator warm for every variant
        step_ms(cfg, dataset, variants[name][0], 1, 1, variants[name][1])
    ms: dict[str, list[float]] = {name: [] for name in names}
    for rep in range(reps):
        for name in names if rep % 2 == 0 else names[::-1]:
            ms[name].append(step_ms(cfg, dataset, variants[name][0], warmup, steps, variants[name][1]))
    ratios = {f"{name} / now": [t / n for n, t in zip(ms["now"], ms[name])] for name in names[1:]}
    return {"ms": ms, "ratios": ratios, "ratio": {k: statistics.median(v) for k, v in ratios.items()}}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cuda")
    p.add_argument("--backbones", nargs="+", default=["resnet18_cifar", "resnet10_16"])
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--steps", type=int, default=20, help="timed steps per variant and repetition")
    p.add_argument("--warmup", type=int, default=3, help="discarded steps before them")
    p.add_argument("--reps", type=int, default=6)
    p.add_argument("--against", metavar="REV", help="also time the views at this git revision")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--json", type=Path)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print("view_copies.py: --device: CUDA is not available", file=sys.stderr)
        return 2
    card = torch.cuda.get_device_name(torch.device(args.device)) if args.device.startswith("cuda") else "CPU"
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for backbone in args.backbones:
            cfg = make_cfg(backbone, args.batch_size, 1, tmp, ("train.precision=auto", "train.channels_last=auto",
                                                               "method.concat_views=auto", f"train.device={args.device}"))
            try:
                res = compare(cfg, args.against, args.warmup, args.steps, args.reps)
            except ValueError as e:  # a revision git cannot show
                print(f"view_copies.py: {e}", file=sys.stderr)
                return 2
            rows.append({"backbone": backbone, "batch_size": args.batch_size, **res})
    print(f"{card}, batch {args.batch_size}, `auto` setting, median ms of whole steps, {args.reps} repetitions in turn\n")
    names = list(rows[0]["ms"])
    print("| backbone | " + " | ".join(f"{n} (ms)" for n in names) + " | " + " | ".join(rows[0]["ratio"]) + " |")
    print("|---|" + "---|" * (2 * len(names) - 1))
    for r in rows:
        print(f"| {r['backbone']} | " + " | ".join(f"{statistics.median(r['ms'][n]):.2f}" for n in names) + " | "
              + " | ".join(f"{v:.3f}" for v in r["ratio"].values()) + " |")
    if args.json:
        write_results(args.json, {"device": card, "batch_size": args.batch_size, "reps": args.reps, "steps": args.steps,
                                  "warmup": args.warmup, "against": args.against, "rows": rows})
    return 0


if __name__ == "__main__":
    sys.exit(main())
