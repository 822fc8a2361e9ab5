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

import scipy.stats

from xbyol.data.io import atomic_write


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


def write_results(path: Path, data: dict[str, Any]) -> None:
    """Write a results file atomically (a crash leaves the previous file whole), one indent per level."""
    atomic_write(path, json.dumps(data, indent=1))


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


UNDECIDED = "undecided (an interval needs 2 seeds)"


def interval95(s: dict[str, Any], exact: bool = False) -> tuple[float, float] | None:
    """95% t-interval of the mean of ``s`` (a :func:`seed_summary`): mean ± t(0.975, n-1) sd / sqrt(n),
    i.e. mean ± 2.48 sd over 3 seeds. ``exact``: a value without spread (e.g. raw pixels), the point itself.
    None where it is undefined (no values, or fewer than 2 values of a seeded quantity)."""
    if s["mean"] is None:
        return None
    if exact:
        return (s["mean"], s["mean"])
    if s["sd"] is None:
        return None
    half = float(scipy.stats.t.ppf(0.975, s["n"] - 1)) * s["sd"] / s["n"] ** 0.5
    return (s["mean"] - half, s["mean"] + half)


def interval_verdict(a: tuple[float, float] | None, b: tuple[float, float] | None) -> str:
    """``higher`` / ``lower`` where interval ``a`` lies wholly above / below ``b`` (touching intervals
    overlap), else ``no difference at this budget``; :data:`UNDECIDED` when either is missing."""
    if a is None or b is None:
        return UNDECIDED
    if a[0] > b[1]:
        return "higher"
    if a[1] < b[0]:
        return "lower"
    return "no difference at this budget"
