"""``xbyol eval`` section "concepts": SCS, concept accuracy and SSCS of a run on its test split.

``xbyol`` runs are scored through their learned concept map; any other run (``byol``)
through the post-hoc map of :func:`xbyol.concepts.projection.concept_projection`, so the
two are directly comparable. Not applicable (``None``) when no bank concept can be
labelled from the dataset.

SSCS is reported in four variants, each as ``{group: mIoU, "mean": ...}``: ``sscs``
(background rule, background + concepts), ``sscs_concepts`` (background rule, concepts
only), ``sscs_gt_foreground`` and ``sscs_gt_foreground_concepts`` (the ground-truth
foreground replaces the rule, so only concept identity is judged; its background IoU is 1
by construction). Each variant ``V`` comes with ``V_chance`` (uniform random score maps
at the feature-map resolution, seed 0) and ``V_ceiling`` (the ground-truth masks
area-pooled to that resolution), computed by the same pipeline.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F

from xbyol.augment import preprocess
from xbyol.concepts.projection import apply_dense, concept_projection
from xbyol.concepts.vocabulary import ConceptLabeler, concept_texts_for
from xbyol.data.base import collate
from xbyol.eval.concept_scores import (
    chance_scores,
    concept_accuracy,
    miou_from_counts,
    pooled_mask_scores,
    semantic_consistency,
    sscs_counts,
)
from xbyol.eval.evaluators import EVALUATORS
from xbyol.rundir import Run


def _mask_groups(bank_groups: dict[str, list[int]], vocab_cols: dict[int, int], mask_concepts: set[int]) -> dict[str, tuple[list[int], list[int]]]:
    """Groups whose every concept has an annotated mask: name -> (bank indices, dataset mask rows)."""
    out = {}
    for name, idx in bank_groups.items():
        rows = [vocab_cols.get(k) for k in idx]
        if len(idx) >= 2 and all(r is not None and r in mask_concepts for r in rows):
            out[name] = (list(idx), [int(r) for r in rows])  # type: ignore[arg-type]
    return out


@torch.no_grad()
def scores_of_representations(reps: torch.Tensor, targets: torch.Tensor, bank: Any) -> dict[str, Any]:
    """SCS (``scs``, ``scs_nonmatch``, ``scs_margin``) and ``concept_accuracy`` per concept group.

    Args:
        reps: ``[N, E]`` concept-space vectors (a concept map's outputs).
        targets: ``[N, K]`` bool, the concepts each image has.
        bank: the concept bank (``embeddings [K, E]``, ``groups``).
    """
    groups = bank.groups or {"all": list(range(len(bank)))}
    out: dict[str, Any] = dict(semantic_consistency(reps, bank.embeddings, targets))
    out["concept_accuracy"] = concept_accuracy(F.normalize(reps, dim=-1) @ bank.embeddings.T, targets, groups)
    return out


def concept_scores(
    run: Run, split: str = "test", batch_size: int = 256, background: float | None = None, use_projector: bool = True,
    class_concepts: bool = False,
) -> dict[str, Any] | None:
    """SCS, concept accuracy and SSCS of ``run`` on ``split``.

    Args:
        run: a :class:`xbyol.run.LoadedRun`.
        split: dataset split to score.
        batch_size: images per forward pass.
        background: SSCS background level (default ``method.semantic.sscs_background``).
        use_projector: post-hoc maps only: fit on the projector output (default, the same
            architecture as ``xbyol``) or on the representation itself.
        class_concepts: also fit a post-hoc map when the only concepts are the class names
            (off by default: there the map is a linear classifier and repeats the linear probe;
            benchmarks turn it on to compare xbyol with BYOL + post-hoc map on such data).

    Returns:
        ``{"map", "n_concepts", "scs", "scs_nonmatch", "scs_margin", "concept_accuracy": {...},
        "sscs": {...}, "sscs_chance": {...}, "sscs_ceiling": {...}, "sscs_concepts": {...}, ...}``
        (see the module docstring) or ``None`` when not applicable.
    """
    dataset = run.dataset(split)
    learned = hasattr(run.method, "concept_head")
    try:
        _, _, source = concept_texts_for(run.dataset("train"), run.cfg.method.semantic.concepts_file)
    except ValueError:
        return None
    if source == "classes" and not learned and not class_concepts:
        return None  # class names alone: a post-hoc map would only repeat the linear probe
    project_fn, bank = concept_projection(run, use_projector=use_projector)
    labeler = ConceptLabeler(bank.texts, dataset)
    if labeler.num_labelled == 0:
        return None
    level = run.cfg.method.semantic.sscs_background if background is None else background
    emb = bank.embeddings.to(run.device)  # (K, E)
    mask_groups = _mask_groups(bank.groups, dict(labeler.vocab_cols), set(getattr(dataset, "mask_concepts", []) or []))
    # (variant, source, group) -> [intersection [G + 1], union [G + 1]] summed over batches
    counts: dict[tuple[str, str, str], list[Any]] = {}
    chance_gen = torch.Generator().manual_seed(0)
    backbone: Any = run.backbone.eval()  # every registered backbone has forward_features / forward_head
    project_fn.eval()
    reps, targets = [], []
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, shuffle=False, collate_fn=collate)
    for batch in loader:
        fmap = backbone.forward_features(preprocess(batch["image"].to(run.device)))  # (B, C, h, w)
        reps.append(project_fn(backbone.forward_head(fmap)).float().cpu())  # (B, E)
        targets.append(labeler(batch).cpu())  # (B, K)
        if not mask_groups or "masks" not in batch:
            continue
        dense = F.normalize(apply_dense(project_fn, fmap), dim=1)  # (B, E, h, w)
        cos = torch.einsum("behw,ke->bkhw", dense, emb)  # (B, K, h, w)
        size = tuple(fmap.shape[-2:])
        for name, (bank_idx, rows) in mask_groups.items():
            masks = batch["masks"][:, rows].to(run.device)  # (B, G, H, W)
            sources = {"model": cos[:, bank_idx],  # (B, G, h, w)
                       "chance": chance_scores(masks, size, chance_gen),
                       "ceiling": pooled_mask_scores(masks, size)}
            for variant, fg in (("sscs", None), ("sscs_gt_foreground", masks.any(dim=1))):
                for source, scores in sources.items():
                    inter, union = sscs_counts(scores, masks, level, fg)
                    acc = counts.setdefault((variant, source, name), [0, 0])
                    acc[0], acc[1] = acc[0] + inter.cpu(), acc[1] + union.cpu()
    reps_t, targets_t = torch.cat(reps), torch.cat(targets)
    result: dict[str, Any] = {"map": "learned" if learned else "post-hoc",
                              "n_concepts": len(bank)}
    result.update(scores_of_representations(reps_t, targets_t, bank))
    if counts:
        result.update(_sscs_tables(counts, list(mask_groups)))
        result["sscs_background_level"] = level
    return result


def _sscs_tables(counts: dict[tuple[str, str, str], list[Any]], groups: list[str]) -> dict[str, dict[str, float]]:
    """``{"sscs": {group: mIoU, "mean": ...}, "sscs_chance": ..., "sscs_concepts_ceiling": ..., ...}``."""
    out: dict[str, dict[str, float]] = {}
    for variant in ("sscs", "sscs_gt_foreground"):
        for concepts_only in (False, True):
            for source in ("model", "chance", "ceiling"):
                key = variant + ("_concepts" if concepts_only else "") + ("" if source == "model" else f"_{source}")
                table = {}
                for name in groups:
                    miou, iou = miou_from_counts(*counts[(variant, source, name)])
                    table[name] = float(iou[1:].nanmean()) if concepts_only else miou
                table["mean"] = _mean(table.values())
                out[key] = table
    return out


def _mean(values) -> float:
    vals = [v for v in values if not math.isnan(v)]
    return sum(vals) / len(vals) if vals else math.nan


@EVALUATORS.register("concepts")
def _concepts_evaluator(run: Run) -> dict[str, Any] | None:
    """SCS (match / non-match / margin), concept accuracy per group, SSCS mIoU per mask group."""
    return concept_scores(run)
