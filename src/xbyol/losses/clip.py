"""CLIP's symmetric InfoNCE with a learnable temperature (Radford et al. 2021).

Follows ``mlfoundations/open_clip: src/open_clip/loss.py::ClipLoss``: unit embeddings,
``logits = logit_scale * img @ txt.T``, mean of the image->text and text->image
cross-entropies. The model keeps ``log(logit_scale)`` as its parameter, initialised to
``log(1 / 0.07)`` and clamped to ``[0, log 100]`` after each optimiser step
(:func:`clamp_log_scale_`).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

MAX_LOG_SCALE: float = math.log(100.0)


def clip_logits(image: torch.Tensor, text: torch.Tensor, logit_scale: torch.Tensor | float) -> torch.Tensor:
    """Scaled cosine similarities ``[B_img, B_txt]`` of L2-normalised image and text embeddings."""
    if image.ndim != 2 or text.ndim != 2 or image.shape[1] != text.shape[1]:
        raise ValueError(
            f"expected image [B, D] and text [B', D] embeddings, got {tuple(image.shape)} and {tuple(text.shape)}"
        )
    image = F.normalize(image.float(), dim=-1)
    text = F.normalize(text.float(), dim=-1)
    return logit_scale * image @ text.T  # (B, B')


def clip_loss(
    image: torch.Tensor,
    text: torch.Tensor,
    logit_scale: torch.Tensor | float,
    positives: torch.Tensor | None = None,
) -> torch.Tensor:
    """Symmetric InfoNCE: ``(CE(logits, targets) + CE(logits.T, targets.T)) / 2``.

    Args:
        image: image embeddings ``[B, D]`` (normalised here).
        text: text embeddings ``[B, D]``; row ``i`` is the caption of image ``i``.
        logit_scale: the multiplier ``exp(log_scale)`` (not its log), as in open_clip.
        positives: optional bool ``[B, B]``: ``positives[i, j]`` when text ``j`` also
            describes image ``i`` (e.g. equal caption strings). Each row's target is then
            uniform over its positives instead of one-hot on the diagonal. The diagonal
            must be True. ``None`` gives CLIP's one-hot targets.

    Returns:
        Scalar loss; ``ln(B)`` when all logits are equal and targets are one-hot.
    """
    if image.shape != text.shape:
        raise ValueError(f"image and text embeddings must have one shape [B, D], got {tuple(image.shape)} and {tuple(text.shape)}")
    logits = clip_logits(image, text, logit_scale)  # (B, B)
    b = logits.shape[0]
    if positives is None:
        labels = torch.arange(b, device=logits.device)
        return 0.5 * (F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels))
    if positives.shape != (b, b) or positives.dtype != torch.bool:
        raise ValueError(f"positives must be a bool [B, B] = [{b}, {b}] matrix, got {positives.dtype} {tuple(positives.shape)}")
    if not bool(positives.diagonal().all()):
        raise ValueError("positives must be True on the diagonal (each caption describes its own image)")
    pos = positives.to(logits.device).float()
    targets_i2t = pos / pos.sum(dim=1, keepdim=True)  # (B, B) rows sum to 1
    targets_t2i = pos.T / pos.T.sum(dim=1, keepdim=True)  # (B, B)
    loss_i2t = -(targets_i2t * F.log_softmax(logits, dim=1)).sum(dim=1).mean()
    loss_t2i = -(targets_t2i * F.log_softmax(logits.T, dim=1)).sum(dim=1).mean()
    return 0.5 * (loss_i2t + loss_t2i)


def equal_caption_mask(captions: list[str]) -> torch.Tensor:
    """Bool ``[B, B]``: True where two captions are the same string (the diagonal included)."""
    ids: dict[str, int] = {}
    codes = torch.tensor([ids.setdefault(c, len(ids)) for c in captions])  # (B,)
    return codes[:, None] == codes[None, :]  # (B, B)


@torch.no_grad()
def clamp_log_scale_(log_scale: torch.Tensor, max_value: float = MAX_LOG_SCALE) -> None:
    """Clamp ``log(logit_scale)`` in place to ``[0, log 100]`` (open_clip; openai/CLIP#46)."""
    log_scale.clamp_(0.0, max_value)
