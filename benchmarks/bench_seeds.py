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


# ----------------------------------------------------------------------------- paired comparisons

Z975 = float(scipy.stats.norm.ppf(0.975))  # 1.95996...
NO_DIFFERENCE = "no difference at this budget"


def binomial_se(p: float, n: int) -> float:
    """Standard error ``sqrt(p (1 - p) / n)`` of an accuracy ``p`` measured on ``n`` test images."""
    return math.sqrt(p * (1.0 - p) / n)


def accuracy_difference_se(p_a: float, p_b: float, n: int) -> float:
    """Test-set standard error of ``p_a - p_b``, two accuracies on the same ``n`` images, from aggregates alone.

    ``sqrt(p_a (1 - p_a) / n + p_b (1 - p_b) / n)``: exact for independent images sets, an upper bound on the
    same images whenever the two models' hits are positively correlated (the usual case; the paired
    :func:`paired_test_se` is smaller then). Used where a results file keeps only the accuracies.
    """
    return math.sqrt(binomial_se(p_a, n) ** 2 + binomial_se(p_b, n) ** 2)


def paired_test_se(per_image_a: list[list[float]], per_image_b: list[list[float]]) -> float:
    """Test-set standard error of the seed-mean difference of two rows scored on one fixed test set.

    Args:
        per_image_a: ``[seeds][N]`` per-image scores of row A (0/1 hits for an accuracy, values for a
            mean score such as the SCS margin), the same N images in the same order for every seed.
        per_image_b: the same for row B.

    Returns:
        ``sd_j(D_j) / sqrt(N)`` with ``D_j`` the mean over seeds of ``a_sj - b_sj`` for image ``j`` (sample
        sd): the normal approximation of resampling the test images with the pairing kept; for 0/1 hits and
        one seed it is the standard error behind McNemar's test, ``sqrt(b + c - (b - c)^2 / N) / N`` up to
        the ``N / (N - 1)`` of the sample sd (``b``, ``c``: the discordant counts).
    """
    n_img = len(per_image_a[0])
    if len(per_image_a) != len(per_image_b) or any(len(r) != n_img for r in (*per_image_a, *per_image_b)):
        raise ValueError("per-image scores must be [seeds][N] with the same shape for both rows")
    d = [statistics.mean(a[j] - b[j] for a, b in zip(per_image_a, per_image_b)) for j in range(n_img)]
    return statistics.stdev(d) / math.sqrt(n_img)


def paired_interval(a: list[float], b: list[float], test_se: float | None = None) -> tuple[float, float] | None:
    """95% interval of the mean per-seed difference ``a_s - b_s`` (the same seeds, in the same order).

    Seed part: ``t(0.975, n - 1) * sd(d) / sqrt(n)``, the paired t interval with ``n - 1`` degrees of freedom.
    Where every seed is scored on the same fixed test set (Fashion-MNIST, digits), the seeds share its sampling
    noise, which their spread cannot show; ``test_se`` (the test-set standard error of the seed-mean
    difference: :func:`paired_test_se`, or :func:`accuracy_difference_se` from aggregates) adds it as a second,
    independent part: ``half = sqrt((t sd(d) / sqrt(n))^2 + (1.96 test_se)^2)``. Where each seed draws its own
    test images (shapes), the per-seed differences already carry that noise: leave ``test_se`` None.
    None below 2 seeds.
    """
    if len(a) != len(b):
        raise ValueError(f"paired values need the same seeds: {len(a)} vs {len(b)} values")
    d = [x - y for x, y in zip(a, b)]
    if len(d) < 2:
        return None
    mean = statistics.mean(d)
    seed_half = float(scipy.stats.t.ppf(0.975, len(d) - 1)) * statistics.stdev(d) / math.sqrt(len(d))
    half = math.hypot(seed_half, Z975 * test_se) if test_se is not None else seed_half
    return (mean - half, mean + half)


def difference_verdict(interval: tuple[float, float] | None) -> str:
    """``higher`` / ``lower`` where the interval of ``a - b`` lies wholly above / below 0 (0 on an end counts as
    inside), else :data:`NO_DIFFERENCE`; :data:`UNDECIDED` without an interval."""
    if interval is None:
        return UNDECIDED
    if interval[0] > 0:
        return "higher"
    if interval[1] < 0:
        return "lower"
    return NO_DIFFERENCE
