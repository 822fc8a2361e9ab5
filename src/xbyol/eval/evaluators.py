"""Registry of extra evaluations run by ``xbyol eval`` after the core probes.

Each evaluator is ``fn(run: LoadedRun) -> dict | None`` (None: not applicable to this
run) registered with ``@EVALUATORS.register(name)``; its result is stored under
``eval.json[name]``.
"""

from __future__ import annotations

import importlib

from xbyol.registry import Registry

EVALUATORS: Registry = Registry("evaluator")

# Modules that register evaluators; imported lazily by load_evaluators().
EVALUATOR_MODULES: list[str] = [
    "xbyol.eval.concept_eval",
    "xbyol.eval.retrieval_eval",
]


def load_evaluators() -> Registry:
    for name in EVALUATOR_MODULES:
        try:
            importlib.import_module(name)
        except ModuleNotFoundError as e:
            if e.name != name:
                raise
    return EVALUATORS
