"""Training curves from ``metrics.csv``, the collapse warnings and a table of the last values."""

from __future__ import annotations

import math
from typing import Any, Sequence

from xbyol.methods.collapse import COLLAPSED_RANK_FRACTION, COLLAPSED_STD_FRACTION, collapse_signs
from xbyol.report.artifacts import RunArtifacts
from xbyol.report.blocks import Figure, Note, Section, Table, format_value
from xbyol.report.context import ReportContext, absent
from xbyol.report.figures import curves_figure
from xbyol.rundir import METRICS

__all__ = ["build", "collapse_warnings", "ema", "training_panels", "training_section"]


def _series(metrics: dict[str, list[float]], col: str) -> tuple[list[float], list[float]]:
    xs, ys = [], []
    for s, v in zip(metrics["step"], metrics[col]):
        if not (math.isnan(s) or math.isnan(v)):
            xs.append(s)
            ys.append(v)
    return xs, ys


def _line(metrics: dict[str, list[float]], col: str, label: str | None = None, style: str = "-") -> dict[str, Any] | None:
    x, y = _series(metrics, col)
    return {"label": label or col, "x": x, "y": y, "style": style} if x else None


def ema(values: Sequence[float], weight: float) -> list[float]:
    """Exponential moving average ``s_t = weight * s_{t-1} + (1 - weight) * v_t``, ``s_0 = v_0``."""
    out: list[float] = []
    for v in values:
        out.append(v if not out else weight * out[-1] + (1 - weight) * v)
    return out


def _constant(ys: Sequence[float]) -> bool:
    return len(ys) > 1 and max(ys) - min(ys) <= 1e-12 * max(1.0, abs(max(ys)))


def _healthy_dim(metrics: dict[str, list[float]], prefix: str) -> int | None:
    """Embedding dimension ``d`` of a monitored embedding, from its logged healthy std ``1/sqrt(d)``."""
    _, ys = _series(metrics, f"{prefix}_std_healthy") if f"{prefix}_std_healthy" in metrics else ([], [])
    return round(1.0 / ys[-1] ** 2) if ys and ys[-1] > 0 else None


def training_panels(metrics: dict[str, list[float]], smoothing: float = 0.0,
                    batch_size: int | None = None) -> list[dict[str, Any]]:
    """Panels of the training figure: losses, lr, tau, collapse monitors, throughput, the rest.

    Each loss component gets a panel of its own (their scales differ and drawn together
    they cannot be told apart); a component identical to the total is not repeated. A
    metric that never changes (e.g. ``labelled_fraction`` on fully labelled data) gets no
    panel. The collapse monitors carry their isotropic reference as a dashed line:
    ``1/sqrt(d)`` for the embedding std (logged as ``*_std_healthy``) and the largest
    possible effective rank, ``min(d, batch_size)``.

    Args:
        metrics: columns of ``metrics.csv``.
        smoothing: ``> 0`` also draws the noisy curves (losses, throughput, other logged
            values) as their :func:`ema` with this weight, the raw values faint behind it;
            schedules (lr, tau) and the sparse collapse monitors are drawn as logged.
        batch_size: rows of the batch the monitors are computed on (caps the rank).
    """
    if not 0.0 <= smoothing < 1.0:
        raise ValueError(f"smoothing must be in [0, 1), got {smoothing}")
    cols = [c for c in metrics if c not in ("step", "epoch")]
    used: set[str] = set()
    panels: list[dict[str, Any]] = []

    def lines_of(c: str, smooth: bool) -> list[dict[str, Any]]:
        line = _line(metrics, c)
        if line is None:
            return []
        if not smooth or smoothing <= 0 or len(line["y"]) < 3:
            return [line]
        raw = dict(line, label=f"{c} (raw)", faint=True)
        return [raw, dict(line, y=ema(line["y"], smoothing), label=f"{c} (EMA {smoothing:g})")]

    def add(title: str, names: list[str], log: bool = False, extra: list[dict[str, Any]] | None = None,
            smooth: bool = True) -> None:
        used.update(names)
        names = [c for c in names if not _constant(_series(metrics, c)[1])]
        lines = [ln for c in names for ln in lines_of(c, smooth)]
        if lines:
            panels.append({"title": title, "lines": lines + (extra or []), "log": log})

    total = _series(metrics, "loss")[1] if "loss" in cols else []
    components = [c for c in cols if c.startswith("loss_")]
    add("loss", [c for c in cols if c == "loss"])
    for c in components:
        if _series(metrics, c)[1] == total:
            used.add(c)  # the whole loss again (e.g. loss_byol of a byol run)
        else:
            add(f"loss component: {c.removeprefix('loss_')}", [c])
    add("learning rate", [c for c in cols if c == "lr"], smooth=False)  # schedules: exact, nothing to smooth
    add("EMA momentum tau", [c for c in cols if c == "tau"], smooth=False)
    std = [c for c in cols if c.endswith("_std")]
    healthy = [c for c in cols if c.endswith("_std_healthy")]
    add("collapse: embedding std (dashed: isotropic)", std, smooth=False,  # sparse: an EMA would lag by many steps
        extra=[ln for ln in (_line(metrics, c, c.replace("_std_healthy", " isotropic 1/sqrt(d)"), "--") for c in healthy) if ln])
    used.update(healthy)
    ranks = [c for c in cols if c.endswith("_rank")]
    rank_refs = []
    for c in ranks:
        d = _healthy_dim(metrics, c.removesuffix("_rank"))
        xs, _ = _series(metrics, c)
        if d is not None and xs:
            top = min(d, batch_size) if batch_size else d
            rank_refs.append({"label": f"{c.removesuffix('_rank')} maximum {top}", "x": [xs[0], xs[-1]],
                              "y": [top, top], "style": "--"})
    add("collapse: effective rank (dashed: maximum)", ranks, extra=rank_refs, smooth=False)
    add("throughput (images/s)", [c for c in cols if c == "images_per_s"])
    for c in cols:
        if c not in used:
            add(c, [c])
    return panels


