"""Mean ± sd over training seeds: the one aggregation every seeded benchmark table uses.

Imported as ``from bench_seeds import mean_sd, seed_summary`` because the scripts run as
``python benchmarks/<name>.py``, which puts this folder first on ``sys.path``.
"""

from __future__ import annotations

import json
import math
import statistics
import sys
from pathlib import Path
from typing import Any


def _finite(values: list[float | None]) -> list[float]:
    return [float(v) for v in values if v is not None and not math.isnan(v)]


def mean_sd(values: list[float | None], digits: int = 3) -> str:
    """``mean ± sd`` (sample sd) of the finite values; ``x (n=1)`` for one value; ``-`` when none."""
    vals = _finite(values)
    if not vals:
        return "-"
    if len(vals) == 1:
        return f"{vals[0]:.{digits}f} (n=1)"
    return f"{statistics.mean(vals):.{digits}f} ± {statistics.stdev(vals):.{digits}f}"


def seed_summary(values: list[float | None]) -> dict[str, Any]:
    """``{"values", "n", "mean", "sd"}`` of the finite values for a results JSON (sd None below 2 values)."""
    vals = _finite(values)
    return {
        "values": vals,
        "n": len(vals),
        "mean": statistics.mean(vals) if vals else None,
        "sd": statistics.stdev(vals) if len(vals) > 1 else None,
    }


class BudgetMismatch(SystemExit):
    """Bad input: a results file made with another budget. Prints its one line and exits with status 2."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.code = 2
        print(message, file=sys.stderr)


def read_results(path: Path, budget: dict[str, Any], empty: dict[str, Any]) -> dict[str, Any]:
    """A benchmark's results file, or ``empty`` (plus ``budget``) when there is none yet.

    Entries accumulate over calls (one seed or variant at a time), so every call must use the
    budget the file was made with; another budget stops with one line naming the file.
    """
    if path.is_file():
        data = json.loads(path.read_text())
        if data.get("budget") != budget:
            raise BudgetMismatch(f"{path}: results were made with budget {data.get('budget')}, not {budget}; "
                                 "pass another --json")
        return data
    return {"budget": budget, **empty}
