"""Interpretability scores in the concept space: pure functions on tensors.

- **SCS** (Semantic Consistency Score): mean cosine between an image's representation
  mapped into the concept space and the embeddings of its ground-truth concepts, with the
  mean cosine to the other concepts and the margin between the two.
- **Concept accuracy**: within each concept group (shape, colour, ...), an image is
  assigned the concept of highest score; correct when it is one of its true concepts.
- **SSCS** (Semantic Segmentation Consistency Score): per-pixel concept scores (the
  concept map applied at every location of the spatial feature map, upsampled) ->
  per-pixel arg-max concept within a group, with a background rule -> mean IoU against
  the ground-truth masks, intersections and unions accumulated over the whole dataset
  (mmseg ``metrics.py`` convention), NaN classes (never seen nor predicted) skipped.
  Read it next to two reference levels computed by the same pipeline: the **chance**
  level (uniform random score maps at the feature-map resolution) and the **resolution
  ceiling** (the ground-truth masks area-pooled to the feature-map resolution, i.e. the
  best a map of that size can say), and with the **concepts-only** mIoU, which leaves out
  the background class (whose IoU is large for any map that marks little foreground, and
  exactly 1 when the ground-truth foreground is given).

Per-image functions return NaN where a score is undefined (an image without a true
concept, or without a false one).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

IGNORE = -1


def _cosines(reps: torch.Tensor, concepts: torch.Tensor) -> torch.Tensor:
    if reps.ndim != 2 or concepts.ndim != 2 or reps.shape[1] != concepts.shape[1]:
        raise ValueError(f"expected reps [N, E] and concepts [K, E], got {list(reps.shape)} and {list(concepts.shape)}")
    return F.normalize(reps.float(), dim=-1) @ F.normalize(concepts.float(), dim=-1).T  # (N, K)


def _check_targets(targets: torch.Tensor, n: int, k: int) -> torch.Tensor:
    if targets.shape != (n, k):
        raise ValueError(f"targets must be [N={n}, K={k}] bool, got {list(targets.shape)}")
    return targets.bool()


def scs_per_image(reps: torch.Tensor, concepts: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean cosine of each image to its true concepts and to the other concepts.

    Args:
        reps: image representations in the concept space ``[N, E]``.
        concepts: concept embeddings ``[K, E]``.
        targets: true concepts ``[N, K]`` bool.

    Returns:
        ``(match [N], nonmatch [N])`` float64; NaN where the image has no true (resp. no false) concept.
    """
    cos = _cosines(reps, concepts).double()  # (N, K)
    t = _check_targets(targets, *cos.shape).double()
    n_pos, n_neg = t.sum(1), (1 - t).sum(1)  # (N,)
    match = (cos * t).sum(1) / n_pos  # (N,) NaN where n_pos == 0 (0/0)
    nonmatch = (cos * (1 - t)).sum(1) / n_neg
    match[n_pos == 0] = math.nan
    nonmatch[n_neg == 0] = math.nan
    return match, nonmatch


def semantic_consistency(reps: torch.Tensor, concepts: torch.Tensor, targets: torch.Tensor) -> dict[str, float]:
    """SCS summary: ``scs`` (mean match cosine), ``scs_nonmatch``, ``scs_margin`` and ``n_images``.

    The margin is the mean over images having both kinds of ``match - nonmatch``.
    """
    match, nonmatch = scs_per_image(reps, concepts, targets)
    both = ~(match.isnan() | nonmatch.isnan())
    return {
        "scs": float(match.nanmean()),
        "scs_nonmatch": float(nonmatch.nanmean()),
        "scs_margin": float((match - nonmatch)[both].mean()) if bool(both.any()) else math.nan,
        "n_images": int((~match.isnan()).sum()),
    }


def concept_accuracy_per_image(scores: torch.Tensor, targets: torch.Tensor, group: list[int]) -> torch.Tensor:
    """1.0 when the best-scoring concept of ``group`` is a true concept, else 0.0.

    Args:
        scores: image-concept scores ``[N, K]`` (e.g. cosines).
        targets: true concepts ``[N, K]`` bool.
        group: indices of the group's concepts.

    Returns:
        ``[N]`` float64, NaN for images with no true concept in the group.
    """
    t = _check_targets(targets, *scores.shape)
    idx = torch.as_tensor(group, dtype=torch.long)
    best = idx[scores[:, idx].argmax(dim=1)]  # (N,)
    hit = t.gather(1, best[:, None]).squeeze(1).double()  # (N,)
    hit[~t[:, idx].any(1)] = math.nan
    return hit


