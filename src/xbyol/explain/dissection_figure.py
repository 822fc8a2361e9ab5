"""The NetDissect-style figure of a dissection: each top unit's top-activating images,
dimmed outside the unit mask, with the best concept's mask outlined."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from xbyol.augment import preprocess
from xbyol.data.base import SampleDataset
from xbyol.explain.dissection import DissectionResult, features_forward, unit_masks
from xbyol.explain.figure_files import pyplot, save_png
from xbyol.explain.hooks import ActivationsAndGradients, resolve_layer


@torch.no_grad()
def plot_top_units(
    result: DissectionResult,
    backbone: nn.Module,
    dataset: SampleDataset,
    path: str | Path,
    n_units: int = 8,
    n_images: int = 5,
    device: str | torch.device = "cpu",
    title: str | None = None,
) -> Path:
    """Figure of the units with the highest IoU: their top-activating images, dimmed outside
    the unit mask, with the best concept's mask outlined in cyan (NetDissect style).

    Returns:
        The PNG path.
    """
    plt = pyplot()
    best_iou, best = result.best()
    units = best_iou.argsort(descending=True)[:n_units].tolist()
    n_images = min(n_images, result.top_images.shape[1])
    module = resolve_layer(backbone, result.layer if result.layer not in ("?", "<model>") else None)
    fwd = features_forward(backbone)
    was_training = backbone.training
    backbone.eval()
    fig, axes = plt.subplots(
        len(units), n_images, figsize=(1.6 * n_images + 1.6, 1.7 * len(units) + 0.4), squeeze=False
    )
    concept_ids = list(dataset.mask_concepts)
    try:
        for r, k in enumerate(units):
            idx = result.top_images[k, :n_images].tolist()
            samples = [dataset[i] for i in idx]
            images = torch.stack([s["image"] for s in samples])  # (n, 3, H, W)
            with ActivationsAndGradients(module, gradients=False) as rec:
                fwd(preprocess(images.to(device)))
            acts = rec.activations
            assert acts is not None  # the forward above recorded them
            height, width = images.shape[-2:]
            um = unit_masks(acts[:, k : k + 1].float(), result.thresholds[k : k + 1].to(device), (height, width))
            for j, s in enumerate(samples):
                ax = axes[r][j]
                keep = 0.25 + 0.75 * um[j, 0].cpu().float()  # (H, W): dim what the unit does not select
                ax.imshow((s["image"].float() * keep / 255).permute(1, 2, 0).clamp(0, 1).numpy())
                cmask = s["masks"][concept_ids[int(best[k])]].float().numpy()
                if cmask.any():
                    ax.contour(cmask, levels=[0.5], colors="cyan", linewidths=0.8)
                ax.set_xticks([])
                ax.set_yticks([])
            axes[r][0].set_ylabel(
                f"unit {k}\n{result.concept_names[int(best[k])]}\nIoU {float(best_iou[k]):.3f}", fontsize=7
            )
    finally:
        backbone.train(was_training)
    fig.suptitle(title or f"{result.layer}: top units (bright: unit mask, cyan outline: concept mask)", fontsize=8)
    fig.tight_layout()
    return save_png(fig, path)
