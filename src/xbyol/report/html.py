"""``xbyol report``: one self-contained HTML file about a run (Jinja2 template, figures inlined).

Every section is optional: what a run directory does not hold is named, with the command
that computes it, so a run with only ``config.yaml`` and ``metrics.csv`` still renders.
"""

from __future__ import annotations

import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from xbyol import __version__
from xbyol.data.io import atomic_write
from xbyol.data.sampling import dataset_labels
from xbyol.explain.base import EXPLAINERS
from xbyol.report import live, sections
from xbyol.report.artifacts import RunArtifacts
from xbyol.report.blocks import Note, Section, format_value
from xbyol.run import load_run

__all__ = ["ReportOptions", "build_sections", "render_html", "write_report"]

TEMPLATE = "report.html"


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


def _guard(build: Callable[[], Section], sid: str, title: str, strict: bool) -> Section:
    """Run a section builder; its failure becomes a section that shows the error."""
    try:
        return build()
    except Exception as e:  # noqa: BLE001 - one broken file must not cost the whole report
        if strict:
            raise
        print(f"xbyol report: section {title!r} failed: {type(e).__name__}: {e}", file=sys.stderr)
        return Section(sid, title, error=f"{type(e).__name__}: {e}")


def build_sections(run_dir: str | Path, options: ReportOptions | None = None) -> tuple[RunArtifacts, list[Section]]:
    """Read the run directory, compute what needs the model, return the sections in order."""
    opts = options or ReportOptions()
    a = RunArtifacts.read(run_dir, strict=opts.strict)
    for name, why in a.errors.items():
        print(f"xbyol report: could not read {name}: {why}", file=sys.stderr)
    say = (lambda msg: print(f"xbyol report: {msg}", file=sys.stderr)) if opts.progress else (lambda msg: None)
    baselines = [sections.Baseline.read(b) for b in opts.baselines]

    run = None
    load_error = None
    if a.has_checkpoint:
        say("loading the model")
        try:
            run = load_run(a.run_dir, device=opts.device)
        except Exception as e:  # noqa: BLE001
            if opts.strict:
                raise
            load_error = f"the checkpoint could not be loaded: {type(e).__name__}: {e}"
    no_model = load_error or f"needs the trained model: {a.run_dir / 'checkpoints' / 'last.pt'} is missing."

    step = run.step if run is not None else None
    datasets = None
    chance = None
    if run is not None:
        datasets = [run.dataset(s).describe() for s in ("train", "test")]
        labels = dataset_labels(run.dataset("test"))
        if labels:
            chance = max(Counter(labels).values()) / len(labels)  # always answering the most frequent class
    def views() -> Section:
        if opts.views <= 0:
            return Section("views", "Augmented views", missing="not computed: disabled in the report options.")
        if run is None:
            return Section("views", "Augmented views", missing=no_model)
        say("augmented views")
        return live.views_section(run, opts.views, seed=run.cfg.train.seed)

    def evaluation() -> Section:
        sec = sections.evaluation_section(a, baselines, step, chance)
        if sec.missing is None and a.eval is not None and "trained" in a.eval:
            if run is None:
                sec.blocks.append(Note(f"probe confusion matrix {no_model}"))
            else:
                say("probe confusion matrix")
                sec.blocks.extend(live.probe_confusion_blocks(run))
        return sec

    out = [
        _guard(lambda: sections.run_section(a, step, datasets), "run", "Run", opts.strict),
        _guard(lambda: sections.training_section(a, opts.smoothing), "training", "Training curves", opts.strict),
        _guard(views, "views", "Augmented views", opts.strict),
        _guard(evaluation, "evaluation", "Evaluation", opts.strict),
    ]

    def concepts() -> Section:
        sec = sections.concepts_section(a, baselines)
        if sec.missing is None and opts.confusion:
            if run is None:
                sec.blocks.append(Note(f"concept confusion {no_model}"))
            else:
                say("concept confusion")
                sec.blocks.extend(live.confusion_blocks(run, progress=opts.progress))
        return sec

    out.append(_guard(concepts, "concepts", "Concept scores", opts.strict))
    out.append(_guard(lambda: sections.retrieval_section(a, baselines), "retrieval", "Retrieval", opts.strict))

    def embedding_map() -> Section:
        if opts.embedding_map is None:
            return Section("embedding-map", "Embedding map", missing="not computed: disabled in the report options.")
        if run is None:
            return Section("embedding-map", "Embedding map", missing=no_model)
        say(f"embedding map ({opts.embedding_map})")
        return live.embedding_map_section(run, opts.embedding_map, opts.map_points, opts.progress)

    out.append(_guard(embedding_map, "embedding-map", "Embedding map", opts.strict))

    def neighbours() -> Section:
        if opts.neighbours <= 0:
            return Section("neighbours", "Nearest neighbours", missing="not computed: disabled in the report options.")
        if run is None:
            return Section("neighbours", "Nearest neighbours", missing=no_model)
        say("nearest neighbours")
        return live.neighbours_section(run, opts.neighbours, opts.k_neighbours)

    out.append(_guard(neighbours, "neighbours", "Nearest neighbours", opts.strict))

    def gallery() -> Section:
        metrics = sections.explain_metrics_blocks(a)
        if opts.gallery_images <= 0 and not opts.gallery_indices:
            return Section("gallery", "Heatmap gallery", blocks=metrics + [Note("gallery disabled in the report options.")])
        if run is None:
            return Section("gallery", "Heatmap gallery", blocks=metrics + [Note(f"gallery {no_model}")])
        say("heatmap gallery")
        return live.gallery_section(run, opts.gallery_images, opts.methods, opts.gallery_groups, opts.max_concepts,
                                    opts.gallery_indices, opts.progress, extra_blocks=metrics, scale=opts.heatmap_scale)

    out.append(_guard(gallery, "gallery", "Heatmap gallery", opts.strict))
    out.append(_guard(lambda: sections.dissection_section(a), "dissection", "Network dissection", opts.strict))
    return a, out


def _environment():
    from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape

    env = Environment(
        loader=PackageLoader("xbyol.report", "templates"),
        autoescape=select_autoescape(["html"]),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["fmt"] = format_value
    return env


def render_html(a: RunArtifacts, sections: list[Section], title: str | None = None) -> str:
    """Render the sections with ``templates/report.html``."""
    return _environment().get_template(TEMPLATE).render(
        title=title or f"xbyol report: {a.cfg.name}",
        run_name=a.cfg.name,
        method=a.cfg.method.name,
        dataset=a.cfg.data.name,
        generated=time.strftime("%Y-%m-%d %H:%M:%S"),
        version=__version__,
        sections=sections,
    )


def write_report(run_dir: str | Path, out: str | Path | None = None, options: ReportOptions | None = None) -> Path:
    """Build and write the report of a run.

    Args:
        run_dir: a directory written by ``xbyol train``.
        out: the HTML file (default ``RUN_DIR/report.html``).
        options: what to compute (:class:`ReportOptions`).

    Returns:
        The path written.
    """
    a, sections = build_sections(run_dir, options)
    html = render_html(a, sections)
    return atomic_write(Path(out) if out is not None else Path(run_dir) / "report.html", html)