def collapse_warnings(metrics: dict[str, list[float]], batch_size: int | None = None) -> list[str]:
    """Monitored embeddings whose last logged std or effective rank says they collapsed
    (:func:`xbyol.methods.collapse.collapse_signs`), in words.

    Args:
        metrics: columns of ``metrics.csv`` with ``<name>_std``, ``<name>_rank`` and ``<name>_std_healthy``.
        batch_size: rows of the batch the monitors were computed on (caps the rank).
    """
    out = []
    for c in [c.removesuffix("_std_healthy") for c in metrics if c.endswith("_std_healthy")]:
        d = _healthy_dim(metrics, c)
        std, rank = _series(metrics, f"{c}_std")[1], _series(metrics, f"{c}_rank")[1]
        if d is None or not std or not rank:
            continue
        signs = collapse_signs(std[-1], rank[-1], d, batch_size)
        if "std" in signs:
            out.append(f"{c}_std ends at {format_value(std[-1])}, {100 * signs['std']:.0f}% of the isotropic "
                       f"1/sqrt(d) = {format_value(d ** -0.5)} (collapsed below {100 * COLLAPSED_STD_FRACTION:.0f}%)")
        if "rank" in signs:
            top = min(d, batch_size or d)
            out.append(f"{c}_rank ends at {rank[-1]:.1f} of at most {top} "
                       f"(collapsed below {100 * COLLAPSED_RANK_FRACTION:.0f}%)")
    return out


def training_section(a: RunArtifacts, smoothing: float = 0.0) -> Section:
    """Training curves from ``metrics.csv``, collapse warnings and a table of the last values."""
    sec = Section("training", "Training curves")
    m = a.metrics
    if m is None:
        return absent(sec, a, METRICS, f"not computed: {a.paths.metrics} is missing (written by `xbyol train`).")
    batch = int(a.cfg.data.batch_size)
    panels = training_panels(m, smoothing, batch)
    if not panels:
        sec.missing = f"{a.paths.metrics} has no logged values yet."
        return sec
    caption = "Logged every train.log_every steps; collapse monitors every train.monitor_every steps."
    if smoothing > 0:
        caption += f" Solid: exponential moving average (weight {smoothing:g}); faint: the logged values."
    sec.blocks.append(Figure(curves_figure(panels), caption=caption, alt="training curves"))
    for w in collapse_warnings(m, batch):
        sec.blocks.append(Note(f"warning: {w} (collapse monitor; see the dashed reference).", level="warning"))
    rows = []
    constant = []
    for c in m:
        if c in ("step", "epoch"):
            continue
        _, ys = _series(m, c)
        if ys:
            rows.append([c, ys[-1], min(ys), max(ys)])
            if _constant(ys) and not c.endswith("_healthy"):
                constant.append(f"{c} = {format_value(ys[-1])}")
    if constant:
        sec.blocks.append(Note(f"constant through the run (no panel): {', '.join(constant)}."))
    sec.blocks.append(Table(["metric", "last", "min", "max"], rows, caption="Logged values"))
    return sec


def build(ctx: ReportContext) -> Section:
    return training_section(ctx.a, ctx.opts.smoothing)
