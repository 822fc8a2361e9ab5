"""Grade every explainer of a run against ground-truth masks (``xbyol explain-eval``).

Protocol: take the first ``n_images`` test images; for every shape and colour concept
present in an image (the groups that have exact masks in ``shapes``), explain the
target ``concept:<that concept>`` and score the heatmap against that concept's mask.
Per method this gives localisation (pointing game, energy pointing game, top-20% IoU),
faithfulness (deletion and insertion AUC of the same target score), robustness
(max-sensitivity, on the first ``n_robust`` pairs) and the model-randomisation sanity
check (Spearman correlation of the heatmaps before/after randomising every conv layer
top-down, on the same subset; lower is better; ``randomization_undefined`` counts the pairs
whose fully randomised map is constant, where the correlation is undefined and left out),
plus the time per heatmap.

Pointing game: one point per map (:func:`xbyol.metrics.pointing_game`); a constant or
non-finite map is undefined and counted in ``blank_maps``. ``pointing_game`` is the mean
over concepts of each concept's hit rate (the EBP protocol's per-class mean);
``pointing_game_pairs`` is the mean over (image, concept) pairs. The centre baseline is the
same rule applied to a map peaked at the image centre, averaged both ways.

Results are written to ``RUN_DIR/explain_eval.json`` as
``{"protocol": {...}, "methods": {method: {metric: value}}}``.
"""

from __future__ import annotations

import math
import time
from typing import Any

import torch
from torch import nn
from tqdm.auto import tqdm

from xbyol.augment import preprocess
from xbyol.concepts.projection import concept_projection
from xbyol.explain import EXPLAINERS, ConceptTarget, explain
from xbyol.explain.attribution import surrogate_samples_rule
from xbyol.metrics import (
    blank_maps,
    class_mean,
    deletion_auc,
    energy_pointing_game,
    insertion_auc,
    mask_iou,
    max_sensitivity,
    model_randomization,
    pointing_game,
)
from xbyol.rundir import Run

DEFAULT_METHODS = [
    "gradcam", "gradcampp", "xgradcam", "layercam", "scorecam", "eigencam",
    "saliency", "integrated_gradients", "smoothgrad", "guided_backprop", "occlusion", "lime", "kernelshap",
]
MASK_GROUPS = ("shape", "colour")


def concept_pairs(dataset: Any, n_images: int, groups: tuple[str, ...] = MASK_GROUPS) -> list[tuple[int, int]]:
    """``(image index, concept index)`` for every masked concept of the chosen groups in the first images."""
    wanted: list[int] = []
    for g in groups:
        wanted += dataset.concept_groups.get(g, [])
    if not wanted:
        wanted = list(dataset.mask_concepts)
    wanted = [k for k in wanted if k in set(dataset.mask_concepts)]
    if not wanted:
        raise ValueError(
            f"dataset {type(dataset).__name__} has no concept masks: explain-eval needs a dataset with masks (e.g. shapes)"
        )
    pairs = []
    for i in range(min(n_images, len(dataset))):
        masks = dataset[i]["masks"]
        for k in wanted:
            if bool(masks[k].any()):
                pairs.append((i, k))
    if not pairs:
        raise ValueError(f"no image among the first {n_images} has a masked concept")
    return pairs


def conv_layers_top_down(model: nn.Module) -> list[str]:
    return [n for n, m in reversed(list(model.named_modules())) if isinstance(m, (nn.Conv2d, nn.Linear))]


def _nanmean(x: torch.Tensor) -> float:
    x = x.float()
    ok = ~torch.isnan(x)
    return float(x[ok].mean()) if ok.any() else float("nan")


