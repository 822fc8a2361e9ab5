"""docs/FORMULAS.md names the tests that pin each formula: every one of them exists."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def named_tests(text: str) -> list[tuple[str, str | None]]:
    """``(file, test or None)`` for each `tests/x.py::name`, `::name` or `tests/x.py` in the "Pinned by" bullets.

    A bare ``::name`` belongs to the last file named before it in the same bullet.
    """
    out: list[tuple[str, str | None]] = []
    for bullet in re.findall(r"\*\*Pinned by:\*\*(.*?)(?=\n- \*\*|\n## |\Z)", text, re.S):
        current = None
        for m in re.finditer(r"`(tests/[\w/]+\.py)?(?:::(\w+))?`", bullet):
            current = m.group(1) or current
            assert current, f"::{m.group(2)} is named before any test file"
            out.append((current, m.group(2)))
    return out


def test_every_test_named_in_formulas_md_exists():
    named = named_tests((ROOT / "docs" / "FORMULAS.md").read_text())
    assert len(named) >= 30
    for path, name in named:
        source = (ROOT / path).read_text()
        if name:
            assert re.search(rf"^def {name}\(", source, re.M), f"{path}::{name} does not exist"
