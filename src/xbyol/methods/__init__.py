"""Training objectives: ``create_method(cfg, dataset)``; one module per method.

Importing the package registers the built-in methods in :data:`METHODS`.
"""

from __future__ import annotations

from xbyol.methods import byol, clip, xbyol, xmodal  # noqa: F401 - registers the built-ins
from xbyol.methods.base import METHODS, Method, check_method_name, create_method


def names() -> list[str]:
    """Names of the registered methods."""
    return METHODS.names()


__all__ = ["METHODS", "Method", "check_method_name", "create_method", "names"]
