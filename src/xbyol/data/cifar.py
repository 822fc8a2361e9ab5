"""``cifar10`` / ``cifar100``: the CIFAR "python version" pickle batches, read from disk.

Nothing is downloaded. ``root`` is either the extracted folder or its parent:

- CIFAR-10: ``cifar-10-batches-py/`` with ``data_batch_1`` .. ``data_batch_5`` (train),
  ``test_batch`` (test) and ``batches.meta`` (class names).
- CIFAR-100: ``cifar-100-python/`` with ``train``, ``test`` and ``meta``.

Both come from https://www.cs.toronto.edu/~kriz/cifar.html (``cifar-10-python.tar.gz``,
``cifar-100-python.tar.gz``). The pickles are read with an unpickler that only accepts
the numpy array types these files contain, so a tampered file cannot run code.

Images are 32x32; another ``image_size`` resizes them (bilinear, antialiased) when a
sample is read. Concepts are the class names (group ``"class"``); CIFAR-100 adds its 20
superclasses (group ``"superclass"``), so a sample marks its class and its superclass.
Captions read "a photo of a <class>" (underscores in names read as spaces).
"""

from __future__ import annotations

import pickle
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from xbyol.config import DataCfg
from xbyol.data.base import DATASETS, Sample, SampleDataset
from xbyol.data.folder import article, check_root, concept_text

CIFAR_URL = "https://www.cs.toronto.edu/~kriz/cifar.html"
_LAYOUT = {
    "cifar10": (
        "cifar-10-batches-py",
        [f"data_batch_{k}" for k in range(1, 6)],
        ["test_batch"],
        "batches.meta",
        "cifar-10-python.tar.gz",
    ),
    "cifar100": ("cifar-100-python", ["train"], ["test"], "meta", "cifar-100-python.tar.gz"),
}
_ALLOWED_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "scalar"),
    ("numpy._core.numeric", "_frombuffer"),
    ("numpy.core.numeric", "_frombuffer"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("_codecs", "encode"),
}


_NUMPY2 = int(np.__version__.split(".")[0]) >= 2


class _SafeUnpickler(pickle.Unpickler):
    """Unpickler that only builds numpy arrays and plain Python containers."""

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _ALLOWED_GLOBALS:
            # numpy 2 renamed numpy.core to numpy._core: use the installed name, avoiding the shim
            if _NUMPY2:
                native = module.replace("numpy.core.", "numpy._core.")
            else:
                native = module.replace("numpy._core.", "numpy.core.")
            for mod in dict.fromkeys((native, module)):
                try:
                    return super().find_class(mod, name)
                except (ImportError, AttributeError):
                    continue
        raise pickle.UnpicklingError(f"refusing to load {module}.{name}: not part of a CIFAR batch")


def load_pickle(path: Path) -> dict[str, Any]:
    """Read one CIFAR pickle; keys are decoded to ``str``."""
    try:
        with open(path, "rb") as f:
            obj = _SafeUnpickler(f, encoding="bytes").load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError) as e:
        raise ValueError(f"cannot read CIFAR pickle {path}: {type(e).__name__}: {e}") from e
    if not isinstance(obj, dict):
        raise ValueError(f"CIFAR pickle {path}: expected a dict, got {type(obj).__name__}")
    return {k.decode() if isinstance(k, bytes) else k: v for k, v in obj.items()}


def _field(d: dict[str, Any], key: str, path: Path) -> Any:
    if key not in d:
        raise ValueError(f"CIFAR pickle {path}: missing key {key!r} (has {', '.join(map(str, d))})")
    return d[key]


def _names(values: Any) -> list[str]:
    return [v.decode() if isinstance(v, bytes) else str(v) for v in values]


def find_cifar_dir(root: str | Path | None, name: str) -> Path:
    """The folder holding the batches of ``name`` ("cifar10"/"cifar100"), or a clear error."""
    folder, train, test, meta, archive = _LAYOUT[name]
    files = train + test + [meta]
    expected = (
        "expected the files {files} in {where} or in {where}/{folder} "
        "(extract {archive} from {url}; nothing is downloaded)"
    )
    fmt = dict(files=", ".join(files), folder=folder, archive=archive, url=CIFAR_URL)
    base = check_root(root, name, "root", expected.format(where="<root>", **fmt))
    for cand in (base, base / folder):
        if all((cand / f).is_file() for f in files):
            return cand
    for cand in (base, base / folder):
        present = [f for f in files if (cand / f).is_file()]
        if present:
            missing = [f for f in files if f not in present]
            raise FileNotFoundError(
                f"{name}: {cand} lacks {', '.join(missing)}; " + expected.format(where=base, **fmt)
            )
    raise FileNotFoundError(f"{name}: " + expected.format(where=base, **fmt))


