"""What a resumed run may change: runtime-only keys freely, anything else only when asked.

A checkpoint stores the config it was trained with. Resuming compares the config it is
given against that one, key by key. Keys that only change how a run is watched or where
it runs (progress bar, logging cadence, checkpoint cadence, workers, device, host-memory
allocator, evaluation settings) may differ freely. Every other key changes the maths of the run (its schedules,
data, model or objective), so a difference is refused unless the caller extends the run
on purpose (``--extend``), in which case the changes are listed in the log and run.json.
"""

from __future__ import annotations

from typing import Any

from xbyol.config import ConfigError

RUNTIME_KEYS = frozenset(
    {
        "train.progress",
        "train.log_every",
        "train.monitor_every",
        "train.ckpt_every",
        "train.ckpt_minutes",
        "train.max_abs_weight",
        "train.device",
        "train.retain_freed_memory",
        "data.num_workers",
        "aug.compile",
    }
)
RUNTIME_PREFIXES = ("eval.",)
# The run's location: a resume always reads and writes RUN_DIR, wherever it was trained.
LOCATION_KEYS = frozenset({"name", "out_dir"})


def flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"train": {"lr": 1}}`` -> ``{"train.lr": 1}``; tuples compare as lists."""
    out: dict[str, Any] = {}
    for k, v in tree.items():
        if isinstance(v, dict):
            out.update(flatten(v, f"{prefix}{k}."))
        else:
            out[prefix + k] = list(v) if isinstance(v, tuple) else v
    return out


def is_runtime_key(key: str) -> bool:
    return key in RUNTIME_KEYS or key in LOCATION_KEYS or key.startswith(RUNTIME_PREFIXES)


def changed_keys(saved: dict[str, Any], current: dict[str, Any]) -> list[tuple[str, Any, Any]]:
    """``(key, saved value, current value)`` for every key that changes the run's maths.

    Keys the saved config lacks (added to xbyol after it was written) are not compared.
    """
    a, b = flatten(saved), flatten(current)
    return [(k, a[k], b.get(k)) for k in sorted(a) if not is_runtime_key(k) and a[k] != b.get(k)]


def check_resume_changes(saved: dict[str, Any], current: dict[str, Any], extend: bool) -> list[tuple[str, Any, Any]]:
    """The maths-changing differences of a resume; refused unless ``extend``.

    Raises:
        ConfigError: some key differs and ``extend`` is False; the message lists them.
    """
    changes = changed_keys(saved, current)
    if changes and not extend:
        listed = ", ".join(f"{k}: {old!r} -> {new!r}" for k, old, new in changes)
        raise ConfigError(
            f"--resume continues the saved run exactly, but these keys differ from it: {listed}; "
            "drop them, or pass --extend to continue with the changes (they are logged)"
        )
    return changes
