"""``folder``: images in one sub-folder per class, with optional captions and masks.

Layout (``root`` = ``data.root``)::

    root/
      <class>/<name>.png|jpg|jpeg|bmp|gif|webp|tif|tiff   images (sub-folders allowed)
      captions.jsonl                                      optional, one JSON object a line:
                                                          {"file": "<class>/<name>.png", "caption": "..."}
      masks/<class>/<stem>_<concept>.png                  optional concept masks (nonzero = in mask)

- Class names are the sub-folder names (sorted); ``masks`` and hidden folders are not
  classes. An image in ``root/<class>/sub/x.png`` takes its mask files from
  ``root/masks/<class>/sub/x_<concept>.png``. ``<concept>`` is everything after the
  image stem and an underscore; further underscores read as spaces
  (``dog1_red_collar.png`` -> concept "red collar"). A mask must have the size of its
  image; it goes through the same resize and crop (nearest neighbour).
- The concept vocabulary is the class names (underscores read as spaces; group
  ``"class"``) followed by the mask concept names (group ``"mask"``). ``concepts`` marks
  the image's class and every concept whose mask is non-empty.
- Captions: ``captions_file`` (default ``root/captions.jsonl``; a relative path is
  read against ``root``). Images without a caption get "a photo of a <class>".
  Malformed lines are skipped and counted (``strict`` raises, naming the line).
- Images are decoded by :func:`xbyol.data.io.read_image`, as ``explain`` and the explorer
  decode them: any mode (grayscale, palette, RGBA, 16-bit) becomes RGB, transparent
  pixels are composited onto white, the shorter side is resized to ``image_size``
  (bilinear), then a centre square is cropped.
- Unreadable files are found lazily: a file that fails to decode when first read is
  replaced in that batch by the next readable image (the same one every time, so an
  exact resume stays exact) and counted in ``load_failures``; the trainer lists them in
  ``RUN_DIR/unreadable.txt`` and says how many in one line per epoch.
  ``strict=True`` raises instead, naming the file. Nothing is opened at construction.
- Test split: ``test_root`` (same layout, same classes) when given, else a
  deterministic per-class 20% split of ``root`` fixed by ``seed``.
"""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from xbyol.config import DataCfg
from xbyol.data.base import DATASETS, Sample, SampleDataset
from xbyol.data.io import IMAGE_EXTENSIONS, UnreadableImageError, read_image, read_mask

TEST_FRACTION = 0.2
MASKS_DIR = "masks"
CAPTIONS_FILE = "captions.jsonl"
LAYOUT = "expected root/<class>/<image> files (" + ", ".join(IMAGE_EXTENSIONS) + ")"


class DatasetWarning(UserWarning):
    """Files or lines of a dataset were skipped; the message says which and how many."""


# ----------------------------------------------------------------------------- helpers

def concept_text(name: str) -> str:
    """Folder/file name -> concept text: underscores read as spaces."""
    return " ".join(name.replace("_", " ").split())


def article(noun: str) -> str:
    """``"a"`` or ``"an"`` for ``noun`` (by its first letter)."""
    return "an" if noun[:1].lower() in "aeiou" else "a"


def check_root(root: str | Path | None, dataset: str, what: str = "root", hint: str = "") -> Path:
    """``root`` as an existing directory, or a clear error naming the path."""
    if root is None or str(root) == "":
        raise ValueError(f"{dataset}: {what} is required (data.{what}){': ' + hint if hint else ''}")
    p = Path(root).expanduser()
    if not p.exists():
        raise FileNotFoundError(f"{dataset}: {what} {p} does not exist{'; ' + hint if hint else ''}")
    if not p.is_dir():
        raise NotADirectoryError(f"{dataset}: {what} {p} is not a directory")
    return p


def summarize(items: list[str], limit: int = 3) -> str:
    shown = ", ".join(items[:limit])
    return shown + (f" (+{len(items) - limit} more)" if len(items) > limit else "")


# ----------------------------------------------------------------------------- lazy files


class ImageFilesDataset(SampleDataset):
    """Base for datasets read from image files: skip-and-count handling of bad files.

    Subclasses set ``self.strict`` and ``self.paths`` (file ``i``) and implement
    :meth:`load_sample`, which raises :class:`UnreadableImageError` when a file cannot be
    decoded. ``__getitem__`` then returns the next readable sample instead, whose
    ``"index"`` tells the replacement apart (or raises when ``strict``).
    """

    strict: bool = False
    dataset_name: str = "dataset"
    paths: Sequence[str | Path]
    reads_files = True

    def __init__(self) -> None:
        self.load_failures = 0
        self._bad: set[int] = set()

    def load_sample(self, i: int) -> Sample:  # pragma: no cover - abstract
        raise NotImplementedError

    def __getitem__(self, i: int) -> Sample:
        n = len(self)
        if not -n <= i < n:
            raise IndexError(f"{self.dataset_name}: index {i} out of range for {n} images")
        i = int(i) % n
        for step in range(n):
            j = (i + step) % n
            if j in self._bad:
                continue
            try:
                return self.load_sample(j)
            except UnreadableImageError:
                if self.strict:
                    raise
                self._bad.add(j)
                self.load_failures += 1
        raise RuntimeError(f"{self.dataset_name}: no readable image left among {n} files")


