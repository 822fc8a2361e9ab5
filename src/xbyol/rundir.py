"""The run directory: the one place that knows its file names, reads and writes them
atomically, locks it against a second writer, and types the loaded run read through it
(:class:`Run`, whose batched encode loop is :func:`extract_features`).

Layout of ``RUN_DIR`` (every name below is spelled only here)::

    config.yaml                 resolved config                    xbyol train
    checkpoints/last.pt         newest checkpoint (prev.pt before)  xbyol train
    metrics.csv, run.json       per-step log, run record            xbyol train
    tensorboard/                TensorBoard events                  xbyol train (train.tensorboard)
    unreadable.txt              image files replaced by neighbours  xbyol train (file-backed data)
    concepts.json, concept_embeddings.pt   concept bank             xbyol train (xbyol runs)
    eval.json, probe.pt         scores, linear probe                xbyol eval
    explain_eval.json           explanation metrics                 xbyol explain-eval
    dissect/<layer>/            summary.json, units.csv, iou.csv    xbyol dissect
    explain/                    heatmaps (default output)           xbyol explain
    maps/                       embedding maps (default output)     xbyol map
    maximize/                   activation maximisation (default)   xbyol maximize
    report.html                 the report (default output)         xbyol report
    .xbyol.lock                 pid of the process writing the run  every writer

Readers (explain, concepts, serve) never write here: a post-hoc concept map they need is
cached under the xbyol cache directory, keyed by the checkpoint's SHA-256
(:meth:`RunDir.cache_dir`).
"""

from __future__ import annotations

import fcntl
import json
import os
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, BinaryIO, Callable, Protocol

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from xbyol.augment import preprocess
from xbyol.config import Config, dump, load
from xbyol.data.base import SampleDataset, collate
from xbyol.data.io import atomic_write, sha256_file
from xbyol.errors import XbyolError

__all__ = ["Run", "RunDir", "RunInUseError", "cache_root", "extract_features"]

CONFIG = "config.yaml"
CHECKPOINTS = "checkpoints"
LAST = "last.pt"
PREVIOUS = "prev.pt"
METRICS = "metrics.csv"
RUN_INFO = "run.json"
TENSORBOARD = "tensorboard"
EVAL = "eval.json"
PROBE = "probe.pt"
EXPLAIN_EVAL = "explain_eval.json"
DISSECT = "dissect"
DISSECT_SUMMARY = "summary.json"  # in dissect/<layer>/, beside DISSECT_UNITS and DISSECT_IOU
DISSECT_UNITS = "units.csv"
DISSECT_IOU = "iou.csv"
MAXIMIZE = "maximize"
UNREADABLE = "unreadable.txt"
EXPLAIN = "explain"
MAPS = "maps"
REPORT = "report.html"
CONCEPTS_JSON = "concepts.json"
CONCEPTS_PT = "concept_embeddings.pt"
LOCK = ".xbyol.lock"
# post-hoc concept maps, derived from a checkpoint: in RunDir.cache_dir(), never in the run directory
CONCEPT_MAP = "concept_map.pt"
CONCEPT_MAP_BACKBONE = "concept_map_backbone.pt"

# run directories this process holds the lock of -> (lock file descriptor, nesting depth)
_HELD: dict[Path, list[int]] = {}


class RunInUseError(XbyolError):
    """Another live process holds the run directory's lock."""


def cache_root() -> Path:
    """The xbyol cache directory: ``$XBYOL_CACHE_DIR``, else ``~/.cache/xbyol``."""
    env = os.environ.get("XBYOL_CACHE_DIR")
    return Path(env) if env else Path.home() / ".cache" / "xbyol"


