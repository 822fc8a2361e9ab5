"""Checkpoints: a dict of state_dicts plus run variables, written atomically and loaded
with ``torch.load(weights_only=True)`` (no pickled code is ever executed).

A run keeps two checkpoints in ``RUN_DIR/checkpoints/``: ``last.pt`` (the newest) and
``prev.pt`` (the one before it), so one bad or interrupted write never leaves a run with
nothing. A write goes to ``.last.pt.tmp<pid>`` first, is flushed to disk, and only then
takes the place of ``last.pt``; a kill at any moment leaves at least one whole checkpoint.
"""

from __future__ import annotations

import pickle
import random
import warnings
from pathlib import Path
from typing import Any, Iterable, Iterator

import numpy as np
import torch

from xbyol.data.io import atomic_write
from xbyol.errors import CheckpointError
from xbyol.rundir import LAST, PREVIOUS


class CheckpointWarning(UserWarning):
    """The newest checkpoint could not be used and an older one was taken instead."""


def rng_state() -> dict[str, Any]:
    """Every RNG the run uses, in weights_only-loadable types."""
    np_state = np.random.get_state(legacy=True)
    assert isinstance(np_state, tuple)  # (name, keys, pos, has_gauss, cached_gaussian)
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy_keys": torch.from_numpy(np_state[1].astype(np.int64)),
        "numpy_pos": int(np_state[2]),
        "numpy_has_gauss": int(np_state[3]),
        "numpy_cached_gauss": float(np_state[4]),
        "python": list(_flatten_python_state(random.getstate())),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _flatten_python_state(s: tuple) -> list:
    version, internal, gauss = s
    return [version, list(internal), gauss]


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    np.random.set_state(
        (
            "MT19937",
            state["numpy_keys"].numpy().astype(np.uint32),
            state["numpy_pos"],
            state["numpy_has_gauss"],
            state["numpy_cached_gauss"],
        )
    )
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(path: str | Path, payload: dict[str, Any], keep_previous: bool = False) -> None:
    """Write ``payload`` to ``path`` atomically (temp file, fsync, ``os.replace``).

    With ``keep_previous`` the file being replaced is first moved to ``prev.pt`` beside it.
    """
    path = Path(path)
    previous = path.with_name(PREVIOUS) if keep_previous else None
    atomic_write(path, lambda f: torch.save(payload, f), keep_previous_as=previous)


def remove_stale_temporaries(ckpt_dir: Path) -> list[Path]:
    """Delete ``*.tmp*`` files left in ``ckpt_dir`` by a killed write; returns what was removed."""
    removed = []
    for p in sorted(Path(ckpt_dir).glob("*.pt.tmp*")):
        p.unlink(missing_ok=True)
        removed.append(p)
    return removed


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a checkpoint with ``weights_only=True``.

    Raises:
        CheckpointError: the file is missing, truncated or corrupt, or holds pickled
            objects other than tensors and plain containers.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError:
        raise CheckpointError(
            f"{path} is not a safe xbyol checkpoint: it holds pickled objects other than tensors "
            "and plain containers, and xbyol never unpickles code"
        ) from None
    except (RuntimeError, EOFError, OSError, ValueError) as e:
        reason = str(e).split(". ")[0].strip() or type(e).__name__
        raise CheckpointError(f"checkpoint {path} is truncated or corrupt ({reason})") from None
    if not isinstance(ckpt, dict) or "method" not in ckpt or "step" not in ckpt:
        raise CheckpointError(f"{path} is not an xbyol checkpoint (expected a dict with 'method' and 'step')")
    return ckpt


def load_latest_checkpoint(ckpt_dir: Path, map_location: str | torch.device = "cpu") -> tuple[Path, dict[str, Any]]:
    """The newest loadable checkpoint of a run: ``last.pt``, else ``prev.pt``.

    Raises:
        CheckpointError: neither loads; the message names both files and why.
    """
    reasons = []
    for name in (LAST, PREVIOUS):
        path = Path(ckpt_dir) / name
        try:
            ckpt = load_checkpoint(path, map_location)
        except CheckpointError as e:
            reasons.append(str(e))
            continue
        if reasons:
            warnings.warn(f"{reasons[0]}; using {path} (step {ckpt['step']}) instead", CheckpointWarning, stacklevel=2)
        return path, ckpt
    raise CheckpointError("no usable checkpoint: " + "; ".join(reasons))


def _float_tensors(named: Iterable[tuple[str, torch.Tensor]]) -> Iterator[tuple[str, torch.Tensor]]:
    for name, t in named:
        if isinstance(t, torch.Tensor) and t.is_floating_point() and t.numel() > 0:
            yield name, t.detach()


def first_bad_tensor(named: Iterable[tuple[str, torch.Tensor]], max_abs: float | None = None) -> tuple[str, float] | None:
    """The first tensor holding NaN/Inf (or a value above ``max_abs``), with its largest |value|.

    One fused max-|x| per tensor (``torch._foreach_norm`` with ord=inf; NaN propagates)
    and one host sync per device: the tensors may live on several devices (on CUDA, AdamW
    keeps its ``step`` counters on the CPU beside moments on the GPU), and a foreach kernel
    takes one device's tensors. Returns None when every tensor is healthy.
    """
    items = list(_float_tensors(named))
    if not items:
        return None
    names, tensors = zip(*items)
    on_device: dict[torch.device, list[int]] = {}
    for i, t in enumerate(tensors):
        on_device.setdefault(t.device, []).append(i)
    peaks = torch.empty(len(tensors))  # (N,) on the CPU, in the order given
    for positions in on_device.values():
        norms = torch._foreach_norm([tensors[i] for i in positions], float("inf"))
        peaks[positions] = torch.stack([n.float() for n in norms]).cpu()
    bad = ~torch.isfinite(peaks)
    if max_abs is not None:
        bad |= peaks > max_abs
    if not bool(bad.any()):
        return None
    i = int(bad.nonzero()[0, 0])
    return names[i], float(peaks[i])


def optimizer_tensors(state: dict[str, Any]) -> Iterator[tuple[str, torch.Tensor]]:
    """``(name, tensor)`` for every tensor in an optimiser ``state_dict()``."""
    for pid, slots in state.get("state", {}).items():
        for slot, value in slots.items():
            if isinstance(value, torch.Tensor):
                yield f"optimizer.state[{pid}].{slot}", value


def check_finite_state(path: Path, state: dict[str, torch.Tensor]) -> None:
    """Refuse a loaded ``method`` state with non-finite tensors, naming the file and tensor.

    Raises:
        CheckpointError: some parameter or buffer is NaN or Inf.
    """
    bad = first_bad_tensor(state.items())
    if bad is not None:
        raise CheckpointError(
            f"checkpoint {path} holds non-finite values in {bad[0]} (the run diverged); "
            "it cannot be evaluated or explained: train again with a lower train.lr"
        )