def concept_accuracy(scores: torch.Tensor, targets: torch.Tensor, groups: dict[str, list[int]]) -> dict[str, float]:
    """Zero-shot concept accuracy per group, with the accuracy of a uniform random guess.

    Returns:
        ``{"<group>": acc, "<group>_chance": chance, ...}``; chance is the mean over the
        evaluated images of ``|true concepts in group| / |group|``.
    """
    t = _check_targets(targets, *scores.shape)
    out: dict[str, float] = {}
    for name, group in groups.items():
        acc = concept_accuracy_per_image(scores, t, group)
        idx = torch.as_tensor(group, dtype=torch.long)
        n_true = t[:, idx].sum(1).double()  # (N,)
        valid = n_true > 0
        out[name] = float(acc.nanmean())
        out[f"{name}_chance"] = float((n_true[valid] / len(group)).mean()) if bool(valid.any()) else math.nan
    return out


# ----------------------------------------------------------------------------- SSCS


def masks_to_label_map(masks: torch.Tensor) -> torch.Tensor:
    """Ground-truth label map of a concept group.

    Args:
        masks: ``[N, G, H, W]`` bool, one mask per concept of the group.

    Returns:
        ``[N, H, W]`` long: 0 = background (no mask), ``g + 1`` = concept ``g``,
        ``IGNORE`` (-1) where two concepts' masks overlap (ambiguous pixels are not scored).
    """
    if masks.ndim != 4:
        raise ValueError(f"masks must be [N, G, H, W], got {list(masks.shape)}")
    m = masks.bool()
    count = m.sum(1)  # (N, H, W)
    labels = m.float().argmax(1) + 1  # (N, H, W)
    labels[count == 0] = 0
    labels[count > 1] = IGNORE
    return labels


