"""Frozen-encoder text features, computed once per distinct caption and cached on disk.

A dataset's captions are deduplicated, embedded once by the frozen sentence encoder,
saved to ``<cache>/<key>.pt`` (key = SHA-256 of the model's weights and the sorted
texts) and held in memory as a lookup table, so training never re-encodes a caption.
The cache directory is the ``cache_dir`` argument, else ``$XBYOL_CACHE_DIR/text``, else
``~/.cache/xbyol/text``.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable
from pathlib import Path

import torch

from xbyol.data.io import atomic_write
from xbyol.text.encoder import encode_frozen, model_fingerprint, shared_sentence_model

# unknown texts met at run time (test captions, caption-dropout views) kept in memory at most
MAX_EXTRA_TEXTS = 100_000


def text_cache_dir(cache_dir: str | Path | None = None) -> Path:
    """Where cached text features live (see the module docstring)."""
    if cache_dir is not None:
        return Path(cache_dir)
    env = os.environ.get("XBYOL_CACHE_DIR")
    if env:
        return Path(env) / "text"
    return Path.home() / ".cache" / "xbyol" / "text"


def cache_key(fingerprint: str, texts: list[str]) -> str:
    """Hex key of a (model weights, distinct sorted texts) pair."""
    payload = json.dumps({"model": fingerprint, "texts": texts}, ensure_ascii=False)
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()[:40]


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
                fresh = dict(zip(need, encode_frozen(shared_sentence_model(self.model, "cpu"), need)))
                for t, f in fresh.items():
                    if len(self.extra) < MAX_EXTRA_TEXTS:
                        self.extra[t] = f
            stacked = torch.stack([fresh[t] if t in fresh else self.extra[t] for t in unknown])  # (M, E)
            out[(~hit).to(device)] = stacked.to(device)
        return out  # (B, E)


def build_text_table(
    texts: Iterable[str],
    model: str = "all-MiniLM-L6-v2",
    cache_dir: str | Path | None = None,
    batch_size: int = 256,
) -> TextFeatureTable:
    """Embed the distinct ``texts`` with the frozen ``model``, reusing the disk cache.

    Args:
        texts: captions, repeats allowed.
        model: sentence-transformers name or local directory.
        cache_dir: see :func:`text_cache_dir`.
        batch_size: texts per forward pass when encoding.

    Returns:
        The table of the distinct texts, in sorted order.
    """
    distinct = sorted(set(texts))
    if not distinct:
        raise ValueError("no caption texts to encode: the dataset has no captions")
    key = cache_key(model_fingerprint(model), distinct)
    path = text_cache_dir(cache_dir) / f"{key}.pt"
    if path.is_file():
        try:
            data = torch.load(path, map_location="cpu", weights_only=True)
            if data.get("texts") == distinct:
                return TextFeatureTable(model, distinct, data["features"])
        except Exception:  # noqa: BLE001 - a corrupt cache file is rebuilt below
            pass
    features = encode_frozen(shared_sentence_model(model, "cpu"), distinct, batch_size=batch_size)
    blob = {"texts": distinct, "features": features, "model": str(model)}
    atomic_write(path, lambda f: torch.save(blob, f))
    return TextFeatureTable(model, distinct, features)
