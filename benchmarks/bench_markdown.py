"""Replace one ``## `` section of ``benchmarks/BENCHMARKS.md`` with a benchmark's new text.

Shared by the benchmark scripts that write their own section (``--write``); imported as
``from bench_markdown import write_section`` because the scripts run as ``python
benchmarks/<name>.py``, which puts this folder first on ``sys.path``.
"""

from __future__ import annotations

import re
from pathlib import Path


def _section(heading: str) -> re.Pattern[str]:
    """The section under ``heading``: its heading line up to the next ``## `` heading or the end."""
    return re.compile(re.escape(heading) + r"\n.*?(?=^## |\Z)", re.S | re.M)


def replace_section(md: str, heading: str, text: str) -> str:
    """``md`` with the section under ``heading`` (up to the next ``## `` heading) replaced by ``text``.

    ``text`` starts with ``heading``; a missing section is appended at the end, and an
    empty document gets a ``# Benchmarks`` title first. ``### `` subsections belong to
    the section they sit in.
    """
    old = md if md.strip() else "# Benchmarks\n"
    pattern = _section(heading)
    if pattern.search(old):
        return pattern.sub(lambda _: text.rstrip("\n") + "\n\n", old, count=1).rstrip("\n") + "\n"
    return old.rstrip("\n") + "\n\n" + text.rstrip("\n") + "\n"


def hand_written_tail(md: str, heading: str, marker: str) -> str:
    """The part of ``md``'s section under ``heading`` from its first line starting with ``marker``
    to the section's end (the next ``## `` heading), or '' when the section or the line is missing.

    A script renders its section's budget, rules and tables; what follows them (a ``### Reading``,
    a ``Reading:`` paragraph, a hand-made subsection) is written by hand and must survive ``--write``.
    """
    section = _section(heading).search(md)
    at = re.search("^" + re.escape(marker), section.group(0), re.M) if section else None
    return section.group(0)[at.start():].strip("\n") if at else ""


def write_section(path: Path, heading: str, text: str, keep: str | None = None) -> None:
    """Rewrite ``path`` (created when missing) with :func:`replace_section`; with ``keep``, the
    section's hand-written tail from its first line starting with ``keep`` (:func:`hand_written_tail`)
    follows ``text``, and a line says so, since the tail may now disagree with the new tables."""
    md = path.read_text() if path.is_file() else ""
    tail = hand_written_tail(md, heading, keep) if keep else ""
    if tail:
        text = text.rstrip("\n") + "\n\n" + tail + "\n"
        print(f"{path.name}: kept the hand-written part of {heading!r} from {keep!r}; check it against the new tables")
    path.write_text(replace_section(md, heading, text))
