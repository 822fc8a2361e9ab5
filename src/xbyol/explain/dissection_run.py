"""Dissecting a trained run: its backbone and, as the baseline, a random twin of the same
architecture; writes the tables (:meth:`DissectionResult.write`) and the figure of each."""

from __future__ import annotations

from pathlib import Path
from typing import cast

import torch
from torch import nn

from xbyol.explain.dissection import DissectionResult, dissect
from xbyol.explain.dissection_figure import plot_top_units
from xbyol.models.interpretable import InterpretableBackbone, wrap_interpretable
from xbyol.models.resnet import ResNet
from xbyol.rundir import Run


def random_twin(run: Run, seed: int | None = None) -> nn.Module:
    """A randomly initialised backbone of the same architecture as ``run.backbone``
    (the interpretable wrapper included), seeded with ``seed`` (default ``train.seed``)."""
    seed = run.cfg.train.seed if seed is None else seed
    twin = run.random_init_backbone(seed)
    trained = run.backbone
    if isinstance(trained, InterpretableBackbone) and not isinstance(twin, InterpretableBackbone):
        with torch.random.fork_rng():
            torch.manual_seed(seed)
            twin = wrap_interpretable(cast(ResNet, twin), trained.weight, tau=trained.interpretable.tau)
    return twin.to(run.device).eval()


def dissect_run(
    run: Run,
    layer: str | None = None,
    quantile: float = 0.005,
    iou_threshold: float = 0.04,
    split: str = "test",
    batch_size: int = 64,
    baseline: str | None = None,
    out: str | Path | None = None,
    top_units: int = 8,
    top_images: int = 5,
    progress: bool = True,
) -> dict[str, DissectionResult]:
    """Dissect a loaded run (and its random-init twin) and write the outputs.

    Writes ``OUT/iou.csv``, ``units.csv``, ``summary.json`` and ``top_units.png`` for the
    trained backbone and the same under ``OUT/random/`` for ``baseline="random"``; ``OUT``
    defaults to ``RUN_DIR/dissect/<layer>``.

    Args:
        run: a :class:`xbyol.run.LoadedRun`.
        layer: dotted module name inside the backbone (default: its ``feature_layer``).
        baseline: ``None`` or ``"random"``.
        (others): see :func:`dissect` and :func:`plot_top_units`.

    Returns:
        ``{"trained": result}`` plus ``"random"`` with the baseline.
    """
    if baseline not in (None, "none", "random"):
        raise ValueError(f"baseline must be 'random' or none, got {baseline!r}")
    dataset = run.dataset(split)
    nets = {"trained": run.backbone}
    if baseline == "random":
        nets["random"] = random_twin(run)
    results: dict[str, DissectionResult] = {}
    out_dir: Path | None = Path(out) if out is not None else None
    for key, net in nets.items():
        res = dissect(net, dataset, layer, quantile, iou_threshold, batch_size, run.device, progress=progress)
        if out_dir is None:
            out_dir = run.paths.dissect / res.layer
        where = out_dir if key == "trained" else out_dir / key
        res.write(where)
        plot_top_units(
            res, net, dataset, where / "top_units.png", top_units, top_images, run.device,
            title=f"{key} {res.layer}: top units (bright: unit mask, cyan outline: concept mask)",
        )
        results[key] = res
    return results


def format_summary(results: dict[str, DissectionResult]) -> str:
    """A plain-text table: detectors and unique concepts per group under both rules, per model."""
    first = next(iter(results.values()))
    groups = list(first.summary["unique_release_per_group"])
    head = ["model", "units", "detectors", "unique (paper)", "unique (release)"] + [f"{g} p/r" for g in groups]
    rows = [head]
    for key, res in results.items():
        s = res.summary
        rows.append(
            [key, str(s["units"]), str(s["detectors"]), str(s["unique_paper"]), str(s["unique_release"])]
            + [f"{s['unique_paper_per_group'][g]}/{s['unique_release_per_group'][g]}" for g in groups]
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(head))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)) for r in rows]
    note = (
        f"layer {first.layer}, {first.num_images} images, quantile {first.quantile}, IoU > {first.iou_threshold}; "
        "p/r = unique concepts by the paper / release rule"
    )
    return "\n".join([note, *lines])
