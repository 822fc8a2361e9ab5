"""What every report section is built from: the options, the run's files and, when its
checkpoint loads, the run itself (else the reason there is none)."""

from __future__ import annotations

import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from xbyol.data.sampling import dataset_labels
from xbyol.explain.base import EXPLAINERS
from xbyol.report.artifacts import RunArtifacts
from xbyol.report.blocks import Section
from xbyol.run import LoadedRun, load_run
from xbyol.rundir import RunDir

__all__ = ["Baseline", "ReportContext", "ReportOptions", "absent", "cmd"]


@dataclass
class ReportOptions:
    """What the report computes from the model (files are always read).

    Attributes:
        gallery_images: test images in the heatmap gallery (0: no gallery).
        methods: explainer methods of the gallery (None: gradcam, gradcampp, scorecam,
            integrated_gradients, those registered).
        gallery_groups: concept groups whose concepts each gallery image is explained for.
        max_concepts: concepts per gallery image.
        gallery_indices: explicit test-split indices for the gallery.
        embedding_map: ``"pca"``, ``"tsne"``, ``"umap"`` or ``None`` (no map).
        map_points: most test images in the map.
        confusion: compute the concept-confusion figures (runs with concept scores).
        baselines: other run directories whose ``eval.json`` is shown beside this run's.
        smoothing: training curves also drawn as an exponential moving average with this
            weight on the past (0: raw values only; e.g. 0.9).
        heatmap_scale: gallery heatmaps scaled per image (``"image"``) or one scale per
            method and concept over the gallery's images (``"shared"``).
        views: training images shown with their two augmented BYOL views (0: none).
        neighbours: test images in the nearest-neighbour gallery (0: none).
        k_neighbours: neighbours shown per image.
        device: where the model runs.
        progress: tqdm progress bars for the long steps.
        strict: re-raise a section's error instead of showing it in the report.
    """

    gallery_images: int = 6
    methods: list[str] | None = None
    gallery_groups: tuple[str, ...] = ("shape", "colour")
    max_concepts: int = 3
    gallery_indices: list[int] | None = None
    embedding_map: str | None = "tsne"
    map_points: int = 1000
    confusion: bool = True
    baselines: list[str | Path] = field(default_factory=list)
    smoothing: float = 0.0
    heatmap_scale: str = "image"
    views: int = 4
    neighbours: int = 4
    k_neighbours: int = 5
    device: str = "cpu"
    progress: bool = True
    strict: bool = False

    def __post_init__(self) -> None:
        if self.methods is not None:
            self.methods = EXPLAINERS.check(self.methods)


@dataclass
class Baseline:
    """Another run's ``eval.json``, shown in a column beside this run's numbers."""

    label: str
    eval: dict[str, Any] | None
    path: Path

    @classmethod
    def read(cls, run_dir: str | Path) -> "Baseline":
        d = RunDir(run_dir)
        cfg = d.read_config()
        return cls(label=f"{cfg.method.name} ({d.root.name})", eval=d.read_json(d.eval), path=d.root)


@dataclass
class ReportContext:
    """Everything a section builder reads.

    Attributes:
        a: the run's files.
        opts: what to compute.
        baselines: other runs shown in columns beside this one.
        run: the loaded run (``None`` without a loadable checkpoint).
        no_model: why a section that needs the model is empty (when ``run`` is ``None``).
        datasets: descriptions of the loaded train and test splits.
        chance: accuracy of always answering the test split's most frequent class.
    """

    a: RunArtifacts
    opts: ReportOptions
    baselines: list[Baseline]
    run: LoadedRun | None = None
    no_model: str = ""
    datasets: list[str] | None = None
    chance: float | None = None

    @classmethod
    def read(cls, run_dir: str | Path, opts: ReportOptions) -> "ReportContext":
        """Read the run directory and load the model when there is a checkpoint (its failure is kept, not raised)."""
        a = RunArtifacts.read(run_dir, strict=opts.strict)
        for name, why in a.errors.items():
            print(f"xbyol report: could not read {name}: {why}", file=sys.stderr)
        ctx = cls(a, opts, [Baseline.read(b) for b in opts.baselines],
                  no_model=f"needs the trained model: {a.paths.checkpoint('last')} is missing.")
        if a.has_checkpoint:
            ctx.say("loading the model")
            try:
                ctx.run = load_run(a.run_dir, device=opts.device)
            except Exception as e:  # noqa: BLE001
                if opts.strict:
                    raise
                ctx.no_model = f"the checkpoint could not be loaded: {type(e).__name__}: {e}"
        if ctx.run is not None:
            ctx.datasets = [ctx.run.dataset(s).describe() for s in ("train", "test")]
            labels = dataset_labels(ctx.run.dataset("test"))
            if labels:
                ctx.chance = max(Counter(labels).values()) / len(labels)  # always answering the most frequent class
        return ctx

    @property
    def step(self) -> int | None:
        """Step of the loaded checkpoint."""
        return self.run.step if self.run is not None else None

    def say(self, msg: str) -> None:
        if self.opts.progress:
            print(f"xbyol report: {msg}", file=sys.stderr)


def cmd(command: str, a: RunArtifacts) -> str:
    return f"`xbyol {command} {a.run_dir}`"


def absent(sec: Section, a: RunArtifacts, name: str, missing: str) -> Section:
    """Mark a section empty: the file could not be read (an error), else it is not there (a note)."""
    if name in a.errors:
        sec.error = a.errors[name]
    else:
        sec.missing = missing
    return sec
