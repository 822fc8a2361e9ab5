"""Import a script that is not part of the package (benchmarks/, examples/) as a module, for tests."""

from __future__ import annotations

import contextlib
import importlib.util
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType


def load_script(path: Path, name: str) -> ModuleType:
    """Execute ``path`` as module ``name`` (registered in ``sys.modules``, so dataclasses and pickling work)."""
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None, path
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


@contextlib.contextmanager
def benchmark_script(name: str) -> Iterator[ModuleType]:
    """``benchmarks/<name>.py`` loaded as ``bench_<name>``, with ``benchmarks/`` on ``sys.path`` while it is in use
    (the scripts import their sibling helpers, e.g. ``bench_seeds``, as they do when run from there)."""
    folder = str(Path(__file__).resolve().parents[1] / "benchmarks")
    sys.path.insert(0, folder)
    try:
        yield load_script(Path(folder) / f"{name}.py", f"bench_{name}")
    finally:
        sys.path.remove(folder)
