"""The run: config, dataset, method, duration, hardware, version."""

from __future__ import annotations

import math
from typing import Any

from xbyol import __version__
from xbyol.config import dump
from xbyol.report.artifacts import RunArtifacts
from xbyol.report.blocks import Code, KeyValues, Note, Section, format_value
from xbyol.report.context import ReportContext
from xbyol.rundir import CONFIG, RUN_INFO

__all__ = ["build", "format_duration", "run_section"]


def format_duration(seconds: float | None) -> str:
    """``3725.2 -> "1 h 02 min 05 s"``; ``-`` when unknown."""
    if seconds is None or not math.isfinite(seconds):
        return "-"
    s = int(round(seconds))
    h, rem = divmod(s, 3600)
    m, sec = divmod(rem, 60)
    if h:
        return f"{h} h {m:02d} min {sec:02d} s"
    if m:
        return f"{m} min {sec:02d} s"
    return f"{seconds:.1f} s"


def run_section(a: RunArtifacts, checkpoint_step: int | None = None, datasets: list[str] | None = None) -> Section:
    """Config, dataset, method, duration, hardware, version.

    Args:
        a: the run's files.
        checkpoint_step: step of ``checkpoints/last.pt`` when it was loaded.
        datasets: descriptions of the loaded dataset splits (default: from the config).
    """
    cfg = a.cfg
    info = a.run_info or {}
    hw = info.get("hardware") or {}
    steps = a.metrics["step"] if a.metrics else []
    last_logged = int(max((s for s in steps if not math.isnan(s)), default=0)) or None
    data = "; ".join(datasets) if datasets else f"{cfg.data.name} at {cfg.data.image_size} px" + (
        f" (root {cfg.data.root})" if cfg.data.root else "")
    items: list[tuple[str, Any]] = [
        ("run", cfg.name),
        ("directory", str(a.run_dir)),
        ("method", cfg.method.name),
        ("dataset", data),
        ("backbone", cfg.model.backbone),
        ("batch size x processes", f"{cfg.data.batch_size} x {hw.get('world_size', 1)}"),
        ("optimizer", f"{cfg.train.optimizer}, lr {format_value(cfg.train.lr)}, weight decay {format_value(cfg.train.weight_decay)}"),
        ("steps (checkpoint / planned)", f"{format_value(checkpoint_step)} / {format_value(info.get('total_steps', cfg.train.steps))}"),
        ("last logged step", last_logged),
        ("finished", info.get("finished")),
        ("started", info.get("started")),
        ("training time", format_duration(info.get("duration_s"))),
        ("hardware", ", ".join(f"{k} {v}" for k, v in hw.items() if k in ("device", "gpu", "cpu", "threads", "world_size")) or None),
        ("software", ", ".join(f"{k} {hw[k]}" for k in ("torch", "python") if k in hw) or None),
        ("xbyol version (trained / report)", f"{info.get('xbyol_version', '-')} / {__version__}"),
        ("seed", cfg.train.seed),
        ("precision", cfg.train.precision),
    ]
    blocks: list[Any] = [KeyValues(items)]
    if a.run_info is None:
        why = a.errors.get(RUN_INFO, "is missing")
        blocks.append(Note(f"{a.paths.run_info} {why}: training time and hardware are unknown."))
    if not a.has_checkpoint:
        blocks.append(Note(f"no checkpoint ({a.paths.checkpoint('last')} is missing): "
                           "sections that need the trained model are skipped."))
    blocks.append(Code(dump(cfg), summary=f"resolved config ({CONFIG})"))
    return Section("run", "Run", blocks)


def build(ctx: ReportContext) -> Section:
    return run_section(ctx.a, ctx.step, ctx.datasets)
