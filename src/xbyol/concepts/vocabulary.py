"""Which concepts a bank holds, and which of them each image shows.

Bank texts come, in order of precedence, from a user's concepts file, the dataset's
concept vocabulary, a vocabulary of frequent caption words, or the class names.
Per-image targets come, per concept, from the dataset's ``concepts`` multi-hot when the
concept is in its vocabulary, else from the caption (word match), else from the class
label when the concept is a class name. A concept with none of these is never a
positive; an image with no positive concept is *unlabelled* and only trains BYOL.
"""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path
from typing import Any

import torch

_STOPWORDS = frozenset(
    "a an the of to in on at and or with without is are was were be been being this that these those it its "
    "there their they them he she his her we you i my our your for from by as into onto over under near "
    "left right behind front next two three four one some many few other another than then very".split()
)


def validate_texts(texts: list[str], what: str = "concept list") -> list[str]:
    """Strip the texts; raise on an empty list, empty strings or duplicates (case-insensitive)."""
    if isinstance(texts, str):
        raise TypeError(f"{what}: expected a list of strings, got a single string {texts!r}")
    out = [str(t).strip() for t in texts]
    if not out:
        raise ValueError(f"{what} is empty: give at least one concept text")
    seen: dict[str, int] = {}
    for i, t in enumerate(out):
        if not t:
            raise ValueError(f"{what}: entry {i} is an empty string")
        key = t.lower()
        if key in seen:
            raise ValueError(f"{what}: duplicate concept {t!r} (entries {seen[key]} and {i})")
        seen[key] = i
    return out


def read_concepts_file(path: str | Path) -> tuple[list[str], dict[str, list[int]]]:
    """Read one concept per line; ``group: concept`` puts it in a group; ``#`` starts a comment.

    Returns:
        The concept texts and the groups (``{}`` when no line names a group).
    """
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"concepts file {p} does not exist (method.semantic.concepts_file)")
    texts: list[str] = []
    groups: dict[str, list[int]] = {}
    for line in p.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        group = None
        if ":" in line:
            group, line = (s.strip() for s in line.split(":", 1))
            if not group or not line:
                raise ValueError(f"concepts file {p}: line {line!r} should be 'concept' or 'group: concept'")
        if group is not None:
            groups.setdefault(group, []).append(len(texts))
        texts.append(line)
    return validate_texts(texts, f"concepts file {p}"), groups


def caption_vocabulary(captions: list[str], max_concepts: int = 50, min_count: int = 2) -> list[str]:
    """The most frequent non-stop-words of the captions (a default bank for caption-only data)."""
    counts: Counter[str] = Counter()
    for c in captions:
        for w in re.findall(r"[a-z]+", c.lower()):
            if len(w) > 2 and w not in _STOPWORDS:
                counts[w] += 1
    words = [w for w, n in counts.most_common() if n >= min_count][:max_concepts]
    if not words:
        raise ValueError("the captions hold no word frequent enough to make a concept; give method.semantic.concepts_file")
    return words


def _dataset_captions(dataset: Any, limit: int = 2000) -> list[str]:
    caps = getattr(dataset, "captions", None)
    if isinstance(caps, (list, tuple)) and caps:
        flat = [c if isinstance(c, str) else " ".join(c) for c in caps]
        return flat[:limit]
    return [str(dataset[i].get("caption", "")) for i in range(min(len(dataset), limit))]


