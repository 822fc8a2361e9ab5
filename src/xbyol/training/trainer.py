"""The one training loop for every method: optimisation, precision, distribution,
checkpointing and logging live here; methods only turn a batch into a loss."""

from __future__ import annotations

import contextlib
import csv
import math
import os
import platform
import time
from pathlib import Path
from typing import Any, Iterator

import torch
from torch import nn

from xbyol import config as config_mod
from xbyol.config import Config
from xbyol.data import create_dataset
from xbyol.data.base import SampleDataset, collate
from xbyol.training import distributed as dist_utils
from xbyol.training.checkpoint import load_checkpoint, rng_state, save_checkpoint, set_rng_state
from xbyol.training.optim import build_optimizer
from xbyol.training.schedules import lr_at


class TrainingDiverged(RuntimeError):
    """The loss became NaN or Inf; the last good checkpoint is kept."""


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        if torch.cuda.is_available():
            local = int(os.environ.get("LOCAL_RANK", "0"))
            return torch.device("cuda", local)
        return torch.device("cpu")
    dev = torch.device(name)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"train.device: {name!r} requested but CUDA is not available")
    return dev


def dataset_kwargs(cfg: Config) -> dict[str, Any]:
    d = cfg.data
    return dict(
        root=d.root,
        image_size=d.image_size,
        num_train=d.num_train,
        num_test=d.num_test,
        seed=d.seed,
        strict=d.strict,
        captions_file=d.captions_file,
        test_root=d.test_root,
        test_captions_file=d.test_captions_file,
    )


def build_dataset(cfg: Config, split: str) -> SampleDataset:
    return create_dataset(cfg.data.name, split, **dataset_kwargs(cfg))


def steps_per_epoch(n: int, batch_size: int, world: int) -> int:
    per_rank = n // world
    return per_rank // batch_size


