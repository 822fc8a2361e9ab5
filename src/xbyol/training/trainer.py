"""The one training loop for every method: optimisation, precision, distribution,
checkpointing and logging live here; methods only turn a batch into a loss."""

from __future__ import annotations

import contextlib
import dataclasses
import math
import os
import random
import signal
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from xbyol import config as config_mod
from xbyol.config import Config, ConfigError
from xbyol.data import build_dataset
from xbyol.data.base import resolve_num_workers
from xbyol.data.folder import ImageFilesDataset
from xbyol.errors import CheckpointError
from xbyol.methods import check_method_name, create_method
from xbyol.rundir import RunDir
from xbyol.training import distributed as dist_utils
from xbyol.training.callbacks import Callback, StepInfo
from xbyol.training.checkpoint import (
    LAST,
    first_bad_tensor,
    load_latest_checkpoint,
    optimizer_tensors,
    remove_stale_temporaries,
    rng_state,
    save_checkpoint,
    set_rng_state,
)
from xbyol.training.host_memory import apply_run_setting
from xbyol.training.init_from import initialise_from
from xbyol.training.interrupt import StopRequest
from xbyol.training.monitors import monitor_stats
from xbyol.training.optim import build_optimizer
from xbyol.training.precision import resolve_channels_last, resolve_precision
from xbyol.training.progress import progress_display
from xbyol.training.resume import check_resume_changes
from xbyol.training.run_files import MetricsLog, RunInfo, UnreadableFiles, tensorboard_writer
from xbyol.training.sampler import step_batches, steps_per_epoch
from xbyol.training.schedules import lr_at, tau_at
from xbyol.training.view_schedule import EarlyViewSize


class TrainingDiverged(RuntimeError):
    """The loss or a weight became NaN/Inf (or exploded); the last good checkpoint is kept."""


class TrainingInterrupted(KeyboardInterrupt):
    """SIGINT/SIGTERM stopped the run; ``str(e)`` says where and how to continue.

    Attributes:
        step: the last completed optimiser step (1-based count of steps done).
        signum: the signal that asked for the stop.
        saved: whether a checkpoint of ``step`` was written (False after a second Ctrl-C).
        exit_code: 128 + signum, the shell's convention (130 for SIGINT, 143 for SIGTERM).
    """

    def __init__(self, message: str, step: int, signum: int, saved: bool) -> None:
        super().__init__(message)
        self.step, self.signum, self.saved = step, signum, saved
        self.exit_code = 128 + signum


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        if torch.cuda.is_available():
            local = int(os.environ.get("LOCAL_RANK", "0"))
            return torch.device("cuda", local)
        return torch.device("cpu")
    dev = torch.device(name)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"train.device: {name!r} requested but CUDA is not available")
    if dev.type == "cuda" and dev.index is None:  # torch.cuda.set_device needs an index
        dev = torch.device("cuda", int(os.environ.get("LOCAL_RANK", torch.cuda.current_device())))
    return dev


