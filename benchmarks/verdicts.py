"""Re-derive every marked verdict of ``benchmarks/BENCHMARKS.md`` from ``benchmarks/results/*.json``.

A verdict in the text carries a marker, an HTML comment that renders as nothing::

    <!-- verdict explainable.json: runs/*/xbyol/concepts/scs_margin vs runs/*/raw_pixels/concepts/scs_margin = higher -->

Each side is a path into the results file, ``/``-separated; ``*`` is the seed level (``seed0``,
``seed1``, ...), and a side without ``*`` is one value shared by every seed (e.g. raw pixels in
``quality_seeds.json``). A last segment ``@mean`` is the mean of a dict's values whose keys do not end
in ``_chance`` (the mean of concept groups). The two sides are paired by seed (the seeds both have) and
judged by :func:`bench_seeds.paired_interval` and :func:`bench_seeds.difference_verdict`: ``higher``,
``lower``, ``no difference`` (at this budget) or ``undecided``.

Test-set noise: where every seed draws its own test images (shapes explainability), the per-seed
differences carry it. Where the test set is fixed (:data:`FIXED_TEST`), its standard error is added:
from per-image scores when the file has them (``per_image`` next to the score; ``excess_per_image`` for
the rank-faithfulness excess), else, for an accuracy, from the two accuracies and the number of test
images (:func:`bench_seeds.accuracy_difference_se`, an upper bound); a non-accuracy score on a fixed test
set without per-image values is ``undecided``.

Near flipping (:func:`near_flip`): more seeds are worth their cost where a verdict could change. From 3 to
5 seeds the t interval narrows to about half (t 4.30/sqrt(3) -> 2.78/sqrt(5) times the sd), so a "no
difference" whose mean is at least half its interval's half-width from 0 could become decided, and a decided
verdict whose interval ends within one half-width of 0 could be undone by one more seed's value.

Usage::

    python benchmarks/verdicts.py            # every marker: computed vs stated; exit status 1 on a mismatch
    python benchmarks/verdicts.py --near-flip   # also list the verdicts near flipping, with their seeds
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench_seeds import (
    NO_DIFFERENCE,
    accuracy_difference_se,
    difference_verdict,
    paired_interval,
    paired_test_se,
)

HERE = Path(__file__).resolve().parent
MARKER = re.compile(r"<!-- verdict (?P<file>[\w.\-]+): (?P<a>\S+) vs (?P<b>\S+) = (?P<stated>higher|lower|no difference"
                    r"|undecided) -->")


def _quality_test_images(path: list[str]) -> int:
    return {"shapes": 2048, "digits": 360}[path[1]]


# results file -> number of test images shared by every seed, as a function of a side's path (None: each seed has
# its own test images, so the seeds' spread carries the test-set noise)
FIXED_TEST: dict[str, Any] = {
    "explainable.json": None,
    "explainable_fashion_mnist.json": lambda path: 10000,
    "quality_seeds.json": _quality_test_images,
    "quality_shapes64.json": _quality_test_images,
    "crossmodal.json": lambda path: 1000,
    "crossmodal_800.json": lambda path: 1000,
    "crossmodal_projector_norm.json": lambda path: 1000,
    "fmnist_validation_sweep.json": lambda path: 10000,
    "fmnist_validation_final.json": lambda path: 10000,
}
ACCURACY_KEYS = ("linear_probe", "knn", "R@1", "R@5", "R@10")


@dataclass
class Verdict:
    line: int
    file: str
    a: str
    b: str
    stated: str
    computed: str
    interval: tuple[float, float] | None
    seeds: list[str]
    note: str = ""

    @property
    def ok(self) -> bool:
        return self.computed.startswith(self.stated)


def near_flip(interval: tuple[float, float] | None) -> bool:
    """Whether a verdict with this 95% interval of ``a - b`` is near flipping (the module's rule).

    ``no difference`` (0 inside): ``|mean| >= half-width / 2``. Decided (0 outside): the edge nearest 0
    is within one half-width of it, i.e. ``|mean| < 2 half-widths``. ``None`` (undecided): False.
    """
    if interval is None:
        return False
    lo, hi = interval
    mean, half = (lo + hi) / 2, (hi - lo) / 2
    if lo <= 0 <= hi:
        return abs(mean) >= half / 2
    return abs(mean) < 2 * half


def _walk(node: Any, keys: list[str]) -> Any:
    for k in keys:
        if k == "@mean":
            vals = [v for name, v in node.items() if not name.endswith("_chance") and v is not None]
            return statistics.mean(vals)
        if not isinstance(node, dict) or k not in node or node[k] is None:
            return None
        node = node[k]
    return node


def side_values(data: dict[str, Any], side: str) -> dict[str, Any]:
    """``{seed key: value}`` of a side; a side without ``*`` gives ``{"*": value}``."""
    keys = side.split("/")
    if "*" not in keys:
        return {"*": _walk(data, keys)}
    i = keys.index("*")
    level = _walk(data, keys[:i]) or {}
    out = {s: _walk(level[s], keys[i + 1:]) for s in level}
    return {s: v for s, v in out.items() if v is not None}


def _per_image_side(side: str) -> str | None:
    """Where a score's per-image values live: ``.../X/scs_margin`` -> ``.../X/per_image/scs_margin``,
    ``.../X/concept_accuracy/G`` -> ``.../X/per_image/hit_G``, ``.../X/linear_probe`` -> ``.../X/per_image/hit_linear_probe``
    (and ``knn``)."""
    keys = side.split("/")
    if keys[-1] == "scs_margin":
        return "/".join(keys[:-1] + ["per_image", "scs_margin"])
    if len(keys) >= 2 and keys[-2] == "concept_accuracy" and keys[-1] != "@mean":
        return "/".join(keys[:-2] + ["per_image", f"hit_{keys[-1]}"])
    if keys[-1] in ("linear_probe", "knn"):
        return "/".join(keys[:-1] + ["per_image", f"hit_{keys[-1]}"])
    return None


def _numbers(v: Any) -> list[float | None]:
    if isinstance(v, str):  # hits stored as "1" / "0" / "-"
        return [None if c == "-" else float(c) for c in v]
    return [None if x is None else float(x) for x in v]


def _test_se(data: dict[str, Any], a: str, b: str, seeds: list[str], mean_a: float, mean_b: float,
             n_test: int) -> tuple[float | None, str]:
    """Test-set standard error of the seed-mean difference on a fixed test set, and how it was had."""
    ka, kb = a.split("/"), b.split("/")
    if ka[:-1] == kb[:-1] and (ka[-1], kb[-1]) == ("gap", "gap_null"):  # rank faithfulness: per-image excess
        per = side_values(data, "/".join(ka[:-1] + ["excess_per_image"]))
        if all(s in per for s in seeds):
            rows = [_numbers(per[s]) for s in seeds]
            return paired_test_se(rows, [[0.0] * len(rows[0])] * len(rows)), "per-image"
    pa, pb = _per_image_side(a), _per_image_side(b)
    if pa and pb:
        va, vb = side_values(data, pa), side_values(data, pb)
        if all(s in va or "*" in va for s in seeds) and all(s in vb or "*" in vb for s in seeds):
            ra = [_numbers(va.get(s, va.get("*"))) for s in seeds]
            rb = [_numbers(vb.get(s, vb.get("*"))) for s in seeds]
            keep = [j for j in range(len(ra[0])) if all(r[j] is not None for r in (*ra, *rb))]
            return paired_test_se([[r[j] for j in keep] for r in ra], [[r[j] for j in keep] for r in rb]), "per-image"
    accuracy = any(k in ACCURACY_KEYS for k in ka[-1:] + kb[-1:]) or "concept_accuracy" in ka or "hit" in ka[-1]
    if accuracy:
        return accuracy_difference_se(mean_a, mean_b, n_test), f"binomial, n={n_test}"
    return None, "no per-image scores on a fixed test set"


def judge(data: dict[str, Any], file: str, a: str, b: str) -> tuple[str, tuple[float, float] | None, list[str], str]:
    """``(verdict, interval of a - b, seeds, note)`` of one comparison."""
    va, vb = side_values(data, a), side_values(data, b)
    if "*" in va and "*" in vb:
        raise ValueError(f"{file}: {a} vs {b}: no side has a seed level ('*')")
    seeds = sorted((set(va) | set(vb)) - {"*"}, key=lambda s: int(re.sub(r"\D", "", s) or 0))
    seeds = [s for s in seeds if (s in va or "*" in va) and (s in vb or "*" in vb)]
    xa = [float(va.get(s, va.get("*"))) for s in seeds]
    xb = [float(vb.get(s, vb.get("*"))) for s in seeds]
    fixed = FIXED_TEST[file]
    test_se, note = None, "seeds carry the test-set noise"
    if fixed is not None and len(seeds) >= 2:
        test_se, note = _test_se(data, a, b, seeds, statistics.mean(xa), statistics.mean(xb), fixed(a.split("/")))
        if test_se is None:
            return f"undecided ({note})", None, seeds, note
    interval = paired_interval(xa, xb, test_se)
    return difference_verdict(interval), interval, seeds, note


def check(md: Path, results: Path) -> list[Verdict]:
    """Every marked verdict of ``md``, computed from the files in ``results``."""
    cache: dict[str, dict[str, Any]] = {}
    out = []
    for i, line in enumerate(md.read_text().splitlines(), 1):
        for m in MARKER.finditer(line):
            f = m["file"]
            if f not in cache:
                cache[f] = json.loads((results / f).read_text())
            computed, interval, seeds, note = judge(cache[f], f, m["a"], m["b"])
            stated = NO_DIFFERENCE if m["stated"] == "no difference" else m["stated"]
            out.append(Verdict(i, f, m["a"], m["b"], stated, computed, interval, seeds, note))
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--md", default=str(HERE / "BENCHMARKS.md"))
    p.add_argument("--results", default=str(HERE / "results"))
    p.add_argument("--near-flip", action="store_true",
                   help="also list the verdicts near flipping (the module docstring's rule): where more seeds may "
                        "change the verdict")
    args = p.parse_args(argv)
    verdicts = check(Path(args.md), Path(args.results))

    def interval(v: Verdict) -> str:
        return "-" if v.interval is None else f"{v.interval[0]:+.4f} .. {v.interval[1]:+.4f}"

    for v in verdicts:
        print(f"{'ok  ' if v.ok else 'MISMATCH'} line {v.line}: {v.file} {v.a} vs {v.b}: stated {v.stated}, "
              f"computed {v.computed} (a - b: {interval(v)}; {len(v.seeds)} seeds; {v.note})")
    bad = [v for v in verdicts if not v.ok]
    if args.near_flip:
        near = [v for v in verdicts if near_flip(v.interval)]
        print(f"near flipping ({len(near)}):")
        for v in near:
            print(f"  line {v.line}: {v.file} {v.a} vs {v.b}: {v.computed} ({interval(v)}; seeds {', '.join(v.seeds)})")
    print(f"{len(verdicts)} marked verdicts, {len(bad)} mismatches")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