def explain_eval(
    run: Run,
    methods: list[str] | None = None,
    n_images: int = 32,
    batch_size: int = 32,
    n_robust: int = 8,
    sensitivity_samples: int = 3,
    progress: bool = True,
    write: bool = True,
) -> dict[str, Any]:
    """Score explainers on the run's test masks; see the module docstring.

    Args:
        run: a :class:`xbyol.run.LoadedRun` whose dataset has concept masks.
        methods: explainer names (default: every method in ``DEFAULT_METHODS`` that is registered).
        n_images: test images to use (each contributes one pair per masked shape/colour concept).
        batch_size: pairs explained per call.
        n_robust: pairs used for max-sensitivity and model randomisation (the costly checks).
        sensitivity_samples: Monte-Carlo samples of max-sensitivity.
        progress: show a progress bar.
        write: save ``RUN_DIR/explain_eval.json``.
    """
    methods = EXPLAINERS.check(methods if methods is not None else [m for m in DEFAULT_METHODS if m in EXPLAINERS])
    test = run.dataset("test")
    pairs = concept_pairs(test, n_images)
    project_fn, bank = concept_projection(run)
    concept_emb = bank.embed([test.concept_names[k] for _, k in pairs]).to(run.device)  # (P, E)
    model = run.backbone.eval()
    images = torch.stack([test[i]["image"] for i, _ in pairs]).to(run.device)
    masks = torch.stack([test[i]["masks"][k] for i, k in pairs]).to(run.device)  # (P, H, W)
    x_all = preprocess(images)
    pair_concepts = torch.tensor([k for _, k in pairs])  # (P,) class of each pair for the per-class mean

    def target_for(sl: slice) -> ConceptTarget:
        return ConceptTarget(concept_emb[sl], project_fn)

    def score_fn(sl: slice):
        target = target_for(sl)

        @torch.no_grad()
        def forward(x: torch.Tensor) -> torch.Tensor:
            return target(model(x))

        return forward

    bar = None
    if progress:
        bar = tqdm(total=len(methods), desc="explain-eval", unit="method", disable=None)  # off where stderr is no terminal
    table: dict[str, dict[str, float]] = {}
    for method in methods:
        rows: dict[str, list[Any]] = {  # tensors; deletion_auc's return type also allows (auc, curves)
            k: [] for k in ("pointing_game", "blank", "energy_pointing_game", "iou", "deletion_auc", "insertion_auc")
        }
        elapsed = 0.0
        for start in range(0, len(pairs), batch_size):
            sl = slice(start, min(start + batch_size, len(pairs)))
            x, m = x_all[sl], masks[sl]
            t0 = time.perf_counter()
            h = explain(model, x, target_for(sl), method=method)
            elapsed += time.perf_counter() - t0
            rows["pointing_game"].append(pointing_game(h, m))
            rows["blank"].append(blank_maps(h))
            rows["energy_pointing_game"].append(energy_pointing_game(h, m))
            rows["iou"].append(mask_iou(h, m))
            # one forward per curve step holding every pair of the chunk in order, so the
            # per-pair concept target lines up with its image
            fwd = score_fn(sl)
            rows["deletion_auc"].append(deletion_auc(fwd, x, h, batch_size=x.shape[0]))
            rows["insertion_auc"].append(insertion_auc(fwd, x, h, batch_size=x.shape[0]))
        hits = torch.cat(rows.pop("pointing_game")).cpu()  # (P,)
        result = {
            "pointing_game": class_mean(hits, pair_concepts),
            "pointing_game_pairs": _nanmean(hits),
            "blank_maps": int(torch.cat(rows.pop("blank")).sum()),
        }
        result.update({k: _nanmean(torch.cat(v)) for k, v in rows.items()})
        result["ms_per_image"] = 1000.0 * elapsed / len(pairs)
        rs = slice(0, min(n_robust, len(pairs)))
        target_r = target_for(rs)
        sens = max_sensitivity(
            lambda xx: explain(model, xx, target_r, method=method),  # noqa: B023 (called before the loop moves on)
            x_all[rs],
            n_samples=sensitivity_samples,
            batch_size=rs.stop,  # one perturbation of every pair per call, aligned with its target
        )
        result["max_sensitivity"] = _nanmean(sens)
        rnd = model_randomization(
            model,
            lambda mm, xx: explain(mm.eval(), xx, target_r, method=method),  # noqa: B023 (called before the loop moves on)
            x_all[rs],
            layers=conv_layers_top_down(model),
        )
        corr = rnd["correlations"]  # (B, L)
        result["randomization_corr"] = _nanmean(corr[:, -1]) if corr.numel() else float("nan")
        # pairs whose fully randomised map is constant (e.g. an all-zero CAM): Spearman undefined
        result["randomization_undefined"] = int(torch.isnan(corr[:, -1]).sum()) if corr.numel() else 0
        table[method] = result
        if bar:
            bar.update(1)
            bar.set_postfix(method=method)
    if bar:
        bar.close()
    centre_hits = centre_baseline_hits(masks).cpu()  # (P,)
    out = {
        "protocol": {
            "pairs": len(pairs),
            "images": len({i for i, _ in pairs}),
            "groups": list(MASK_GROUPS),
            "robust_pairs": rs.stop,
            "sensitivity_samples": sensitivity_samples,
            # LIME / KernelSHAP samples per image: the default changed once (BENCHMARKS, "Explainers against
            # references"), and results of different defaults must not be averaged together
            "surrogate_samples": surrogate_samples_rule(),
            "centre_baseline_pointing_game": class_mean(centre_hits, pair_concepts),
            "centre_baseline_pointing_game_pairs": _nanmean(centre_hits),
            "concept_map": "learned" if run.cfg.method.name == "xbyol" else "post-hoc",
        },
        "methods": table,
    }
    if write:
        run.paths.write_json(run.paths.explain_eval, out)
    return out


