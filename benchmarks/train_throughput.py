"""Images/s of a full BYOL training step next to the bare arithmetic of the same step.

For each backbone (ResNet-18 with the CIFAR stem and the small ``resnet10_16``, 32x32
``shapes`` images), batch size and setting (precision, memory format, separate or
concatenated views: :data:`SETTINGS`) two things are timed side by side for ``--reps``
repetitions. By default (``--pairing steps``) each repetition is one training run in
which a full step and a bare step take turns: a shared machine's speed changes from
second to second, and steps a few tenths of a second apart see the same machine. With
``--pairing runs`` each repetition is a whole full run and a whole bare run, the bare
one first in odd repetitions and second in even ones (the swap cancels a steady drift).

- **full**: ``xbyol.train`` itself on the ``configs/shapes_byol.yaml`` preset (AdamW, its
  logging and collapse-monitor intervals) with the setting's overrides. A step is the time
  between two consecutive ``on_step_end`` calls of a trainer callback (less the bare step
  taken in between, with ``--pairing steps``), so it holds everything the trainer does per
  step: reading the batch, both augmented views, the forward and backward passes, the
  optimiser, the EMA update, logging and monitors.
- **limit**: the same modules, optimiser, precision and allocator setting on views made
  once before timing: online forward + backward and target forward of both views, the
  loss, the optimiser step and both EMA updates, and nothing else.

Both are timed in wall-clock seconds (images/s, the headline) and in process CPU
seconds. The first ``--warmup`` steps of every run are discarded (oneDNN kernel
creation); each repetition's figure is the median over its remaining steps; the table
shows the median over repetitions, ``ratio`` = the median of the per-repetition
full / limit (target: at least 0.95; with ``--pairing steps`` a repetition's ratio is the
median of its per-pair ratios), and the mean of those ratios with its 95%
t-interval, whose position against 0.95 gives the verdict: ``met`` (wholly at or above),
``missed`` (wholly below) or ``undecided``. ``--stages`` adds one run per setting that
times each stage of the step separately.

    python benchmarks/train_throughput.py --backbones resnet18_cifar --batch-sizes 128 --reps 3 --stages
    python benchmarks/train_throughput.py --backbones resnet10_16 --batch-sizes 256 --reps 5 --steps 15 --stages
    python benchmarks/train_throughput.py --device cuda --settings "bf16 CL separate" "bf16 CL concat" --steps 30 --warmup 5

The functions take the device and precision from the config (``train.device``,
``train.precision``, ``train.channels_last``), so ``benchmarks/gpu_check.py`` reuses them
on CUDA; there every step boundary waits for the GPU (``torch.cuda.synchronize``), in the
full and the limit runs alike, so the clock measures finished work, not queued kernels.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch
from bench_seeds import interval95, seed_summary

import xbyol
from xbyol.config import Config, ConfigError
from xbyol.data import build_dataset
from xbyol.data.base import SampleDataset
from xbyol.losses.byol import byol_loss
from xbyol.methods import create_method
from xbyol.methods.byol import resolve_concat_views
from xbyol.models import create_backbone
from xbyol.models.ema import update_momentum
from xbyol.training.callbacks import Callback, StepInfo
from xbyol.training.host_memory import apply_run_setting
from xbyol.training.optim import build_optimizer
from xbyol.training.precision import resolve_channels_last, resolve_precision
from xbyol.training.schedules import tau_at
from xbyol.training.trainer import resolve_device, train

ROOT = Path(__file__).resolve().parents[1]
TARGET = 0.95
# (warm-up, timed) steps per run: the small net needs ~3 steps before oneDNN's bf16 kernels are
# built; ResNet-18 at batch 256 takes tens of seconds per step on two shared CPU cores
DEFAULT_STEPS = {"resnet10_16": (3, 12), "resnet18_cifar": (1, 2)}


def make_cfg(backbone: str, batch_size: int, steps: int, out_dir: str, overrides: tuple[str, ...] = ()) -> Config:
    """The shapes preset at ``batch_size`` with one epoch of exactly ``steps`` optimiser steps.

    ``overrides`` (dotted ``key=value``) come last, e.g. ``("train.device=cuda:0", "train.precision=fp32")``.
    """
    return xbyol.load_config(
        ROOT / "configs" / "shapes_byol.yaml",
        [
            f"name=throughput_{backbone}_{batch_size}",
            f"out_dir={out_dir}",
            f"model.backbone={backbone}",
            f"data.batch_size={batch_size}",
            f"data.num_train={batch_size * steps}",
            "data.num_test=16",
            f"train.steps={steps}",
            "train.progress=false",
            "train.device=cpu",
            *overrides,
        ],
    )


def sync(device: torch.device) -> None:
    """Wait for the device's queued work (CUDA kernels run asynchronously); nothing on the CPU."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class StepClock(Callback):
    """Records ``(wall, process CPU)`` seconds in :attr:`marks` at the end of every optimiser step of a run.

    A trainer callback: :meth:`on_step_end` comes once per step, after the optimiser and the
    EMA update, so the time between two marks is one whole training step as the trainer
    runs it. On CUDA the mark waits for the step's kernels first (:func:`sync`).
    ``between(k)``, when given, runs after the mark of step ``k`` (from 0) and is marked in
    turn, so the marks alternate: end of step 0, end of ``between(0)``, end of step 1, ...
    """

    def __init__(self, device: torch.device = torch.device("cpu"), between: Callable[[int], None] | None = None) -> None:
        self.device, self.between = device, between
        self.marks: list[tuple[float, float]] = []

    def _mark(self) -> None:
        sync(self.device)
        self.marks.append((time.perf_counter(), time.process_time()))

    def on_step_end(self, step: int, info: StepInfo) -> None:
        self._mark()
        if self.between is not None:
            self.between(step - 1)
            self._mark()


