"""Captions of a dataset, and second text views for the intra-modal text term."""

from __future__ import annotations

from typing import Any

import torch


def item_captions(dataset: Any) -> list[list[str]]:
    """Every caption of every item: ``[captions of item 0, captions of item 1, ...]``.

    Reads the dataset's ``all_captions``, ``caption_lists`` or ``captions`` attribute when it has one entry per
    item (a string or a list of strings), else each sample's ``captions`` or ``caption``.

    Raises:
        ValueError: the dataset has no captions.
    """
    n = len(dataset)
    for attr in ("all_captions", "caption_lists", "captions"):
        caps = getattr(dataset, attr, None)
        if isinstance(caps, (list, tuple)) and len(caps) == n:
            return [[c] if isinstance(c, str) else [str(x) for x in c] for c in caps]
    if not getattr(dataset, "has_captions", False):
        raise ValueError(
            f"dataset {type(dataset).__name__} has no captions; cross-modal methods need a dataset whose samples "
            "carry 'caption' (shapes, digits, folder with captions.jsonl, coco-captions)"
        )
    out = []
    for i in range(n):
        s = dataset[i]
        caps = s.get("captions") or [s.get("caption")]
        if not caps or any(not isinstance(c, str) for c in caps):
            raise ValueError(f"dataset {type(dataset).__name__}: sample {i} has no caption string")
        out.append(list(caps))
    return out


def caption_dropout(texts: list[str], p: float, generator: torch.Generator | None = None) -> list[str]:
    """Drop each word independently with probability ``p``, keeping at least one word.

    Args:
        texts: ``B`` captions.
        p: word dropout probability in [0, 1].
        generator: torch RNG (default: the global one, which checkpoints restore).

    Returns:
        ``B`` captions.
    """
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"caption dropout probability must be in [0, 1], got {p}")
    out = []
    for text in texts:
        words = text.split()
        if not words:
            out.append(text)
            continue
        keep = torch.rand(len(words), generator=generator) >= p
        if not bool(keep.any()):
            keep[int(torch.randint(len(words), (1,), generator=generator))] = True
        out.append(" ".join(w for w, k in zip(words, keep.tolist()) if k))
    return out


def second_text_view(
    texts: list[str], caption_lists: list[list[str]] | None, p: float, generator: torch.Generator | None = None
) -> list[str]:
    """Another caption of the same image where it has one, else a caption-dropout view.

    Args:
        texts: the captions used for the first view, ``B`` strings.
        caption_lists: every caption of each image (e.g. a batch's ``captions``), or None.
        p: word dropout probability for images with a single caption.
    """
    dropped = caption_dropout(texts, p, generator)
    if caption_lists is None:
        return dropped
    out = []
    for text, others, fallback in zip(texts, caption_lists, dropped):
        choices = [c for c in dict.fromkeys(others) if c != text]
        if choices:
            out.append(choices[int(torch.randint(len(choices), (1,), generator=generator))])
        else:
            out.append(fallback)
    return out
