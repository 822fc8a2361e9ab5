"""One command that runs and times xbyol's CUDA paths on a GPU machine.

    python benchmarks/gpu_check.py                        # on a CUDA machine: every section, a few minutes
    OUT=/tmp/out python benchmarks/gpu_check.py           # also writes $OUT/gpu_check.json
    python benchmarks/gpu_check.py --device cpu --tiny    # the same sections end to end on the CPU, tiny sizes

Sections, in the order they run (``--sections`` picks some; each one runs even when an
earlier one failed, and its error lands in the JSON, which is rewritten after every section,
so a single short GPU session yields everything it can; no section starts after
``--budget-s`` seconds):

1. ``tests``: the test suite's CUDA tests (``pytest -m cuda``: ``train.device: cuda``,
   bf16 and fp16+GradScaler training, channels_last, resume on the GPU, explainers and
   metrics equal to the CPU, compiled views equal to the eager ones and free of host
   synchronisation, a CUDA checkpoint loaded with CUDA hidden, ...). They all skip on a CPU.
2. ``throughput``: ``shapes`` 32 px, each backbone and batch size, in fp32, bf16 and
   bf16 + channels_last (with the compiled views of ``aug.compile: auto``, and once with
   eager views): images/s of the full trainer step next to the bare-arithmetic limit
   (``train_throughput.full_step_times`` / ``limit_step_times``, alternated per
   repetition, CUDA synchronised at step boundaries), peak GPU memory of the full run,
   and the per-stage split of one step (``train_throughput.stage_times``: data, copy,
   augmentation, forward+backward, optimiser, EMA) to show what holds a step back.
3. ``realres``: real resolutions from a synthetic folder of JPEGs (:mod:`jpeg_folder`,
   500x375 like an average ImageNet photograph): 96 px ``resnet18`` (batch 256) and
   224 px ``resnet50`` (batch 128), bf16 + channels_last and the library's defaults
   otherwise (``data.num_workers: auto``): full step vs the limit, peak memory of both,
   the stage split (``data`` = decoding a batch in the main process), and that decoding
   spread over the loader's workers as a share of the full step.
4. ``peers``: lightly 1.6.0 and byol-pytorch 0.9.1 (:mod:`peers`) next to xbyol on the
   same device and data, same backbone, 4096/256 heads, SGD and EMA: 32 px
   ``resnet18_cifar`` batch 256 and 224 px ``resnet50`` batch 128, images/s and peak
   memory; a peer that does not import is skipped with its reason.
5. ``ddp``: BYOL through ``torchrun`` with NCCL (gloo on the CPU), one process and, with two
   GPUs, two: two epochs uninterrupted, the same run again (the run-to-run noise floor of
   non-deterministic kernels), and runs stopped at the epoch boundary and mid-epoch, then
   resumed. The resumed weights must equal the uninterrupted ones exactly when the two
   uninterrupted runs agree exactly, else lie within 10x of their difference.
6. ``fp16``: a longer fp16 run with GradScaler; every logged loss must be finite (CUDA only).
7. ``explain``: Grad-CAM and integrated gradients on the device against Captum's
   ``LayerGradCam`` on the same inputs (``explain_speed.gradcam_vs_captum``).

Everything goes to a JSON file (``--json``, default ``$OUT/gpu_check.json`` when ``OUT``
is set) and Markdown tables to stdout. Exit code 0 when every check passed (tests, DDP
resume, fp16 finiteness, Grad-CAM agreement with Captum, no section or setting raised or
was skipped for time); the speed targets (full/limit >= 0.9 for resnet18_cifar at 32 px
and resnet50 at 224 px, xbyol >= 2x / 1.2x the fastest peer at 32 / 224 px, bf16 faster
than fp32) are reported beside them but do not change the exit code.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any, Callable

import torch
import torch.distributed as dist

import explain_speed
import peers
import train_throughput as tt
import xbyol
from jpeg_folder import make_jpeg_folder
from xbyol.data import build_dataset
from xbyol.data.base import resolve_num_workers
from xbyol.explain import EmbeddingSimilarityTarget, explain
from xbyol.models import create_backbone
from xbyol.training import train
from xbyol.training.checkpoint import load_checkpoint

ROOT = Path(__file__).resolve().parents[1]
RATIO_TARGET = 0.9  # full step / bare limit, resnet18_cifar at 32 px and resnet50 at 224 px
PEER_TARGETS = {32: 2.0, 224: 1.2}  # xbyol / fastest peer, images/s, by image size
# name -> (train.precision, train.channels_last, further overrides); on CUDA views are compiled (aug.compile: auto)
# except in the "eager_views" variant, which shows what the compiled views change
VARIANTS = {"fp32": ("fp32", False, ()), "bf16": ("bf16", False, ()),
            "bf16+channels_last+eager_views": ("bf16", True, ("aug.compile=false",)),
            "bf16+channels_last": ("bf16", True, ())}
SECTIONS = ("tests", "throughput", "realres", "peers", "ddp", "fp16", "explain")

# sizes: about ten minutes on one GPU; --tiny: tens of seconds on a CPU
FULL = dict(backbones=["resnet18_cifar", "resnet10_16"], batch_sizes=[256], warmup=3, steps=10, reps=2,
            ddp_backbone="resnet10_16", ddp_batch=128, ddp_steps=20, fp16_steps=100, fp16_batch=256,
            explain_backbone="resnet18_cifar", explain_batch=64, explain_size=32, ig_steps=50, explain_repeats=5,
            realres=[("resnet18", 96, 256), ("resnet50", 224, 128)], jpeg_images=1024, jpeg_size=(500, 375),
            peers=[("resnet18_cifar", 32, 256), ("resnet50", 224, 128)], peer_images=4096)
TINY = dict(backbones=["resnet10_16"], batch_sizes=[8], warmup=1, steps=2, reps=1,
            ddp_backbone="resnet10_16", ddp_batch=8, ddp_steps=4, fp16_steps=4, fp16_batch=8,
            explain_backbone="resnet10_16", explain_batch=2, explain_size=16, ig_steps=4, explain_repeats=1,
            realres=[("resnet18", 32, 4)], jpeg_images=20, jpeg_size=(48, 40),
            peers=[("resnet10_16", 32, 4), ("resnet10_16", 40, 4)], peer_images=16)
# narrow heads for --tiny (the preset's 512-wide MLPs dominate a tiny CPU step)
TINY_HEADS = ("model.proj_hidden=32", "model.proj_dim=16", "model.pred_hidden=32")


def train_device(args: argparse.Namespace) -> str:
    """``train.device`` for the runs: ``cuda:0`` with its index (``torch.cuda.set_device`` rejects a bare ``cuda``)."""
    return "cuda:0" if args.device == "cuda" else "cpu"


# ----------------------------------------------------------------------------- 1. CUDA tests


def cuda_test_files() -> list[Path]:
    """The test modules that hold ``pytest.mark.cuda`` tests.

    Only these are collected, so the check needs none of the packages other tests import
    (Flask, Playwright, the bundled MiniLM) on a GPU machine.
    """
    return sorted(p for p in (ROOT / "tests").rglob("test_*.py") if "pytest.mark.cuda" in p.read_text())


def run_cuda_tests(device: torch.device) -> dict[str, Any]:
    """``pytest -m cuda`` over :func:`cuda_test_files` in a subprocess; counts from its JUnit XML."""
    with tempfile.TemporaryDirectory() as tmp:
        xml = Path(tmp) / "junit.xml"
        cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:xdist", "-p", "no:cacheprovider", "-m", "cuda",
               f"--junitxml={xml}", *map(str, cuda_test_files())]
        done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
        suite = ET.parse(xml).getroot()
        suite = suite if suite.tag == "testsuite" else suite.find("testsuite")
        assert suite is not None
        counts = {k: int(suite.get(k, "0")) for k in ("tests", "failures", "errors", "skipped")}
        failed = [f"{case.get('classname')}::{case.get('name')}" for case in suite.iter("testcase")
                  if case.find("failure") is not None or case.find("error") is not None]
    counts["passed"] = counts["tests"] - counts["failures"] - counts["errors"] - counts["skipped"]
    if device.type == "cuda":
        ok = done.returncode == 0 and counts["passed"] > 0 and counts["skipped"] == 0 and not failed
    else:  # without CUDA every one of them skips; the check is that none fails
        ok = done.returncode in (0, 5) and not failed
    return {"ok": ok, **counts, "failed": failed, "returncode": done.returncode,
            "output_tail": (done.stdout + done.stderr)[-4000:]}


# ----------------------------------------------------------------------------- 2. DDP resume


def ddp_cfg(args: argparse.Namespace, world: int, workdir: str, name: str):  # type: ignore[no-untyped-def]
    """The shapes preset for the DDP runs (bf16, channels_last; SyncBatchNorm on CUDA): two epochs of ``ddp_steps // 2`` steps."""
    epoch_images = args.ddp_batch * world * (args.ddp_steps // 2)
    overrides = [f"name={name}", "train.log_every=1", f"data.num_train={epoch_images}",
                 "train.device=auto" if args.device == "cuda" else "train.device=cpu",
                 f"model.sync_bn={'true' if args.device == 'cuda' else 'false'}", *args.extra]
    return tt.make_cfg(args.ddp_backbone, args.ddp_batch, args.ddp_steps, workdir, tuple(overrides))


def resume_points(steps: int) -> dict[str, int]:
    """Where the interrupted runs stop: at the end of the first epoch and a quarter of the way through it."""
    return {"epoch_boundary": steps // 2, "mid_epoch": steps // 4}


def ddp_worker(args: argparse.Namespace) -> int:
    """One torchrun process: an uninterrupted run twice, then runs stopped and resumed at :func:`resume_points`."""
    if args.device == "cuda":
        torch.cuda.set_device(int(os.environ["LOCAL_RANK"]))
    # the trainer joins a process group itself only when WORLD_SIZE > 1; a one-process
    # torchrun must still train through DDP, so the group is made here (the trainer reuses it)
    dist.init_process_group("nccl" if args.device == "cuda" else "gloo")
    world = dist.get_world_size()
    runs: list[tuple[str, Callable[[], Any]]] = []
    for name in ("straight", "straight_again"):
        runs.append((name, lambda cfg=ddp_cfg(args, world, args.workdir, name): train(cfg)))
    for name, stop in resume_points(args.ddp_steps).items():
        cfg = ddp_cfg(args, world, args.workdir, name)
        runs.append((f"{name}_first_part", lambda cfg=cfg, stop=stop: train(cfg, stop_after=stop)))
        runs.append((f"{name}_resumed", lambda cfg=cfg: train(cfg, resume=True)))
    times, errors = {}, {}
    for label, fn in runs:
        t0 = time.perf_counter()
        try:
            fn()
        except Exception as exc:  # keep going: the other runs still tell something (every rank fails alike)
            errors[label] = f"{type(exc).__name__}: {exc}"
            traceback.print_exc()
        times[label] = time.perf_counter() - t0
    if dist.get_rank() == 0:
        result = {"world_size": world, "backend": dist.get_backend(), "steps": args.ddp_steps,
                  "steps_per_epoch": args.ddp_steps // 2, "seconds": times, "run_errors": errors,
                  "gpu": torch.cuda.get_device_name() if args.device == "cuda" else None}
        Path(args.workdir, "ddp_result.json").write_text(json.dumps(result))
    dist.barrier()
    dist.destroy_process_group()
    return 0


def max_weight_diff(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    """Largest absolute difference over every floating-point tensor of two state dicts (same keys)."""
    if a.keys() != b.keys():
        raise ValueError(f"state dicts differ in keys: {sorted(set(a) ^ set(b))[:5]}")
    diffs = [(a[k].double() - b[k].double()).abs().max().item() for k in a if a[k].is_floating_point() and a[k].numel()]
    return max(diffs, default=0.0)


def run_ddp(args: argparse.Namespace, nproc: int) -> dict[str, Any]:
    """Launch :func:`ddp_worker` with ``torchrun --standalone --nproc_per_node nproc``; compare the checkpoints.

    A resumed run passes when its weights equal the uninterrupted run's exactly where the
    two uninterrupted runs agree exactly, else within 10x of their difference.
    """
    points = resume_points(args.ddp_steps)
    with tempfile.TemporaryDirectory() as workdir:
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
               str(Path(__file__).resolve()), "--ddp-worker", "--device", args.device, "--workdir", workdir,
               "--ddp-backbone", args.ddp_backbone, "--ddp-batch", str(args.ddp_batch),
               "--ddp-steps", str(args.ddp_steps), *[f"--extra={e}" for e in args.extra]]
        env = dict(os.environ, OMP_NUM_THREADS=str(max(1, torch.get_num_threads() // nproc)))
        done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300, env=env)
        if done.returncode != 0:
            return {"ok": False, "nproc": nproc, "returncode": done.returncode,
                    "output_tail": (done.stdout + done.stderr)[-4000:]}
        result = json.loads(Path(workdir, "ddp_result.json").read_text())
        failed = {label.split("_first_part")[0].split("_resumed")[0] for label in result["run_errors"]}
        ckpt = {name: load_checkpoint(Path(workdir, name, "checkpoints", "last.pt"))
                for name in ("straight", "straight_again", *points) if name not in failed}
        info = Path(workdir, "straight", "run.json")
        run_world = json.loads(info.read_text()).get("hardware", {}).get("world_size") if info.is_file() else None
    noise = (max_weight_diff(ckpt["straight"]["method"], ckpt["straight_again"]["method"])
             if {"straight", "straight_again"} <= set(ckpt) else None)
    resumes: dict[str, dict[str, Any]] = {}
    for name, stop in points.items():
        if name in failed or noise is None:
            resumes[name] = {"ok": False, "stopped_at": stop, "max_diff": None}
            continue
        diff = max_weight_diff(ckpt["straight"]["method"], ckpt[name]["method"])
        ok = ckpt[name]["step"] == ckpt["straight"]["step"] == args.ddp_steps and (
            diff == 0.0 if noise == 0.0 else diff <= 10 * noise)
        resumes[name] = {"ok": ok, "stopped_at": stop, "max_diff": diff}
    ok = all(r["ok"] for r in resumes.values()) and result["world_size"] == run_world == nproc
    out = {"ok": ok, "nproc": nproc, **result, "run_to_run_max_diff": noise, "resume": resumes,
           "run_json_world_size": run_world}
    if result["run_errors"]:
        out["output_tail"] = (done.stdout + done.stderr)[-4000:]
    return out


# ----------------------------------------------------------------------------- 3. fp16 + GradScaler


def run_fp16(args: argparse.Namespace, workdir: str) -> dict[str, Any]:
    """A ``fp16_steps`` fp16 run of resnet10_16 (every step logged); all losses must be finite."""
    cfg = tt.make_cfg("resnet10_16", args.fp16_batch, args.fp16_steps, workdir,
                      (f"train.device={train_device(args)}", "train.precision=fp16", "train.log_every=1", "name=fp16",
                       *args.extra))
    t0 = time.perf_counter()
    run_dir = train(cfg, overwrite=True)
    seconds = time.perf_counter() - t0
    rows = list(csv.DictReader((run_dir / "metrics.csv").open()))
    losses = [float(r["loss"]) for r in rows]
    weights = load_checkpoint(run_dir / "checkpoints" / "last.pt")["method"]
    finite_w = all(bool(torch.isfinite(v).all()) for v in weights.values() if v.is_floating_point())
    ok = len(losses) == args.fp16_steps and all(math.isfinite(v) for v in losses) and finite_w
    return {"ok": ok, "steps": len(losses), "first_loss": losses[0], "last_loss": losses[-1],
            "finite_losses": sum(math.isfinite(v) for v in losses), "finite_weights": finite_w, "seconds": seconds}


# ----------------------------------------------------------------------------- 4. throughput


def _peak_reset(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def _peak_mib(device: torch.device) -> float | None:
    return torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else None


def throughput_row(args: argparse.Namespace, backbone: str, bs: int, variant: str, workdir: str):  # type: ignore[no-untyped-def]
    """(row, config) of one setting: ``--reps`` alternating limit / full runs, peak GPU memory of the full runs."""
    device = torch.device(train_device(args))
    precision, channels_last, more = VARIANTS[variant]
    cfg = tt.make_cfg(backbone, bs, args.warmup + args.steps, workdir,
                      (f"train.device={train_device(args)}", f"train.precision={precision}",
                       f"train.channels_last={str(channels_last).lower()}", *more, *args.extra))
    dataset = build_dataset(cfg, "train")
    reps = []
    for _ in range(args.reps):
        lim = tt.limit_step_times(cfg, args.warmup, args.steps, dataset)
        _peak_reset(device)
        ful = tt.full_step_times(cfg, args.warmup)
        reps.append((bs / statistics.median(w for w, _ in ful), bs / statistics.median(w for w, _ in lim), _peak_mib(device)))
    ratios = [f / li for f, li, _ in reps]
    row = {"backbone": backbone, "batch": bs, "variant": variant,
           "full_img_s": statistics.median(r[0] for r in reps), "limit_img_s": statistics.median(r[1] for r in reps),
           "ratio": statistics.median(ratios), "ratios": ratios,
           "peak_mib": max((r[2] for r in reps if r[2] is not None), default=None)}
    return row, cfg


def stage_row(args: argparse.Namespace, cfg, variant: str) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    """Median milliseconds and shares of each stage of one step (``train_throughput.stage_times``)."""
    times = tt.stage_times(cfg, args.warmup, args.steps)
    med = {name: statistics.median(t) for name, t in times.items()}
    total = sum(med.values())
    return {"backbone": cfg.model.backbone, "batch": cfg.data.batch_size, "variant": variant,
            "ms": {k: 1000 * v for k, v in med.items()}, "share": {k: v / total for k, v in med.items()},
            "step_ms": 1000 * total}


def run_throughput(args: argparse.Namespace, workdir: str) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(one row per backbone x batch x variant, one per-stage split per backbone x batch in the last variant).

    A setting that raises (e.g. out of GPU memory) becomes a row with its ``error``; the others still run.
    """
    rows, stages = [], []
    for backbone in args.backbones:
        for bs in args.batch_sizes:
            cfg = None
            for variant in args.variants:
                try:
                    row, cfg = throughput_row(args, backbone, bs, variant, workdir)
                except Exception as exc:
                    row = {"backbone": backbone, "batch": bs, "variant": variant, "error": f"{type(exc).__name__}: {exc}"}
                    traceback.print_exc()
                    print(f"  {backbone} batch {bs} {variant}: {row['error']}", flush=True)
                else:
                    print(f"  {backbone} batch {bs} {variant}: full {row['full_img_s']:.0f} / limit "
                          f"{row['limit_img_s']:.0f} img/s = {row['ratio']:.2f}", flush=True)
                rows.append(row)
                if args.device == "cuda":
                    torch.cuda.empty_cache()
            if cfg is not None and "error" not in rows[-1]:
                try:
                    stages.append(stage_row(args, cfg, args.variants[-1]))
                except Exception as exc:
                    stages.append({"backbone": backbone, "batch": bs, "variant": args.variants[-1],
                                   "error": f"{type(exc).__name__}: {exc}"})
    return rows, stages


# ----------------------------------------------------------------------------- 5. real resolutions


def jpeg_root(args: argparse.Namespace, workdir: str) -> Path:
    """The synthetic JPEG folder of this call (:mod:`jpeg_folder`), written once and shared by the sections."""
    root = Path(workdir, "jpegs")
    if not root.is_dir():
        make_jpeg_folder(root, args.jpeg_images, tuple(args.jpeg_size))
    return root


def folder_cfg(args: argparse.Namespace, backbone: str, size: int, batch: int, workdir: str, name: str,
               overrides: tuple[str, ...] = ()):  # type: ignore[no-untyped-def]
    """The library's default config on the JPEG folder at ``size`` px (``overrides`` and ``--extra`` last)."""
    return xbyol.load_config(None, [
        f"name={name}", f"out_dir={workdir}", "data.name=folder", f"data.root={jpeg_root(args, workdir)}",
        f"data.image_size={size}", f"data.batch_size={batch}", f"model.backbone={backbone}",
        f"train.steps={args.warmup + args.steps}", "train.progress=false", f"train.device={train_device(args)}",
        *overrides, *args.extra])


def _stages(cfg, warmup: int, steps: int, dataset) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    times = tt.stage_times(cfg, warmup, steps, dataset)
    med = {name: 1000 * statistics.median(t) for name, t in times.items()}
    total = sum(med.values())
    return {"ms": med, "share": {k: v / total for k, v in med.items()}, "step_ms": total}


def realres_row(args: argparse.Namespace, backbone: str, size: int, batch: int, workdir: str) -> dict[str, Any]:
    """Full step vs the bare limit (alternating ``--reps``), peak memory and the stage split at one real resolution.

    bf16 + channels_last, the library's defaults otherwise (views compiled on CUDA,
    ``data.num_workers: auto``). The stage split's ``data`` is decoding one batch in the
    main process; in the full step that work is spread over the loader's workers.
    """
    device = torch.device(train_device(args))
    cfg = folder_cfg(args, backbone, size, batch, workdir, f"realres_{backbone}_{size}",
                     ("train.precision=bf16", "train.channels_last=true"))
    dataset = build_dataset(cfg, "train")
    workers = resolve_num_workers(cfg.data.num_workers, device)
    reps = []
    for _ in range(args.reps):
        _peak_reset(device)
        lim = tt.limit_step_times(cfg, args.warmup, args.steps, dataset)
        lim_peak = _peak_mib(device)
        _peak_reset(device)
        ful = tt.full_step_times(cfg, args.warmup)
        reps.append((batch / statistics.median(w for w, _ in ful), batch / statistics.median(w for w, _ in lim),
                     _peak_mib(device), lim_peak))
    ratios = [f / li for f, li, _, _ in reps]
    stages = _stages(cfg, args.warmup, args.steps, dataset)
    full_step_ms = 1000 * batch / statistics.median(r[0] for r in reps)
    return {"decode_per_worker_share": stages["ms"]["data"] / max(workers, 1) / full_step_ms,
            "backbone": backbone, "size": size, "batch": batch, "variant": "bf16+channels_last", "workers": workers,
            "images": len(dataset), "jpeg_size": list(args.jpeg_size),
            "full_img_s": statistics.median(r[0] for r in reps), "limit_img_s": statistics.median(r[1] for r in reps),
            "ratio": statistics.median(ratios), "ratios": ratios,
            "peak_mib": max((r[2] for r in reps if r[2] is not None), default=None),
            "limit_peak_mib": max((r[3] for r in reps if r[3] is not None), default=None), "stages": stages}


def run_realres(args: argparse.Namespace, workdir: str) -> list[dict[str, Any]]:
    rows = []
    for backbone, size, batch in args.realres:
        try:
            row = realres_row(args, backbone, size, batch, workdir)
        except Exception as exc:
            row = {"backbone": backbone, "size": size, "batch": batch, "error": f"{type(exc).__name__}: {exc}"}
            traceback.print_exc()
        else:
            print(f"  {backbone} {size} px batch {batch}: full {row['full_img_s']:.0f} / limit {row['limit_img_s']:.0f} "
                  f"img/s = {row['ratio']:.2f}", flush=True)
        rows.append(row)
        if args.device == "cuda":
            torch.cuda.empty_cache()
    return rows


# ----------------------------------------------------------------------------- 6. peers on the same device


def peer_images(args: argparse.Namespace, size: int, workdir: str) -> torch.Tensor | list[str]:
    """What every library trains on: 32 px ``shapes`` images in memory, else the JPEG folder's files."""
    if size <= 32:
        ds = build_dataset(xbyol.load_config(None, ["data.name=shapes", f"data.num_train={args.peer_images}",
                                                          "data.num_test=16", f"data.image_size={size}"]), "train")
        return ds.get_batch(range(len(ds)), masks=False)["image"]  # (N, 3, S, S) uint8
    return peers.jpeg_paths(jpeg_root(args, workdir))


def xbyol_peer_row(args: argparse.Namespace, backbone: str, size: int, batch: int, workdir: str) -> dict[str, Any]:
    """xbyol's full trainer step with its defaults, SGD as the peers' (momentum 0.9), on the peers' data."""
    device = torch.device(train_device(args))
    common = ("train.optimizer=sgd", f"train.lr={peers.LR}", f"train.momentum={peers.MOMENTUM}",
              f"method.tau_base={peers.EMA}")
    if size <= 32:
        cfg = xbyol.load_config(None, [f"name=peer_xbyol_{size}", f"out_dir={workdir}", "data.name=shapes",
                                       f"data.num_train={args.peer_images}", "data.num_test=16", f"data.image_size={size}",
                                       f"data.batch_size={batch}", f"model.backbone={backbone}",
                                       f"train.steps={args.warmup + args.steps}", "train.progress=false",
                                       f"train.device={train_device(args)}", *common, *args.extra])
    else:
        cfg = folder_cfg(args, backbone, size, batch, workdir, f"peer_xbyol_{size}", common)
    _peak_reset(device)
    times = tt.full_step_times(cfg, args.warmup)
    return {"library": "xbyol", "version": xbyol.__version__, "backbone": backbone, "size": size, "batch": batch,
            "workers": resolve_num_workers(cfg.data.num_workers, device),
            "img_s": batch / statistics.median(w for w, _ in times), "step_ms": [1000 * w for w, _ in times],
            "peak_mib": _peak_mib(device)}


def run_peers(args: argparse.Namespace, workdir: str) -> dict[str, Any]:
    """xbyol, lightly and byol-pytorch on the same device and data, one setting after another.

    A peer that does not import is skipped with its reason; xbyol's rows run regardless.
    """
    device = torch.device(train_device(args))
    skipped = {peer: why for peer in peers.PEERS if (why := peers.unavailable(peer)) is not None}
    for peer, why in skipped.items():
        print(f"  {peer}: skipped: {why}", flush=True)
    rows: list[dict[str, Any]] = []
    for backbone, size, batch in args.peers:
        images = peer_images(args, size, workdir)
        runs = [("xbyol", lambda: xbyol_peer_row(args, backbone, size, batch, workdir))]
        runs += [(peer, lambda peer=peer: peers.peer_row(peer, backbone, images, size, batch, args.steps, args.warmup, device))
                 for peer in peers.PEERS if peer not in skipped]
        for name, fn in runs:
            try:
                row = fn()
            except Exception as exc:
                row = {"library": name, "backbone": backbone, "size": size, "batch": batch,
                       "error": f"{type(exc).__name__}: {exc}"}
                traceback.print_exc()
            else:
                print(f"  {name} {backbone} {size} px batch {batch}: {row['img_s']:.0f} img/s", flush=True)
            rows.append(row)
            if device.type == "cuda":
                torch.cuda.empty_cache()
    return {"skipped": skipped, "rows": rows, "vs_fastest_peer": peer_ratios(rows)}


def peer_ratios(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per setting: xbyol's images/s over the fastest peer's, against :data:`PEER_TARGETS`."""
    out = []
    for key in dict.fromkeys((r["backbone"], r["size"], r["batch"]) for r in rows):
        ok = [r for r in rows if (r["backbone"], r["size"], r["batch"]) == key and "error" not in r]
        ours = [r["img_s"] for r in ok if r["library"] == "xbyol"]
        theirs = {r["library"]: r["img_s"] for r in ok if r["library"] != "xbyol"}
        if not ours or not theirs:
            continue
        fastest = max(theirs, key=lambda k: theirs[k])
        ratio = ours[0] / theirs[fastest]
        target = PEER_TARGETS.get(key[1])
        out.append({"backbone": key[0], "size": key[1], "batch": key[2], "fastest_peer": fastest, "ratio": ratio,
                    "target": target, "met": None if target is None else ratio >= target})
    return out


# ----------------------------------------------------------------------------- 7. explainers


def run_explain(args: argparse.Namespace) -> dict[str, Any]:
    """Grad-CAM (ours and Captum's LayerGradCam) and integrated gradients on one batch on the device."""
    device = torch.device(train_device(args))
    torch.manual_seed(0)
    model = create_backbone(args.explain_backbone).eval().to(device)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(args.explain_batch, 3, args.explain_size, args.explain_size, generator=g).to(device)
    with torch.no_grad():
        target = EmbeddingSimilarityTarget(model(x.roll(1, 0)))  # (B, D) per-sample references
    ref = explain_speed.gradcam_vs_captum(model, x, target, args.explain_repeats)

    def ig() -> torch.Tensor:
        return explain(model, x, target, method="integrated_gradients", n_steps=args.ig_steps)

    ig()  # warm-up
    ig_s = statistics.median(explain_speed._time(ig, device) for _ in range(max(1, args.explain_repeats)))
    b = args.explain_batch
    rel = ref["max_abs_diff"] / max(ref["captum_max"], 1e-12)
    return {"ok": rel <= 1e-3, "backbone": args.explain_backbone, "batch": b, "size": args.explain_size,
            "captum_gradcam_maps_s": b / ref["captum_s"], "gradcam_maps_s": b / ref["ours_s"],
            "gradcam_over_captum": ref["captum_s"] / ref["ours_s"], "gradcam_max_abs_diff": ref["max_abs_diff"],
            "gradcam_rel_diff": rel, "ig_steps": args.ig_steps, "ig_maps_s": b / ig_s,
            "ig_over_captum_gradcam": ref["captum_s"] / ig_s}


# ----------------------------------------------------------------------------- report


def environment(device: torch.device) -> dict[str, Any]:
    info: dict[str, Any] = {"device": str(device), "torch": torch.__version__, "python": platform.python_version(),
                            "cpu_count": os.cpu_count(), "threads": torch.get_num_threads(),
                            "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
                            "started_utc": time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime())}
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        info.update(gpu=props.name, gpu_count=torch.cuda.device_count(), gpu_memory_gib=props.total_memory / 2**30,
                    capability=f"{props.major}.{props.minor}", cuda=torch.version.cuda,
                    cudnn=torch.backends.cudnn.version(), cudnn_benchmark=torch.backends.cudnn.benchmark,
                    tf32_matmul=torch.backends.cuda.matmul.allow_tf32, tf32_cudnn=torch.backends.cudnn.allow_tf32)
    return info


def targets(res: dict[str, Any]) -> dict[str, Any]:
    """The issue's speed targets, from the throughput rows (None where the rows are missing)."""
    rows = [r for r in res.get("throughput") or [] if "error" not in r]
    r18 = [r["ratio"] for r in rows if r["backbone"] == "resnet18_cifar"]
    by = {(r["backbone"], r["batch"], r["variant"]): r["full_img_s"] for r in rows}
    bf16_faster = [by[k[:2] + ("bf16",)] > by[k] for k in by if k[2] == "fp32" and k[:2] + ("bf16",) in by]
    cl = [r["ratio"] for r in rows if r["backbone"] == "resnet18_cifar" and r["variant"] == "bf16+channels_last"]
    r50 = [r["ratio"] for r in res.get("realres") or [] if "error" not in r and r["backbone"] == "resnet50"]
    peer = {f"{p['size']}px": p["met"] for p in (res.get("peers") or {}).get("vs_fastest_peer", [])}
    return {"resnet18_full_over_limit_min": min(r18) if r18 else None,
            "resnet18_ratio_ok": all(r >= RATIO_TARGET for r in r18) if r18 else None,
            "resnet18_bf16_cl_ratio_ok": all(r >= RATIO_TARGET for r in cl) if cl else None,
            "resnet50_224_ratio_ok": all(r >= RATIO_TARGET for r in r50) if r50 else None,
            "peers_met": peer or None,
            "bf16_faster_than_fp32_everywhere": all(bf16_faster) if bf16_faster else None}


def _f(v: Any, fmt: str = ".1f") -> str:
    return "n/a" if v is None else format(v, fmt) if isinstance(v, float) else str(v)


def markdown(res: dict[str, Any]) -> str:
    env = res["environment"]
    out = [f"## GPU check: {env.get('gpu', env['device'])}", "",
           f"`{env['command']}`; torch {env['torch']}, CUDA {env.get('cuda', 'n/a')}, cuDNN {env.get('cudnn', 'n/a')}, "
           f"started {env['started_utc']} UTC, {res.get('duration_s', 0):.0f} s in all.", ""]
    out += ["| check | result | detail |", "|---|---|---|"]
    if "tests" in res:
        t = res["tests"]
        out.append(f"| CUDA tests (`pytest -m cuda`) | {'PASS' if t['ok'] else 'FAIL'} | {t['passed']} passed, "
                   f"{t['failures'] + t['errors']} failed, {t['skipped']} skipped{'; ' + ', '.join(t['failed']) if t['failed'] else ''} |")
    for d in res.get("ddp", []):
        if "backend" in d:
            for where, r in d["resume"].items():
                out.append(f"| DDP {d['nproc']} process(es), {d['backend']}: resume at step {r['stopped_at']} of "
                           f"{d['steps']} ({where.replace('_', ' ')}, {d['steps_per_epoch']} steps/epoch) | "
                           f"{'PASS' if r['ok'] else 'FAIL'} | resumed vs uninterrupted max abs weight diff "
                           f"{_f(r['max_diff'], '.3g')}; uninterrupted run to run {_f(d['run_to_run_max_diff'], '.3g')} |")
            for label, err in d["run_errors"].items():
                out.append(f"| DDP {d['nproc']} process(es): run `{label}` | ERROR | {err[:200]} |")
        else:
            out.append(f"| DDP {d['nproc']} process(es) | FAIL | torchrun exit code {d['returncode']} |")
    if "fp16" in res:
        f = res["fp16"]
        out.append(f"| fp16 + GradScaler, {f['steps']} steps | {'PASS' if f['ok'] else 'FAIL'} | {f['finite_losses']} finite "
                   f"losses, {f['first_loss']:.4f} -> {f['last_loss']:.4f} |")
    if "explain" in res:
        e = res["explain"]
        out.append(f"| Grad-CAM = Captum LayerGradCam | {'PASS' if e['ok'] else 'FAIL'} | max abs diff "
                   f"{e['gradcam_max_abs_diff']:.2g} ({e['gradcam_rel_diff']:.2g} of the map's max) |")
    for name, err in res.get("errors", {}).items():
        out.append(f"| section `{name}` | ERROR | {err.strip().splitlines()[-1][:200]} |")
    for name, why in res.get("skipped_sections", {}).items():
        out.append(f"| section `{name}` | SKIPPED | {why} |")
    if res.get("throughput"):
        out += ["", "| backbone | batch | precision | full step (img/s) | limit (img/s) | **full / limit** | "
                "per repetition | peak GPU memory (MiB) |", "|---|---|---|---|---|---|---|---|"]
        for r in res["throughput"]:
            if "error" in r:
                out.append(f"| {r['backbone']} | {r['batch']} | {r['variant']} | ERROR: {r['error'][:150]} | | | | |")
                continue
            out.append(f"| {r['backbone']} | {r['batch']} | {r['variant']} | {r['full_img_s']:.1f} | {r['limit_img_s']:.1f} | "
                       f"**{r['ratio']:.2f}** | {', '.join(f'{x:.2f}' for x in r['ratios'])} | {_f(r['peak_mib'], '.0f')} |")
    if res.get("stages"):
        names = tt.STAGES
        out += ["", "Time per stage of one step (device synchronised between stages; median ms, share of the sum):", "",
                "| backbone | batch | precision | " + " | ".join(names) + " | sum (ms) |",
                "|---|---|---|" + "---|" * (len(names) + 1)]
        for s in res["stages"]:
            if "error" in s:
                out.append(f"| {s['backbone']} | {s['batch']} | {s['variant']} | ERROR: {s['error'][:150]} |")
                continue
            cells = " | ".join(f"{s['ms'][n]:.1f} ({100 * s['share'][n]:.0f}%)" for n in names)
            out.append(f"| {s['backbone']} | {s['batch']} | {s['variant']} | {cells} | {s['step_ms']:.1f} |")
    if res.get("realres"):
        names = tt.STAGES
        out += ["", "Real resolutions from a JPEG folder (bf16 + channels_last, library defaults otherwise):", "",
                "| backbone | size | batch | workers | full step (img/s) | limit (img/s) | **full / limit** | per repetition "
                "| peak GPU memory, full / limit (MiB) | decode of a batch in one process / workers / full step |",
                "|---|---|---|---|---|---|---|---|---|---|"]
        for r in res["realres"]:
            if "error" in r:
                out.append(f"| {r['backbone']} | {r['size']} | {r['batch']} | ERROR: {r['error'][:150]} | | | | | | |")
                continue
            out.append(f"| {r['backbone']} | {r['size']} | {r['batch']} | {r['workers']} | {r['full_img_s']:.1f} | "
                       f"{r['limit_img_s']:.1f} | **{r['ratio']:.2f}** | {', '.join(f'{x:.2f}' for x in r['ratios'])} | "
                       f"{_f(r['peak_mib'], '.0f')} / {_f(r['limit_peak_mib'], '.0f')} | {100 * r['decode_per_worker_share']:.1f}% |")
        out += ["", "Time per stage of one real-resolution step (synchronised; `data` = decoding the batch in the main "
                "process):", "", "| backbone | size | " + " | ".join(names) + " | sum (ms) |",
                "|---|---|" + "---|" * (len(names) + 1)]
        for r in res["realres"]:
            if "error" not in r:
                st = r["stages"]
                cells = " | ".join(f"{st['ms'][n]:.1f} ({100 * st['share'][n]:.0f}%)" for n in names)
                out.append(f"| {r['backbone']} | {r['size']} | {cells} | {st['step_ms']:.1f} |")
    if "peers" in res:
        pr = res["peers"]
        out += ["", "Peers on the same device (same backbone, 4096/256 heads, SGD, EMA 0.99; each at its own defaults "
                "otherwise; images/s from the median step):", "",
                "| library | backbone | size | batch | loader workers | images/s | peak GPU memory (MiB) |",
                "|---|---|---|---|---|---|---|"]
        for r in pr["rows"]:
            if "error" in r:
                out.append(f"| {r['library']} | {r['backbone']} | {r['size']} | {r['batch']} | ERROR: {r['error'][:150]} | | |")
                continue
            out.append(f"| {r['library']} {r['version']} | {r['backbone']} | {r['size']} | {r['batch']} | {r['workers']} | "
                       f"{r['img_s']:.1f} | {_f(r['peak_mib'], '.0f')} |")
        for v in pr["vs_fastest_peer"]:
            out.append(f"\nxbyol / fastest peer ({v['fastest_peer']}) at {v['size']} px: **{v['ratio']:.2f}** "
                       f"(target {_f(v['target'])}: {'met' if v['met'] else 'missed' if v['met'] is False else 'n/a'})")
        for peer, why in pr["skipped"].items():
            out.append(f"\n{peer}: skipped: {why}")
    if "explain" in res:
        e = res["explain"]
        out += ["", f"Explainers, {e['backbone']}, batch {e['batch']}, {e['size']} px (maps/s):", "",
                "| Captum LayerGradCam | Grad-CAM (ours) | ours / Captum | integrated gradients "
                f"({e['ig_steps']} steps) | IG / Captum Grad-CAM |", "|---|---|---|---|---|",
                f"| {e['captum_gradcam_maps_s']:.1f} | {e['gradcam_maps_s']:.1f} | {e['gradcam_over_captum']:.2f} | "
                f"{e['ig_maps_s']:.1f} | {e['ig_over_captum_gradcam']:.3f} |"]
    tg = res.get("targets", {})
    out += ["", f"Targets (not part of the exit code): resnet18_cifar full / limit >= {RATIO_TARGET}: "
            f"{_f(tg.get('resnet18_ratio_ok'))} (lowest {_f(tg.get('resnet18_full_over_limit_min'), '.2f')}; "
            f"bf16 + channels_last: {_f(tg.get('resnet18_bf16_cl_ratio_ok'))}); resnet50 at 224 px: "
            f"{_f(tg.get('resnet50_224_ratio_ok'))}; xbyol / fastest peer >= {PEER_TARGETS}: {_f(tg.get('peers_met'))}; "
            f"bf16 faster than fp32 in every setting: {_f(tg.get('bf16_faster_than_fp32_everywhere'))}.",
            "", f"All checks: {'PASS' if res['ok'] else 'FAIL'}"]
    return "\n".join(out)


# ----------------------------------------------------------------------------- main


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cuda", choices=["cuda", "cpu"])
    p.add_argument("--tiny", action="store_true", help="tiny sizes (seconds on a CPU): the test's setting")
    p.add_argument("--sections", nargs="+", choices=SECTIONS, default=list(SECTIONS))
    p.add_argument("--json", default=None, help="JSON output path (default: $OUT/gpu_check.json when OUT is set)")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    p.add_argument("--backbones", nargs="+", default=None)
    p.add_argument("--batch-sizes", nargs="+", type=int, default=None)
    p.add_argument("--variants", nargs="+", choices=list(VARIANTS), default=list(VARIANTS))
    for name in ("warmup", "steps", "reps", "ddp-batch", "ddp-steps", "fp16-steps", "fp16-batch", "explain-batch",
                 "explain-size", "ig-steps", "explain-repeats"):
        p.add_argument(f"--{name}", type=int, default=None)
    p.add_argument("--ddp-procs", nargs="+", type=int, default=None,
                   help="torchrun process counts (default: 1, and 2 on a machine with 2 GPUs)")
    p.add_argument("--ddp-backbone", default=None)
    p.add_argument("--explain-backbone", default=None)
    p.add_argument("--extra", action="append", default=[], help="a config override for every run (repeatable)")
    p.add_argument("--budget-s", type=float, default=540.0,
                   help="no section starts after this many seconds (default: leaves a 600 s call time to finish one)")
    p.add_argument("--ddp-worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--workdir", default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    defaults = TINY if args.tiny else FULL
    for key, value in defaults.items():
        if getattr(args, key, None) is None:
            setattr(args, key, value)
    if args.tiny and not args.ddp_worker:
        args.extra = [*TINY_HEADS, *args.extra]
    if args.device == "cuda" and not torch.cuda.is_available():
        p.error("--device cuda: CUDA is not available on this machine (use --device cpu --tiny for the CPU run)")
    return args


def _write(res: dict[str, Any], path: str | None) -> None:
    if path:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text(json.dumps(res, indent=2))


def _section(res: dict[str, Any], name: str, fn: Callable[[], Any], path: str | None, deadline: float) -> None:
    """Run one section, unless the time budget is spent; the JSON is rewritten after each one.

    So a call stopped at its time limit still leaves every finished section's figures in the JSON.
    """
    if time.perf_counter() > deadline:
        res.setdefault("skipped_sections", {})[name] = "the time budget (--budget-s) was spent before it started"
        print(f"# {name}: skipped, time budget spent", flush=True)
        return
    t0 = time.perf_counter()
    print(f"# {name} ...", flush=True)
    try:
        res[name] = fn()
    except Exception:  # one failed section must not cost the others their (scarce GPU) run
        res.setdefault("errors", {})[name] = traceback.format_exc()
        print(res["errors"][name], file=sys.stderr, flush=True)
    res.setdefault("section_seconds", {})[name] = time.perf_counter() - t0
    _write(res, path)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.ddp_worker:
        return ddp_worker(args)
    device = torch.device(train_device(args))
    t_start = time.perf_counter()
    deadline = t_start + args.budget_s
    path = args.json or (str(Path(os.environ["OUT"]) / "gpu_check.json") if os.environ.get("OUT") else None)
    res: dict[str, Any] = {"environment": environment(device), "tiny": args.tiny}
    with tempfile.TemporaryDirectory() as workdir:
        def throughput() -> list[dict[str, Any]]:
            rows, res["stages"] = run_throughput(args, workdir)
            return rows

        def ddp() -> list[dict[str, Any]]:
            nprocs = args.ddp_procs or [1] + ([2] if device.type == "cuda" and torch.cuda.device_count() >= 2 else [])
            return [run_ddp(args, n) for n in nprocs]

        # in order of what the issue needs most, so a call cut short keeps the most
        runs = {"tests": lambda: run_cuda_tests(device), "throughput": throughput,
                "realres": lambda: run_realres(args, workdir), "peers": lambda: run_peers(args, workdir), "ddp": ddp,
                "fp16": lambda: run_fp16(args, workdir), "explain": lambda: run_explain(args)}
        for name, fn in runs.items():
            if name in args.sections and not (name == "fp16" and device.type != "cuda"):  # fp16 autocast needs CUDA
                _section(res, name, fn, path, deadline)
    res["duration_s"] = time.perf_counter() - t_start
    res["targets"] = targets(res)
    checks = [res["tests"]["ok"]] if "tests" in res else []
    checks += [d["ok"] for d in res.get("ddp", [])]
    checks += [res[k]["ok"] for k in ("fp16", "explain") if k in res]
    checks += ["error" not in r for r in res.get("throughput", []) + res.get("stages", []) + res.get("realres", [])]
    checks += ["error" not in r for r in res.get("peers", {}).get("rows", [])]
    res["ok"] = all(checks) and not res.get("errors") and not res.get("skipped_sections")
    _write(res, path)
    print()
    print(markdown(res))
    if path:
        print(f"\nJSON: {path}")
    return 0 if res["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