def upsample_scores(scores: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Bilinear upsampling of per-location concept scores ``[N, G, h, w] -> [N, G, H, W]``."""
    if tuple(scores.shape[-2:]) == tuple(size):
        return scores
    return F.interpolate(scores.float(), size=size, mode="bilinear", align_corners=False)


def dense_predictions(
    scores: torch.Tensor, background: float = 0.5, foreground: torch.Tensor | None = None
) -> torch.Tensor:
    """Per-pixel concept of a group, with the background rule.

    Background rule: let ``m`` be a pixel's best in-group score and ``lo, hi`` the minimum
    and maximum of ``m`` over the image; the pixel is background when
    ``m < lo + background * (hi - lo)``. The rule needs no calibration and is invariant to
    the scale and offset of the scores, so a learned map and a post-hoc map are judged
    alike. A constant map (``hi == lo``) is foreground everywhere. With ``foreground``
    given (e.g. the ground truth), it replaces the rule and only concept identity is scored.

    Args:
        scores: ``[N, G, H, W]`` concept scores at pixel resolution.
        background: relative level in [0, 1] of the background rule.
        foreground: optional ``[N, H, W]`` bool foreground.

    Returns:
        ``[N, H, W]`` long: 0 = background, ``g + 1`` = concept ``g``.
    """
    if scores.ndim != 4:
        raise ValueError(f"scores must be [N, G, H, W], got {list(scores.shape)}")
    if not 0.0 <= background <= 1.0:
        raise ValueError(f"background level must be in [0, 1], got {background}")
    best, arg = scores.max(dim=1)  # (N, H, W)
    if foreground is None:
        lo = best.flatten(1).min(1).values[:, None, None]  # (N, 1, 1)
        hi = best.flatten(1).max(1).values[:, None, None]
        fg = best >= lo + background * (hi - lo)
    else:
        if foreground.shape != best.shape:
            raise ValueError(f"foreground must be [N, H, W] = {list(best.shape)}, got {list(foreground.shape)}")
        fg = foreground.bool()
    return torch.where(fg, arg + 1, torch.zeros_like(arg))


def iou_counts(pred: torch.Tensor, gt: torch.Tensor, num_classes: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-class intersection and union pixel counts, ``IGNORE`` pixels of ``gt`` excluded.

    Args:
        pred: ``[N, H, W]`` long in ``0..num_classes-1``.
        gt: ``[N, H, W]`` long in ``0..num_classes-1`` or ``IGNORE``.

    Returns:
        ``(intersection [C], union [C])`` float64 counts, to be summed over batches.
    """
    if pred.shape != gt.shape:
        raise ValueError(f"pred and gt must have the same shape, got {list(pred.shape)} and {list(gt.shape)}")
    keep = gt != IGNORE
    p, g = pred[keep].long(), gt[keep].long()
    area_p = torch.bincount(p, minlength=num_classes)[:num_classes].double()
    area_g = torch.bincount(g, minlength=num_classes)[:num_classes].double()
    inter = torch.bincount(p[p == g], minlength=num_classes)[:num_classes].double()
    return inter, area_p + area_g - inter


def miou_from_counts(inter: torch.Tensor, union: torch.Tensor) -> tuple[float, torch.Tensor]:
    """``(mIoU, IoU [C])``; classes with an empty union are NaN and left out of the mean."""
    iou = inter / union  # (C,) NaN where union == 0
    return float(iou.nanmean()), iou


def sscs_counts(scores: torch.Tensor, masks: torch.Tensor, background: float = 0.5,
                foreground: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-class intersection and union counts of one batch, ready to be summed over batches.

    Args:
        scores: ``[N, G, h, w]`` per-location concept scores (upsampled to the masks' size).
        masks: ``[N, G, H, W]`` bool ground-truth masks of the group's concepts.
        background: level of the background rule (see :func:`dense_predictions`).
        foreground: optional ``[N, H, W]`` bool foreground replacing the rule.

    Returns:
        ``(intersection [G + 1], union [G + 1])``; class 0 is the background.
    """
    if scores.shape[:2] != masks.shape[:2]:
        raise ValueError(f"scores [N, G, ...] and masks [N, G, ...] disagree: {list(scores.shape)} vs {list(masks.shape)}")
    pred = dense_predictions(upsample_scores(scores, (masks.shape[-2], masks.shape[-1])), background, foreground)
    return iou_counts(pred, masks_to_label_map(masks), masks.shape[1] + 1)


def chance_scores(masks: torch.Tensor, size: tuple[int, int], generator: torch.Generator) -> torch.Tensor:
    """Uniform random scores ``[N, G, h, w]`` in [0, 1): the SSCS chance level's input.

    Args:
        masks: ``[N, G, H, W]`` masks (only their batch and group sizes are used).
        size: ``(h, w)``, the resolution of the model's feature map.
        generator: CPU generator, so the level is reproducible.
    """
    n, g = masks.shape[:2]
    return torch.rand(n, g, *size, generator=generator).to(masks.device)


def pooled_mask_scores(masks: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Ground-truth masks area-pooled to ``size``: the SSCS resolution ceiling's input.

    Each cell holds the fraction of its pixels covered by each concept, ``[N, G, h, w]``;
    upsampled and scored like a model's map, it is what a perfect map of that resolution
    reaches.
    """
    return F.adaptive_avg_pool2d(masks.float(), size)


def sscs(scores: torch.Tensor, masks: torch.Tensor, background: float = 0.5,
         foreground: torch.Tensor | None = None) -> dict[str, float]:
    """SSCS of one concept group on one set of images.

    Args:
        scores: ``[N, G, h, w]`` per-location concept scores (upsampled to the masks' size).
        masks: ``[N, G, H, W]`` bool ground-truth masks of the group's concepts.
        background: level of the background rule (see :func:`dense_predictions`).
        foreground: optional ``[N, H, W]`` bool foreground replacing the rule.

    Returns:
        ``{"miou": ..., "miou_concepts": ...}``: mean IoU over background + concepts, and over concepts only.
    """
    miou, iou = miou_from_counts(*sscs_counts(scores, masks, background, foreground))
    return {"miou": miou, "miou_concepts": float(iou[1:].nanmean())}
