"""Frozen-encoder text features, computed once per distinct caption and cached on disk.

A dataset's captions are deduplicated, embedded once by the frozen sentence encoder
through the embedding cache of :mod:`xbyol.text.sentence_model` and held in memory as a
lookup table, so training never re-encodes a caption.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import torch

from xbyol.text.sentence_model import BUNDLED_MODEL, cached_embeddings, encode_texts

# unknown texts met at run time (test captions, caption-dropout views) kept in memory at most
MAX_EXTRA_TEXTS = 100_000


class TextFeatureTable:
    """Lookup ``text -> [E]`` unit feature of a frozen sentence encoder.

    Texts not in the table (test captions, caption-dropout views) are encoded on first
    use and remembered in memory (up to ``MAX_EXTRA_TEXTS``). The table is shared, not
    copied, by ``copy.deepcopy`` (an EMA target copy of an encoder reuses it).

    Args:
        model: the model name or directory that made ``features``.
        texts: ``N`` distinct strings.
        features: ``[N, E]`` float unit vectors, row ``i`` for ``texts[i]``.
    """

    def __init__(self, model: str, texts: list[str], features: torch.Tensor) -> None:
        if features.ndim != 2 or len(texts) != features.shape[0]:
            raise ValueError(f"{len(texts)} texts but features of shape {tuple(features.shape)}")
        if len(set(texts)) != len(texts):
            raise ValueError("TextFeatureTable texts must be distinct")
        self.model = model
        self.texts = list(texts)
        self.features = features.float().cpu()  # (N, E)
        self.index = {t: i for i, t in enumerate(self.texts)}
        self.extra: dict[str, torch.Tensor] = {}
        self._on_device: dict[str, torch.Tensor] = {}

    @property
    def dim(self) -> int:
        return int(self.features.shape[1])

    def __len__(self) -> int:
        return len(self.texts)

    def __deepcopy__(self, memo: dict) -> "TextFeatureTable":
        return self

    def _table_on(self, device: torch.device) -> torch.Tensor:
        key = str(device)
        if key not in self._on_device:
            self._on_device[key] = self.features.to(device)
        return self._on_device[key]

    @torch.no_grad()
    def lookup(self, texts: list[str], device: str | torch.device = "cpu") -> torch.Tensor:
        """Features ``[B, E]`` of ``texts`` on ``device``, encoding unknown texts on the fly."""
        device = torch.device(device)
        rows = torch.tensor([self.index.get(t, -1) for t in texts], dtype=torch.long)  # (B,)
        hit = rows >= 0
        out = torch.empty(len(texts), self.dim, device=device)
        if bool(hit.any()):
            out[hit.to(device)] = self._table_on(device)[rows[hit].to(device)]
        if not bool(hit.all()):
            unknown = [t for t, h in zip(texts, hit.tolist()) if not h]
            need = sorted({t for t in unknown if t not in self.extra})
            fresh: dict[str, torch.Tensor] = {}
            if need:
                fresh = dict(zip(need, encode_texts(self.model, need)))
                for t, f in fresh.items():
                    if len(self.extra) < MAX_EXTRA_TEXTS:
                        self.extra[t] = f
            stacked = torch.stack([fresh[t] if t in fresh else self.extra[t] for t in unknown])  # (M, E)
            out[(~hit).to(device)] = stacked.to(device)
        return out  # (B, E)


def build_text_table(
    texts: Iterable[str],
    model: str = BUNDLED_MODEL,
    cache_dir: str | Path | None = None,
    batch_size: int = 256,
) -> TextFeatureTable:
    """Embed the distinct ``texts`` with the frozen ``model``, reusing the disk cache.

    Args:
        texts: captions, repeats allowed.
        model: sentence-transformers name or local directory.
        cache_dir: see :func:`xbyol.text.sentence_model.embedding_cache_dir`.
        batch_size: texts per forward pass when encoding.

    Returns:
        The table of the distinct texts, in sorted order.
    """
    distinct = sorted(set(texts))
    if not distinct:
        raise ValueError("no caption texts to encode: the dataset has no captions")
    features, _ = cached_embeddings(distinct, model, cache_dir, batch_size=batch_size)
    return TextFeatureTable(model, distinct, features)
