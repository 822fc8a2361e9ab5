"""Matplotlib figures for the report, returned as ``data:image/png;base64,...`` URIs (matplotlib, Agg).

Everything is embedded so a report opens with no network and no side files.
"""

from __future__ import annotations

import io
import math
from typing import Sequence

import numpy as np
import torch

from xbyol.explain.embedding_maps import scatter_categories
from xbyol.explain.figure_files import pyplot
from xbyol.explain.render import png_data_uri

__all__ = ["confusion_figure", "curves_figure", "embedding_map_figure"]


def _figure_uri(fig, dpi: int = 100) -> str:
    plt = pyplot()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    plt.close(fig)
    return png_data_uri(buf.getvalue())


def curves_figure(panels: Sequence[dict], steps_label: str = "step") -> str:
    """A grid of line plots.

    Args:
        panels: each ``{"title": str, "lines": [{"label", "x": [...], "y": [...], "style": "-"|"--"}],
            "log": bool}``.
        steps_label: x-axis label.
    """
    plt = pyplot()
    n = len(panels)
    if n == 0:
        raise ValueError("curves_figure: no panels")
    cols = min(3, n)
    rows = math.ceil(n / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 2.9 * rows), squeeze=False)
    for ax in axes.flat[n:]:
        ax.axis("off")
    for ax, panel in zip(axes.flat, panels):
        for line in panel["lines"]:
            x, y = np.asarray(line["x"], float), np.asarray(line["y"], float)
            marker = "o" if len(x) <= 20 and line.get("style", "-") == "-" else None
            if line.get("faint"):  # raw values behind their smoothed curve
                ax.plot(x, y, line.get("style", "-"), color="0.7", linewidth=0.8, alpha=0.6)
                continue
            ax.plot(x, y, line.get("style", "-"), label=line["label"], linewidth=1.2, marker=marker, markersize=2.5)
        if panel.get("log") and all(np.nanmin(np.asarray(line["y"], float)) > 0 for line in panel["lines"]):
            ax.set_yscale("log")
        ax.set_title(panel["title"], fontsize=10)
        ax.set_xlabel(steps_label, fontsize=9)
        ax.tick_params(labelsize=8)
        ax.grid(alpha=0.3)
        if len([ln for ln in panel["lines"] if not ln.get("faint")]) > 1:
            ax.legend(fontsize=8, frameon=False)
    fig.tight_layout()
    return _figure_uri(fig)


def embedding_map_figure(coords: torch.Tensor, values: Sequence[str], name: str, title: str) -> str:
    """Scatter plot of ``[N, 2]`` coordinates coloured by one colouring (a value per point).

    One figure per colouring, about 700 px wide, so that the page never shrinks it and
    the legend (9 pt, beside the axes) stays readable.
    """
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7.0, 4.8))
    scatter_categories(ax, coords.detach().cpu().numpy(), values, legend_title=name)
    ax.set_title(f"{title}, coloured by {name}", fontsize=10)
    fig.tight_layout()
    return _figure_uri(fig)


def confusion_figure(matrix: np.ndarray, labels: Sequence[str], title: str,
                     xlabel: str = "predicted (highest cosine)", ylabel: str = "true concept") -> str:
    """Row-normalised confusion matrix (true rows, predicted columns) with counts."""
    plt = pyplot()
    m = np.asarray(matrix, dtype=float)
    totals = m.sum(axis=1, keepdims=True)
    rates = np.divide(m, totals, out=np.zeros_like(m), where=totals > 0)
    k = len(labels)
    side = max(3.2, 0.42 * k + 1.8)
    font = 9 if k <= 12 else 7
    fig, ax = plt.subplots(figsize=(side + 1.0, side))
    im = ax.imshow(rates, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(k), labels, rotation=45, ha="right", fontsize=font)
    ax.set_yticks(range(k), labels, fontsize=font)
    ax.set_xlabel(xlabel, fontsize=font)
    ax.set_ylabel(ylabel, fontsize=font)
    for i in range(k):
        for j in range(k):
            if m[i, j]:
                ax.text(j, i, str(int(m[i, j])), ha="center", va="center", fontsize=font - 1,
                        color="white" if rates[i, j] > 0.5 else "black")
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04).ax.tick_params(labelsize=font - 1)
    ax.set_title(title, fontsize=font + 1)
    fig.tight_layout()
    return _figure_uri(fig)
