"""Concept bank: concept texts -> cached unit embeddings from a sentence encoder.

A bank holds ``K`` concept texts, their ``[K, E]`` L2-normalised embeddings, optional
groups (``{"shape": [0, 1, 2], "colour": [3, 4]}``), the prompt template used to embed
them and the provenance of the text model (name, weights SHA-256).

Embeddings of the prompted texts are cached by :mod:`xbyol.text.sentence_model`: a
second run with the same concepts never constructs the text model. A run directory keeps
its own copy (``concepts.json`` + ``concept_embeddings.pt``) so evaluation, explanation and reports need neither the text model nor the cache.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from xbyol.concepts.vocabulary import read_concepts_file, validate_texts
from xbyol.rundir import CONCEPTS_JSON, CONCEPTS_PT, RunDir
from xbyol.text.sentence_model import BUNDLED_MODEL, cached_embeddings


def apply_prompt(prompt: str, texts: list[str]) -> list[str]:
    """``"a photo of something {}"`` x ``["red"]`` -> ``["a photo of something red"]``."""
    if prompt.count("{}") != 1:
        raise ValueError(f"prompt {prompt!r} must contain the placeholder {{}} exactly once, e.g. 'a photo of something {{}}'")
    return [prompt.replace("{}", t) for t in texts]


def embed_texts(
    texts: list[str], model: str | Path = BUNDLED_MODEL, prompt: str = "{}", cache_dir: str | Path | None = None,
    write_cache: bool = True,
) -> tuple[torch.Tensor, dict[str, str]]:
    """Unit embeddings of ``prompt.format(t)`` for every text, through the on-disk cache.

    Args:
        texts: concept texts (not validated for duplicates: any list of strings).
        model: ``"all-MiniLM-L6-v2"`` (bundled) or a local sentence-transformers directory.
        prompt: template with one ``{}``.
        cache_dir: see :func:`xbyol.text.sentence_model.embedding_cache_dir`.
        write_cache: save a newly computed entry (see :func:`~xbyol.text.sentence_model.cached_embeddings`).

    Returns:
        ``[K, E]`` float32 unit vectors and the text model's provenance record.
    """
    emb, ref = cached_embeddings(apply_prompt(prompt, [str(t) for t in texts]), model, cache_dir, write_cache)
    return emb, ref.record()


@dataclass
class ConceptBank:
    """Concept texts with their unit embeddings.

    Attributes:
        texts: ``K`` concept texts (without the prompt).
        embeddings: ``[K, E]`` float32, unit rows.
        groups: group name -> indices into ``texts`` (``{}`` when ungrouped).
        prompt: template the texts were embedded with.
        model: provenance of the text model (``model``, ``model_path``, ``weights_file``, ``weights_sha256``).
        cache_dir: cache used for :meth:`embed` (``None`` = default location).
    """

    texts: list[str]
    embeddings: torch.Tensor
    groups: dict[str, list[int]] = field(default_factory=dict)
    prompt: str = "{}"
    model: dict[str, str] = field(default_factory=dict)
    cache_dir: str | None = None

    def __post_init__(self) -> None:
        self.texts = validate_texts(self.texts)
        if self.embeddings.ndim != 2 or self.embeddings.shape[0] != len(self.texts):
            raise ValueError(
                f"concept bank: embeddings must be [K={len(self.texts)}, E], got {list(self.embeddings.shape)}"
            )
        for g, idx in self.groups.items():
            bad = [i for i in idx if not 0 <= int(i) < len(self.texts)]
            if bad or not idx:
                raise ValueError(f"concept group {g!r}: indices {list(idx)} must be a non-empty subset of 0..{len(self.texts) - 1}")
        self.groups = {g: [int(i) for i in idx] for g, idx in self.groups.items()}

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_texts(
        cls,
        texts: list[str],
        model: str | Path = BUNDLED_MODEL,
        prompt: str = "{}",
        cache_dir: str | Path | None = None,
        groups: dict[str, list[int]] | None = None,
    ) -> "ConceptBank":
        """Embed ``texts`` (through the cache) into a bank.

        Args:
            texts: concept texts; empty lists, empty strings and duplicates raise ``ValueError``.
            model: ``"all-MiniLM-L6-v2"`` (bundled) or a local sentence-transformers directory;
                anything else raises ``FileNotFoundError``.
            prompt: template with one ``{}`` applied to every text before embedding.
            cache_dir: embedding cache (see :func:`xbyol.text.sentence_model.embedding_cache_dir`).
            groups: optional group name -> indices into ``texts``.
        """
        texts = validate_texts(texts)
        emb, record = embed_texts(texts, model, prompt, cache_dir)
        return cls(texts, emb, dict(groups or {}), prompt, record, None if cache_dir is None else str(cache_dir))

    @classmethod
    def from_file(cls, path: str | Path, **kwargs: Any) -> "ConceptBank":
        """A bank from a text file, one concept per line (see :func:`read_concepts_file`)."""
        texts, groups = read_concepts_file(path)
        return cls.from_texts(texts, groups=groups, **kwargs)

    # ------------------------------------------------------------------ use
    def __len__(self) -> int:
        return len(self.texts)

    @property
    def dim(self) -> int:
        return int(self.embeddings.shape[1])

    def index(self, text: str) -> int:
        """Position of a concept text (case-insensitive)."""
        lowered = [t.lower() for t in self.texts]
        key = text.strip().lower()
        if key not in lowered:
            raise KeyError(f"concept {text!r} is not in the bank; known concepts: {', '.join(self.texts)}")
        return lowered.index(key)

    def embed(self, texts: list[str], write_cache: bool = True) -> torch.Tensor:
        """Embed arbitrary texts with this bank's model and prompt: ``[N, E]`` unit vectors.

        Texts already in the bank are returned from it; others go through the cache and,
        on a miss, the text model (which must then be available); ``write_cache=False``
        leaves the disk cache as it was (see :func:`embed_texts`).
        """
        texts = [str(t).strip() for t in texts]
        lowered = {t.lower(): i for i, t in enumerate(self.texts)}
        missing = [t for t in texts if t.lower() not in lowered]
        extra: dict[str, torch.Tensor] = {}
        if missing:
            unique = list(dict.fromkeys(missing))
            name = self.model.get("model", BUNDLED_MODEL)
            emb, record = embed_texts(unique, name, self.prompt, self.cache_dir, write_cache)
            if self.model.get("weights_sha256") and record["weights_sha256"] != self.model["weights_sha256"]:
                raise ValueError(
                    f"text model {name!r} now has weights {record['weights_sha256'][:12]}..., but this bank was "
                    f"embedded with {self.model['weights_sha256'][:12]}...; new texts would not be comparable"
                )
            extra = dict(zip(unique, emb))
        rows = [self.embeddings[lowered[t.lower()]] if t.lower() in lowered else extra[t] for t in texts]
        return torch.stack(rows) if rows else self.embeddings.new_zeros(0, self.dim)

    def group_of(self) -> list[str | None]:
        """Group name of every concept (``None`` when it belongs to no group)."""
        out: list[str | None] = [None] * len(self.texts)
        for g, idx in self.groups.items():
            for i in idx:
                out[i] = g
        return out

    def to(self, device: torch.device | str) -> "ConceptBank":
        return ConceptBank(self.texts, self.embeddings.to(device), self.groups, self.prompt, self.model, self.cache_dir)

    # ------------------------------------------------------------------ persistence
    def record(self) -> dict[str, Any]:
        """JSON-ready description (everything except the embedding values)."""
        return {"texts": self.texts, "groups": self.groups, "prompt": self.prompt,
                "embedding_dim": self.dim, **self.model}

    def save(self, directory: str | Path) -> None:
        """Write ``concepts.json`` and ``concept_embeddings.pt`` into ``directory`` (atomically)."""
        d = Path(directory)
        blob = {"texts": self.texts, "embeddings": self.embeddings.detach().cpu()}
        RunDir.write(d / CONCEPTS_PT, lambda f: torch.save(blob, f))
        RunDir.write(d / CONCEPTS_JSON, json.dumps(self.record(), indent=1))

    @classmethod
    def load(cls, directory: str | Path) -> "ConceptBank":
        """Read a bank saved by :meth:`save` (no text model needed)."""
        d = Path(directory)
        meta_path, emb_path = d / CONCEPTS_JSON, d / CONCEPTS_PT
        for p in (meta_path, emb_path):
            if not p.is_file():
                raise FileNotFoundError(f"{p} is missing: {d} holds no saved concept bank")
        meta = json.loads(meta_path.read_text())
        blob = torch.load(emb_path, map_location="cpu", weights_only=True)
        if blob.get("texts") != meta.get("texts"):
            raise ValueError(f"{emb_path} and {meta_path} list different concepts; the run directory is inconsistent")
        model = {k: meta[k] for k in ("model", "model_path", "weights_file", "weights_sha256") if k in meta}
        return cls(meta["texts"], blob["embeddings"].float(), meta.get("groups", {}), meta.get("prompt", "{}"), model)

    @staticmethod
    def exists(directory: str | Path) -> bool:
        d = Path(directory)
        return (d / CONCEPTS_JSON).is_file() and (d / CONCEPTS_PT).is_file()
