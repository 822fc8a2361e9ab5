"""Read what a run directory holds, for the report: every file is optional except ``config.yaml``.

Readers return ``None`` for a missing file and raise ``ValueError`` naming the file for a
malformed one.
"""

from __future__ import annotations

import csv
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from xbyol.config import load_run_config

__all__ = ["Dissection", "RunArtifacts", "find_dissections", "read_json", "read_metrics"]

#: files written by the other commands, relative to the run directory
EVAL_FILE = "eval.json"
EXPLAIN_EVAL_FILE = "explain_eval.json"
RUN_INFO_FILE = "run.json"
METRICS_FILE = "metrics.csv"
CHECKPOINT = Path("checkpoints") / "last.pt"
DISSECT_DIR = "dissect"


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


def _number(text: str) -> float:
    if text is None or text.strip() == "":
        return math.nan
    try:
        return float(text)
    except ValueError:
        return math.nan


def read_metrics(path: Path) -> dict[str, list[float]] | None:
    """Columns of ``metrics.csv`` as float lists (NaN where a row has no value); ``None`` if absent.

    The trainer's header can grow during a run (new keys appear); earlier rows then have
    empty cells, read as NaN.
    """
    if not path.is_file():
        return None
    with open(path, newline="") as fh:
        reader = csv.DictReader(fh)
        if not reader.fieldnames or "step" not in reader.fieldnames:
            raise ValueError(f"{path}: expected a CSV with a 'step' column, got header {reader.fieldnames}")
        cols: dict[str, list[float]] = {name: [] for name in reader.fieldnames}
        for row in reader:
            for name in cols:
                cols[name].append(_number(row.get(name)))  # type: ignore[arg-type]
    return cols


@dataclass
class Dissection:
    """One dissected layer: ``summary.json`` plus, when present, ``units.csv`` rows and PNG figures."""

    directory: Path
    summary: dict[str, Any]
    units: list[dict[str, str]] = field(default_factory=list)
    figures: list[Path] = field(default_factory=list)


def find_dissections(run_dir: Path) -> list[Dissection]:
    """Every ``RUN_DIR/dissect/**/summary.json`` (sorted by path)."""
    root = run_dir / DISSECT_DIR
    if not root.is_dir():
        return []
    out = []
    for summary in sorted(root.rglob("summary.json")):
        data = read_json(summary)
        if data is None:
            continue
        units: list[dict[str, str]] = []
        units_csv = summary.parent / "units.csv"
        if units_csv.is_file():
            with open(units_csv, newline="") as fh:
                units = list(csv.DictReader(fh))
        figures = sorted(p for p in summary.parent.glob("*.png") if p.is_file())
        out.append(Dissection(summary.parent, data, units, figures))
    return out


@dataclass
class RunArtifacts:
    """The files of a run directory (all optional but ``config.yaml``), read once."""

    run_dir: Path
    cfg: Any
    run_info: dict[str, Any] | None
    metrics: dict[str, list[float]] | None
    eval: dict[str, Any] | None
    explain_eval: dict[str, Any] | None
    dissections: list[Dissection]
    has_checkpoint: bool
    errors: dict[str, str] = field(default_factory=dict)  # file name -> why it could not be read

    @classmethod
    def read(cls, run_dir: str | Path, strict: bool = True) -> "RunArtifacts":
        """Read a run directory.

        Args:
            run_dir: a directory written by ``xbyol train`` (``config.yaml`` is required).
            strict: raise on a malformed optional file; otherwise record it in ``errors``
                and treat the file as absent.
        """
        d = Path(run_dir)
        if not d.is_dir():
            raise FileNotFoundError(f"run directory {d} does not exist")
        if not (d / "config.yaml").is_file():
            raise FileNotFoundError(f"{d / 'config.yaml'} is missing: is {d} a run directory written by `xbyol train`?")
        errors: dict[str, str] = {}

        def optional(name: str, reader):
            try:
                return reader()
            except (ValueError, OSError, KeyError) as e:
                if strict:
                    raise
                errors[name] = f"{type(e).__name__}: {e}"
                return None

        return cls(
            run_dir=d,
            cfg=load_run_config(d),
            run_info=optional(RUN_INFO_FILE, lambda: read_json(d / RUN_INFO_FILE)),
            metrics=optional(METRICS_FILE, lambda: read_metrics(d / METRICS_FILE)),
            eval=optional(EVAL_FILE, lambda: read_json(d / EVAL_FILE)),
            explain_eval=optional(EXPLAIN_EVAL_FILE, lambda: read_json(d / EXPLAIN_EVAL_FILE)),
            dissections=optional(DISSECT_DIR, lambda: find_dissections(d)) or [],
            has_checkpoint=(d / CHECKPOINT).is_file(),
            errors=errors,
        )
