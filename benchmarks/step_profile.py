"""Where a training step's time goes, by cProfile over ``xbyol.train`` (one setting, one run).

Trains ``--steps`` steps of the ``shapes_byol`` preset with a setting of
``train_throughput.py`` (after an untimed warm-up run of the same length, so oneDNN's
kernels exist), under cProfile, switched on and off by a trainer callback around the
training loop, and splits the loop's wall time into: the two augmented views
(``ByolViews.forward``), reading batches (the dataset's ``get_batch``), the forward passes
without the views (``training_step``), the backward pass, the optimiser step, the EMA
(``after_optimizer_step``) and everything else of the loop (logging, monitors, checks). cProfile adds its own cost to
every Python call, so the shares are approximate; "Training throughput" in
benchmarks/BENCHMARKS.md quotes them next to the stage split of ``train_throughput.py``.

    python benchmarks/step_profile.py --json benchmarks/results/step_profile.json

``--views`` times each step of the two views instead, without the profiler (whose per-call
cost inflates many small calls): the median milliseconds of the crop + flip, each
photometric step of each view and the final normalisation, fed the previous step's
output as in a run, then each of the four colour-jitter adjustments on all images, and
both views end to end; the allocator setting of a run is applied first.

    python benchmarks/step_profile.py --views --json benchmarks/results/view_steps.json

``--views --against REV`` times both views end to end with this checkout's ``ByolViews``
and with the one in ``src/xbyol/augment/views.py`` at git revision ``REV`` (or in the file
``REV``), in turn for
``--reps`` repetitions (each the median of ``--repeats`` calls; the first of the two
swaps every repetition), and reports the per-repetition ratio ``then / now`` and the
largest difference between the two versions' views for the same seed.

    python benchmarks/step_profile.py --views --against feaa5af --reps 10 --json benchmarks/results/views_against.json

``--against compiled`` compares, the same way, the eager views (``aug.compile: false``)
with this checkout's compiled batched graph (``aug.compile: true``; compiled by the first,
untimed call).
"""

from __future__ import annotations

import argparse
import cProfile
import dataclasses
import inspect
import os
import pstats
import statistics
import subprocess
import sys
import tempfile
import time
import types
from collections.abc import Callable
from pathlib import Path

import torch
from bench_seeds import write_results
from train_throughput import ROOT, SETTINGS, make_cfg, resolved

from xbyol.augment import ByolViews
from xbyol.augment.preprocessing import to_unit_float
from xbyol.augment.views import adjust_brightness, adjust_contrast, adjust_hue, adjust_saturation
from xbyol.config import Config
from xbyol.data import build_dataset
from xbyol.methods.byol import BYOL
from xbyol.training import train
from xbyol.training.callbacks import Callback
from xbyol.training.host_memory import apply_run_setting
from xbyol.training.trainer import resolve_device


def _key(fn) -> tuple[str, int, str]:  # type: ignore[no-untyped-def]
    """The (file, first line, name) under which cProfile records the Python function ``fn``."""
    code = inspect.unwrap(fn).__code__
    return code.co_filename, code.co_firstlineno, code.co_name


def parts(cfg: Config) -> dict[str, tuple[str, int, str]]:
    """Part of the step -> the public function whose cumulative time it is (the optimiser: AdamW, the preset's)."""
    return {
        "views": _key(ByolViews.forward),
        "batches": _key(type(build_dataset(cfg, "train")).get_batch),
        "forward": _key(BYOL.training_step),
        "backward": _key(torch.Tensor.backward),
        "optimizer": _key(torch.optim.AdamW.step),
        "ema": _key(BYOL.after_optimizer_step),
    }


class LoopProfile(Callback):
    """Profiles the training loop: cProfile from the trainer's ``on_train_start`` to its
    ``on_train_end``; :attr:`seconds` is the wall time between the two."""

    def __init__(self) -> None:
        self.profile = cProfile.Profile()
        self.seconds = 0.0

    def on_train_start(self, step: int, total: int) -> None:
        self.seconds = -time.perf_counter()
        self.profile.enable()

    def on_train_end(self, step: int, status: str) -> None:
        self.profile.disable()
        self.seconds += time.perf_counter()


def _median_ms(fn: Callable[[], object], repeats: int) -> float:
    for _ in range(3):  # warm-up: first-call allocations
        fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return 1e3 * statistics.median(times)


