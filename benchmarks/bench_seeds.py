"""Mean ± sd over training seeds: the one aggregation every seeded benchmark table uses.

Imported as ``from bench_seeds import mean_sd, seed_summary`` because the scripts run as
``python benchmarks/<name>.py``, which puts this folder first on ``sys.path``.
"""

from __future__ import annotations

import math
import statistics
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
