"""Replace one ``## `` section of ``benchmarks/BENCHMARKS.md`` with a benchmark's new text.

Shared by the benchmark scripts that write their own section (``--write``); imported as
``from bench_markdown import write_section`` because the scripts run as ``python
benchmarks/<name>.py``, which puts this folder first on ``sys.path``.
"""

from __future__ import annotations

import re
from pathlib import Path


def replace_section(md: str, heading: str, text: str) -> str:
    """``md`` with the section under ``heading`` (up to the next ``## `` heading) replaced by ``text``.

    ``text`` starts with ``heading``; a missing section is appended at the end, and an
    empty document gets a ``# Benchmarks`` title first. ``### `` subsections belong to
    the section they sit in.
    """
    old = md if md.strip() else "# Benchmarks\n"
    pattern = re.compile(re.escape(heading) + r"\n.*?(?=^## |\Z)", re.S | re.M)
    if pattern.search(old):
        return pattern.sub(lambda _: text.rstrip("\n") + "\n\n", old, count=1).rstrip("\n") + "\n"
    return old.rstrip("\n") + "\n\n" + text.rstrip("\n") + "\n"


def write_section(path: Path, heading: str, text: str) -> None:
    """Rewrite ``path`` (created when missing) with :func:`replace_section`."""
    path.write_text(replace_section(path.read_text() if path.is_file() else "", heading, text))
