"""``mnist`` / ``fashion-mnist``: the official IDX files, read from disk (nothing is downloaded).

``root`` holds the four files of the official split, each gzipped or not::

    train-images-idx3-ubyte[.gz]  train-labels-idx1-ubyte[.gz]   (60,000 images)
    t10k-images-idx3-ubyte[.gz]   t10k-labels-idx1-ubyte[.gz]    (10,000 images)

With ``data.validation`` both splits come from ``train-*``: the last 10,000 images are
the evaluation split, the first 50,000 the training split (:mod:`xbyol.data.validation`).

Fashion-MNIST's default root is ``/usr/share/datasets/fashion-mnist/``, where Debian's
package ``dataset-fashion-mnist`` installs the files. The 28x28 grayscale images are
resized once, when the split is read, to ``image_size`` (bilinear, antialiased; 28 keeps
them as they are), and repeated to three channels when a sample is read.

Concepts are the class names (group ``"class"``, one-hot): Fashion-MNIST's ten garment
names, MNIST's digit names. Captions read "a photo of an ankle boot" (Fashion-MNIST) and
"a handwritten digit seven" (MNIST, like ``digits``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from xbyol.config import DataCfg
from xbyol.data.base import DATASETS, GrayClassDataset
from xbyol.data.digits import DIGIT_NAMES
from xbyol.data.folder import article, check_root
from xbyol.data.idx import read_idx
from xbyol.data.validation import IDX_FRACTION, held_out_rows

NATIVE_SIZE = 28
FASHION_CLASSES = [
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
]
# where Debian's dataset-fashion-mnist puts the files; read at call time so tests can move it
FASHION_MNIST_DEFAULT_ROOT = Path("/usr/share/datasets/fashion-mnist")
_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


@dataclass(frozen=True)
class IdxSpec:
    """What differs between the IDX datasets: names, captions and where to get the files."""

    name: str
    class_names: list[str]
    caption: str  # format string of the lower-case class name
    how_to_get: str


SPECS = {
    "mnist": IdxSpec(
        "mnist",
        list(DIGIT_NAMES),
        "a handwritten digit {}",
        "get the four files of the MNIST database (train-* and t10k-*, as published by "
        "LeCun, Cortes and Burges) and set data.root to their folder",
    ),
    "fashion-mnist": IdxSpec(
        "fashion-mnist",
        list(FASHION_CLASSES),
        "a photo of {article} {}",
        f"get the files with `apt-get install dataset-fashion-mnist` (it puts them in {FASHION_MNIST_DEFAULT_ROOT}/, "
        "the default root) or set data.root to a folder with the four files of github.com/zalandoresearch/fashion-mnist",
    ),
}


def default_root(name: str) -> Path | None:
    """The root used when ``data.root`` is not set: Debian's folder for fashion-mnist, when it exists."""
    if name == "fashion-mnist" and FASHION_MNIST_DEFAULT_ROOT.is_dir():
        return FASHION_MNIST_DEFAULT_ROOT
    return None


def find_file(folder: Path, stem: str, spec: IdxSpec) -> Path:
    """``folder/stem`` or ``folder/stem.gz``, or an error listing what is expected and how to get it."""
    for cand in (folder / stem, folder / f"{stem}.gz"):
        if cand.is_file():
            return cand
    expected = ", ".join(f"{s}[.gz]" for pair in _FILES.values() for s in pair)
    raise FileNotFoundError(f"{spec.name}: {folder} lacks {stem}[.gz]; expected {expected}; {spec.how_to_get}")


def resize_gray(images: np.ndarray, image_size: int, chunk: int = 4096) -> torch.Tensor:
    """``[N, h, w]`` uint8 -> ``[N, 1, S, S]`` uint8 (bilinear, antialiased; unchanged when already ``S``)."""
    x = torch.from_numpy(np.ascontiguousarray(images))[:, None]  # (N, 1, h, w)
    if x.shape[-2:] == (image_size, image_size):
        return x.clone()
    out = torch.empty((len(x), 1, image_size, image_size), dtype=torch.uint8)
    for i in range(0, len(x), chunk):
        y = F.interpolate(x[i : i + chunk].float(), size=(image_size,) * 2, mode="bilinear", antialias=True)
        out[i : i + chunk] = y.round().clamp(0, 255).to(torch.uint8)  # (n, 1, S, S)
    return out


