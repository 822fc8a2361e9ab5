"""The heatmap gallery (computed from the model) under the explanation-metrics table of ``explain_eval.json``."""

from __future__ import annotations

from typing import Any

from xbyol.metrics import METRICS
from xbyol.report import live
from xbyol.report.artifacts import RunArtifacts
from xbyol.report.blocks import KeyValues, Note, Section, Table, flatten
from xbyol.report.context import ReportContext, cmd
from xbyol.rundir import EXPLAIN_EVAL

__all__ = ["build", "explain_metrics_blocks"]


#: explain_eval.json keys that are not named like the metric functions
_METRIC_ALIASES = {"iou": "mask_iou", "randomization_corr": "model_randomization"}


def _metric_header(key: str) -> str:
    """``key`` in words, with an arrow for the better direction when the metric is known."""
    meta = METRICS.get(_METRIC_ALIASES.get(key, key))
    label = key.replace("_", " ")
    if meta is not None:
        return f"{label} {'↑' if meta['higher_is_better'] else '↓'}"
    if key.startswith("ms_per_") or key.endswith("_seconds"):
        return f"{label} ↓"
    return label


def explain_metrics_blocks(a: RunArtifacts) -> list[Any]:
    """The explanation-metrics table of ``explain_eval.json`` (``{"methods": {name: {metric: value}}}``)."""
    ee = a.explain_eval
    if ee is None:
        if EXPLAIN_EVAL in a.errors:
            return [Note(f"Explanation metrics could not be read: {a.errors[EXPLAIN_EVAL]}")]
        return [Note(f"Explanation metrics not computed: run {cmd('explain-eval', a)} (writes explain_eval.json).")]
    methods = ee.get("methods")
    blocks: list[Any] = []
    if isinstance(methods, dict) and methods:
        metrics: list[str] = []
        for vals in methods.values():
            for k in flatten(vals if isinstance(vals, dict) else {"value": vals}):
                if k not in metrics:
                    metrics.append(k)
        rows = []
        for name, vals in methods.items():
            flat = flatten(vals if isinstance(vals, dict) else {"value": vals})
            rows.append([name] + [flat.get(k) for k in metrics])
        blocks.append(Table(["method"] + [_metric_header(k) for k in metrics], rows,
                            caption="Explanation metrics (explain_eval.json); arrows: the better direction"))
    rest = {k: v for k, v in ee.items() if k != "methods"}
    if rest:
        blocks.append(KeyValues(list(flatten(rest).items()), caption="explanation-metric settings"))
    if not blocks:
        blocks.append(Note(f"{a.paths.explain_eval} holds no metrics."))
    return blocks


def build(ctx: ReportContext) -> Section:
    metrics, opts = explain_metrics_blocks(ctx.a), ctx.opts
    if opts.gallery_images <= 0 and not opts.gallery_indices:
        return Section("gallery", "Heatmap gallery", blocks=metrics + [Note("gallery disabled in the report options.")])
    if ctx.run is None:
        return Section("gallery", "Heatmap gallery", blocks=metrics + [Note(f"gallery {ctx.no_model}")])
    ctx.say("heatmap gallery")
    return live.gallery_section(ctx.run, opts.gallery_images, opts.methods, opts.gallery_groups, opts.max_concepts,
                                opts.gallery_indices, opts.progress, extra_blocks=metrics, scale=opts.heatmap_scale)
