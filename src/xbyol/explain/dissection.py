"""Network dissection (Bau et al. 2017, arXiv 1704.05796; CSAILVision/NetDissect-Lite).

For every unit (channel) ``k`` of a layer:

1. threshold ``T_k`` with ``P(a_k > T_k) = quantile`` (default 0.005) over every spatial
   position of every probe image, streamed with :class:`~xbyol.explain.quantile.StreamingQuantile`
   (exact: the buffer is sized for ``images x h x w``);
2. unit mask ``M_k(x) = Up(A_k(x)) > T_k``, ``Up`` = bilinear upsampling to the mask
   resolution in torch (NetDissect-Lite used ``scipy.misc.imresize``, removed in SciPy 1.3);
3. ``IoU_{k,c} = sum_x |M_k(x) & L_c(x)| / sum_x |M_k(x) | L_c(x)|`` accumulated over the
   whole dataset in float64 (not a mean of per-image IoUs), a unit's area counting only on
   images where ``c`` is annotated (every ``mask_concepts`` entry on every image, by the
   dataset contract);
4. unit ``k`` detects its best concept when that IoU exceeds ``iou_threshold`` (0.04).

Unique detectors are counted by both published rules (REFERENCES.md section 3 item 5):
*paper rule* -- each detector unit keeps its single best concept, count the distinct
concepts (per group: those whose best concept is in the group); *release rule*
(NetDissect ``plot/extract_csv.m``) -- per concept group, each unit's best concept *within
that group* counts when its IoU exceeds the threshold; count distinct concepts per group
and sum (one unit can count in several groups).

Two streaming passes over the dataset (thresholds, then IoU tallies); memory is
independent of the dataset size apart from the quantile buffer (``~quantile x N x h x w``
values per unit, see :mod:`xbyol.explain.quantile`); upsampled maps are processed in chunks
of units of at most 2^24 pixels per batch.

The figure of the top units is :mod:`xbyol.explain.dissection_figure`; dissecting a
trained run (and its random twin) and writing the outputs is :mod:`xbyol.explain.dissection_run`.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from xbyol.augment import preprocess
from xbyol.data.base import SampleDataset, collate
from xbyol.explain.hooks import ActivationsAndGradients, resolve_layer
from xbyol.explain.quantile import StreamingQuantile
from xbyol.rundir import DISSECT_IOU, DISSECT_SUMMARY, DISSECT_UNITS

__all__ = [
    "DissectionResult",
    "count_detectors",
    "dissect",
    "iou_from_tallies",
    "iou_pass",
    "layer_name",
    "tally_iou",
    "threshold_pass",
    "unit_masks",
]


# upsampled unit maps are thresholded and tallied this many pixels (images x units x H x W) at a time
CHUNK_PIXELS = 1 << 24

# ----------------------------------------------------------------------------- pure parts


def unit_masks(activations: torch.Tensor, thresholds: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Threshold upsampled activation maps.

    Args:
        activations: ``[B, C, h, w]`` layer output.
        thresholds: ``[C]`` per-unit thresholds.
        size: ``(H, W)`` of the concept masks.

    Returns:
        ``[B, C, H, W]`` bool: ``Up(a_k) > T_k`` with bilinear ``Up`` (``align_corners=False``).
    """
    if activations.dim() != 4 or thresholds.shape != (activations.shape[1],):
        raise ValueError(
            f"unit_masks: expected activations [B, C, h, w] and thresholds [C], got "
            f"{list(activations.shape)} and {list(thresholds.shape)}"
        )
    a = activations.float()
    if tuple(a.shape[-2:]) != tuple(size):
        a = F.interpolate(a, size=size, mode="bilinear", align_corners=False)  # (B, C, H, W)
    return a > thresholds.to(a.device, a.dtype).view(1, -1, 1, 1)