def full_step_times(cfg: Config, warmup: int) -> list[tuple[float, float]]:
    """(wall, CPU) seconds of every step after ``warmup`` of a real ``xbyol.train`` run."""
    clock = StepClock(resolve_device(cfg.train.device))
    train(cfg, overwrite=True, callbacks=[clock])
    marks = clock.marks
    return [(b[0] - a[0], b[1] - a[1]) for a, b in zip(marks[warmup - 1 : -1], marks[warmup:])]


def _autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager:
    """The trainer's autocast: bf16 / fp16 on ``device``, nothing for fp32."""
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision)
    return torch.autocast(device.type, dtype=dtype) if dtype is not None else contextlib.nullcontext()


def resolved(cfg: Config, device: torch.device) -> Config:
    """``cfg`` with the ``auto`` precision, memory format and view batching made concrete, as the trainer does."""
    concat = resolve_concat_views(cfg.method.concat_views)
    channels_last = resolve_channels_last(cfg.train.channels_last, create_backbone(cfg.model.backbone))
    return dataclasses.replace(
        cfg,
        train=dataclasses.replace(cfg.train, precision=resolve_precision(cfg.train.precision, device), channels_last=channels_last),
        method=dataclasses.replace(cfg.method, concat_views=concat),
    )


def _setup(cfg: Config, dataset: SampleDataset | None = None):  # type: ignore[no-untyped-def]
    """(device, memory format, method, optimiser, grad scaler or None, dataset, resolved cfg) as the trainer builds them."""
    torch.manual_seed(cfg.train.seed)
    device = resolve_device(cfg.train.device)
    cfg = resolved(cfg, device)
    apply_run_setting(device, cfg.train.retain_freed_memory)  # as the trainer does (process-wide)
    dataset = build_dataset(cfg, "train") if dataset is None else dataset
    method = create_method(cfg, dataset).to(device)
    fmt = torch.channels_last if cfg.train.channels_last else torch.contiguous_format
    method = method.to(memory_format=fmt).train()
    optimizer = build_optimizer(method, cfg.train, cfg.train.lr)
    scaler = torch.amp.GradScaler("cuda") if (cfg.train.precision == "fp16" and device.type == "cuda") else None
    return device, fmt, method, optimizer, scaler, dataset, cfg