class CifarDataset(SampleDataset):
    """CIFAR-10 or CIFAR-100 from the python pickle batches.

    Args:
        name: ``"cifar10"`` or ``"cifar100"``.
        root: the extracted folder or its parent.
        split: ``"train"`` or ``"test"``.
        image_size: output side (32 = native).
    """

    has_captions = True

    def __init__(self, name: str, root: str | Path | None, split: str = "train", image_size: int = 32) -> None:
        if name not in _LAYOUT:
            raise ValueError(f"unknown CIFAR variant {name!r}; expected cifar10 or cifar100")
        if split not in ("train", "test"):
            raise ValueError(f"{name}: split must be 'train' or 'test', got {split!r}")
        self.name, self.split, self.image_size = name, split, image_size
        self.dir = find_cifar_dir(root, name)
        _, train, test, meta_file, _ = _LAYOUT[name]
        meta = load_pickle(self.dir / meta_file)
        fine_key = "label_names" if name == "cifar10" else "fine_label_names"
        raw_names = _names(_field(meta, fine_key, self.dir / meta_file))
        self.class_names = [concept_text(c) for c in raw_names]

        data, fine, coarse = [], [], []
        for fname in train if split == "train" else test:
            path = self.dir / fname
            batch = load_pickle(path)
            x = np.asarray(_field(batch, "data", path))
            if x.ndim != 2 or x.shape[1] != 3 * 32 * 32:
                raise ValueError(f"CIFAR pickle {path}: 'data' must be [N, 3072] uint8, got shape {x.shape}")
            data.append(x.astype(np.uint8, copy=False))
            fine.append(np.asarray(_field(batch, "labels" if name == "cifar10" else "fine_labels", path)))
            if name == "cifar100":
                coarse.append(np.asarray(_field(batch, "coarse_labels", path)))
        self.images = torch.from_numpy(np.concatenate(data).reshape(-1, 3, 32, 32))  # (N, 3, 32, 32)
        self.labels = torch.from_numpy(np.concatenate(fine).astype(np.int64))
        if len(self.labels) != len(self.images):
            raise ValueError(f"{name}: {len(self.images)} images but {len(self.labels)} labels in {self.dir}")
        if len(self.labels) and not (0 <= int(self.labels.min()) and int(self.labels.max()) < len(self.class_names)):
            raise ValueError(f"{name}: labels outside 0..{len(self.class_names) - 1} in {self.dir}")

        self.concept_names = list(self.class_names)
        self.concept_groups = {"class": list(range(len(self.class_names)))}
        self.coarse_labels: torch.Tensor | None = None
        if name == "cifar100":
            coarse_names = [concept_text(c) for c in _names(_field(meta, "coarse_label_names", self.dir / meta_file))]
            index = {c: k for k, c in enumerate(self.concept_names)}
            group = []
            for c in coarse_names:
                if c not in index:
                    index[c] = len(self.concept_names)
                    self.concept_names.append(c)
                group.append(index[c])
            self.concept_groups["superclass"] = group
            self.coarse_names = coarse_names
            self.coarse_labels = torch.from_numpy(np.concatenate(coarse).astype(np.int64))
            self._coarse_concept = torch.tensor(group, dtype=torch.int64)
        self.mask_concepts = []

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> Sample:
        if not -len(self) <= i < len(self):
            raise IndexError(f"{self.name}: index {i} out of range for {len(self)} images")
        i = int(i) % len(self)
        img = self.images[i]
        if self.image_size != 32:
            x = F.interpolate(img[None].float(), size=(self.image_size,) * 2, mode="bilinear", antialias=True)
            img = x[0].round().clamp(0, 255).to(torch.uint8)  # (3, S, S)
        else:
            img = img.clone()
        y = int(self.labels[i])
        concepts = torch.zeros(len(self.concept_names), dtype=torch.bool)
        concepts[y] = True
        if self.coarse_labels is not None:
            concepts[self._coarse_concept[self.coarse_labels[i]]] = True
        name = self.class_names[y]
        return {
            "image": img,
            "label": y,
            "concepts": concepts,
            "caption": f"a photo of {article(name)} {name}",
            "index": i,
        }

    def describe(self) -> str:
        return f"{self.name}[{self.split}] {self.dir}: {len(self)} images"


def _factory(name: str) -> Callable[[DataCfg, str], CifarDataset]:
    def make(cfg: DataCfg, split: str) -> CifarDataset:
        return CifarDataset(name, cfg.root, split=split, image_size=cfg.image_size)

    return make


DATASETS.register("cifar10", doc="CIFAR-10 from the python pickle batches at data.root (no download)")(
    _factory("cifar10")
)
DATASETS.register("cifar100", doc="CIFAR-100 from the python pickle files at data.root (no download)")(
    _factory("cifar100")
)
