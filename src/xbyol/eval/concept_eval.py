"""``xbyol eval`` section "concepts": SCS, concept accuracy and SSCS of a run on its test split.

``xbyol`` runs are scored through their learned concept map; any other run (``byol``)
through the post-hoc map of :func:`xbyol.concepts.projection.concept_projection`, so the
two are directly comparable. Not applicable (``None``) when no bank concept can be
labelled from the dataset.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F

from xbyol.eval.concept_scores import (
    concept_accuracy,
    dense_predictions,
    iou_counts,
    masks_to_label_map,
    miou_from_counts,
    semantic_consistency,
    upsample_scores,
)
from xbyol.eval.evaluators import EVALUATORS


def _mask_groups(bank_groups: dict[str, list[int]], vocab_cols: dict[int, int], mask_concepts: set[int]) -> dict[str, tuple[list[int], list[int]]]:
    """Groups whose every concept has an annotated mask: name -> (bank indices, dataset mask rows)."""
    out = {}
    for name, idx in bank_groups.items():
        rows = [vocab_cols.get(k) for k in idx]
        if len(idx) >= 2 and all(r is not None and r in mask_concepts for r in rows):
            out[name] = (list(idx), [int(r) for r in rows])  # type: ignore[arg-type]
    return out


@torch.no_grad()
def concept_scores(
    run: Any, split: str = "test", batch_size: int = 256, background: float | None = None, use_projector: bool = True
) -> dict[str, Any] | None:
    """SCS, concept accuracy and SSCS of ``run`` on ``split``.

    Args:
        run: a :class:`xbyol.run.LoadedRun`.
        split: dataset split to score.
        batch_size: images per forward pass.
        background: SSCS background level (default ``method.semantic.sscs_background``).
        use_projector: post-hoc maps only: fit on the projector output (default, the same
            architecture as ``xbyol``) or on the representation itself.

    Returns:
        ``{"map", "n_concepts", "scs", "scs_nonmatch", "scs_margin", "concept_accuracy": {...},
        "sscs": {...}, "sscs_gt_foreground": {...}}`` or ``None`` when not applicable.
    """
    from xbyol.augment import preprocess
    from xbyol.concepts.projection import apply_dense, concept_projection
    from xbyol.concepts.vocabulary import ConceptLabeler, concept_texts_for
    from xbyol.data.base import collate

    dataset = run.dataset(split)
    learned = hasattr(run.method, "concept_head")
    try:
        _, _, source = concept_texts_for(run.dataset("train"), run.cfg.method.semantic.concepts_file)
    except ValueError:
        return None
    if source == "classes" and not learned:
        return None  # class names alone: a post-hoc map would only repeat the linear probe
    project_fn, bank = concept_projection(run, use_projector=use_projector)
    labeler = ConceptLabeler(bank.texts, dataset)
    if labeler.num_labelled == 0:
        return None
    level = run.cfg.method.semantic.sscs_background if background is None else background
    emb = bank.embeddings.to(run.device)  # (K, E)
    groups = bank.groups or {"all": list(range(len(bank)))}
    mask_groups = _mask_groups(bank.groups, dict(labeler.vocab_cols), set(getattr(dataset, "mask_concepts", []) or []))
    counts = {name: [0, 0, 0, 0] for name in mask_groups}  # rule inter/union, GT-foreground inter/union
    backbone = run.backbone.eval()
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
        for name, (bank_idx, rows) in mask_groups.items():
            masks = batch["masks"][:, rows].to(run.device)  # (B, G, H, W)
            scores = upsample_scores(cos[:, bank_idx], tuple(masks.shape[-2:]))  # (B, G, H, W)
            gt = masks_to_label_map(masks)  # (B, H, W)
            for j, fg in enumerate((None, masks.any(dim=1))):
                inter, union = iou_counts(dense_predictions(scores, level, fg), gt, len(bank_idx) + 1)
                counts[name][2 * j] = counts[name][2 * j] + inter.cpu()
                counts[name][2 * j + 1] = counts[name][2 * j + 1] + union.cpu()
    reps_t, targets_t = torch.cat(reps), torch.cat(targets)
    result: dict[str, Any] = {"map": "learned" if learned else "post-hoc",
                              "n_concepts": len(bank)}
    result.update({k: v for k, v in semantic_consistency(reps_t, bank.embeddings, targets_t).items()})
    result["concept_accuracy"] = concept_accuracy(F.normalize(reps_t, dim=-1) @ bank.embeddings.T, targets_t, groups)
    if mask_groups:
        rule, oracle = {}, {}
        for name, (i_r, u_r, i_o, u_o) in counts.items():
            rule[name] = miou_from_counts(i_r, u_r)[0]
            oracle[name] = miou_from_counts(i_o, u_o)[0]
        rule["mean"] = _mean(rule.values())
        oracle["mean"] = _mean(oracle.values())
        result["sscs"] = rule
        result["sscs_gt_foreground"] = oracle
        result["sscs_background_level"] = level
    return result


def _mean(values) -> float:
    vals = [v for v in values if not math.isnan(v)]
    return sum(vals) / len(vals) if vals else math.nan


@EVALUATORS.register("concepts")
def _concepts_evaluator(run: Any) -> dict[str, Any] | None:
    """SCS (match / non-match / margin), concept accuracy per group, SSCS mIoU per mask group."""
    return concept_scores(run)
