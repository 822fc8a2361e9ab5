"""Training objectives: ``create_method(cfg, dataset)``; one module per method."""

from __future__ import annotations

import importlib
import pkgutil

from xbyol.methods.base import METHODS, Method, create_method


def _load_builtin() -> None:
    """Import every module of this package so each registers its method."""
    import xbyol.methods as pkg

    for mod in pkgutil.iter_modules(pkg.__path__):
        if mod.name != "base":
            importlib.import_module(f"xbyol.methods.{mod.name}")


def names() -> list[str]:
    _load_builtin()
    return METHODS.names()


__all__ = ["METHODS", "Method", "create_method", "names"]
