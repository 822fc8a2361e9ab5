"""Concept heatmaps of a loaded run, shared by the report gallery and the web explorer.

``concept_heatmaps(run, images, "red circle", ["gradcam", ...])`` explains, for each
image, the cosine between the image's embedding (mapped into the concept space) and the
embedding of the text, with each explainer method.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import torch

from xbyol.augment import preprocess
from xbyol.explain import explain, minmax_normalize, names
from xbyol.explain.overlay import colorize, overlay
from xbyol.explain.spec import parse_target
from xbyol.report.figures import image_data_uri, upscale

__all__ = ["DEFAULT_METHODS", "HEATMAP_SCALES", "MAX_CONCEPT_CHARS", "OVERLAY_ALPHA", "OVERLAY_CMAP", "check_concept",
           "check_methods", "colorbar_uri", "concept_heatmaps", "concept_mask", "default_methods", "heat_layer_uri",
           "mask_outline", "outline_uri", "overlay_uri"]

#: the gallery's and the explorer's methods when none are given (those registered are used)
DEFAULT_METHODS = ("gradcam", "gradcampp", "scorecam", "integrated_gradients")
#: longest concept text accepted (the sentence encoder truncates long inputs anyway)
MAX_CONCEPT_CHARS = 200
#: heatmap colours: perceptually uniform, dark (transparent) at 0, pale yellow at 1
OVERLAY_CMAP = "inferno"
#: heatmap opacity where the map is 1; it falls to 0 with the map so the image keeps its colours
OVERLAY_ALPHA = 0.8
#: ``"image"``: every map scaled to its own min..max; ``"shared"``: one min..max per method over
#: all the images explained for the same concept, so a weak map looks weak
HEATMAP_SCALES = ("image", "shared")
#: colour of a ground-truth mask outline (cyan: not in the inferno colormap)
OUTLINE_RGB = (0, 255, 255)


def default_methods() -> list[str]:
    """:data:`DEFAULT_METHODS` that are registered explainers."""
    available = set(names())
    return [m for m in DEFAULT_METHODS if m in available]


def check_methods(methods: Sequence[str]) -> list[str]:
    """Validate explainer names (order kept, duplicates dropped); raise ``ValueError`` listing the choices."""
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
    methods = check_methods(methods)
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


def mask_outline(mask: np.ndarray) -> np.ndarray:
    """The 1-pixel inner boundary of a bool mask ``[H, W]``: mask pixels with a 4-neighbour outside it."""
    padded = np.pad(mask, 1, constant_values=False)
    inner = padded[:-2, 1:-1] & padded[2:, 1:-1] & padded[1:-1, :-2] & padded[1:-1, 2:]
    return mask & ~inner


def overlay_uri(image: torch.Tensor, heatmap: torch.Tensor, min_size: int = 96, alpha: float = OVERLAY_ALPHA,
                mask: torch.Tensor | None = None) -> str:
    """PNG ``data:`` URI of a heatmap ``[H, W]`` over a uint8 image ``[3, H, W]``, upscaled to ``min_size``.

    The heatmap's opacity follows its value (``alpha`` at 1, transparent at 0; see
    :func:`xbyol.explain.overlay.overlay`), so the image keeps its colours where the map is
    low. ``mask`` (bool ``[H, W]``) is drawn as a thin cyan outline at the displayed size.
    """
    out = upscale(overlay(image.cpu(), heatmap.cpu(), alpha=alpha, cmap=OVERLAY_CMAP, by_value=True).numpy(), min_size)
    if mask is not None:
        out = out.copy()
        out[mask_outline(upscale(mask.cpu().numpy().astype(bool), min_size))] = OUTLINE_RGB
    return image_data_uri(out)


def heat_layer_uri(heatmap: torch.Tensor, min_size: int = 96, alpha: float = OVERLAY_ALPHA) -> str:
    """The heatmap alone as an RGBA PNG ``data:`` URI: colour ``cmap(v)``, opacity ``alpha * v``.

    Drawn over the image in a browser it gives :func:`overlay_uri`'s picture (without the
    outline), and its CSS opacity can be changed with a slider.
    """
    h = heatmap.detach().float().cpu().clamp(0, 1)  # (H, W)
    rgb = (colorize(h, OVERLAY_CMAP) * 255).round().to(torch.uint8)  # (H, W, 3)
    a = (alpha * h * 255).round().to(torch.uint8)[..., None]  # (H, W, 1)
    return image_data_uri(upscale(torch.cat([rgb, a], dim=-1).numpy(), min_size))


def outline_uri(mask: torch.Tensor, min_size: int = 96) -> str:
    """A transparent RGBA PNG ``data:`` URI holding only the cyan outline of a bool mask ``[H, W]``."""
    edge = mask_outline(upscale(mask.cpu().numpy().astype(bool), min_size))
    out = np.zeros((*edge.shape, 4), dtype=np.uint8)
    out[edge] = (*OUTLINE_RGB, 255)
    return image_data_uri(out)


def colorbar_uri(width: int = 256, height: int = 12) -> str:
    """A horizontal colour bar of :data:`OVERLAY_CMAP` from 0 (left) to 1 (right)."""
    ramp = torch.linspace(0, 1, width)[None].expand(height, width)  # (h, w)
    return image_data_uri((colorize(ramp, OVERLAY_CMAP) * 255).round().to(torch.uint8).numpy())