def concept_texts_for(dataset: Any, concepts_file: str | None = None) -> tuple[list[str], dict[str, list[int]], str]:
    """The concept texts (and groups) a run's bank is built from.

    Returns:
        ``(texts, groups, source)`` with ``source`` one of ``"file"``, ``"vocabulary"``,
        ``"captions"``, ``"classes"``.
    """
    if concepts_file:
        texts, groups = read_concepts_file(concepts_file)
        return texts, groups, "file"
    names = list(getattr(dataset, "concept_names", []) or [])
    if names:
        groups = {g: list(map(int, idx)) for g, idx in (getattr(dataset, "concept_groups", {}) or {}).items()}
        return names, groups, "vocabulary"
    if getattr(dataset, "has_captions", False):
        return caption_vocabulary(_dataset_captions(dataset)), {}, "captions"
    classes = list(getattr(dataset, "class_names", []) or [])
    if classes:
        return classes, {"class": list(range(len(classes)))}, "classes"
    raise ValueError(
        f"dataset {type(dataset).__name__} has no concept vocabulary, captions or class names; "
        "give a concepts file (method.semantic.concepts_file)"
    )


def _phrase_pattern(text: str) -> re.Pattern[str]:
    words = [re.escape(w) for w in text.lower().split()]
    return re.compile(r"\b" + r"\s+".join(words) + r"(?:s|es)?\b")


def caption_targets(captions: list[str], texts: list[str]) -> torch.Tensor:
    """Whether each caption mentions each concept (whole words, case-insensitive, plural s/es allowed).

    Returns:
        ``[B, K]`` bool.
    """
    patterns = [_phrase_pattern(t) for t in texts]
    rows = [[bool(p.search(c.lower())) for p in patterns] for c in captions]
    return torch.tensor(rows, dtype=torch.bool).reshape(len(captions), len(texts))


class ConceptLabeler:
    """Maps a batch to the ``[B, K]`` positive concepts of each image for a bank's texts.

    Args:
        texts: the bank's concept texts.
        dataset: provides ``concept_names``, ``has_captions`` and ``class_names``.
    """

    def __init__(self, texts: list[str], dataset: Any) -> None:
        vocab = {n.lower(): j for j, n in enumerate(getattr(dataset, "concept_names", []) or [])}
        classes = {n.lower(): j for j, n in enumerate(getattr(dataset, "class_names", []) or [])}
        captions = bool(getattr(dataset, "has_captions", False))
        self.texts = list(texts)
        self.vocab_cols: list[tuple[int, int]] = []  # (bank index, dataset concept index)
        self.caption_ids: list[int] = []
        self.class_ids: list[tuple[int, int]] = []  # (bank index, class index)
        self.sources: list[str | None] = []
        for k, t in enumerate(self.texts):
            key = t.lower()
            if key in vocab:
                self.vocab_cols.append((k, vocab[key]))
                self.sources.append("concepts")
            elif captions:
                self.caption_ids.append(k)
                self.sources.append("caption")
            elif key in classes:
                self.class_ids.append((k, classes[key]))
                self.sources.append("label")
            else:
                self.sources.append(None)
        self._patterns = [_phrase_pattern(self.texts[k]) for k in self.caption_ids]

    @property
    def num_labelled(self) -> int:
        """Number of bank concepts that can ever be a positive."""
        return sum(s is not None for s in self.sources)

    def __call__(self, batch: dict[str, Any]) -> torch.Tensor:
        """``[B, K]`` bool positives of a collated batch (on the batch's device)."""
        images = batch["image"]
        b, k = images.shape[0], len(self.texts)
        out = torch.zeros(b, k, dtype=torch.bool, device=images.device)
        if self.vocab_cols and "concepts" in batch:
            bank_idx = [i for i, _ in self.vocab_cols]
            data_idx = [j for _, j in self.vocab_cols]
            out[:, bank_idx] = batch["concepts"][:, data_idx].to(out.device).bool()
        if self.caption_ids and "caption" in batch:
            caps = [str(c).lower() for c in batch["caption"]]
            hits = [[bool(p.search(c)) for p in self._patterns] for c in caps]
            out[:, self.caption_ids] = torch.tensor(hits, dtype=torch.bool, device=out.device).reshape(b, -1)
        if self.class_ids and "label" in batch:
            labels = torch.as_tensor(batch["label"], device=out.device)
            for bank_k, cls in self.class_ids:
                out[:, bank_k] = labels == cls
        return out  # (B, K)
