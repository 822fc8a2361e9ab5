"""The trainer's collapse monitors: statistics of every ``"embed/"`` output of a method.

Logged every ``train.monitor_every`` steps as ``<name>_std``, ``<name>_rank`` and
``<name>_std_healthy`` (the isotropic reference ``1/sqrt(D)``), beside the trainer's
:class:`xbyol.training.run_files.MetricsLog`.
"""

from __future__ import annotations

import math

import torch

from xbyol.methods.collapse import effective_rank, embedding_std


def monitor_stats(out: dict[str, torch.Tensor]) -> dict[str, float]:
    """Std, effective rank and healthy std of each ``out["embed/<name>"]`` (``[B, D]``).

    Args:
        out: a method's ``training_step`` output; keys without the ``"embed/"`` prefix are ignored.

    Returns:
        ``{"<name>_std", "<name>_rank", "<name>_std_healthy"}`` for every embedding.
    """
    stats: dict[str, float] = {}
    for k, v in out.items():
        if k.startswith("embed/"):
            name = k.split("/", 1)[1]
            z = v.detach().float()  # (B, D)
            stats[f"{name}_std"] = float(embedding_std(z))
            stats[f"{name}_rank"] = float(effective_rank(z))
            stats[f"{name}_std_healthy"] = 1.0 / math.sqrt(z.shape[1])
    return stats
