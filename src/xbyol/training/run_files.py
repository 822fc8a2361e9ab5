"""The files a training run keeps in its run directory beside the checkpoints.

- ``metrics.csv`` (:class:`MetricsLog`): one row per logged step.
- ``run.json`` (:class:`RunInfo`): version, hardware, and one segment per training session.
- ``tensorboard/`` (:func:`tensorboard_writer`): the same scalars, when tensorboard is installed.
"""

from __future__ import annotations

import csv
import io
import json
import platform
import sys
import time
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from xbyol import __version__
from xbyol.config import Config
from xbyol.data.io import atomic_write
from xbyol.rundir import RunDir
from xbyol.training import distributed as dist_utils


class MetricsLog:
    """``metrics.csv`` writer whose header grows when new keys appear (rewrites the file then).

    Args:
        path: the CSV file.
        resume_step: keep the rows of an existing file up to this step (a resume); ``None``
            starts the file afresh.
    """

    def __init__(self, path: Path, resume_step: int | None = None) -> None:
        self.path = path
        self.rows: list[dict[str, Any]] = []
        self.keys: list[str] = []
        if resume_step is not None and path.is_file():
            with path.open() as f:
                reader = csv.DictReader(f)
                self.keys = list(reader.fieldnames or [])
                self.rows = [row for row in reader if int(row["step"]) <= resume_step]
        self._rewrite()

    def _rewrite(self) -> None:
        text = io.StringIO(newline="")
        w = csv.DictWriter(text, fieldnames=self.keys)
        w.writeheader()
        for row in self.rows:
            w.writerow({k: row.get(k, "") for k in self.keys})
        atomic_write(self.path, text.getvalue())

    def log(self, row: dict[str, Any]) -> None:
        row = {k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in row.items()}
        self.rows.append(row)
        new = [k for k in row if k not in self.keys]
        if new:
            self.keys += new
            self._rewrite()
            return
        with self.path.open("a", newline="") as f:
            csv.DictWriter(f, fieldnames=self.keys).writerow({k: row.get(k, "") for k in self.keys})


def tensorboard_writer(run_dir: Path):  # type: ignore[no-untyped-def]  # SummaryWriter is optional
    """A TensorBoard ``SummaryWriter`` on ``RUN_DIR/tensorboard`` when tensorboard is installed, else None."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:  # tensorboard is optional
        return None
    return SummaryWriter(log_dir=str(RunDir(run_dir).tensorboard))


def hardware_info(device: torch.device) -> dict[str, Any]:
    """Where the run trains: device, versions, CPU, threads, processes (and the GPU's name)."""
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


class RunInfo:
    """``run.json``: version, hardware, and one segment per training session (start, end, time, outcome).

    Args:
        run_dir: the run directory.
        cfg: the run's config (method, dataset and backbone are recorded).
        device: the training device.
        total: the run's total optimiser steps.
        start_step: the step this session starts from (0: a new run, the file starts afresh).
        changes: ``(key, old, new)`` config changes accepted on this resume.
        resolved: the concrete values of the ``auto`` settings.
    """

    def __init__(self, run_dir: Path, cfg: Config, device: torch.device, total: int, start_step: int,
                 changes: list, resolved: dict[str, Any]) -> None:
        self.path = RunDir(run_dir).run_info
        self.t0 = time.perf_counter()
        info: dict[str, Any] = {}
        if start_step > 0 and self.path.is_file():
            try:
                info = json.loads(self.path.read_text())
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
                "resolved": resolved,
                "finished": False,
            }
        )
        info.setdefault("started", time.strftime("%Y-%m-%d %H:%M:%S"))
        segment: dict[str, Any] = {"started": time.strftime("%Y-%m-%d %H:%M:%S"), "start_step": start_step}
        if changes:
            segment["changed_keys"] = {k: {"from": old, "to": new} for k, old, new in changes}
        info.setdefault("segments", []).append(segment)
        self.info = info
        self._write()

    def close(self, step: int, status: str) -> None:
        """End this session's segment at ``step`` with ``status`` (finished, stopped, interrupted, ...)."""
        seg = self.info["segments"][-1]
        seg.update({"end_step": step, "duration_s": time.perf_counter() - self.t0, "status": status})
        self.info["duration_s"] = sum(s.get("duration_s", 0.0) for s in self.info["segments"])
        self.info["num_segments"] = len(self.info["segments"])
        self.info["finished"] = status == "finished"
        self._write()

    def _write(self) -> None:
        atomic_write(self.path, json.dumps(self.info, indent=2))


class UnreadableFiles:
    """Training images a file-backed dataset replaced by a readable neighbour: ``RUN_DIR/unreadable.txt``.

    The trainer passes every batch's requested indices and the ``"index"`` the dataset
    returned for them (:func:`xbyol.training.sampler.step_batches`); where the two differ,
    the requested file could not be decoded. :meth:`report` writes the sorted list of such
    files and prints one line, e.g. ``folder: 3 of 17 files unreadable, replaced by their
    neighbours; listed in runs/x/unreadable.txt``; nothing when every file was readable.
    Under DDP every rank records what its share read and rank 0 reports the union.

    Args:
        run_dir: the run directory.
        dataset: the training dataset; ``dataset.paths[i]`` names file ``i``.
    """

    def __init__(self, run_dir: Path, dataset: Any) -> None:
        self.path, self.dataset = RunDir(run_dir).unreadable, dataset
        self.found: set[int] = set()
        self.reported_at: int | None = None

    def add(self, requested: list[int], returned: torch.Tensor) -> None:
        """Record the requested indices whose sample came from another index (``returned``: ``[B]``)."""
        self.found.update(i for i, j in zip(requested, returned.tolist()) if i != j)

    def report(self, step: int, gather: bool = False) -> None:
        """At ``step`` (an epoch's end, the session's end): write the list and print the line (rank 0), unless
        nothing is unreadable or this step was reported already (an epoch end that ends the run prints once).
        ``gather``: first take the union over the ranks, where every rank reaches this step (a collective)."""
        if gather:
            self.found = dist_utils.union_over_ranks(self.found)
        if not dist_utils.is_main() or not self.found or self.reported_at == step:
            return
        self.reported_at = step
        atomic_write(self.path, "".join(f"{self.dataset.paths[i]}\n" for i in sorted(self.found)))
        name = getattr(self.dataset, "dataset_name", "dataset")
        tqdm.write(f"{name}: {len(self.found)} of {len(self.dataset)} files unreadable, replaced by their neighbours; "
                   f"listed in {self.path}", file=sys.stdout)  # above a progress bar, where one is drawn
        sys.stdout.flush()