# ----------------------------------------------------------------------------- folder


@dataclass
class _Item:
    path: str  # a plain string: Path objects cost more per file
    key: str  # path relative to its root, posix separators
    label: int


def _scan_images(directory: Path) -> list[str]:
    """Posix paths, relative to ``directory``, of the image files below it (hidden names skipped).

    ``os.scandir`` reads each directory once and knows file types without a ``stat`` per
    file, and plain strings avoid pathlib's per-object cost (measured: benchmarks/BENCHMARKS.md,
    section "Time to first step (60,000-image folder, CPU)"). Sorted as paths (by their parts), like ``sorted(Path, ...)``.
    """
    out: list[str] = []
    pending = [""]
    while pending:
        rel = pending.pop()
        with os.scandir(os.path.join(directory, rel)) as entries:
            for e in entries:
                if e.name.startswith("."):
                    continue
                key = f"{rel}/{e.name}" if rel else e.name
                if e.is_dir():
                    pending.append(key)
                elif os.path.splitext(e.name)[1].lower() in IMAGE_EXTENSIONS and e.is_file():
                    out.append(key)
    return sorted(out, key=lambda k: k.split("/"))


def scan_folder(root: Path) -> dict[str, list[str]]:
    """Class name -> sorted image keys (posix paths relative to ``root``), for every sub-folder holding images."""
    classes: dict[str, list[str]] = {}
    for d in sorted(root.iterdir()):
        if not d.is_dir() or d.name.startswith(".") or d.name == MASKS_DIR:
            continue
        files = _scan_images(d)
        if files:
            classes[d.name] = [f"{d.name}/{f}" for f in files]
    return classes


def scan_masks(root: Path, keys: list[str]) -> tuple[dict[str, dict[str, Path]], list[str]]:
    """Mask files under ``root/masks``: image key -> {concept text: path}, plus unmatched files."""
    mask_root = root / MASKS_DIR
    if not mask_root.is_dir():
        return {}, []
    stems: dict[str, list[tuple[str, str]]] = {}  # parent dir (posix) -> [(stem, key)]
    for key in keys:
        parent, _, name = key.rpartition("/")
        stems.setdefault(parent, []).append((Path(name).stem, key))
    for v in stems.values():
        v.sort(key=lambda t: -len(t[0]))  # longest stem first
    found: dict[str, dict[str, Path]] = {}
    unmatched: list[str] = []
    for p in sorted(mask_root.rglob("*.png")):
        rel = p.relative_to(mask_root).as_posix()
        parent, _, name = rel.rpartition("/")
        stem = Path(name).stem
        for img_stem, key in stems.get(parent, []):
            if stem.startswith(img_stem + "_") and len(stem) > len(img_stem) + 1:
                concept = concept_text(stem[len(img_stem) + 1 :])
                if concept:
                    found.setdefault(key, {})[concept] = p
                    break
        else:
            unmatched.append(str(p))
    return found, unmatched


def _norm_key(name: str) -> str:
    key = name.strip().replace("\\", "/")
    while key.startswith("./"):
        key = key[2:]
    return key


def read_captions_jsonl(path: Path, strict: bool) -> tuple[dict[str, str], list[str]]:
    """``{"file": ..., "caption": ...}`` lines -> (file key -> first caption, problems)."""
    captions: dict[str, str] = {}
    problems: list[str] = []
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            reason = None
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as e:
                reason = f"not JSON ({e.msg})"
            else:
                if not isinstance(obj, dict):
                    reason = "not a JSON object"
                elif not isinstance(obj.get("file"), str) or not obj["file"].strip():
                    reason = "missing string field 'file'"
                elif not isinstance(obj.get("caption"), str) or not obj["caption"].strip():
                    reason = "missing or empty string field 'caption'"
            if reason is not None:
                if strict:
                    raise ValueError(f"{path}:{lineno}: malformed caption line: {reason}")
                problems.append(f"line {lineno} ({reason})")
                continue
            captions.setdefault(_norm_key(obj["file"]), " ".join(obj["caption"].split()))
    return captions, problems