def tally_iou(
    units: torch.Tensor, concepts: torch.Tensor, annotated: torch.Tensor | None = None, chunk: int = 1 << 24
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One batch's contribution to the IoU tallies.

    Args:
        units: ``[B, C, H, W]`` bool unit masks.
        concepts: ``[B, V, H, W]`` bool concept masks.
        annotated: ``[B, V]`` bool, whether concept ``v`` is annotated on image ``b``
            (default: all). A unit's area counts toward ``(k, v)`` only on annotated images.
        chunk: cap on ``B x units x H x W`` elements multiplied at once (memory bound).

    Returns:
        ``(intersection [C, V], unit_area [C, V], concept_area [V])`` in float64 pixel counts.
    """
    if units.dim() != 4 or concepts.dim() != 4 or units.shape[0] != concepts.shape[0] or units.shape[2:] != concepts.shape[2:]:
        raise ValueError(
            f"tally_iou: expected units [B, C, H, W] and concepts [B, V, H, W] with the same B, H, W; got "
            f"{list(units.shape)} and {list(concepts.shape)}"
        )
    b, c, h, w = units.shape
    v = concepts.shape[1]
    ann = torch.ones(b, v, dtype=torch.bool, device=units.device) if annotated is None else annotated.to(units.device)
    lab = (concepts.to(units.device) & ann[:, :, None, None]).flatten(2).float()  # (B, V, HW)
    area_u = units.flatten(2).sum(dim=2).double()  # (B, C)
    unit_area = area_u.T @ ann.double()  # (C, V)
    concept_area = lab.sum(dim=(0, 2)).double()  # (V,)
    inter = torch.zeros(c, v, dtype=torch.float64, device=units.device)
    step = max(1, chunk // max(1, b * h * w))
    for k0 in range(0, c, step):
        u = units[:, k0 : k0 + step].flatten(2).float()  # (B, c', HW)
        # counts per image are exact in float32 (HW < 2^24); summed over images in float64
        inter[k0 : k0 + step] = torch.bmm(u, lab.transpose(1, 2)).double().sum(dim=0)  # (c', V)
    return inter, unit_area, concept_area


def iou_from_tallies(intersection: torch.Tensor, unit_area: torch.Tensor, concept_area: torch.Tensor) -> torch.Tensor:
    """``I / (|M| + |L| - I)`` per unit and concept, 0 where the union is empty; ``[C, V]``."""
    union = unit_area + concept_area[None, :] - intersection  # (C, V)
    return torch.where(union > 0, intersection / union.clamp(min=1e-12), torch.zeros_like(union))


def count_detectors(iou: torch.Tensor, groups: list[str], threshold: float = 0.04) -> dict[str, Any]:
    """Detector and unique-concept counts under both published rules.

    Args:
        iou: ``[C, V]`` unit x concept IoU.
        groups: ``V`` group names (one per concept column).
        threshold: a unit detects a concept when IoU > threshold.

    Returns:
        ``{"units", "detectors", "detectors_per_group", "unique_paper", "unique_paper_per_group",
        "unique_release", "unique_release_per_group"}``; ``detectors_per_group`` counts
        detector units by the group of their best concept.
    """
    if iou.dim() != 2 or iou.shape[1] != len(groups):
        raise ValueError(f"count_detectors: iou must be [C, {len(groups)}] to match groups, got {list(iou.shape)}")
    names = list(dict.fromkeys(groups))
    col_group = groups
    best_iou, best = iou.max(dim=1)  # (C,)
    is_det = best_iou > threshold
    det_per_group = {g: 0 for g in names}
    paper: dict[str, set[int]] = {g: set() for g in names}
    for k in torch.nonzero(is_det).flatten().tolist():
        g = col_group[best[k]]
        det_per_group[g] += 1
        paper[g].add(int(best[k]))
    release: dict[str, set[int]] = {}
    for g in names:
        cols = torch.tensor([i for i, x in enumerate(col_group) if x == g], dtype=torch.long)
        g_iou, g_best = iou[:, cols].max(dim=1)  # (C,) best concept of each unit within the group
        release[g] = {int(cols[j]) for j in g_best[g_iou > threshold].tolist()}
    return {
        "units": int(iou.shape[0]),
        "detectors": int(is_det.sum()),
        "detectors_per_group": det_per_group,
        "unique_paper": sum(len(s) for s in paper.values()),
        "unique_paper_per_group": {g: len(s) for g, s in paper.items()},
        "unique_release": sum(len(s) for s in release.values()),
        "unique_release_per_group": {g: len(s) for g, s in release.items()},
    }


# ----------------------------------------------------------------------------- result


@dataclass
class DissectionResult:
    """Everything one dissection produced.

    Attributes:
        layer: dotted name of the dissected layer.
        concept_names: names of the dissected (mask-annotated) concepts, ``V``.
        concept_groups: group of each of them, ``V``.
        iou: ``[C, V]`` float64 IoU.
        thresholds: ``[C]`` float64 activation thresholds.
        top_images: ``[C, k]`` dataset indices of each unit's top-activating images (by the
            maximum of the unit's map), best first.
        top_scores: ``[C, k]`` those maxima.
        quantile, iou_threshold: the settings.
        num_images: images dissected.
        exact_thresholds: whether the streamed quantiles are exact.
        summary: :func:`count_detectors` output.
    """

    layer: str
    concept_names: list[str]
    concept_groups: list[str]
    iou: torch.Tensor
    thresholds: torch.Tensor
    top_images: torch.Tensor
    top_scores: torch.Tensor
    quantile: float
    iou_threshold: float
    num_images: int
    exact_thresholds: bool
    summary: dict[str, Any] = field(default_factory=dict)

    def best(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``(best_iou [C], best_concept [C])`` over the concepts."""
        return self.iou.max(dim=1)

    @property
    def table(self) -> list[dict[str, Any]]:
        """Every unit x concept pair, rows ``{unit, concept, group, iou}`` ordered by unit, IoU descending."""
        rows = []
        order = self.iou.argsort(dim=1, descending=True)
        for k in range(self.iou.shape[0]):
            for j in order[k].tolist():
                rows.append(
                    {"unit": k, "concept": self.concept_names[j], "group": self.concept_groups[j], "iou": float(self.iou[k, j])}
                )
        return rows

    @property
    def unit_table(self) -> list[dict[str, Any]]:
        """One row per unit: its best concept ``{unit, concept, group, iou, detector, threshold}``."""
        best_iou, best = self.best()
        return [
            {
                "unit": k,
                "concept": self.concept_names[int(best[k])],
                "group": self.concept_groups[int(best[k])],
                "iou": float(best_iou[k]),
                "detector": bool(best_iou[k] > self.iou_threshold),
                "threshold": float(self.thresholds[k]),
            }
            for k in range(self.iou.shape[0])
        ]

    def write(self, out_dir: str | Path) -> dict[str, Path]:
        """Write ``iou.csv`` (all pairs), ``units.csv`` (best per unit) and ``summary.json``."""
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        paths = {"iou": out / DISSECT_IOU, "units": out / DISSECT_UNITS, "summary": out / DISSECT_SUMMARY}
        for key, rows in (("iou", self.table), ("units", self.unit_table)):
            with open(paths[key], "w", newline="") as fh:
                writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
                writer.writeheader()
                for r in rows:
                    writer.writerow({k: (f"{v:.6f}" if isinstance(v, float) else v) for k, v in r.items()})
        meta = {
            "layer": self.layer,
            "quantile": self.quantile,
            "iou_threshold": self.iou_threshold,
            "num_images": self.num_images,
            "exact_thresholds": self.exact_thresholds,
            **self.summary,
        }
        paths["summary"].write_text(json.dumps(meta, indent=2) + "\n")
        return paths


# ----------------------------------------------------------------------------- the passes


def layer_name(model: nn.Module, layer: nn.Module) -> str:
    """Dotted name of ``layer`` inside ``model`` (``"?"`` when it is not registered there)."""
    for name, m in model.named_modules():
        if m is layer:
            return name or "<model>"
    return "?"


def features_forward(model: nn.Module) -> Callable[[torch.Tensor], torch.Tensor]:
    """The forward that computes the dissected maps: ``forward_features`` when the model has one."""
    return getattr(model, "forward_features", model)


def _groups_of(dataset: SampleDataset, concepts: list[int]) -> list[str]:
    group_of: dict[int, str] = {}
    for g, idx in dataset.concept_groups.items():
        for i in idx:
            group_of.setdefault(i, g)
    return [group_of.get(i, "other") for i in concepts]


def _check_dissectable(dataset: SampleDataset, quantile: float) -> list[int]:
    """The dataset's mask-annotated concept indices; a one-line error when there is nothing to dissect."""
    concepts = list(dataset.mask_concepts)
    if not concepts:
        raise ValueError(f"dissect: dataset {dataset.describe()} has no concept masks (mask_concepts is empty)")
    if len(dataset) == 0:
        raise ValueError(f"dissect: dataset {dataset.describe()} is empty")
    if not 0 < quantile < 1:
        raise ValueError(f"dissect: quantile must be in (0, 1), got {quantile!r}")
    return concepts


class _LayerActivations:
    """``images [B, 3, H, W]`` uint8 -> the layer's maps ``[B, C, h, w]`` (float32, on ``device``)."""

    def __init__(self, backbone: nn.Module, module: nn.Module, name: str, device: torch.device) -> None:
        self.fwd, self.module, self.name, self.device = features_forward(backbone), module, name, device

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        with ActivationsAndGradients(self.module, gradients=False) as rec:
            self.fwd(preprocess(images.to(self.device)))
        if rec.activations is None or rec.activations.dim() != 4:
            shape = None if rec.activations is None else list(rec.activations.shape)
            raise ValueError(f"dissect: layer {self.name!r} must output [B, C, h, w] maps, got {shape}")
        return rec.activations.float()  # (B, C, h, w)


def threshold_pass(
    batches: Iterable[dict[str, Any]], acts_of: Callable[[torch.Tensor], torch.Tensor], num_images: int, quantile: float, top_k: int
) -> tuple[torch.Tensor, bool, torch.Tensor, torch.Tensor]:
    """Pass 1: each unit's threshold ``T_k`` and its top-activating images.

    Returns:
        ``(thresholds [C] float64, exact, top_scores [k, C], top_index [k, C])``: the
        streamed upper-``quantile`` of every unit over all positions of all images, whether
        that quantile is exact, and the ``k`` largest per-image maxima with their dataset indices.
    """
    sq: StreamingQuantile | None = None
    top_scores = top_idx = None
    for batch in batches:
        a = acts_of(batch["image"])  # (B, C, h, w)
        _, c, h, w = a.shape
        if sq is None:
            sq = StreamingQuantile(c, quantile, expected_count=num_images * h * w)
        sq.update(a.permute(0, 2, 3, 1).reshape(-1, c))  # (B*h*w, C)
        peak = a.flatten(2).amax(dim=2)  # (B, C)
        idx = torch.as_tensor(batch["index"], device=a.device).view(-1, 1).expand(-1, c)  # (B, C)
        if top_scores is not None:
            peak, idx = torch.cat([top_scores, peak]), torch.cat([top_idx, idx])  # type: ignore[list-item]  # set together with top_scores
        top_scores, order = peak.topk(min(top_k, peak.shape[0]), dim=0)  # (k, C)
        top_idx = idx.gather(0, order)
    assert sq is not None and top_scores is not None and top_idx is not None
    return sq.quantile(), sq.exact, top_scores, top_idx


def iou_pass(
    batches: Iterable[dict[str, Any]],
    acts_of: Callable[[torch.Tensor], torch.Tensor],
    thresholds: torch.Tensor,
    concepts: list[int],
    device: torch.device,
    where: str,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Pass 2: the dataset-wide IoU tallies of every unit mask against every concept mask.

    Units go in chunks of at most :data:`CHUNK_PIXELS` upsampled pixels per batch (the maps
    of all units at once can be large: ``B x C x H x W`` floats).

    Returns:
        ``(intersection [C, V], unit_area [C, V], concept_area [V])`` float64, as
        :func:`tally_iou` sums them.
    """
    c = thresholds.shape[0]
    sel = torch.tensor(concepts, dtype=torch.long)
    inter = torch.zeros(c, len(concepts), dtype=torch.float64, device=device)
    unit_area = torch.zeros_like(inter)
    concept_area = torch.zeros(len(concepts), dtype=torch.float64, device=device)
    for batch in batches:
        if "masks" not in batch:
            raise ValueError(f"dissect: dataset {where} samples carry no 'masks'")
        a = acts_of(batch["image"])  # (B, C, h, w)
        lab = batch["masks"][:, sel].to(device)  # (B, V, H, W)
        size = tuple(lab.shape[-2:])
        step = max(1, CHUNK_PIXELS // max(1, lab.shape[0] * size[0] * size[1]))
        for k0 in range(0, c, step):
            um = unit_masks(a[:, k0 : k0 + step], thresholds[k0 : k0 + step].to(device), size)  # (B, c', H, W)
            i_, u_, l_ = tally_iou(um, lab)
            inter[k0 : k0 + step] += i_
            unit_area[k0 : k0 + step] += u_
            if k0 == 0:
                concept_area += l_
    return inter, unit_area, concept_area


@torch.no_grad()
def dissect(
    backbone: nn.Module,
    dataset: SampleDataset,
    layer: nn.Module | str | None = None,
    quantile: float = 0.005,
    iou_threshold: float = 0.04,
    batch_size: int = 64,
    device: str | torch.device = "cpu",
    top_k: int = 8,
    progress: bool = True,
) -> DissectionResult:
    """Dissect the units of ``layer`` against the dataset's concept masks.

    Args:
        backbone: the network (``forward_features`` is used when present); run in eval mode,
            its mode is restored afterwards.
        dataset: a dataset with concept masks (``mask_concepts`` non-empty).
        layer: dotted module name, module, or ``None`` for ``backbone.feature_layer``.
        quantile: upper-tail probability of the activation threshold (paper 0.005).
        iou_threshold: detector threshold (paper 0.04).
        batch_size: images per forward pass.
        device: where the backbone runs.
        top_k: top-activating images kept per unit (for figures).
        progress: tqdm progress bars over batches.

    Returns:
        A :class:`DissectionResult`.
    """
    concepts = _check_dissectable(dataset, quantile)
    module = resolve_layer(backbone, layer)
    name = layer if isinstance(layer, str) else layer_name(backbone, module)
    device = torch.device(device)
    acts_of = _LayerActivations(backbone, module, name, device)
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, collate_fn=collate, num_workers=0)

    def batches(desc: str) -> Iterable[dict[str, Any]]:
        return tqdm(loader, desc=f"dissect {name}: {desc}", unit="batch", leave=False, disable=None) if progress else loader

    was_training = backbone.training
    backbone.eval()
    try:
        thresholds, exact, top_scores, top_idx = threshold_pass(batches("quantiles"), acts_of, len(dataset), quantile, top_k)
        tallies = iou_pass(batches("IoU"), acts_of, thresholds, concepts, device, dataset.describe())
    finally:
        backbone.train(was_training)

    iou = iou_from_tallies(*tallies).cpu()
    groups = _groups_of(dataset, concepts)
    return DissectionResult(
        layer=name,
        concept_names=[dataset.concept_names[i] for i in concepts],
        concept_groups=groups,
        iou=iou,
        thresholds=thresholds.cpu(),
        top_images=top_idx.T.cpu().long(),  # (C, k)
        top_scores=top_scores.T.cpu(),
        quantile=quantile,
        iou_threshold=iou_threshold,
        num_images=len(dataset),
        exact_thresholds=exact,
        summary=count_detectors(iou, groups, iou_threshold),
    )