def batch_indices(n: int, batch_size: int, seed: int, epoch: int, rank: int, world: int) -> list[list[int]]:
    """Deterministic shuffled batches of one epoch for one rank (drop_last).

    The order depends only on ``(seed, epoch)``, so a resume mid-epoch skips the batches
    already seen and continues with exactly the same data.
    """
    g = torch.Generator().manual_seed(seed * 100_003 + epoch)
    perm = torch.randperm(n, generator=g)
    perm = perm[: (n // world) * world][rank::world]
    nb = len(perm) // batch_size
    return [perm[i * batch_size : (i + 1) * batch_size].tolist() for i in range(nb)]


class MetricsLog:
    """``metrics.csv`` writer whose header grows when new keys appear (rewrites the file then)."""

    def __init__(self, path: Path, resume_step: int | None = None) -> None:
        self.path = path
        self.rows: list[dict[str, Any]] = []
        self.keys: list[str] = []
        if path.is_file():
            with path.open() as f:
                reader = csv.DictReader(f)
                self.keys = list(reader.fieldnames or [])
                for row in reader:
                    if resume_step is not None and int(row["step"]) > resume_step:
                        continue
                    self.rows.append(row)
            self._rewrite()

    def _rewrite(self) -> None:
        tmp = self.path.with_suffix(".csv.tmp")
        with tmp.open("w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=self.keys)
            w.writeheader()
            for row in self.rows:
                w.writerow({k: row.get(k, "") for k in self.keys})
        os.replace(tmp, self.path)

    def log(self, row: dict[str, Any]) -> None:
        row = {k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in row.items()}
        self.rows.append(row)
        new = [k for k in row if k not in self.keys]
        if new or not self.path.is_file():
            self.keys += new
            self._rewrite()
            return
        with self.path.open("a", newline="") as f:
            csv.DictWriter(f, fieldnames=self.keys).writerow({k: row.get(k, "") for k in self.keys})


def tensorboard_writer(run_dir: Path):
    """A TensorBoard ``SummaryWriter`` on ``RUN_DIR/tensorboard`` when tensorboard is installed, else None."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:  # tensorboard is optional
        return None
    return SummaryWriter(log_dir=str(run_dir / "tensorboard"))


class _StepModule(nn.Module):
    """Routes DDP's forward to ``method.training_step`` so gradients are all-reduced."""

    def __init__(self, method: nn.Module) -> None:
        super().__init__()
        self.method = method

    def forward(self, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        return self.method.training_step(batch)


def _to_device(batch: dict[str, Any], device: torch.device) -> dict[str, Any]:
    return {k: (v.to(device, non_blocking=True) if isinstance(v, torch.Tensor) else v) for k, v in batch.items()}


def _autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager:
    if precision == "fp32":
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    if device.type == "cpu" and precision == "fp16":
        raise ValueError("train.precision: fp16 autocast needs CUDA; use bf16 on CPU")
    return torch.autocast(device_type=device.type, dtype=dtype)


def _monitor_stats(out: dict[str, torch.Tensor]) -> dict[str, float]:
    from xbyol.eval.monitors import effective_rank, embedding_std

    stats: dict[str, float] = {}
    for k, v in out.items():
        if k.startswith("embed/"):
            name = k.split("/", 1)[1]
            z = v.detach().float()
            stats[f"{name}_std"] = float(embedding_std(z))
            stats[f"{name}_rank"] = float(effective_rank(z))
            stats[f"{name}_std_healthy"] = 1.0 / math.sqrt(z.shape[1])
    return stats


def hardware_info(device: torch.device) -> dict[str, Any]:
    info: dict[str, Any] = {
        "device": str(device),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "cpu": platform.processor() or platform.machine(),
        "threads": torch.get_num_threads(),
        "world_size": dist_utils.world_size(),
    }
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    return info


def train(cfg: Config, resume: bool = False, overwrite: bool = False, stop_after: int | None = None) -> Path:
    """Train ``cfg.method.name`` on ``cfg.data.name``; returns the run directory.

    Args:
        cfg: the run's config (validated; saved to ``RUN_DIR/config.yaml``).
        resume: continue from ``RUN_DIR/checkpoints/last.pt``; the run continues exactly
            (same data order, RNG streams, optimiser state and schedules).
        overwrite: allow training into an existing run directory from scratch.
        stop_after: stop (with a checkpoint) once this global step is reached, as if
            interrupted; the schedules still span the full run, so a later ``resume``
            continues exactly.

    Raises:
        TrainingDiverged: the loss became NaN/Inf (the last good checkpoint is kept).
    """
    from xbyol.methods import create_method

    t_cfg = cfg.train
    device = resolve_device(t_cfg.device)
    distributed = dist_utils.init_from_env(device)
    rank, world = dist_utils.rank(), dist_utils.world_size()
    main = rank == 0
    if device.type == "cuda":
        torch.cuda.set_device(device)

    run_dir = cfg.run_dir
    ckpt_path = run_dir / "checkpoints" / "last.pt"
    if main and not resume and not overwrite and ckpt_path.exists():
        raise FileExistsError(
            f"run directory {run_dir} already holds a checkpoint; pass --resume to continue it, "
            "--overwrite to start again, or choose another name"
        )
    if resume and not ckpt_path.exists():
        raise FileNotFoundError(f"cannot resume: {ckpt_path} does not exist")
    if t_cfg.deterministic:
        torch.use_deterministic_algorithms(True)
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")

    torch.manual_seed(t_cfg.seed)
    import numpy as np
    import random

    np.random.seed(t_cfg.seed)
    random.seed(t_cfg.seed)

    dataset = build_dataset(cfg, "train")
    method = create_method(cfg, dataset).to(device)
    if t_cfg.channels_last:
        method = method.to(memory_format=torch.channels_last)
    bs = cfg.data.batch_size
    spe = steps_per_epoch(len(dataset), bs, world)
    if spe == 0:
        raise ValueError(
            f"data.batch_size={bs} is larger than the {len(dataset)} training images per process; lower it"
        )
    total = t_cfg.steps if t_cfg.steps is not None else t_cfg.epochs * spe
    if total <= 0:
        raise ValueError("train.steps/train.epochs give zero optimiser steps")
    warmup = t_cfg.warmup_steps if t_cfg.warmup_steps is not None else int(0.1 * total)
    base_lr = t_cfg.lr * bs * world / 256 if t_cfg.optimizer in ("lars", "sgd") else t_cfg.lr
    optimizer = build_optimizer(method, t_cfg, base_lr)

    step = 0
    if resume:
        ckpt = load_checkpoint(ckpt_path, map_location=device)
        method.load_state_dict(ckpt["method"])
        optimizer.load_state_dict(ckpt["optimizer"])
        step = int(ckpt["step"])
        set_rng_state(ckpt["rng"])

    step_module: nn.Module = _StepModule(method)
    if distributed:
        if cfg.model.sync_bn and device.type == "cuda":
            step_module = nn.SyncBatchNorm.convert_sync_batchnorm(step_module)
        elif cfg.model.sync_bn and main:
            import warnings

            warnings.warn("model.sync_bn: SyncBatchNorm needs CUDA devices; using per-process BatchNorm on CPU")
        step_module = nn.parallel.DistributedDataParallel(
            step_module,
            device_ids=[device.index] if device.type == "cuda" else None,
            find_unused_parameters=getattr(method, "ddp_find_unused_parameters", False),
        )
    scaler = torch.amp.GradScaler("cuda") if (t_cfg.precision == "fp16" and device.type == "cuda") else None

    log: MetricsLog | None = None
    tb = None
    if main:
        run_dir.mkdir(parents=True, exist_ok=True)
        config_mod.save(cfg, run_dir / "config.yaml")
        log = MetricsLog(run_dir / "metrics.csv", resume_step=step if resume else None)
        tb = tensorboard_writer(run_dir)
        if not resume and log.rows:
            log.rows, log.keys = [], []
            log._rewrite()
        _write_run_info(run_dir, cfg, device, total)

    def save(at_step: int) -> None:
        if not main:
            return
        save_checkpoint(
            ckpt_path,
            {
                "method": method.state_dict(),
                "optimizer": optimizer.state_dict(),
                "step": at_step,
                "total_steps": total,
                "rng": rng_state(),
                "config": config_mod.to_dict(cfg),
                "extra": method.extra_state(),
            },
        )

    bar = None
    if main and t_cfg.progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=total, initial=step, desc=f"train {cfg.method.name}", unit="step", dynamic_ncols=True)

    method.train()
    t_last, imgs_since = time.perf_counter(), 0
    t_start = time.perf_counter()
    end = total if stop_after is None else min(stop_after, total)
    for batch in _batches(dataset, cfg, start_step=step, total=end, rank=rank, world=world):
        batch = _to_device(batch, device)
        if t_cfg.channels_last:
            batch["image"] = batch["image"].contiguous(memory_format=torch.channels_last)
        lr = lr_at(step, total, base_lr, warmup)
        for group in optimizer.param_groups:
            group["lr"] = lr
        with _autocast(device, t_cfg.precision):
            out = step_module(batch)
        loss = out["loss"]
        if not torch.isfinite(loss.detach()).item():
            if bar:
                bar.close()
            raise TrainingDiverged(
                f"loss became {loss.item()} at step {step}; stopped. The last good checkpoint "
                f"({ckpt_path if ckpt_path.exists() else 'none written yet'}) is kept. "
                "Try a lower train.lr, train.grad_clip or fp32 precision."
            )
        optimizer.zero_grad(set_to_none=True)
        if scaler is not None:
            scaler.scale(loss).backward()
            scaler.unscale_(optimizer)
        else:
            loss.backward()
        if t_cfg.grad_clip is not None:
            torch.nn.utils.clip_grad_norm_(method.parameters(), t_cfg.grad_clip)
        if scaler is not None:
            scaler.step(optimizer)
            scaler.update()
        else:
            optimizer.step()
        extra = method.after_optimizer_step(step, total)
        step += 1
        imgs_since += batch["image"].shape[0] * world

        if main and (step % t_cfg.log_every == 0 or step == total or step == 1):
            now = time.perf_counter()
            ips = imgs_since / max(now - t_last, 1e-9)
            t_last, imgs_since = now, 0
            row: dict[str, Any] = {"step": step, "epoch": (step - 1) // spe, "lr": lr}
            row.update({k: float(v.detach()) for k, v in out.items() if not k.startswith("embed/") and v.numel() == 1})
            row.update(extra)
            row["images_per_s"] = ips
            if step % t_cfg.monitor_every == 0 or step == 1 or step == total:
                row.update(_monitor_stats(out))
            assert log is not None
            log.log(row)
            if tb is not None:
                for k, v in row.items():
                    if k != "step" and isinstance(v, (int, float)):
                        tb.add_scalar(k, v, step)
            if bar:
                bar.set_postfix(loss=f"{row['loss']:.4f}", lr=f"{lr:.3g}", tau=f"{extra.get('tau', float('nan')):.4f}", img_s=f"{ips:.0f}")
        if bar:
            bar.update(1)
        if t_cfg.ckpt_every and step % t_cfg.ckpt_every == 0 and step < total:
            save(step)
    if bar:
        bar.close()
    if tb is not None:
        tb.close()
    save(step)
    if main:
        _write_run_info(run_dir, cfg, device, total, duration_s=time.perf_counter() - t_start, finished=step >= total)
    dist_utils.barrier()
    return run_dir


def _batches(
    dataset: SampleDataset, cfg: Config, start_step: int, total: int, rank: int, world: int
) -> Iterator[dict[str, Any]]:
    """Yield collated batches from global step ``start_step`` up to ``total``."""
    bs = cfg.data.batch_size
    spe = steps_per_epoch(len(dataset), bs, world)
    step = start_step
    while step < total:
        epoch, offset = divmod(step, spe)
        batches = batch_indices(len(dataset), bs, cfg.train.seed, epoch, rank, world)[offset:]
        batches = batches[: total - step]
        loader = torch.utils.data.DataLoader(
            dataset,
            batch_sampler=batches,
            collate_fn=collate,
            num_workers=cfg.data.num_workers,
            persistent_workers=False,
        )
        for b in loader:
            yield b
            step += 1


def _write_run_info(run_dir: Path, cfg: Config, device: torch.device, total: int, duration_s: float | None = None, finished: bool = False) -> None:
    import json

    from xbyol import __version__

    path = run_dir / "run.json"
    info: dict[str, Any] = {}
    if path.is_file():
        try:
            info = json.loads(path.read_text())
        except json.JSONDecodeError:
            info = {}
    info.update(
        {
            "xbyol_version": __version__,
            "method": cfg.method.name,
            "dataset": cfg.data.name,
            "backbone": cfg.model.backbone,
            "total_steps": total,
            "hardware": hardware_info(device),
            "finished": finished,
        }
    )
    info.setdefault("started", time.strftime("%Y-%m-%d %H:%M:%S"))
    if duration_s is not None:
        info["duration_s"] = info.get("duration_s", 0.0) + duration_s
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(info, indent=2))
    os.replace(tmp, path)