class _StepModule(nn.Module):
    """Routes DDP's forward to ``method.training_step`` so gradients are all-reduced."""

    def __init__(self, method: nn.Module) -> None:
        super().__init__()
        self.method = method

    def forward(self, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        return self.method.training_step(batch)  # type: ignore[operator]  # a Method


def _to_device(batch: dict[str, Any], device: torch.device) -> dict[str, Any]:
    return {k: (v.to(device, non_blocking=True) if isinstance(v, torch.Tensor) else v) for k, v in batch.items()}


def _autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager:
    if precision == "fp32":
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    if device.type == "cpu" and precision == "fp16":
        raise ValueError("train.precision: fp16 autocast needs CUDA; use bf16 on CPU")
    return torch.autocast(device_type=device.type, dtype=dtype)


def train(
    cfg: Config,
    resume: bool = False,
    overwrite: bool = False,
    stop_after: int | None = None,
    extend: bool = False,
    callbacks: Sequence[Callback] = (),
) -> Path:
    """Train ``cfg.method.name`` on ``cfg.data.name``; returns the run directory.

    Args:
        cfg: the run's config (validated; saved to ``RUN_DIR/config.yaml``).
        resume: continue from the newest loadable checkpoint in ``RUN_DIR/checkpoints``
            (``last.pt``, else ``prev.pt``); the run continues exactly: same data order,
            RNG streams, optimiser state and schedules, from any step.
        overwrite: allow training into an existing run directory from scratch.
        stop_after: stop (with a checkpoint) once this global step is reached, as if
            interrupted; the schedules still span the full run, so a later ``resume``
            continues exactly.
        extend: with ``resume``, accept config keys that differ from the checkpoint's
            and change the run's maths (e.g. ``train.steps``); they are printed and
            recorded in ``run.json``. Without it such differences are refused.
        callbacks: :class:`~xbyol.training.callbacks.Callback` hooks called at every step.

    Raises:
        TrainingDiverged: the loss or a weight became NaN/Inf or exceeded
            ``train.max_abs_weight`` (the last good checkpoint is kept).
        TrainingInterrupted: SIGINT/SIGTERM (a checkpoint of the last step is saved).
        ConfigError, CheckpointError, FileExistsError: bad input, before any step runs.
        RunInUseError: another process writes into the run directory.
    """
    trainer = Trainer(cfg, resume=resume, overwrite=overwrite, extend=extend, callbacks=callbacks)
    with trainer.paths.lock(create=True) if trainer.main else contextlib.nullcontext():  # one writer per run
        return trainer.run(stop_after)


def resume_run(run_dir: str | Path, overrides: list[str] | None = None, extend: bool = False, stop_after: int | None = None) -> Path:
    """Continue the run in ``run_dir`` from its newest checkpoint, from any working directory.

    The run's saved config is read from ``run_dir`` and the run directory is ``run_dir``
    itself, whatever ``out_dir`` the config holds; ``overrides`` are checked as in
    :func:`train` with ``extend``.
    """
    run_dir = Path(run_dir)
    saved = RunDir(run_dir).read_config()
    cfg = config_mod.from_dict(config_mod.to_dict(saved), overrides or [])
    cfg = dataclasses.replace(cfg, out_dir=str(run_dir.parent), name=run_dir.name)
    return train(cfg, resume=True, stop_after=stop_after, extend=extend)


class Trainer:
    """One training run in visible phases: set up, restore, step, log, check, checkpoint."""

    def __init__(self, cfg: Config, resume: bool = False, overwrite: bool = False, extend: bool = False,
                 callbacks: Sequence[Callback] = ()) -> None:
        self.cfg, t = cfg, cfg.train
        check_method_name(cfg.method.name)
        self.device = resolve_device(t.device)
        self.distributed = dist_utils.init_from_env(self.device)
        self.rank, self.world = dist_utils.rank(), dist_utils.world_size()
        self.main = self.rank == 0
        if self.device.type == "cuda":
            torch.cuda.set_device(self.device)
        self.paths = RunDir(cfg.run_dir)
        self.run_dir = self.paths.root
        self.ckpt_dir = self.paths.checkpoints
        self.ckpt_path = self.ckpt_dir / LAST
        self.resume = resume
        if self.main and not resume and not overwrite and self.ckpt_path.exists():
            raise FileExistsError(
                f"run directory {self.run_dir} already holds a checkpoint; pass --resume to continue it, "
                "--overwrite to start again, or choose another name"
            )
        ckpt = None
        if resume:
            if not self.ckpt_dir.is_dir():
                raise CheckpointError(f"cannot resume: {self.ckpt_dir} does not exist (no checkpoint was written)")
            # on the CPU: the RNG states must stay CPU tensors; load_state_dict moves the weights
            self.restored_from, ckpt = load_latest_checkpoint(self.ckpt_dir, map_location="cpu")
        self.changes = check_resume_changes(ckpt["config"], config_mod.to_dict(cfg), extend) if ckpt else []

        torch.manual_seed(t.seed)
        np.random.seed(t.seed)
        random.seed(t.seed)
        if self.main and cfg.data.root:
            print(f"opening {cfg.data.name} data at {cfg.data.root} ...", flush=True)
        self.dataset = build_dataset(cfg, "train")
        self.method = create_method(cfg, self.dataset)
        if t.init_from and ckpt is None:  # on resume the checkpoint already holds the fine-tuned weights
            copied = initialise_from(self.method, t.init_from)
            if self.main:
                print(f"initialised {len(copied)} encoder tensors from {t.init_from}", flush=True)
        self.method = self.method.to(self.device)
        self.precision = resolve_precision(t.precision, self.device)
        self.channels_last = resolve_channels_last(t.channels_last, self.method.backbone)
        self.concat_views: bool | None = getattr(self.method, "concat_views", None)  # the method resolves its "auto"
        self.num_workers = resolve_num_workers(
            cfg.data.num_workers, self.device, dist_utils.local_world_size(), self.dataset.reads_files
        )
        self.retain_freed_memory = apply_run_setting(self.device, t.retain_freed_memory)
        if self.channels_last:
            self.method = self.method.to(memory_format=torch.channels_last)  # type: ignore[call-overload]  # not in torch's stubs
        bs = cfg.data.batch_size
        self.steps_per_epoch = steps_per_epoch(len(self.dataset), bs, self.world)
        if self.steps_per_epoch == 0:
            raise ConfigError(
                f"data.batch_size={bs} is larger than the {len(self.dataset)} training images per process; lower it"
            )
        self.total = t.steps if t.steps is not None else t.epochs * self.steps_per_epoch
        if self.total <= 0:
            raise ConfigError("train.steps/train.epochs give zero optimiser steps")
        self.warmup = t.warmup_steps if t.warmup_steps is not None else int(0.1 * self.total)
        self.base_lr = t.lr * bs * self.world / 256 if t.optimizer in ("lars", "sgd") else t.lr
        self.optimizer = build_optimizer(self.method, t, self.base_lr)
        self.ckpt_every = t.ckpt_every or self.steps_per_epoch
        # Host reads of device values (loss finiteness, the DDP stop flag) happen every step
        # on CPU, where they are free, but only at log cadence on CUDA, where each read
        # would stall the device queue.
        self.defer_host_reads = self.device.type == "cuda"

        self.step = 0
        self.saved_step: int | None = None
        if ckpt is not None:
            self._restore(ckpt)
        self.step_module = self._wrap_distributed()
        self.callbacks = [*callbacks, progress_display(t.progress, f"train {cfg.method.name}")] if self.main else list(callbacks)
        if cfg.aug.early_size is not None:  # before the others: they see the step's views already resized
            self.callbacks.insert(0, EarlyViewSize(self.method, cfg.aug, cfg.aug.early_size, cfg.aug.early_fraction))
        self.scaler = torch.amp.GradScaler("cuda") if (self.precision == "fp16" and self.device.type == "cuda") else None

    # ------------------------------------------------------------------------- set-up

    def _restore(self, ckpt: dict[str, Any]) -> None:
        step = int(ckpt["step"])
        if step > self.total:
            raise ConfigError(
                f"train.steps/train.epochs give {self.total} steps, but {self.restored_from} is already at step {step}"
            )
        try:
            self.method.load_state_dict(ckpt["method"])
        except RuntimeError as e:
            changed = ", ".join(f"{k} ({old!r} in the checkpoint, {new!r} now)" for k, old, new in self.changes)
            why = f"these keys differ from the saved run: {changed}" if changed else str(e).splitlines()[-1].strip()
            raise CheckpointError(f"{self.restored_from} does not fit the model built from the config: {why}") from None
        try:
            self.optimizer.load_state_dict(ckpt["optimizer"])
        except ValueError as e:
            raise CheckpointError(f"{self.restored_from}: its optimiser state does not fit the config ({e})") from None
        set_rng_state(ckpt["rng"])
        self.step = self.saved_step = step

    def _wrap_distributed(self) -> nn.Module:
        module: nn.Module = _StepModule(self.method)
        if not self.distributed:
            return module
        if self.cfg.model.sync_bn and self.device.type == "cuda":
            module = nn.SyncBatchNorm.convert_sync_batchnorm(module)
        elif self.cfg.model.sync_bn and self.main:
            import warnings

            warnings.warn("model.sync_bn: SyncBatchNorm needs CUDA devices; using per-process BatchNorm on CPU", stacklevel=2)
        return nn.parallel.DistributedDataParallel(
            module,
            device_ids=[self.device.index] if self.device.type == "cuda" else None,
            find_unused_parameters=getattr(self.method, "ddp_find_unused_parameters", False),
        )

    def _prepare_run_dir(self) -> MetricsLog | None:
        if not self.main:
            return None
        self.run_dir.mkdir(parents=True, exist_ok=True)
        if not self.resume or self.changes:
            self.paths.write_config(self._config_to_save())
        removed = remove_stale_temporaries(self.ckpt_dir) if self.ckpt_dir.is_dir() else []
        if removed:
            print(f"removed {len(removed)} partial checkpoint file(s) left by an interrupted write", flush=True)
        return MetricsLog(self.paths.metrics, resume_step=self.step if self.resume else None)

    def _config_to_save(self) -> Config:
        """The config with the run's own ``out_dir``/``name`` as first saved (a resume may run elsewhere)."""
        path = self.paths.config
        if self.resume and path.is_file():
            saved = config_mod.load(path)
            return dataclasses.replace(self.cfg, out_dir=saved.out_dir, name=saved.name)
        return self.cfg

    def resolved(self) -> dict[str, Any]:
        """The concrete values the ``auto`` settings took on this device (stored in run.json)."""
        return {
            "precision": self.precision,
            "channels_last": self.channels_last,
            "concat_views": self.concat_views,
            "retain_freed_memory": self.retain_freed_memory,
            "num_workers": self.num_workers,
        }

    def describe(self) -> list[str]:
        """What the run found and will do, printed before the first step."""
        cfg, t, ds = self.cfg, self.cfg.train, self.dataset
        start = f"resuming from step {self.step}/{self.total} ({self.restored_from.name})" if self.resume else "new run"
        lines = [
            f"run directory: {self.run_dir} ({start})",
            f"data: {cfg.data.name}, train split {len(ds)} images, {len(ds.class_names)} classes"
            f"; batch {cfg.data.batch_size} x {self.world} process(es), {self.num_workers} loader worker(s)",
            f"schedule: {self.total} steps = {self.total / self.steps_per_epoch:.2f} epochs of {self.steps_per_epoch} steps"
            f"; {t.optimizer} lr {self.base_lr:.3g}, warm-up {self.warmup} steps",
            f"model: {cfg.method.name} on {cfg.model.backbone}; device {self.device} ({torch.get_num_threads()} threads)"
            f", precision {self.precision}, memory format {'channels_last' if self.channels_last else 'NCHW'}"
            f", views {'concatenated' if self.concat_views else 'separate'}"
            + (", freed host memory kept in the process" if self.retain_freed_memory else ""),
            f"checkpoints: every {self.ckpt_every} steps"
            + (f" and every {t.ckpt_minutes:g} min" if t.ckpt_minutes else "")
            + f", to {self.ckpt_path} (the one before kept as prev.pt)",
        ]
        lines += [f"changed on resume (--extend): {k}: {old!r} -> {new!r}" for k, old, new in self.changes]
        return lines

    # ------------------------------------------------------------------------- the loop

    def run(self, stop_after: int | None = None) -> Path:
        t = self.cfg.train
        prev_det, prev_warn = torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled()
        if t.deterministic:
            torch.use_deterministic_algorithms(True)
            os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        log = self._prepare_run_dir()
        tb = tensorboard_writer(self.run_dir) if self.main else None
        if self.main:
            print("\n".join(self.describe()), flush=True)
        segment = RunInfo(self.run_dir, self.cfg, self.device, self.total, self.step, self.changes, self.resolved()) if self.main else None
        unreadable = UnreadableFiles(self.run_dir, self.dataset) if isinstance(self.dataset, ImageFilesDataset) else None
        end = self.total if stop_after is None else min(stop_after, self.total)
        status = "failed"
        for cb in self.callbacks:
            cb.on_train_start(self.step, self.total)
        try:
            with StopRequest(announce=self.main) as stop:
                status = self._loop(end, stop, log, tb, unreadable)
            return self.run_dir
        except KeyboardInterrupt as e:
            status = "interrupted"
            if isinstance(e, TrainingInterrupted):
                raise
            raise self._interrupted(signal.SIGINT, saved=False) from None
        except TrainingDiverged:
            status = "diverged"
            raise
        finally:
            if tb is not None:
                tb.close()
            if segment is not None:
                segment.close(self.step, status)
            if unreadable is not None:
                unreadable.report(self.step)
            for cb in self.callbacks:
                cb.on_train_end(self.step, status)
            torch.use_deterministic_algorithms(prev_det, warn_only=prev_warn)

    def _loop(self, end: int, stop: StopRequest, log: MetricsLog | None, tb: Any, unreadable: UnreadableFiles | None) -> str:
        t = self.cfg.train
        self.method.train()
        t_last, imgs_since = time.perf_counter(), 0
        t_saved = time.monotonic()
        first_bad_loss = torch.zeros((), dtype=torch.long, device=self.device)
        for indices, batch in step_batches(self.dataset, self.cfg, self.step, end, self.rank, self.world,
                                           num_workers=self.num_workers, pin_memory=self.device.type == "cuda"):
            if unreadable is not None:
                unreadable.add(indices, batch["index"])
            out, lr = self._step(batch, first_bad_loss)
            extra = self.method.after_optimizer_step(tau_at(self.step, self.total, self.cfg.method.tau_base))
            self.step += 1
            step = self.step
            images = batch["image"].shape[0] * self.world
            for cb in self.callbacks:
                cb.on_step_end(step, StepInfo(self.total, lr, images, out, extra))
            imgs_since += images
            at_log = step % t.log_every == 0 or step == self.total or step == 1
            due = step < end and (
                step % self.ckpt_every == 0 or (t.ckpt_minutes is not None and time.monotonic() - t_saved >= 60 * t.ckpt_minutes)
            )
            if self.defer_host_reads and (at_log or due or step == end):
                self._check_loss(first_bad_loss)
            if at_log or due:
                self._check_weights(step)
            if self.main and at_log:
                now = time.perf_counter()
                ips = imgs_since / max(now - t_last, 1e-9)
                t_last, imgs_since = now, 0
                self._log(step, lr, out, extra, ips, log, tb)
            if unreadable is not None and (step % self.steps_per_epoch == 0 or step == end):
                unreadable.report(step, gather=True)
            if due:
                self._save()
                t_saved = time.monotonic()
            if step < end and self._stop_requested(stop, step):
                if self.saved_step != step:
                    self._check_weights(step)
                    self._save()
                raise self._interrupted(stop.signum or signal.SIGINT, saved=True)
        self._check_weights(self.step)
        self._save()
        return "finished" if self.step >= self.total else "stopped"

    def _step(self, batch: dict[str, Any], first_bad_loss: torch.Tensor) -> tuple[dict[str, torch.Tensor], float]:
        """One optimiser step on ``batch``; returns the method's outputs and the lr used."""
        t = self.cfg.train
        batch = _to_device(batch, self.device)
        if self.channels_last:
            batch["image"] = batch["image"].contiguous(memory_format=torch.channels_last)
        lr = lr_at(self.step, self.total, self.base_lr, self.warmup)
        for group in self.optimizer.param_groups:
            group["lr"] = lr * group.get("lr_scale", 1.0)
        with _autocast(self.device, self.precision):
            out = self.step_module(batch)
        loss = out["loss"]
        finite = torch.isfinite(loss.detach())
        if self.defer_host_reads:
            first_bad_loss.copy_(torch.where(~finite & (first_bad_loss == 0), self.step + 1, first_bad_loss))
        elif not bool(finite):
            raise self._diverged(f"the loss became {loss.item()} at step {self.step + 1}")
        self.optimizer.zero_grad(set_to_none=True)
        if self.scaler is not None:
            self.scaler.scale(loss).backward()
            self.scaler.unscale_(self.optimizer)
        else:
            loss.backward()
        if t.grad_clip is not None:
            torch.nn.utils.clip_grad_norm_(self.method.parameters(), t.grad_clip)
        if self.scaler is not None:
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            self.optimizer.step()
        return out, lr

    def _log(self, step: int, lr: float, out: dict[str, torch.Tensor], extra: dict[str, float], ips: float, log: MetricsLog | None, tb: Any) -> None:
        t = self.cfg.train
        row: dict[str, Any] = {"step": step, "epoch": (step - 1) // self.steps_per_epoch, "lr": lr}
        row.update({k: float(v.detach()) for k, v in out.items() if not k.startswith("embed/") and v.numel() == 1})
        row.update(extra)
        row["images_per_s"] = ips
        if step % t.monitor_every == 0 or step == 1 or step == self.total:
            row.update(monitor_stats(out))
        assert log is not None
        log.log(row)
        if tb is not None:
            for k, v in row.items():
                if k != "step" and isinstance(v, (int, float)):
                    tb.add_scalar(k, v, step)
        for cb in self.callbacks:
            cb.on_log(step, row)

    # ------------------------------------------------------------------------- health and stops

    def _check_loss(self, first_bad_loss: torch.Tensor) -> None:
        bad = int(first_bad_loss)
        if bad:
            raise self._diverged(f"the loss became non-finite at step {bad}")

    def _check_weights(self, step: int) -> None:
        """Stop as diverged when a parameter or buffer is NaN/Inf or above ``train.max_abs_weight``."""
        limit = self.cfg.train.max_abs_weight
        named = list(self.method.named_parameters()) + list(self.method.named_buffers())
        bad = first_bad_tensor(named, max_abs=limit)
        if bad is not None:
            name, peak = bad
            what = "non-finite values" if not math.isfinite(peak) else f"|value| {peak:.3g} > train.max_abs_weight={limit:g}"
            raise self._diverged(f"{name} has {what} at step {step}")

    def _diverged(self, what: str) -> TrainingDiverged:
        kept = (
            f"the last good checkpoint ({self.ckpt_path}, step {self.saved_step}) is kept"
            if self.saved_step is not None
            else "no checkpoint had been written yet"
        )
        return TrainingDiverged(f"{what}; stopped, {kept}. Try a lower train.lr, train.grad_clip or fp32 precision.")

    def _stop_requested(self, stop: StopRequest, step: int) -> bool:
        """Whether to stop now; under DDP every rank agrees, so all stop at the same step."""
        wanted = stop.signum is not None
        if not self.distributed:
            return wanted
        if self.defer_host_reads and step % self.cfg.train.log_every != 0:
            return False
        flag = torch.tensor([stop.signum or 0], device=self.device)
        torch.distributed.all_reduce(flag, op=torch.distributed.ReduceOp.MAX)
        if int(flag) and stop.signum is None:
            stop.signum = int(flag)
        return bool(int(flag))

    def _interrupted(self, signum: int, saved: bool) -> TrainingInterrupted:
        name = signal.Signals(signum).name
        if saved:
            msg = (
                f"interrupted ({name}) at step {self.step}/{self.total}; checkpoint saved to {self.ckpt_path}; "
                f"continue with: xbyol train --resume {self.run_dir}"
            )
        else:
            kept = f"the checkpoint of step {self.saved_step} ({self.ckpt_path}) is kept" if self.saved_step is not None else "no checkpoint was written"
            msg = (
                f"aborted ({name}) at step {self.step}/{self.total} without saving; {kept}; "
                f"continue with: xbyol train --resume {self.run_dir}"
            )
        return TrainingInterrupted(msg, self.step, signum, saved)

    # ------------------------------------------------------------------------- checkpoints

    def _save(self) -> None:
        """Checkpoint the current step (rank 0), after refusing non-finite optimiser state."""
        if not self.main:
            return
        optim_state = self.optimizer.state_dict()
        bad = first_bad_tensor(optimizer_tensors(optim_state))
        if bad is not None:
            raise self._diverged(f"{bad[0]} has non-finite values at step {self.step}")
        save_checkpoint(
            self.ckpt_path,
            {
                "method": self.method.state_dict(),
                "optimizer": optim_state,
                "step": self.step,
                "total_steps": self.total,
                "rng": rng_state(),
                "config": config_mod.to_dict(self.cfg),
                "extra": self.method.extra_state(),
            },
            keep_previous=True,
        )
        self.saved_step = self.step
