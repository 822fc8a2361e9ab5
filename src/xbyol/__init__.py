"""xbyol: self-supervised representation learning with BYOL that can explain what it learned.

The Python API mirrors the command line::

    import xbyol
    cfg = xbyol.load_config("configs/shapes_byol.yaml", ["train.steps=200"])
    run_dir = xbyol.train(cfg)
    results = xbyol.evaluate(run_dir)

Explainers live in ``xbyol.explain`` (``from xbyol.explain import explain``): the name
``xbyol.explain`` is the subpackage, so it is not re-exported as a function here.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

_LAZY = {
    "train": ("xbyol.training.trainer", "train"),
    "resume_run": ("xbyol.training.trainer", "resume_run"),
    "evaluate": ("xbyol.eval.evaluate", "evaluate"),
    "load_config": ("xbyol.config", "load"),
    "Config": ("xbyol.config", "Config"),
    "load_run": ("xbyol.run", "load_run"),
    "create_dataset": ("xbyol.data", "create_dataset"),
    "create_backbone": ("xbyol.models", "create_backbone"),
    "explain_embedding": ("xbyol.concepts.explain_embedding", "explain_embedding"),
}


def __getattr__(name: str) -> Any:
    # Lazy re-exports keep `import xbyol` fast (no torch import until needed).
    if name in _LAZY:
        import importlib

        module, attr = _LAZY[name]
        return getattr(importlib.import_module(module), attr)
    raise AttributeError(f"module 'xbyol' has no attribute {name!r}")


__all__ = list(_LAZY) + ["__version__"]