def view_step_times(cfg: Config, repeats: int = 30) -> dict[str, float]:
    """Median ms of each step of the two views of one batch (``cfg.data.batch_size`` images), timed apart.

    Keys: ``both views`` (``ByolViews`` end to end), ``to float``, then per view ``view1: crop + flip``,
    ``view1: ColorJitter``, ... and ``view1: normalise``, then ``adjust_hue`` etc. (each on every image).
    """
    device = resolve_device(cfg.train.device)
    cfg = resolved(cfg, device)  # channels_last made concrete, so the views see a run's memory format
    apply_run_setting(device, cfg.train.retain_freed_memory)
    dataset = build_dataset(cfg, "train")
    images = dataset.get_batch(range(cfg.data.batch_size), masks=False)["image"]  # (B, 3, H, W) uint8
    views = ByolViews(cfg.aug, cfg.data.image_size)
    fmt = torch.channels_last if cfg.train.channels_last else torch.contiguous_format
    images = images.contiguous(memory_format=fmt)
    out = {"both views": _median_ms(lambda: views(images), repeats),
           "to float": _median_ms(lambda: to_unit_float(images.contiguous()), repeats)}
    x = to_unit_float(images.contiguous())  # (B, 3, H, W) in [0, 1]
    for name, pipeline in (("view1", views.view1), ("view2", views.view2)):
        out[f"{name}: crop + flip"] = _median_ms(lambda: pipeline.geometry(x), repeats)  # noqa: B023
        v, _ = pipeline.geometry(x)
        for op in pipeline.photometric:
            out[f"{name}: {type(op).__name__}"] = _median_ms(lambda: op(v), repeats)  # noqa: B023 (timed at once)
            v = op(v)
        out[f"{name}: normalise"] = _median_ms(lambda: views._finish(v, fmt), repeats)  # noqa: B023
    v, _ = views.view1.geometry(x)
    factor = torch.full((v.shape[0],), 0.9)
    for fn in (adjust_brightness, adjust_contrast, adjust_saturation, adjust_hue):
        out[fn.__name__] = _median_ms(lambda: fn(v, factor), repeats)  # noqa: B023
    return out


def views_module_at(rev: str) -> types.ModuleType:
    """``xbyol.augment.views`` as it was at git revision ``rev`` (or in the file ``rev``, for a copy
    without git history, e.g. on a lent machine), loaded as a separate module.

    Raises:
        ValueError: ``rev`` is neither a file nor a revision of this repository with that file.
    """
    if Path(rev).is_file():
        source, name = Path(rev).read_text(), rev
    else:
        shown = subprocess.run(["git", "show", f"{rev}:src/xbyol/augment/views.py"], cwd=ROOT, capture_output=True, text=True)
        if shown.returncode != 0:
            raise ValueError(f"--against {rev}: git cannot show src/xbyol/augment/views.py there ({shown.stderr.strip()})")
        source, name = shown.stdout, f"{rev}:src/xbyol/augment/views.py"
    module = types.ModuleType("views_against")
    exec(compile(source, name, "exec"), module.__dict__)  # noqa: S102 (this repository's own code)
    return module


def views_against(cfg: Config, rev: str, repeats: int, reps: int) -> dict[str, object]:
    """Both views end to end by this checkout's ``ByolViews`` and by the one at ``rev``, timed in turn.

    Returns:
        ``ms_now`` and ``ms_then`` (the median ms of each repetition), ``ratios`` (then / now per
        repetition), ``ratio`` (their median) and ``max_abs_diff`` between the two versions'
        views of one batch for the same seed.
    """
    device = resolve_device(cfg.train.device)
    cfg = resolved(cfg, device)
    apply_run_setting(device, cfg.train.retain_freed_memory)
    fmt = torch.channels_last if cfg.train.channels_last else torch.contiguous_format
    images = build_dataset(cfg, "train").get_batch(range(cfg.data.batch_size), masks=False)["image"]
    images = images.to(device).contiguous(memory_format=fmt)  # (B, 3, H, W) uint8
    now = ByolViews(dataclasses.replace(cfg.aug, compile=False), cfg.data.image_size)
    if rev == "compiled":
        then = ByolViews(dataclasses.replace(cfg.aug, compile=True), cfg.data.image_size)
    else:
        then = views_module_at(rev).ByolViews(cfg.aug, cfg.data.image_size)
    diff = max(float((a - b).abs().max()) for a, b in zip(now(images, seed=0), then(images, seed=0)))
    ms_now, ms_then = [], []
    for rep in range(reps):
        pair = [(ms_now, now), (ms_then, then)]
        for times, views in pair if rep % 2 == 0 else pair[::-1]:
            times.append(_median_ms(lambda: views(images), repeats))  # noqa: B023 (timed at once)
    ratios = [t / n for n, t in zip(ms_now, ms_then)]
    return {"against": rev, "ms_now": ms_now, "ms_then": ms_then, "ratios": ratios, "ratio": statistics.median(ratios),
            "max_abs_diff": diff}