def _backward_and_step(loss: torch.Tensor, optimizer: torch.optim.Optimizer, scaler: torch.amp.GradScaler | None) -> None:
    optimizer.zero_grad(set_to_none=True)
    if scaler is None:
        loss.backward()
        optimizer.step()
    else:
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()


def _bare_step(cfg: Config, dataset: SampleDataset | None = None) -> Callable[[int, int], None]:
    """The bare arithmetic of one BYOL step on views made once: ``step(i, total)`` runs step ``i`` of ``total``.

    Its own modules, optimiser and precision, built as the trainer builds them: online
    forward + backward and target forward of both views (separate or concatenated, as
    ``method.concat_views`` says), the loss, the optimiser step and both EMA updates
    (``tau`` of step ``i`` of ``total``), and nothing else. ``dataset``: the run's
    training split when already built (only its first batch is used).
    """
    device, fmt, method, optimizer, scaler, dataset, cfg = _setup(cfg, dataset)
    bs = cfg.data.batch_size
    images = dataset.get_batch(range(bs), masks=False)["image"].to(device).contiguous(memory_format=fmt)  # (B, 3, H, W)
    with torch.no_grad():
        v1, v2 = method.views(images, seed=0)
    v1, v2 = v1.contiguous(memory_format=fmt), v2.contiguous(memory_format=fmt)  # (B, 3, S, S)
    v = torch.cat([v1, v2]).contiguous(memory_format=fmt)  # (2B, 3, S, S)
    online = lambda x: method.projector(method.backbone(x))  # noqa: E731
    target = lambda x: method.target_projector(method.target_backbone(x))  # noqa: E731

    def step(i: int, total: int) -> None:
        with _autocast(device, cfg.train.precision):
            if cfg.method.concat_views:
                p1, p2 = method.predictor(online(v)).chunk(2)  # (B, P) each
                with torch.no_grad():
                    z1, z2 = target(v).chunk(2)
            else:
                p1, p2 = method.predictor(online(v1)), method.predictor(online(v2))
                with torch.no_grad():
                    z1, z2 = target(v1), target(v2)
            loss = byol_loss(p1, p2, z1, z2)
        _backward_and_step(loss, optimizer, scaler)
        with torch.no_grad():
            tau = tau_at(i, total, cfg.method.tau_base)
            update_momentum(method.backbone, method.target_backbone, tau)
            update_momentum(method.projector, method.target_projector, tau)

    return step


def limit_step_times(
    cfg: Config, warmup: int, steps: int, dataset: SampleDataset | None = None
) -> list[tuple[float, float]]:
    """(wall, CPU) seconds of the bare BYOL arithmetic (:func:`_bare_step`), ``steps`` after ``warmup``.

    ``dataset``: the run's training split when already built (only its first batch is used).
    """
    device = resolve_device(cfg.train.device)
    step = _bare_step(cfg, dataset)
    times = []
    for i in range(warmup + steps):
        sync(device)
        t0, c0 = time.perf_counter(), time.process_time()
        step(i, warmup + steps)
        sync(device)
        if i >= warmup:
            times.append((time.perf_counter() - t0, time.process_time() - c0))
    return times


def interleaved_step_times(cfg: Config, warmup: int) -> tuple[list[tuple[float, float]], list[tuple[float, float]]]:
    """(wall, CPU) seconds of full and bare steps taken in turn, within one ``xbyol.train`` run.

    After each optimiser step of the run (at the trainer's ``on_step_end``, once the EMA
    is done) one bare step (:func:`_bare_step`, on its own copy of the modules and
    optimiser) runs and is timed; a full step is the time from the end of that bare step
    to the end of the next optimiser step, so it holds everything the trainer does per
    step and nothing of the bare one. The two kinds of step alternate every few tenths of
    a second, so a shared machine's changes of speed reach both alike, which alternating
    whole runs cannot promise. The bare steps draw no random numbers and touch none of
    the run's modules, so the run trains exactly as it would alone (tested).

    Returns:
        ``(full, limit)``: each the steps after the first ``warmup`` of its kind,
        ``cfg.train.steps - warmup`` entries.
    """
    if warmup < 1:
        raise ValueError(f"warmup: expected at least 1 (the first full step has no start mark), got {warmup}")
    bare = _bare_step(cfg)
    clock = StepClock(resolve_device(cfg.train.device), between=lambda k: bare(k, cfg.train.steps))
    train(cfg, overwrite=True, callbacks=[clock])
    ends, bare_ends = clock.marks[0::2], clock.marks[1::2]  # end of each optimiser step, end of the bare step after it
    full = [(e[0] - b[0], e[1] - b[1]) for b, e in zip(bare_ends[:-1], ends[1:])]
    limit = [(b[0] - e[0], b[1] - e[1]) for e, b in zip(ends, bare_ends)]
    return full[warmup - 1 :], limit[warmup:]