def split_per_class(n_per_class: list[int], seed: int, fraction: float = TEST_FRACTION) -> list[np.ndarray]:
    """Per class, a bool array marking the test images: ``round(fraction * n)`` of them, at least one kept for train."""
    out = []
    for c, n in enumerate(n_per_class):
        n_test = min(int(np.floor(fraction * n + 0.5)), max(n - 1, 0))
        perm = np.random.default_rng([seed, c]).permutation(n)
        is_test = np.zeros(n, dtype=bool)
        is_test[perm[:n_test]] = True
        out.append(is_test)
    return out


class FolderDataset(ImageFilesDataset):
    """Images in class sub-folders with optional captions and masks (see the module docstring).

    Args:
        root: directory with one sub-folder per class.
        split: ``"train"`` or ``"test"``.
        image_size: output side in pixels.
        seed: seed of the train/test split (ignored with ``test_root``).
        strict: raise on an unreadable image or a malformed caption line.
        test_root: optional directory holding the test split (same classes).
        captions_file: captions for ``root`` (default ``root/captions.jsonl``).
        test_captions_file: captions for ``test_root`` (default ``test_root/captions.jsonl``).
    """

    dataset_name = "folder"
    has_captions = True

    def __init__(
        self,
        root: str | Path,
        split: str = "train",
        image_size: int = 32,
        seed: int = 0,
        strict: bool = False,
        test_root: str | Path | None = None,
        captions_file: str | Path | None = None,
        test_captions_file: str | Path | None = None,
    ) -> None:
        super().__init__()
        if split not in ("train", "test"):
            raise ValueError(f"folder: split must be 'train' or 'test', got {split!r}")
        self.split, self.image_size, self.seed, self.strict = split, image_size, seed, strict
        self.root = check_root(root, "folder", "root", LAYOUT)
        self.test_root = None if test_root is None else check_root(test_root, "folder", "test_root", LAYOUT)
        all_items = self._scan_roots()
        base, items = self._split_items(all_items)
        my_masks, unmatched = self._concept_vocabulary(all_items)
        cap_path = self._captions_path(base, captions_file, test_captions_file)
        captions, bad_lines = read_captions_jsonl(cap_path, strict) if cap_path is not None else ({}, [])

        self.paths = [it.path for it in items]
        self.keys = [it.key for it in items]
        self.labels = torch.tensor([it.label for it in items], dtype=torch.int64)
        self.captions = [captions.get(it.key) or self._default_caption(it.label) for it in items]
        concept_index = {c: k for k, c in enumerate(self.concept_names)}
        self.mask_files: list[list[tuple[int, Path]]] = [
            sorted((concept_index[c], p) for c, p in my_masks.get(it.key, {}).items()) for it in items
        ]
        self.malformed_caption_lines = bad_lines
        missing_caption = sum(it.key not in captions for it in items) if cap_path is not None else 0
        self._warn_skipped(base, cap_path, missing_caption, unmatched)
        # unreadable files are found when first read (ImageFilesDataset), not by opening every
        # file here (measured: benchmarks/BENCHMARKS.md, section "Time to first step (60,000-image folder, CPU)")

    def _scan_roots(self) -> list[list[_Item]]:
        """Items of ``root`` (then of ``test_root``), labelled by ``root``'s class folders; sets ``class_names``."""
        by_class = scan_folder(self.root)
        if not by_class:
            raise ValueError(f"folder: no images found under {self.root}; {LAYOUT}")
        self.class_names = list(by_class)
        scanned = [(self.root, by_class)]
        if self.test_root is not None:
            test_by_class = scan_folder(self.test_root)
            if not test_by_class:
                raise ValueError(f"folder: no images found under test_root {self.test_root}; {LAYOUT}")
            unknown = sorted(set(test_by_class) - set(by_class))
            if unknown:
                raise ValueError(
                    f"folder: test_root {self.test_root} has classes not in root {self.root}: {', '.join(unknown)}"
                )
            scanned.append((self.test_root, test_by_class))
        class_index = {c: k for k, c in enumerate(self.class_names)}
        return [
            [_Item(os.path.join(base, key), key, class_index[c]) for c, keys in classes.items() for key in keys]
            for base, classes in scanned
        ]

    def _split_items(self, all_items: list[list[_Item]]) -> tuple[Path, list[_Item]]:
        """The root this split reads and its items: ``test_root``'s, or a per-class split of ``root``'s."""
        if self.test_root is not None:
            return (self.root, all_items[0]) if self.split == "train" else (self.test_root, all_items[1])
        per_class = np.bincount([it.label for it in all_items[0]], minlength=len(self.class_names))
        is_test = np.concatenate(split_per_class(per_class.tolist(), self.seed))
        items = [it for it, t in zip(all_items[0], is_test) if bool(t) == (self.split == "test")]
        if not items:
            raise ValueError(f"folder: the {self.split} split of {self.root} is empty (too few images per class)")
        return self.root, items

    def _concept_vocabulary(self, all_items: list[list[_Item]]) -> tuple[dict[str, dict[str, Path]], list[str]]:
        """Sets ``concept_names``/``concept_groups``/``mask_concepts`` (shared by both splits).

        Returns this split's masks (image key -> {concept: path}) and the mask files of
        either root that match no image.
        """
        roots = [self.root] if self.test_root is None else [self.root, self.test_root]
        mask_index: list[dict[str, dict[str, Path]]] = []
        unmatched: list[str] = []
        for r, its in zip(roots, all_items):
            found, um = scan_masks(r, [it.key for it in its])
            mask_index.append(found)
            unmatched += um
        class_concepts = [concept_text(c) for c in self.class_names]
        mask_names = sorted({c for found in mask_index for per in found.values() for c in per})
        extra = [m for m in mask_names if m not in class_concepts]
        self.concept_names = class_concepts + extra
        self.concept_groups = {"class": list(range(len(class_concepts)))}
        if extra:
            self.concept_groups["mask"] = list(range(len(class_concepts), len(self.concept_names)))
        concept_index = {c: k for k, c in enumerate(self.concept_names)}
        self.mask_concepts = sorted(concept_index[m] for m in mask_names)
        return mask_index[0 if self.test_root is None or self.split == "train" else 1], unmatched

    def _captions_path(self, base: Path, captions_file: str | Path | None, test_captions_file: str | Path | None) -> Path | None:
        """The captions file of this split: the given one (relative to ``base``), else ``base/captions.jsonl`` if present."""
        given = captions_file if (self.split == "train" or self.test_root is None) else test_captions_file
        if given is None:
            return base / CAPTIONS_FILE if (base / CAPTIONS_FILE).is_file() else None
        path = Path(given).expanduser()
        path = path if path.is_absolute() else base / path
        if not path.is_file():
            raise FileNotFoundError(f"folder: captions file {path} does not exist")
        return path

    def _warn_skipped(self, base: Path, cap_path: Path | None, missing_caption: int, unmatched: list[str]) -> None:
        """One :class:`DatasetWarning` listing malformed caption lines, uncaptioned images and stray masks."""
        bad_lines = self.malformed_caption_lines
        problems = []
        if bad_lines:
            problems.append(f"skipped {len(bad_lines)} malformed line(s) of {cap_path}: {summarize(bad_lines)}")
        if missing_caption:
            problems.append(f"{missing_caption} image(s) have no caption in {cap_path}; using 'a photo of a <class>'")
        if unmatched:
            problems.append(f"ignored {len(unmatched)} mask file(s) matching no image: {summarize(unmatched)}")
        if problems:
            warnings.warn(f"folder {base} [{self.split}]: " + "; ".join(problems), DatasetWarning, stacklevel=4)

    def _default_caption(self, label: int) -> str:
        name = concept_text(self.class_names[label])
        return f"a photo of {article(name)} {name}"

    def __len__(self) -> int:
        return len(self.paths)

    def load_sample(self, i: int) -> Sample:
        image, orig = read_image(self.paths[i], self.image_size)
        y = int(self.labels[i])
        concepts = torch.zeros(len(self.concept_names), dtype=torch.bool)
        concepts[y] = True
        sample: Sample = {"image": image, "label": y, "concepts": concepts, "caption": self.captions[i], "index": i}
        if self.mask_concepts:
            s = self.image_size
            masks = torch.zeros(len(self.concept_names), s, s, dtype=torch.bool)
            for k, path in self.mask_files[i]:
                masks[k] = read_mask(path, s, orig)
                concepts[k] |= bool(masks[k].any())
            sample["masks"] = masks
        return sample

    def describe(self) -> str:
        return f"folder[{self.split}] {self.root}: {len(self)} images, {len(self.class_names)} classes"


@DATASETS.register("folder")
def folder(cfg: DataCfg, split: str) -> FolderDataset:
    """Your images in root/<class>/ folders, optional captions.jsonl and masks/."""
    return FolderDataset(
        cfg.root,  # type: ignore[arg-type]  # None -> clear error in check_root
        split=split,
        image_size=cfg.image_size,
        seed=cfg.seed,
        strict=cfg.strict,
        test_root=cfg.test_root,
        captions_file=cfg.captions_file,
        test_captions_file=cfg.test_captions_file,
    )
