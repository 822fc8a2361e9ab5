"""Concept heatmaps of a loaded run, shared by the report gallery and the web explorer.

``concept_heatmaps(run, images, "red circle", ["gradcam", ...])`` explains, for each
image, the cosine between the image's embedding (mapped into the concept space) and the
embedding of the text, with each explainer method.
"""

from __future__ import annotations

from typing import Any, Sequence

import torch

__all__ = ["DEFAULT_METHODS", "MAX_CONCEPT_CHARS", "check_concept", "check_methods", "concept_heatmaps",
           "default_methods", "overlay_uri"]

#: the gallery's and the explorer's methods when none are given (those registered are used)
DEFAULT_METHODS = ("gradcam", "gradcampp", "scorecam", "integrated_gradients")
#: longest concept text accepted (the sentence encoder truncates long inputs anyway)
MAX_CONCEPT_CHARS = 200


def default_methods() -> list[str]:
    """:data:`DEFAULT_METHODS` that are registered explainers."""
    from xbyol.explain import names

    available = set(names())
    return [m for m in DEFAULT_METHODS if m in available]


def check_methods(methods: Sequence[str]) -> list[str]:
    """Validate explainer names (order kept, duplicates dropped); raise ``ValueError`` listing the choices."""
    from xbyol.explain import names

    available = names()
    if isinstance(methods, str):
        methods = [m for m in methods.split(",") if m.strip()]
    out = list(dict.fromkeys(str(m).strip() for m in methods))
    if not out:
        raise ValueError(f"no explainer method given; available: {', '.join(available)}")
    unknown = [m for m in out if m not in available]
    if unknown:
        raise ValueError(f"unknown explainer method(s) {', '.join(map(repr, unknown))}; available: {', '.join(available)}")
    return out


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
    run: Any,
    images: torch.Tensor,
    concept: str,
    methods: Sequence[str],
    target: Any = None,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Heatmaps of every method for one concept.

    Args:
        run: a :class:`xbyol.run.LoadedRun`.
        images: uint8 ``[B, 3, H, W]`` at the run's image size.
        concept: any text (``run.target("concept:<text>")``).
        methods: registered explainer names.
        target: a prebuilt target for ``concept`` (skips building it again).

    Returns:
        ``scores [B]`` (cosine of each image with the concept) and ``{method: heatmaps [B, H, W]}``
        in [0, 1], on the CPU.
    """
    from xbyol.augment import preprocess
    from xbyol.explain import explain

    concept = check_concept(concept)
    methods = check_methods(methods)
    if target is None:
        target = run.target(f"concept:{concept}")
    x = preprocess(images.to(run.device))  # (B, 3, H, W)
    backbone = run.backbone.eval()
    with torch.no_grad():
        scores = target(backbone(x)).float().cpu()  # (B,)
    maps = {m: explain(backbone, x, target, method=m).float().cpu() for m in methods}  # (B, H, W) each
    return scores, maps


def overlay_uri(image: torch.Tensor, heatmap: torch.Tensor, min_size: int = 96, alpha: float = 0.5) -> str:
    """PNG ``data:`` URI of a heatmap ``[H, W]`` blended over a uint8 image ``[3, H, W]``."""
    from xbyol.explain.overlay import overlay
    from xbyol.report.figures import image_data_uri

    return image_data_uri(overlay(image.cpu(), heatmap.cpu(), alpha=alpha).numpy(), min_size=min_size)
