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
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader

from xbyol.augment import preprocess
from xbyol.data.base import SampleDataset, collate
from xbyol.explain.hooks import ActivationsAndGradients, resolve_layer
from xbyol.explain.quantile import StreamingQuantile

__all__ = [
    "DissectionResult",
    "count_detectors",
    "dissect",
    "dissect_run",
    "format_summary",
    "iou_from_tallies",
    "layer_name",
    "plot_top_units",
    "random_twin",
    "tally_iou",
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
        paths = {"iou": out / "iou.csv", "units": out / "units.csv", "summary": out / "summary.json"}
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


def _forward_fn(model: nn.Module):
    return getattr(model, "forward_features", model)


def _groups_of(dataset: SampleDataset, concepts: list[int]) -> list[str]:
    group_of: dict[int, str] = {}
    for g, idx in dataset.concept_groups.items():
        for i in idx:
            group_of.setdefault(i, g)
    return [group_of.get(i, "other") for i in concepts]


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
    concepts = list(dataset.mask_concepts)
    if not concepts:
        raise ValueError(f"dissect: dataset {dataset.describe()} has no concept masks (mask_concepts is empty)")
    if len(dataset) == 0:
        raise ValueError(f"dissect: dataset {dataset.describe()} is empty")
    if not 0 < quantile < 1:
        raise ValueError(f"dissect: quantile must be in (0, 1), got {quantile!r}")
    module = resolve_layer(backbone, layer)
    name = layer if isinstance(layer, str) else layer_name(backbone, module)
    device = torch.device(device)
    was_training = backbone.training
    backbone.eval()
    fwd = _forward_fn(backbone)
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, collate_fn=collate, num_workers=0)
    sel = torch.tensor(concepts, dtype=torch.long)

    def batches(desc: str):
        if not progress:
            return loader
        from tqdm.auto import tqdm

        return tqdm(loader, desc=desc, unit="batch", leave=False)

    def acts_of(images: torch.Tensor) -> torch.Tensor:
        with ActivationsAndGradients(module, gradients=False) as rec:
            fwd(preprocess(images.to(device)))
        if rec.activations is None or rec.activations.dim() != 4:
            shape = None if rec.activations is None else list(rec.activations.shape)
            raise ValueError(f"dissect: layer {name!r} must output [B, C, h, w] maps, got {shape}")
        return rec.activations.float()  # (B, C, h, w)

    try:
        # pass 1: thresholds and top-activating images
        sq: StreamingQuantile | None = None
        top_scores = top_idx = None
        for batch in batches(f"dissect {name}: quantiles"):
            a = acts_of(batch["image"])  # (B, C, h, w)
            b, c, h, w = a.shape
            if sq is None:
                sq = StreamingQuantile(c, quantile, expected_count=len(dataset) * h * w)
            sq.update(a.permute(0, 2, 3, 1).reshape(-1, c))  # (B*h*w, C)
            peak = a.flatten(2).amax(dim=2)  # (B, C)
            idx = torch.as_tensor(batch["index"], device=a.device).view(-1, 1).expand(-1, c)  # (B, C)
            if top_scores is not None:
                peak, idx = torch.cat([top_scores, peak]), torch.cat([top_idx, idx])  # type: ignore[list-item]  # set with top_scores
            kk = min(top_k, peak.shape[0])
            top_scores, order = peak.topk(kk, dim=0)  # (k, C)
            top_idx = idx.gather(0, order)
        assert sq is not None and top_scores is not None and top_idx is not None
        thresholds = sq.quantile()  # (C,) float64

        # pass 2: IoU tallies
        c = thresholds.shape[0]
        inter = torch.zeros(c, len(concepts), dtype=torch.float64, device=device)
        unit_area = torch.zeros_like(inter)
        concept_area = torch.zeros(len(concepts), dtype=torch.float64, device=device)
        for batch in batches(f"dissect {name}: IoU"):
            if "masks" not in batch:
                raise ValueError(f"dissect: dataset {dataset.describe()} samples carry no 'masks'")
            a = acts_of(batch["image"])
            lab = batch["masks"][:, sel].to(device)  # (B, V, H, W)
            size = tuple(lab.shape[-2:])
            # units in chunks: the upsampled maps of all units at once can be large (B x C x H x W floats)
            step = max(1, CHUNK_PIXELS // max(1, lab.shape[0] * size[0] * size[1]))
            for k0 in range(0, c, step):
                um = unit_masks(a[:, k0 : k0 + step], thresholds[k0 : k0 + step].to(device), size)  # (B, c', H, W)
                i_, u_, l_ = tally_iou(um, lab)
                inter[k0 : k0 + step] += i_
                unit_area[k0 : k0 + step] += u_
                if k0 == 0:
                    concept_area += l_
    finally:
        backbone.train(was_training)

    iou = iou_from_tallies(inter, unit_area, concept_area).cpu()
    names = [dataset.concept_names[i] for i in concepts]
    groups = _groups_of(dataset, concepts)
    result = DissectionResult(
        layer=name,
        concept_names=names,
        concept_groups=groups,
        iou=iou,
        thresholds=thresholds.cpu(),
        top_images=top_idx.T.cpu().long(),  # (C, k)
        top_scores=top_scores.T.cpu(),
        quantile=quantile,
        iou_threshold=iou_threshold,
        num_images=len(dataset),
        exact_thresholds=sq.exact,
    )
    result.summary = count_detectors(iou, groups, iou_threshold)
    return result


# ----------------------------------------------------------------------------- figure


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
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    best_iou, best = result.best()
    units = best_iou.argsort(descending=True)[:n_units].tolist()
    n_images = min(n_images, result.top_images.shape[1])
    module = resolve_layer(backbone, result.layer if result.layer not in ("?", "<model>") else None)
    fwd = _forward_fn(backbone)
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
            um = unit_masks(rec.activations[:, k : k + 1].float(), result.thresholds[k : k + 1].to(device), tuple(images.shape[-2:]))  # type: ignore[index, arg-type]
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
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


# ----------------------------------------------------------------------------- runs


def random_twin(run: Any, seed: int | None = None) -> nn.Module:
    """A randomly initialised backbone of the same architecture as ``run.backbone``
    (the interpretable wrapper included), seeded with ``seed`` (default ``train.seed``)."""
    from xbyol.models.interpretable import InterpretableBackbone, wrap_interpretable

    seed = run.cfg.train.seed if seed is None else seed
    twin = run.random_init_backbone(seed)
    trained = run.backbone
    if isinstance(trained, InterpretableBackbone) and not isinstance(twin, InterpretableBackbone):
        with torch.random.fork_rng():
            torch.manual_seed(seed)
            twin = wrap_interpretable(twin, trained.weight, tau=trained.interpretable.tau)
    return twin.to(run.device).eval()


def dissect_run(
    run: Any,
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
            out_dir = Path(run.run_dir) / "dissect" / res.layer
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