STAGES = ("data", "to_device", "augment", "forward_backward", "optimizer", "ema")


def stage_times(cfg: Config, warmup: int, steps: int, dataset: SampleDataset | None = None) -> dict[str, list[float]]:
    """Wall seconds of each stage of the trainer's BYOL step, the device synchronised between stages.

    The stages, in the trainer's order: ``data`` (``dataset.get_batch`` without the concept
    masks, as the trainer's ``DataLoader`` with ``data.num_workers=0`` does),
    ``to_device`` (the non-blocking copy, channels_last), ``augment`` (both views,
    ``method.views``), ``forward_backward`` (online and target forwards, the loss, the
    backward), ``optimizer`` (the step) and ``ema`` (``method.after_optimizer_step``). The
    synchronisations serialise what the trainer may overlap, so the sum is an upper bound
    of a full step; the shares say which stage holds a step back. Logging and the
    collapse monitors are not included (they run every ``train.log_every`` steps).

    Returns:
        ``{stage: [seconds of each step after warmup]}`` for every name in :data:`STAGES`.
    """
    device, fmt, method, optimizer, scaler, dataset, cfg = _setup(cfg, dataset)
    bs = cfg.data.batch_size
    order = torch.randperm(len(dataset), generator=torch.Generator().manual_seed(cfg.train.seed))
    times: dict[str, list[float]] = {name: [] for name in STAGES}
    n_batches = len(dataset) // bs
    for step in range(warmup + steps):
        marks = [time.perf_counter()]

        def mark() -> None:
            sync(device)
            marks.append(time.perf_counter())

        idx = order[(step % n_batches) * bs : (step % n_batches + 1) * bs].tolist()
        batch = dataset.get_batch(idx, masks=False)  # as the trainer reads it
        mark()
        images = batch["image"].to(device, non_blocking=True)
        if cfg.train.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)  # (B, 3, H, W)
        mark()
        with _autocast(device, cfg.train.precision):
            v1, v2 = method.views(images)
            mark()
            terms, _ = method.byol_terms(v1, v2)
        optimizer.zero_grad(set_to_none=True)
        if scaler is None:
            terms["loss_byol"].backward()
        else:
            scaler.scale(terms["loss_byol"]).backward()
        mark()
        if scaler is None:
            optimizer.step()
        else:
            scaler.step(optimizer)
            scaler.update()
        mark()
        method.after_optimizer_step(tau_at(step, warmup + steps, cfg.method.tau_base))
        mark()
        if step >= warmup:
            for name, a, b in zip(STAGES, marks[:-1], marks[1:]):
                times[name].append(b - a)
    return times


def repetition_figures(
    full: list[tuple[float, float]], limit: list[tuple[float, float]], batch_size: int, paired: bool
) -> dict[str, float]:
    """One repetition's images/s (median step of each kind) and its full / limit ratio.

    ``paired`` (the steps of ``full`` and ``limit`` taken in turn, :func:`interleaved_step_times`):
    the ratio is the median over pairs of ``limit step / full step``, each pair timed a few
    tenths of a second apart, so a change of the machine's speed during the run moves both
    of a pair and leaves their ratio alone. Otherwise the ratio of the two medians.

    Returns:
        ``full_img_s``, ``limit_img_s``, ``ratio`` (wall clock) and ``ratio_cpu_time``.
    """
    out = {"full_img_s": batch_size / statistics.median(t[0] for t in full),
           "limit_img_s": batch_size / statistics.median(t[0] for t in limit)}
    for key, i in (("ratio", 0), ("ratio_cpu_time", 1)):
        if paired:
            out[key] = statistics.median(lim[i] / ful[i] for ful, lim in zip(full, limit, strict=True))
        else:
            out[key] = statistics.median(t[i] for t in limit) / statistics.median(t[i] for t in full)
    return out


