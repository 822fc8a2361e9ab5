"""Concept heatmaps of a loaded run, shared by the report gallery and the web explorer
(drawn by :mod:`xbyol.explain.render`).

``concept_heatmaps(run, images, "red circle", ["gradcam", ...])`` explains, for each
image, the cosine between the image's embedding (mapped into the concept space) and the
embedding of the text, with each explainer method.
"""

from __future__ import annotations

from typing import Any, Sequence

import torch

from xbyol.augment import preprocess
from xbyol.explain.base import EXPLAINERS, explain, minmax_normalize
from xbyol.explain.spec import parse_target
from xbyol.rundir import Run

__all__ = ["DEFAULT_METHODS", "HEATMAP_SCALES", "MAX_CONCEPT_CHARS", "check_concept", "concept_heatmaps", "concept_mask",
           "default_methods"]

#: the gallery's and the explorer's methods when none are given (those registered are used)
DEFAULT_METHODS = ("gradcam", "gradcampp", "scorecam", "integrated_gradients")
#: longest concept text accepted (the sentence encoder truncates long inputs anyway)
MAX_CONCEPT_CHARS = 200
#: ``"image"``: every map scaled to its own min..max; ``"shared"``: one min..max per method over
#: all the images explained for the same concept, so a weak map looks weak
HEATMAP_SCALES = ("image", "shared")


def default_methods() -> list[str]:
    """:data:`DEFAULT_METHODS` that are registered explainers."""
    return [m for m in DEFAULT_METHODS if m in EXPLAINERS]


def check_concept(text: Any) -> str:
    """A concept text, stripped; ``ValueError`` when it is not a string, empty or too long."""
    if not isinstance(text, str):
        raise ValueError(f"concept must be a text, got {type(text).__name__}")
    text = " ".join(text.split())
    if not text:
        raise ValueError("concept text is empty: type a concept such as 'red circle'")
    if len(text) > MAX_CONCEPT_CHARS:
        raise ValueError(f"concept text is {len(text)} characters long; at most {MAX_CONCEPT_CHARS} are accepted")
    return text


def concept_heatmaps(
    run: Run,
    images: torch.Tensor,
    concept: str,
    methods: Sequence[str],
    target: Any = None,
    scale: str = "image",
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Heatmaps of every method for one concept.

    Args:
        run: a :class:`xbyol.run.LoadedRun`.
        images: uint8 ``[B, 3, H, W]`` at the run's image size.
        concept: any text (the target ``parse_target("concept:<text>", run)``).
        methods: registered explainer names.
        target: a prebuilt target for ``concept`` (skips building it again).
        scale: ``"image"`` (each map min-max normalised on its own) or ``"shared"`` (one
            min-max over the whole batch, per method; see :data:`HEATMAP_SCALES`).

    Returns:
        ``scores [B]`` (cosine of each image with the concept) and ``{method: heatmaps [B, H, W]}``
        in [0, 1], on the CPU.
    """
    if scale not in HEATMAP_SCALES:
        raise ValueError(f"heatmap scale must be one of {', '.join(HEATMAP_SCALES)}, got {scale!r}")
    concept = check_concept(concept)
    methods = EXPLAINERS.check(methods)
    if target is None:
        target = parse_target(f"concept:{concept}", run)
    x = preprocess(images.to(run.device))  # (B, 3, H, W)
    backbone = run.backbone.eval()
    with torch.no_grad():
        scores = target(backbone(x)).float().cpu()  # (B,)
    maps = {}
    for m in methods:
        raw = explain(backbone, x, target, method=m, normalize=scale == "image").float().cpu()  # (B, H, W)
        maps[m] = raw if scale == "image" else minmax_normalize(raw.reshape(1, -1, raw.shape[-1])).view_as(raw)
    return scores, maps


def concept_mask(sample: dict[str, Any], dataset: Any, concept: str) -> torch.Tensor | None:
    """The ground-truth pixel mask ``[H, W]`` bool of a concept text, when the dataset has one.

    The text is a concept name of the dataset (``"red"``), or words that all are
    (``"red circle"``: the pixels that are both red and circle). ``None`` when the sample
    has no masks, a word is not an annotated concept, or the mask is empty.
    """
    masks = sample.get("masks")
    names = [n.lower() for n in (getattr(dataset, "concept_names", []) or [])]
    annotated = set(getattr(dataset, "mask_concepts", []) or [])
    if masks is None or not names:
        return None
    text = " ".join(concept.lower().split())
    words = [text] if text in names else text.split()
    if not words or any(w not in names or names.index(w) not in annotated for w in words):
        return None
    mask = torch.ones(masks.shape[-2:], dtype=torch.bool)
    for w in words:
        mask &= masks[names.index(w)].bool()
    return mask if bool(mask.any()) else None