def main_views(args: argparse.Namespace) -> int:
    with tempfile.TemporaryDirectory() as tmp:
        cfg = make_cfg(args.backbone, args.batch_size, 1, tmp, SETTINGS[args.setting])
    if args.against:
        try:
            res = views_against(cfg, args.against, args.repeats, args.reps)
        except ValueError as e:
            print(f"step_profile.py: {e}", file=sys.stderr)
            return 2
        rows = [f"| {i + 1} | {n:.2f} | {t:.2f} | {r:.3f} |"
                for i, (n, t, r) in enumerate(zip(res["ms_now"], res["ms_then"], res["ratios"]))]
        return _report(args, f"setting {args.setting!r}: both views of {args.batch_size} images, this checkout against "
                       f"{args.against} (median of {args.repeats} calls per repetition): {args.against} / now = "
                       f"{res['ratio']:.3f}; largest difference between their views {res['max_abs_diff']:.2g}",
                       f"| repetition | now (ms) | {args.against} (ms) | {args.against} / now |", rows,
                       {"repeats": args.repeats, **res})
    ms = view_step_times(cfg, args.repeats)
    return _report(args, f"setting {args.setting!r}: the two views of {args.batch_size} images, median of {args.repeats}",
                   "| step | ms |", [f"| {name} | {v:.2f} |" for name, v in ms.items()], {"repeats": args.repeats, "ms": ms})


def _report(args: argparse.Namespace, title: str, header: str, rows: list[str], results: dict) -> int:
    """Print a Markdown table under ``title`` and write ``results`` with the run's setting to ``--json``."""
    print(f"{args.backbone}, batch {args.batch_size}, {title} (load average {os.getloadavg()[0]:.1f})\n")
    print(header)
    print("|" + "---|" * (header.count("|") - 1))
    for row in rows:
        print(row)
    if args.json:
        write_results(args.json, {"backbone": args.backbone, "batch_size": args.batch_size, "setting": args.setting,
                                  "threads": args.threads, **results})
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--backbone", default="resnet10_16")
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--setting", default="auto (defaults)", choices=list(SETTINGS))
    p.add_argument("--steps", type=int, default=40)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--json", type=Path)
    p.add_argument("--views", action="store_true", help="time each step of the two views instead (no profiler)")
    p.add_argument("--repeats", type=int, default=30, help="--views: timed repetitions of each step")
    p.add_argument("--against", metavar="REV", help="--views: time both views against ByolViews at git revision REV instead")
    p.add_argument("--reps", type=int, default=10, help="--views --against: repetitions, the order swapped every time")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.views:
        return main_views(args)
    with tempfile.TemporaryDirectory() as tmp:
        cfg = make_cfg(args.backbone, args.batch_size, args.steps, tmp, SETTINGS[args.setting])
        train(cfg, overwrite=True)  # warm-up: oneDNN kernels, allocator pages
        clock = LoopProfile()
        train(cfg, overwrite=True, callbacks=[clock])
    recorded = pstats.Stats(clock.profile).stats  # type: ignore[attr-defined]  # {(file, line, name): (calls, calls, own, cumulative, callers)}
    seconds = {part: recorded[key][3] if key in recorded else 0.0 for part, key in parts(cfg).items()}
    # the views run inside the method's forward: report the forward without them
    seconds["forward"] -= seconds["views"]
    loop = clock.seconds
    seconds["rest of the loop"] = loop - sum(seconds.values())
    step_ms = 1e3 * loop / args.steps
    return _report(args, f"{args.setting}: {step_ms:.0f} ms per step under cProfile", "| part | ms per step | % of the step |",
                   [f"| {part} | {1e3 * sec / args.steps:.1f} | {100 * sec / loop:.1f} |" for part, sec in seconds.items()],
                   {"steps": args.steps, "step_ms": step_ms, "ms_per_step": {k: 1e3 * v / args.steps for k, v in seconds.items()}})


if __name__ == "__main__":
    sys.exit(main())
