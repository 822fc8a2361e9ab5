"""Network dissection: per dissected layer, detector counts per concept group, the top units, the figures."""

from __future__ import annotations

import math
from typing import Any

from xbyol.explain.render import png_data_uri
from xbyol.report.artifacts import RunArtifacts
from xbyol.report.blocks import Figure, KeyValues, Note, Section, Table
from xbyol.report.context import ReportContext, absent, cmd
from xbyol.rundir import DISSECT, DISSECT_SUMMARY

__all__ = ["build", "dissection_section"]


def _cell(key: str, text: str, iou: float) -> Any:
    """A ``units.csv`` value for the table: IoU as a number, detector as a boolean."""
    if key == "iou":
        return iou
    if key == "detector" and text in ("True", "False", "true", "false", "1", "0"):
        return text in ("True", "true", "1")
    return text


def dissection_section(a: RunArtifacts, top_units: int = 10, max_figure_bytes: int = 4_000_000) -> Section:
    """Per dissected layer: detector counts per concept group, the top units, the figures."""
    sec = Section("dissection", "Network dissection",
                  intro="A unit detects a concept when the IoU of its thresholded activation map with the concept's "
                        "segmentation exceeds the threshold (Bau et al. 2017).")
    if not a.dissections:
        return absent(sec, a, DISSECT, f"not computed: run {cmd('dissect', a)} (writes {a.paths.dissect}/<layer>/{DISSECT_SUMMARY}).")
    for d in a.dissections:
        s = d.summary
        where = d.directory.relative_to(a.run_dir)
        labels = {"layer": "layer", "num_images": "images dissected", "quantile": "activation quantile",
                  "iou_threshold": "IoU threshold", "exact_thresholds": "exact thresholds", "units": "units",
                  "detectors": "detector units", "unique_paper": "unique concepts (paper rule)",
                  "unique_release": "unique concepts (release rule)"}
        kv = [(label, s[k]) for k, label in labels.items() if k in s]
        sec.blocks.append(KeyValues(kv, caption=f"{where}"))
        per_group = [k for k in ("detectors_per_group", "unique_paper_per_group", "unique_release_per_group")
                     if isinstance(s.get(k), dict)]
        if per_group:
            groups = list(dict.fromkeys(g for k in per_group for g in s[k]))
            cols = {"detectors_per_group": "detector units", "unique_paper_per_group": "unique concepts (paper rule)",
                    "unique_release_per_group": "unique concepts (release rule)"}
            sec.blocks.append(Table(["group"] + [cols[k] for k in per_group],
                                    [[g] + [s[k].get(g) for k in per_group] for g in groups],
                                    caption="Detectors per concept group"))
        if d.units:
            def iou(row: dict[str, str]) -> float:
                try:
                    return float(row.get("iou", "nan"))
                except ValueError:
                    return math.nan

            best = sorted(d.units, key=lambda r: -iou(r) if not math.isnan(iou(r)) else math.inf)[:top_units]
            keys: list[str] = [k for k in ("unit", "concept", "group", "iou", "detector") if k in best[0]]
            rows = [[_cell(k, r[k], iou(r)) for k in keys] for r in best]
            sec.blocks.append(Table(keys, rows, caption=f"Top {len(rows)} units by IoU"))
        for p in d.figures:
            if p.stat().st_size <= max_figure_bytes:
                sec.blocks.append(Figure(png_data_uri(p.read_bytes()), caption=str(p.relative_to(a.run_dir)), alt=p.name))
            else:
                sec.blocks.append(Note(f"{p.relative_to(a.run_dir)} is too large to embed ({p.stat().st_size} bytes)."))
    return sec


def build(ctx: ReportContext) -> Section:
    return dissection_section(ctx.a)
