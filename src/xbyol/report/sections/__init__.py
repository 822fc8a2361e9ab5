"""The report's sections, in order: one module per topic, each with ``build(ctx) -> Section``
reading a :class:`~xbyol.report.context.ReportContext`.

A section whose data do not exist says so and names the command that computes it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from xbyol.report.blocks import Section
from xbyol.report.context import ReportContext
from xbyol.report.sections import concepts, dissection, evaluation, gallery, model, retrieval, run, training

__all__ = ["SECTIONS", "SectionSpec"]


@dataclass(frozen=True)
class SectionSpec:
    """A report section: its anchor id, its title and the function that builds it."""

    id: str
    title: str
    build: Callable[[ReportContext], Section]


SECTIONS = (
    SectionSpec("run", "Run", run.build),
    SectionSpec("training", "Training curves", training.build),
    SectionSpec("views", "Augmented views", model.views),
    SectionSpec("evaluation", "Evaluation", evaluation.build),
    SectionSpec("concepts", "Concept scores", concepts.build),
    SectionSpec("retrieval", "Retrieval", retrieval.build),
    SectionSpec("embedding-map", "Embedding map", model.embedding_map),
    SectionSpec("neighbours", "Nearest neighbours", model.neighbours),
    SectionSpec("gallery", "Heatmap gallery", gallery.build),
    SectionSpec("dissection", "Network dissection", dissection.build),
)