def verdict(interval: tuple[float, float] | None) -> str:
    """``met`` / ``missed`` where the 95% interval of the mean ratio lies wholly at or above / below
    :data:`TARGET`, ``undecided`` where it contains it or is undefined (one repetition)."""
    if interval is None:
        return "undecided"
    if interval[0] >= TARGET:
        return "met"
    if interval[1] < TARGET:
        return "missed"
    return "undecided"


SETTINGS = {  # name -> overrides; "old defaults" is what xbyol ran before `auto` (fp32, NCHW, concatenated)
    "fp32 NCHW concat (old defaults)": ("train.precision=fp32", "train.channels_last=false", "method.concat_views=true"),
    "fp32 NCHW separate": ("train.precision=fp32", "train.channels_last=false", "method.concat_views=false"),
    "fp32 CL separate": ("train.precision=fp32", "train.channels_last=true", "method.concat_views=false"),
    "fp32 CL concat": ("train.precision=fp32", "train.channels_last=true", "method.concat_views=true"),
    "bf16 NCHW separate": ("train.precision=bf16", "train.channels_last=false", "method.concat_views=false"),
    "bf16 NCHW concat": ("train.precision=bf16", "train.channels_last=false", "method.concat_views=true"),
    "bf16 CL separate": ("train.precision=bf16", "train.channels_last=true", "method.concat_views=false"),
    "bf16 CL concat": ("train.precision=bf16", "train.channels_last=true", "method.concat_views=true"),
    "auto (defaults)": ("train.precision=auto", "train.channels_last=auto", "method.concat_views=auto"),
}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--backbones", nargs="+", default=["resnet18_cifar", "resnet10_16"])
    p.add_argument("--batch-sizes", nargs="+", type=int, default=[128, 256])
    p.add_argument("--settings", nargs="+", default=list(SETTINGS), choices=list(SETTINGS), metavar="SETTING",
                   help="precision / memory format / views settings (default: all): " + "; ".join(SETTINGS))
    p.add_argument("--stages", action="store_true", help="also time each stage of the step (one extra run per setting)")
    p.add_argument("--reps", type=int, default=3, help="repetitions per setting (one training run each with --pairing steps)")
    p.add_argument("--pairing", choices=("steps", "runs"), default="steps",
                   help="steps (default): full and bare steps in turn within one training run per repetition; "
                        "runs: a whole full run and a whole bare run per repetition, their order swapped each time")
    p.add_argument("--steps", type=int, default=None, help="timed steps per run (default: 12 small net, 2 ResNet-18)")
    p.add_argument("--warmup", type=int, default=None, help="discarded steps at the start of every run (default: 3 small net, 1 ResNet-18)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--device", default="cpu", help="train.device of every run (default cpu; e.g. cuda)")
    p.add_argument("--json", type=Path, help="write every row here")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    try:
        device = resolve_device(args.device)
    except ConfigError as e:
        print(f"train_throughput.py: --device: {e}", file=sys.stderr)
        return 2
    if torch.cuda.is_available() and device.type == "cpu":
        print("note: CUDA is available but this benchmark times the CPU (--device cuda times the GPU)")
    load0 = os.getloadavg()
    card = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    print(f"torch {torch.__version__}, {card}, {args.threads} threads, {os.cpu_count()} CPUs, load average {load0[0]:.1f}", flush=True)
    rows: list[dict] = []
    with tempfile.TemporaryDirectory() as tmp:
        for backbone in args.backbones:
            warmup, steps = DEFAULT_STEPS.get(backbone, (2, 4))
            warmup = warmup if args.warmup is None else args.warmup
            steps = steps if args.steps is None else args.steps
            for bs in args.batch_sizes:
                for setting in args.settings:
                    cfg = make_cfg(backbone, bs, warmup + steps, tmp, (*SETTINGS[setting], f"train.device={args.device}"))
                    reps = []
                    for rep in range(args.reps):
                        if args.pairing == "steps":
                            ful, lim = interleaved_step_times(cfg, warmup)
                        elif rep % 2 == 0:  # the order swaps every repetition, so a drift of the machine's speed favours neither
                            lim = limit_step_times(cfg, warmup, steps)
                            ful = full_step_times(cfg, warmup)
                        else:
                            ful = full_step_times(cfg, warmup)
                            lim = limit_step_times(cfg, warmup, steps)
                        r = repetition_figures(ful, lim, bs, paired=args.pairing == "steps")
                        reps.append(r)
                        print(f"  {backbone} batch {bs} {setting} rep {rep + 1}: full {r['full_img_s']:.1f} / limit "
                              f"{r['limit_img_s']:.1f} img/s, full / limit {r['ratio']:.3f} (load {os.getloadavg()[0]:.1f})", flush=True)
                    row = {
                        "backbone": backbone, "batch_size": bs, "setting": setting,
                        "full_img_s": statistics.median(r["full_img_s"] for r in reps),
                        "limit_img_s": statistics.median(r["limit_img_s"] for r in reps),
                        "ratio": statistics.median(r["ratio"] for r in reps),
                        "ratio_cpu_time": statistics.median(r["ratio_cpu_time"] for r in reps),
                        "ratios": [r["ratio"] for r in reps],
                    }
                    summary = seed_summary(row["ratios"])
                    row["ratio_mean"], row["ratio_interval95"] = summary["mean"], interval95(summary)
                    row["verdict"] = verdict(row["ratio_interval95"])
                    if args.stages:
                        st = stage_times(cfg, warmup, steps)
                        med = {k: statistics.median(v) for k, v in st.items()}
                        total = sum(med.values())
                        row["stage_share"] = {k: v / total for k, v in med.items()}
                    rows.append(row)
    load1 = os.getloadavg()
    print()
    print("| backbone | batch | setting | full (img/s) | limit (img/s) | **full / limit** | mean (95% interval) | verdict "
          "| per repetition | ratio (CPU time) |" + (" stages: " + ", ".join(STAGES) + " (% of step) |" if args.stages else ""))
    print("|---|---|---|---|---|---|---|---|---|---|" + ("---|" if args.stages else ""))
    for r in rows:
        ci = r["ratio_interval95"]
        mean = f"{r['ratio_mean']:.3f}" + (f" ({ci[0]:.3f} to {ci[1]:.3f})" if ci else "")
        line = (f"| {r['backbone']} | {r['batch_size']} | {r['setting']} | {r['full_img_s']:.1f} | {r['limit_img_s']:.1f} | "
                f"**{r['ratio']:.3f}** | {mean} | {r['verdict']} | {', '.join(f'{x:.2f}' for x in r['ratios'])} | "
                f"{r['ratio_cpu_time']:.2f} |")
        if args.stages:
            line += " " + ", ".join(f"{100 * r['stage_share'][k]:.0f}" for k in STAGES) + " |"
        print(line)
    pairing = "full and bare steps in turn" if args.pairing == "steps" else "whole runs alternated"
    print(f"\nload average {load0[0]:.1f} at the start, {load1[0]:.1f} at the end ({os.cpu_count()} CPUs); "
          f"{args.threads} torch threads; {args.reps} repetitions, {pairing}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"device": card, "threads": args.threads, "load": [load0[0], load1[0]],
                                         "pairing": args.pairing, "reps": args.reps, "rows": rows}, indent=2))
    ok = all(r["ratio"] >= TARGET for r in rows)
    print(f"target: full / limit (wall) >= {TARGET} for every setting: {'PASS' if ok else 'FAIL'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
