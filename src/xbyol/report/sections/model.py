"""Sections computed from the model alone: augmented views, embedding map, nearest neighbours."""

from __future__ import annotations

from xbyol.report import live
from xbyol.report.blocks import Section
from xbyol.report.context import ReportContext

__all__ = ["embedding_map", "neighbours", "views"]

_OFF = "not computed: disabled in the report options."


def views(ctx: ReportContext) -> Section:
    if ctx.opts.views <= 0 or ctx.run is None:
        return Section("views", "Augmented views", missing=_OFF if ctx.opts.views <= 0 else ctx.no_model)
    ctx.say("augmented views")
    return live.views_section(ctx.run, ctx.opts.views, seed=ctx.run.cfg.train.seed)


def embedding_map(ctx: ReportContext) -> Section:
    kind = ctx.opts.embedding_map
    if kind is None or ctx.run is None:
        return Section("embedding-map", "Embedding map", missing=_OFF if kind is None else ctx.no_model)
    ctx.say(f"embedding map ({kind})")
    return live.embedding_map_section(ctx.run, kind, ctx.opts.map_points, ctx.opts.progress)


def neighbours(ctx: ReportContext) -> Section:
    if ctx.opts.neighbours <= 0 or ctx.run is None:
        return Section("neighbours", "Nearest neighbours", missing=_OFF if ctx.opts.neighbours <= 0 else ctx.no_model)
    ctx.say("nearest neighbours")
    return live.neighbours_section(ctx.run, ctx.opts.neighbours, ctx.opts.k_neighbours)
