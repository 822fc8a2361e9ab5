"""Self-contained HTML report of a run (``xbyol report``)."""

from xbyol.report.html import ReportOptions, build_sections, render_html, write_report

__all__ = ["ReportOptions", "build_sections", "render_html", "write_report"]
