"""Registry of extra evaluations run by ``xbyol eval`` after the core probes.

Each evaluator is ``fn(run: LoadedRun) -> dict | None`` (None: not applicable to this
run) registered with ``@EVALUATORS.register(name)``; its result is stored under
``eval.json[name]``. The package ``xbyol.eval`` imports the built-in ones.
"""

from __future__ import annotations

from xbyol.registry import Registry

EVALUATORS: Registry = Registry("evaluator")