class IdxDataset(GrayClassDataset):
    """One split of an MNIST-format dataset as 3-channel uint8 images.

    Args:
        name: ``"mnist"`` or ``"fashion-mnist"``.
        root: folder of the four IDX files (default: :func:`default_root`).
        split: ``"train"`` (``train-*``) or ``"test"`` (``t10k-*``).
        image_size: output side in pixels (28 = native).
        validation: both splits from ``train-*``: the last sixth is the test split (10,000 of 60,000),
            the rest the train split (:mod:`xbyol.data.validation`).
    """

    has_captions = True

    def __init__(self, name: str, root: str | Path | None, split: str = "train", image_size: int = NATIVE_SIZE,
                 validation: bool = False) -> None:
        if name not in SPECS:
            raise ValueError(f"unknown IDX dataset {name!r}; expected one of {', '.join(SPECS)}")
        spec = SPECS[name]
        if split not in _FILES:
            raise ValueError(f"{name}: split must be 'train' or 'test', got {split!r}")
        if image_size < 1:
            raise ValueError(f"{name}: image_size must be positive, got {image_size}")
        self.name, self.split, self.image_size, self.validation = name, split, image_size, validation
        self.root = check_root(root if root not in (None, "") else default_root(name), name, "root", spec.how_to_get)
        image_file, label_file = (find_file(self.root, stem, spec) for stem in _FILES["train" if validation else split])
        images, labels = read_idx(image_file), read_idx(label_file)
        if images.dtype != np.uint8 or images.ndim != 3:
            raise ValueError(f"{image_file}: expected uint8 images [N, H, W], got {images.dtype} {list(images.shape)}")
        if labels.dtype != np.uint8 or labels.ndim != 1:
            raise ValueError(f"{label_file}: expected uint8 labels [N], got {labels.dtype} {list(labels.shape)}")
        if len(images) != len(labels):
            raise ValueError(f"{image_file} holds {len(images)} images but {label_file} holds {len(labels)} labels")
        n_classes = len(spec.class_names)
        if len(labels) and int(labels.max()) >= n_classes:
            raise ValueError(f"{label_file}: label {int(labels.max())} outside 0..{n_classes - 1} ({name} has {n_classes} classes)")
        if validation:
            rows = held_out_rows(len(labels), IDX_FRACTION, split, name)
            images, labels = images[rows], labels[rows]
        self.files = (image_file, label_file)
        self.class_names = list(spec.class_names)
        self.concept_names = list(spec.class_names)
        self.concept_groups = {"class": list(range(n_classes))}
        self.mask_concepts = []
        self._caption = spec.caption
        self.images = resize_gray(images, image_size)  # (N, 1, S, S)
        self.labels = torch.from_numpy(labels.astype(np.int64))

    def caption(self, label: int) -> str:
        noun = self.class_names[label].lower()
        return self._caption.format(noun, article=article(noun))

    def describe(self) -> str:
        split = "validation" if self.validation and self.split == "test" else self.split
        return f"{self.name}[{split}] {self.root}: {len(self)} images {self.image_size}px"


def _factory(name: str) -> Callable[[DataCfg, str], IdxDataset]:
    def make(cfg: DataCfg, split: str) -> IdxDataset:
        return IdxDataset(name, cfg.root, split=split, image_size=cfg.image_size, validation=cfg.validation)

    return make


DATASETS.register("mnist", doc="MNIST from the IDX files at data.root (no download)")(_factory("mnist"))
DATASETS.register(
    "fashion-mnist",
    doc=f"Fashion-MNIST from the IDX files at data.root (default {FASHION_MNIST_DEFAULT_ROOT}/; no download)",
)(_factory("fashion-mnist"))