def centre_baseline_hits(masks: torch.Tensor) -> torch.Tensor:
    """Per-pair pointing-game hits ``[P]`` of a map peaked at the image centre (the usual null).

    The map is ``-(squared distance to the centre)``, scored by the same
    :func:`xbyol.metrics.pointing_game` as the explainers (for an even size the four
    central pixels tie, and the tie rule picks one of them).
    """
    b, h, w = masks.shape
    yy, xx = torch.meshgrid(torch.arange(h, dtype=torch.float32), torch.arange(w, dtype=torch.float32), indexing="ij")
    centre = -((yy - (h - 1) / 2) ** 2 + (xx - (w - 1) / 2) ** 2)  # (H, W)
    return pointing_game(centre.expand(b, h, w).to(masks.device), masks)


def format_table(result: dict[str, Any]) -> str:
    cols = ["pointing_game", "pointing_game_pairs", "blank_maps", "energy_pointing_game", "iou", "deletion_auc",
            "insertion_auc", "max_sensitivity", "randomization_corr", "ms_per_image"]
    heads = ["method", "PG", "PG pairs", "blank", "energyPG", "IoU", "del AUC↓", "ins AUC↑", "max-sens↓", "rand corr↓", "ms/img"]
    rows = [heads]
    for method, r in result["methods"].items():
        rows.append([method] + [_cell(c, r[c]) for c in cols])
    widths = [max(len(r[i]) for r in rows) for i in range(len(heads))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)) for r in rows]
    p = result["protocol"]
    lines.append(
        f"\n{p['pairs']} (image, concept) pairs from {p['images']} test images; concept map: {p['concept_map']}; "
        f"centre-baseline pointing game: {p['centre_baseline_pointing_game']:.3f} "
        f"(pairs {p['centre_baseline_pointing_game_pairs']:.3f}). PG: one point per map, mean over concepts; "
        "'blank' maps (constant or non-finite) are left out of PG and counted."
    )
    return "\n".join(lines)


def _cell(column: str, value: float | int) -> str:
    if column == "blank_maps":
        return str(value)
    if column == "ms_per_image":
        return f"{value:.1f}"
    return "nan" if math.isnan(value) else f"{value:.3f}"
