"""Read what a run directory holds, for the report: every file is optional except ``config.yaml``.

Readers return ``None`` for a missing file and raise ``ValueError`` naming the file for a
malformed one.
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from xbyol.rundir import DISSECT_SUMMARY, DISSECT_UNITS, RunDir

__all__ = ["Dissection", "RunArtifacts", "find_dissections", "read_metrics"]


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


def find_dissections(root: Path) -> list[Dissection]:
    """Every ``summary.json`` under a run's dissection directory ``root`` (sorted by path)."""
    if not root.is_dir():
        return []
    out = []
    for summary in sorted(root.rglob(DISSECT_SUMMARY)):
        data = RunDir.read_json(summary)
        if data is None:
            continue
        units: list[dict[str, str]] = []
        units_csv = summary.parent / DISSECT_UNITS
        if units_csv.is_file():
            with open(units_csv, newline="") as fh:
                units = list(csv.DictReader(fh))
        figures = sorted(p for p in summary.parent.glob("*.png") if p.is_file())
        out.append(Dissection(summary.parent, data, units, figures))
    return out


@dataclass
class RunArtifacts:
    """The files of a run directory (all optional but ``config.yaml``), read once."""

    paths: RunDir
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
        d = RunDir(run_dir)
        cfg = d.read_config()
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
            paths=d,
            cfg=cfg,
            run_info=optional(d.run_info.name, lambda: RunDir.read_json(d.run_info)),
            metrics=optional(d.metrics.name, lambda: read_metrics(d.metrics)),
            eval=optional(d.eval.name, lambda: RunDir.read_json(d.eval)),
            explain_eval=optional(d.explain_eval.name, lambda: RunDir.read_json(d.explain_eval)),
            dissections=optional(d.dissect.name, lambda: find_dissections(d.dissect)) or [],
            has_checkpoint=d.checkpoint("last").is_file(),
            errors=errors,
        )

    @property
    def run_dir(self) -> Path:
        return self.paths.root
