"""2-D maps of embeddings: PCA and t-SNE (scikit-learn), UMAP (``umap-learn``, optional).

``embed_2d(features, method)`` gives ``[N, 2]`` coordinates; :func:`color_values` picks a
value per point (its label's class name, or the first concept of a concept group that the
image has, ``"none"`` otherwise); :func:`write_map_csv` and :func:`plot_map` save them.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from torch.utils.data import Subset

from xbyol.data.sampling import dataset_labels, stratified_indices
from xbyol.explain.figure_files import pyplot, save_png
from xbyol.rundir import Run, extract_features

__all__ = ["METHODS", "category_colours", "color_values", "embed_2d", "embedding_map", "group_columns", "plot_map",
           "same_partition", "scatter_categories", "write_map_csv"]

METHODS = ("pca", "tsne", "umap")


def _as_numpy(features: torch.Tensor | np.ndarray) -> np.ndarray:
    x = features.detach().cpu().double().numpy() if isinstance(features, torch.Tensor) else np.asarray(features, dtype=np.float64)
    if x.ndim != 2:
        raise ValueError(f"embed_2d: features must be [N, D], got shape {list(x.shape)}")
    if x.shape[0] < 3:
        raise ValueError(f"embed_2d: need at least 3 points, got {x.shape[0]}")
    if not np.isfinite(x).all():
        raise ValueError("embed_2d: features contain NaN or infinite values")
    return x


def embed_2d(
    features: torch.Tensor | np.ndarray, method: str = "pca", seed: int = 0, perplexity: float | None = None
) -> torch.Tensor:
    """Project ``[N, D]`` features to 2-D.

    Args:
        features: ``[N, D]`` embeddings (N >= 3).
        method: ``"pca"`` (sklearn PCA), ``"tsne"`` (sklearn TSNE, PCA init) or ``"umap"``
            (``umap-learn``; ``pip install umap-learn``).
        seed: random state of t-SNE / UMAP.
        perplexity: t-SNE perplexity (default ``min(30, (N - 1) / 3)``, sklearn needs < N).

    Returns:
        ``[N, 2]`` float32 coordinates.
    """
    if method not in METHODS:
        raise ValueError(f"embed_2d: method must be one of {', '.join(METHODS)}, got {method!r}")
    x = _as_numpy(features)
    n = x.shape[0]
    if method == "pca":
        from sklearn.decomposition import PCA  # heavy: imported on first use

        y = PCA(n_components=2, random_state=seed).fit_transform(x)
    elif method == "tsne":
        from sklearn.manifold import TSNE  # heavy: imported on first use

        perp = perplexity if perplexity is not None else min(30.0, max(1.0, (n - 1) / 3))
        if not 0 < perp < n:
            raise ValueError(f"embed_2d: t-SNE perplexity must be in (0, {n}), got {perp}")
        y = TSNE(n_components=2, perplexity=perp, init="pca", random_state=seed).fit_transform(x)
    else:
        try:
            import umap  # type: ignore[import-not-found]
        except ImportError as e:
            raise ImportError(
                "embed_2d: method 'umap' needs the umap-learn package: pip install umap-learn "
                "(or use --method pca / tsne)"
            ) from e
        y = umap.UMAP(n_components=2, n_neighbors=min(15, n - 1), random_state=seed).fit_transform(x)
    return torch.as_tensor(np.asarray(y), dtype=torch.float32)  # (N, 2)


def color_values(
    labels: Sequence[int] | torch.Tensor | None,
    class_names: Sequence[str],
    concepts: torch.Tensor | None = None,
    concept_names: Sequence[str] = (),
    group: Sequence[int] | None = None,
) -> list[str]:
    """The value each point is coloured by.

    With ``group`` (indices into ``concept_names``): the first concept of the group the
    image has (``concepts`` ``[N, V]`` bool), ``"none"`` when it has none. Otherwise the
    label's class name (the label number when there are no names, ``"none"`` for ``-1``).
    """
    if group is not None:
        if concepts is None:
            raise ValueError("color_values: colouring by a concept group needs the concepts [N, V]")
        idx = list(group)
        sub = concepts[:, idx].bool()  # (N, G)
        out = []
        for row in sub:
            hit = torch.nonzero(row).flatten()
            out.append(concept_names[idx[int(hit[0])]] if len(hit) else "none")
        return out
    if labels is None:
        raise ValueError("color_values: colouring by label needs the labels")
    names = list(class_names)
    vals = [int(v) for v in (labels.tolist() if isinstance(labels, torch.Tensor) else labels)]
    return [names[v] if 0 <= v < len(names) else ("none" if v < 0 else str(v)) for v in vals]


def same_partition(a: Sequence[str], b: Sequence[str]) -> bool:
    """Whether two colourings group the points identically (value names aside): one map would repeat the other."""
    if len(a) != len(b):
        return False
    forward: dict[str, str] = {}
    backward: dict[str, str] = {}
    for x, y in zip(a, b):
        if forward.setdefault(x, y) != y or backward.setdefault(y, x) != x:
            return False
    return True


def group_columns(
    concepts: torch.Tensor, concept_names: Sequence[str], concept_groups: dict[str, list[int]]
) -> dict[str, list[str]]:
    """One CSV column per concept group: :func:`color_values` of that group for every point."""
    return {
        g: color_values(None, [], concepts, concept_names, idx) for g, idx in concept_groups.items()
    }


def write_map_csv(
    path: str | Path,
    coords: torch.Tensor,
    labels: Sequence[str],
    indices: Sequence[int] | None = None,
    extra: dict[str, list[str]] | None = None,
) -> Path:
    """CSV with columns ``index, x, y, label`` and then one per ``extra`` key (concept groups)."""
    if coords.dim() != 2 or coords.shape[1] != 2:
        raise ValueError(f"write_map_csv: coords must be [N, 2], got {list(coords.shape)}")
    n = coords.shape[0]
    extra = extra or {}
    for k, col in {"label": labels, **extra}.items():
        if len(col) != n:
            raise ValueError(f"write_map_csv: column {k!r} has {len(col)} values for {n} points")
    idx = list(indices) if indices is not None else list(range(n))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["index", "x", "y", "label", *extra])
        for i in range(n):
            w.writerow([idx[i], f"{float(coords[i, 0]):.6g}", f"{float(coords[i, 1]):.6g}", labels[i], *(extra[k][i] for k in extra)])
    return path


def category_colours(categories: Sequence[str]) -> dict[str, Any]:
    """A matplotlib colour for every category value of a map.

    When every value (but ``"none"``) names a colour (a colour concept group: "red",
    "gray", ...), each is drawn in that colour; otherwise a qualitative palette (tab10 up
    to 10 values, tab20 up to 20, evenly spaced hues beyond). ``"none"`` is light gray.
    """
    import matplotlib  # heavy: imported on first use
    from matplotlib.colors import is_color_like  # heavy: imported on first use

    cats = sorted(set(categories), key=lambda v: (v == "none", v))
    real = [c for c in cats if c != "none"]
    out: dict[str, Any] = {"none": "lightgray"} if "none" in cats else {}
    if real and all(is_color_like(c.replace(" ", "")) for c in real):
        out.update({c: c.replace(" ", "") for c in real})
        return out
    n = len(real)
    cmap = matplotlib.colormaps["tab10" if n <= 10 else "tab20" if n <= 20 else "hsv"]
    out.update({c: cmap(i if n <= 20 else i / n) for i, c in enumerate(real)})
    return out


def scatter_categories(ax: Any, coords: np.ndarray, values: Sequence[str], legend_title: str = "") -> None:
    """Draw ``[N, 2]`` points coloured by ``values`` (:func:`category_colours`) with a legend beside the axes.

    Points in a named colour get a thin dark edge so that yellow or white stay visible on white.
    """
    colours = category_colours(values)
    vals = np.asarray(list(values))
    size = max(6.0, min(36.0, 4000.0 / max(1, len(vals))))
    named = all(isinstance(c, str) for c in colours.values())
    for c, colour in colours.items():
        sel = vals == c
        ax.scatter(coords[sel, 0], coords[sel, 1], s=size, color=colour, label=f"{c} ({int(sel.sum())})", alpha=0.85,
                   linewidths=0.4 if named and c != "none" else 0, edgecolors="0.25")
    ax.set_xticks([])
    ax.set_yticks([])
    if len(colours) <= 24:
        ax.legend(title=legend_title or None, fontsize=9, title_fontsize=9, markerscale=1.6, loc="center left",
                  bbox_to_anchor=(1.0, 0.5), frameon=False)


def plot_map(coords: torch.Tensor, values: Sequence[str], path: str | Path, title: str = "", legend_title: str = "") -> Path:
    """Scatter plot of ``[N, 2]`` coordinates coloured by categorical ``values``; saved as PNG."""
    fig, ax = pyplot().subplots(figsize=(7.2, 5.2))
    scatter_categories(ax, coords.numpy(), values, legend_title)
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    return save_png(fig, path)


def embedding_map(
    run: Run,
    method: str = "pca",
    color_by: str = "label",
    group: str | None = None,
    split: str = "test",
    limit: int | None = None,
    seed: int = 0,
    out: str | Path | None = None,
    batch_size: int = 256,
    progress: bool = True,
) -> dict[str, Path]:
    """2-D map of a run's test embeddings, written as PNG and CSV.

    Args:
        run: a :class:`xbyol.run.LoadedRun`.
        method: ``pca``, ``tsne`` or ``umap``.
        color_by: ``label`` or ``concept`` (a concept group; ``group`` names it, default the first).
        split: dataset split.
        limit: use only ``limit`` images, sampled evenly across the labels
            (:func:`~xbyol.data.sampling.stratified_indices`).
        seed: random state of t-SNE / UMAP.
        out: output directory (default ``RUN_DIR/maps``).

    Returns:
        ``{"png": path, "csv": path}`` (``map_<method>_<colour>.png/.csv``); the CSV has
        columns ``index, x, y, label`` and one per concept group.
    """
    if color_by not in ("label", "concept"):
        raise ValueError(f"color_by must be 'label' or 'concept', got {color_by!r}")
    dataset = run.dataset(split)
    groups = dict(dataset.concept_groups)
    if color_by == "concept":
        if not groups:
            raise ValueError(f"dataset {dataset.describe()} has no concept groups; use --color-by label")
        group = group or next(iter(groups))
        if group not in groups:
            raise ValueError(f"unknown concept group {group!r}; the dataset has: {', '.join(groups)}")
    chosen = list(range(len(dataset))) if limit is None else stratified_indices(dataset_labels(dataset), limit)
    n = len(chosen)
    if n < 3:
        raise ValueError(f"need at least 3 images for a map, got {n}")
    subset = Subset(dataset, chosen)
    feats, labels = extract_features(run.backbone, subset, batch_size, run.device, progress)
    coords = embed_2d(feats, method, seed)
    label_names = color_values(labels, dataset.class_names)
    extra: dict[str, list[str]] = {}
    if groups:
        concepts = torch.stack([dataset[i]["concepts"] for i in chosen])  # (N, V)
        extra = group_columns(concepts, dataset.concept_names, groups)
    values = label_names if color_by == "label" else extra[str(group)]
    tag = "label" if color_by == "label" else str(group)
    out_dir = Path(out) if out is not None else run.paths.maps
    stem = f"map_{method}_{tag}".replace(" ", "_")
    csv_path = write_map_csv(out_dir / f"{stem}.csv", coords, label_names, chosen, extra)
    png = plot_map(coords, values, out_dir / f"{stem}.png", title=f"{run.paths.root.name}: {method} of {n} {split} embeddings", legend_title=tag)
    return {"png": png, "csv": csv_path}
