"""``xbyol report``: one self-contained HTML file about a run (Jinja2 template, figures inlined).

Every section is optional: what a run directory does not hold is named, with the command
that computes it, so a run with only ``config.yaml`` and ``metrics.csv`` still renders.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from xbyol import __version__
from xbyol.report.artifacts import RunArtifacts
from xbyol.report.blocks import Section, format_value
from xbyol.report.context import ReportContext, ReportOptions
from xbyol.report.sections import SECTIONS, SectionSpec
from xbyol.rundir import RunDir

__all__ = ["ReportOptions", "build_sections", "render_html", "write_report"]

TEMPLATE = "report.html"


def _guard(spec: SectionSpec, ctx: ReportContext) -> Section:
    """Build one section; its failure becomes a section that shows the error."""
    try:
        return spec.build(ctx)
    except Exception as e:  # noqa: BLE001 - one broken file must not cost the whole report
        if ctx.opts.strict:
            raise
        print(f"xbyol report: section {spec.title!r} failed: {type(e).__name__}: {e}", file=sys.stderr)
        return Section(spec.id, spec.title, error=f"{type(e).__name__}: {e}")


def build_sections(run_dir: str | Path, options: ReportOptions | None = None) -> tuple[RunArtifacts, list[Section]]:
    """Read the run directory, load the model, build every section of :data:`~xbyol.report.sections.SECTIONS` in order."""
    ctx = ReportContext.read(run_dir, options or ReportOptions())
    return ctx.a, [_guard(spec, ctx) for spec in SECTIONS]


def _environment():
    from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape

    env = Environment(
        loader=PackageLoader("xbyol.report", "templates"),
        autoescape=select_autoescape(["html"]),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["fmt"] = format_value
    return env


def render_html(a: RunArtifacts, sections: list[Section], title: str | None = None) -> str:
    """Render the sections with ``templates/report.html``."""
    return _environment().get_template(TEMPLATE).render(
        title=title or f"xbyol report: {a.cfg.name}",
        run_name=a.cfg.name,
        method=a.cfg.method.name,
        dataset=a.cfg.data.name,
        generated=time.strftime("%Y-%m-%d %H:%M:%S"),
        version=__version__,
        sections=sections,
    )


def write_report(run_dir: str | Path, out: str | Path | None = None, options: ReportOptions | None = None) -> Path:
    """Build and write the report of a run.

    Args:
        run_dir: a directory written by ``xbyol train``.
        out: the HTML file (default ``RUN_DIR/report.html``).
        options: what to compute (:class:`ReportOptions`).

    Returns:
        The path written.
    """
    a, sections = build_sections(run_dir, options)
    html = render_html(a, sections)
    return RunDir.write(Path(out) if out is not None else a.paths.report, html)
