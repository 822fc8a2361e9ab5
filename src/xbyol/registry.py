"""Name -> factory registries for datasets, methods, explainers, evaluators (timm-style, stripped down).

Each package's ``__init__`` imports its built-in modules, so importing the package (or any
module in it) registers everything it ships; nobody has to call a loader first.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, Generic, TypeVar

T = TypeVar("T")


class Registry(Generic[T]):
    """A named collection of factories.

    >>> backbones = Registry("backbone")
    >>> @backbones.register("tiny")
    ... def tiny(**kw): ...
    >>> backbones.create("tiny")
    """

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._factories: dict[str, Callable[..., T]] = {}
        self._docs: dict[str, str] = {}

    def register(
        self, name: str, doc: str | None = None, replace: bool = False
    ) -> Callable[[Callable[..., T]], Callable[..., T]]:
        """Decorator registering ``fn`` under ``name`` (``replace=True`` overrides an existing entry)."""

        def deco(fn: Callable[..., T]) -> Callable[..., T]:
            if name in self._factories and not replace:
                raise ValueError(f"{self.kind} {name!r} is already registered")
            self._factories[name] = fn
            text = doc if doc is not None else (fn.__doc__ or "").strip().splitlines()
            self._docs[name] = text if isinstance(text, str) else (text[0] if text else "")
            return fn

        return deco

    def get(self, name: str) -> Callable[..., T]:
        """The factory registered as ``name``; ``KeyError`` naming the known ones otherwise."""
        if name not in self._factories:
            raise KeyError(f"unknown {self.kind} {name!r}; available: {', '.join(self.names())}")
        return self._factories[name]

    def check(self, names: Iterable[str]) -> list[str]:
        """``names`` stripped, in order, without duplicates; ``ValueError`` naming the unknown ones and the choices."""
        out = list(dict.fromkeys(s for s in (str(n).strip() for n in names) if s))
        unknown = [n for n in out if n not in self._factories]
        if unknown or not out:
            given = f"unknown {self.kind}(s) {', '.join(map(repr, unknown))}" if unknown else f"no {self.kind} given"
            raise ValueError(f"{given}; available: {', '.join(self.names())}")
        return out

    def create(self, name: str, **kwargs: Any) -> T:
        """Call the factory ``name`` with ``kwargs``."""
        return self.get(name)(**kwargs)

    def names(self) -> list[str]:
        """Registered names, sorted."""
        return sorted(self._factories)

    def items(self) -> list[tuple[str, Callable[..., T]]]:
        """``(name, factory)`` pairs, sorted by name."""
        return [(n, self._factories[n]) for n in self.names()]

    def doc(self, name: str) -> str:
        return self._docs.get(name, "")

    def __contains__(self, name: object) -> bool:
        return name in self._factories
