"""What a report is made of: sections holding tables, figures, key-value lists, notes.

The template (``templates/report.html``) renders each block by its ``kind``; builders only
produce these plain objects, so what a section shows is testable without HTML.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Code", "Figure", "Gallery", "GalleryImage", "GalleryRow", "GridCell", "GridRow", "ImageGrid", "KeyValues",
           "Note", "Section", "Table", "flatten", "format_value"]


@dataclass
class Table:
    columns: list[str]
    rows: list[list[Any]]
    caption: str = ""
    kind: str = "table"


@dataclass
class Figure:
    src: str  # a data: URI
    caption: str = ""
    alt: str = ""
    kind: str = "figure"


@dataclass
class KeyValues:
    items: list[tuple[str, Any]]
    caption: str = ""
    kind: str = "kv"


@dataclass
class Note:
    """A line of text; ``level="warning"`` draws it as a warning (a result a reader must not miss)."""

    text: str
    kind: str = "note"
    level: str = "info"


@dataclass
class Code:
    text: str
    summary: str
    kind: str = "code"


@dataclass
class GalleryRow:
    concept: str
    score: float
    cells: list[str]  # data URIs, one per method


@dataclass
class GalleryImage:
    title: str
    subtitle: str
    src: str
    rows: list[GalleryRow]


@dataclass
class Gallery:
    methods: list[str]
    images: list[GalleryImage]
    colorbar: str = ""  # data URI of the heatmaps' colour scale
    scale: str = "each map scaled to its own lowest..highest value"
    kind: str = "gallery"


@dataclass
class GridCell:
    src: str  # a data: URI
    caption: str = ""
    mark: str = ""  # "same" / "other": a border saying whether it matches the row's first image


@dataclass
class GridRow:
    label: str
    cells: list[GridCell]


@dataclass
class ImageGrid:
    """Rows of small images under column headers (augmented views, nearest neighbours)."""

    columns: list[str]
    rows: list[GridRow]
    caption: str = ""
    kind: str = "grid"


@dataclass
class Section:
    """One report section; ``missing`` says why there is nothing to show and how to compute it."""

    id: str
    title: str
    blocks: list[Any] = field(default_factory=list)
    missing: str | None = None
    error: str | None = None
    intro: str = ""


def format_value(v: Any) -> str:
    """Numbers for people: 4 significant decimals, ``n/a`` for NaN, ``-`` for None."""
    if v is None:
        return "-"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        if math.isnan(v):
            return "n/a"
        if math.isinf(v):
            return "inf" if v > 0 else "-inf"
        if v == int(v) and abs(v) < 1e9:
            return str(int(v))
        if abs(v) >= 1000 or abs(v) < 1e-3:
            return f"{v:.4g}"
        return f"{v:.4f}"
    if isinstance(v, (list, tuple)):
        return ", ".join(format_value(x) for x in v)
    return str(v)


def flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested dicts to dotted keys (``{"a": {"b": 1}} -> {"a.b": 1}``); lists are kept as values."""
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(flatten(v, key + "."))
        else:
            out[key] = v
    return out