class RunDir:
    """Paths, atomic reads and writes, and the writers' lock of one run directory.

    Args:
        root: the run directory (it need not exist yet: ``xbyol train`` creates it).
    """

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self.config = self.root / CONFIG
        self.checkpoints = self.root / CHECKPOINTS
        self.metrics = self.root / METRICS
        self.run_info = self.root / RUN_INFO
        self.tensorboard = self.root / TENSORBOARD
        self.eval = self.root / EVAL
        self.probe = self.root / PROBE
        self.explain_eval = self.root / EXPLAIN_EVAL
        self.dissect = self.root / DISSECT
        self.explain = self.root / EXPLAIN
        self.maps = self.root / MAPS
        self.maximize = self.root / MAXIMIZE
        self.report = self.root / REPORT
        self.unreadable = self.root / UNREADABLE
        self.lock_file = self.root / LOCK

    def __repr__(self) -> str:
        return f"RunDir({str(self.root)!r})"

    def checkpoint(self, name: str = "last") -> Path:
        """``checkpoints/<name>.pt`` (``"last"`` or ``"prev"``)."""
        return self.checkpoints / f"{name}.pt"

    def require(self) -> "RunDir":
        """This run directory, after checking it exists and holds ``config.yaml``."""
        if not self.root.is_dir():
            raise FileNotFoundError(f"run directory {self.root} does not exist")
        if not self.config.is_file():
            raise FileNotFoundError(f"{self.config} is missing: is {self.root} a run directory written by `xbyol train`?")
        return self

    # ------------------------------------------------------------------ reads and writes
    def read_config(self) -> Config:
        """The resolved config saved in the run directory."""
        return load(self.require().config)

    def write_config(self, cfg: Config) -> Path:
        return self.write(self.config, dump(cfg))

    @staticmethod
    def write(path: Path, content: str | bytes | Callable[[BinaryIO], object]) -> Path:
        """Replace ``path`` atomically (temporary file, fsync, rename; see :func:`xbyol.data.io.atomic_write`)."""
        return atomic_write(path, content)

    @staticmethod
    def write_json(path: Path, data: Any) -> Path:
        return atomic_write(path, json.dumps(data, indent=2))

    @staticmethod
    def read_json(path: Path) -> dict[str, Any] | None:
        """A JSON object from ``path``; ``None`` when the file does not exist."""
        if not path.is_file():
            return None
        try:
            data = json.loads(path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise ValueError(f"{path} is not valid JSON: {e}") from None
        if not isinstance(data, dict):
            raise ValueError(f"{path}: expected a JSON object at the top level, got {type(data).__name__}")
        return data

    # ------------------------------------------------------------------ derived artefacts
    def checkpoint_sha256(self, name: str = "last") -> str:
        """SHA-256 (hex) of ``checkpoints/<name>.pt``: the key of everything derived from it."""
        return sha256_file(self.checkpoint(name))

    def cache_dir(self, name: str = "last") -> Path:
        """Where artefacts derived from checkpoint ``name`` are cached: outside the run directory,
        ``<cache>/runs/<sha256[:16]>``, so reading a run never writes into it."""
        return cache_root() / "runs" / self.checkpoint_sha256(name)[:16]

    # ------------------------------------------------------------------ the writers' lock
    @contextmanager
    def lock(self, create: bool = False) -> Iterator[None]:
        """Hold the run directory's advisory lock (``flock`` on ``.xbyol.lock``, which records our pid).

        A second process gets :class:`RunInUseError` naming the holder's pid. A lock file
        left by a process that died (its ``flock`` went with it) is taken over with a
        one-line warning. Nested ``lock()`` calls in one process share the lock. ``create``
        makes the directory first (a new run); otherwise a missing one is an error.

        Raises:
            RunInUseError: another live process holds the lock.
        """
        key = self.root.resolve()
        if key in _HELD:
            _HELD[key][1] += 1
            try:
                yield
            finally:
                _HELD[key][1] -= 1
            return
        if create:
            self.root.mkdir(parents=True, exist_ok=True)
        elif not self.root.is_dir():
            raise FileNotFoundError(f"run directory {self.root} does not exist")
        fd = os.open(self.lock_file, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_pid(fd)
            os.close(fd)
            raise RunInUseError(
                f"{self.root} is in use by another xbyol process (pid {holder or 'unknown'}, lock file {self.lock_file}); "
                "wait for it to finish or stop it"
            ) from None
        previous = _read_pid(fd)
        if previous is not None:
            state = "no longer running" if not _alive(previous) else "running but no longer holding it"
            print(f"xbyol: warning: taking over the stale lock of {self.root} left by pid {previous} ({state})",
                  file=sys.stderr)
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        os.fsync(fd)
        _HELD[key] = [fd, 1]
        try:
            yield
        finally:
            del _HELD[key]
            os.ftruncate(fd, 0)  # a clean release leaves no pid behind: only a crash leaves a stale one
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)


def _read_pid(fd: int) -> int | None:
    text = os.pread(fd, 64, 0).decode(errors="replace").strip()
    return int(text) if text.isdigit() else None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@torch.no_grad()
def extract_features(
    encode_fn: Callable[[torch.Tensor], torch.Tensor],
    dataset: Dataset,
    batch_size: int = 256,
    device: str | torch.device = "cpu",
    progress: bool = False,
    targets: Callable[[dict[str, Any]], torch.Tensor] | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Encode every image of ``dataset`` in order, without gradients.

    Each uint8 batch is moved to ``device`` and passed through
    :func:`xbyol.augment.preprocess` before ``encode_fn``. When ``encode_fn`` is an
    ``nn.Module`` it runs in eval mode (BatchNorm running statistics) and its mode is
    restored afterwards; for a plain function that is the caller's job.

    Args:
        encode_fn: preprocessed float images ``[B, 3, H, W]`` -> features ``[B, D]``.
        dataset: a dataset of Sample dicts (``image`` uint8 ``[3, H, W]``, ``label`` int).
        batch_size: images per forward pass.
        device: where ``encode_fn`` runs.
        progress: show a tqdm progress bar.
        targets: collated batch -> per-sample targets ``[B, ...]`` read in the same pass
            (e.g. a :class:`~xbyol.concepts.vocabulary.ConceptLabeler`); default the labels.

    Returns:
        ``(features, targets)``: float32 ``[N, D]`` on the CPU, not L2-normalised (the
        consumers normalise as they need), and the targets ``[N, ...]`` (default int64
        labels ``[N]``) in dataset order.
    """
    if len(dataset) == 0:  # type: ignore[arg-type]
        raise ValueError("extract_features: the dataset is empty")
    if batch_size < 1:
        raise ValueError(f"extract_features: batch_size must be >= 1, got {batch_size}")
    device = torch.device(device)
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, collate_fn=collate, num_workers=0)
    was_training = isinstance(encode_fn, nn.Module) and encode_fn.training
    if isinstance(encode_fn, nn.Module):
        encode_fn.eval()
    feats: list[torch.Tensor] = []
    labels: list[torch.Tensor] = []
    try:
        batches = loader
        if progress:
            batches = tqdm(loader, desc="features", unit="batch", leave=False, disable=None)  # off where stderr is no terminal
        for batch in batches:
            x = preprocess(batch["image"].to(device, non_blocking=True))  # (B, 3, H, W)
            f = encode_fn(x)  # (B, D)
            if not isinstance(f, torch.Tensor) or f.dim() != 2 or f.shape[0] != x.shape[0]:
                shape = list(f.shape) if isinstance(f, torch.Tensor) else type(f).__name__
                raise ValueError(f"extract_features: encode_fn must return [B, D] features for B={x.shape[0]}, got {shape}")
            feats.append(f.detach().float().cpu())
            labels.append(targets(batch).cpu() if targets is not None else torch.as_tensor(batch["label"]).long().cpu())
    finally:
        if was_training:
            encode_fn.train()  # type: ignore[attr-defined]  # was_training: an nn.Module
    return torch.cat(feats), torch.cat(labels)  # (N, D), (N,)


class Run(Protocol):
    """A trained run as every layer above training reads it (:class:`xbyol.run.LoadedRun` implements it).

    ``cfg``: the resolved config; ``device``: where the model lives; ``method``: the trained
    method in eval mode; ``backbone``: its online encoder (``forward(x) -> [B, D]``,
    ``forward_features``); ``step``: the optimiser step of the loaded checkpoint;
    ``checkpoint``: its name (``"last"`` or ``"prev"``); ``paths``: the run directory;
    ``dataset(split)``: a split, built once; ``encode(split, indices, fn)``: features
    ``[N, D]`` (float32, CPU) of the un-augmented images ``indices`` (default all) of a split
    through ``fn`` (preprocessed images ``[B, 3, H, W]`` -> features; default the backbone);
    ``encode_images(images)``: representations ``[B, D]`` of uint8 images ``[B, 3, H, W]``.
    """

    @property
    def cfg(self) -> Config: ...
    @property
    def device(self) -> torch.device: ...
    @property
    def method(self) -> nn.Module: ...
    @property
    def backbone(self) -> nn.Module: ...
    @property
    def step(self) -> int: ...
    @property
    def checkpoint(self) -> str: ...
    @property
    def paths(self) -> RunDir: ...
    def dataset(self, split: str) -> SampleDataset: ...
    def encode(self, split: str, indices: Sequence[int] | None = None,
               fn: Callable[[torch.Tensor], torch.Tensor] | None = None, progress: bool = False) -> torch.Tensor: ...
    def encode_images(self, images: torch.Tensor) -> torch.Tensor: ...
    def random_init_backbone(self, seed: int = 0) -> nn.Module: ...
