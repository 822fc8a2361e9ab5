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
- Images of any mode (grayscale, palette, RGBA, 16-bit) become RGB; transparent
  pixels are composited onto white. Each image is resized so its shorter side is
  ``image_size`` (bilinear), then centre-cropped to a square.
- Unreadable files are found lazily: a file that fails to decode when first read is
  replaced in that batch by the next readable image (the same one every time, so an
  exact resume stays exact), counted in ``load_failures`` and reported by one warning;
  ``strict=True`` raises instead, naming the file. Nothing is opened at construction.
- Test split: ``test_root`` (same layout, same classes) when given, else a
  deterministic per-class 20% split of ``root`` fixed by ``seed``.
"""

from __future__ import annotations

import json
import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from xbyol.data import DATASETS
from xbyol.data.base import Sample, SampleDataset
from xbyol.errors import XbyolError

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff")
TEST_FRACTION = 0.2
MASKS_DIR = "masks"
CAPTIONS_FILE = "captions.jsonl"


class UnreadableImageError(XbyolError, OSError):
    """An image or mask file could not be decoded; the message names the file."""


class DatasetWarning(UserWarning):
    """Files or lines of a dataset were skipped; the message says which and how many."""


# ----------------------------------------------------------------------------- image helpers


def check_image(path: Path) -> str | None:
    """Quick structural check (``Image.verify``): ``None`` if readable, else the reason."""
    try:
        with Image.open(path) as im:
            im.verify()
    except Exception as e:  # Pillow raises many exception types for bad files
        return f"{type(e).__name__}: {e}"
    return None


def to_rgb(img: Image.Image) -> Image.Image:
    """Any Pillow image -> ``RGB``. 16-bit/float gray is rescaled; transparency goes on white."""
    if img.mode in ("I", "I;16", "I;16L", "I;16B", "I;16N", "F"):
        arr = np.asarray(img, dtype=np.float64)
        if img.mode == "F":
            arr = arr * 255.0 if arr.size and arr.max() <= 1.0 else arr
        elif img.mode.startswith("I;16") or (arr.size and arr.max() > 255):
            arr = arr / 257.0
        img = Image.fromarray(np.clip(np.rint(arr), 0, 255).astype(np.uint8), mode="L")
    has_alpha = img.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in img.info
    if has_alpha:
        rgba = img.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    return img.convert("RGB")


def resize_center_crop(img: Image.Image, size: int, resample: int = Image.Resampling.BILINEAR) -> Image.Image:
    """Resize so the shorter side is ``size`` (keeping the aspect ratio), then centre-crop."""
    w, h = img.size
    scale = size / min(w, h)
    nw, nh = max(size, round(w * scale)), max(size, round(h * scale))
    if (nw, nh) != (w, h):
        img = img.resize((nw, nh), resample)
    left, top = (nw - size) // 2, (nh - size) // 2
    return img.crop((left, top, left + size, top + size))


def read_image(path: str | Path, size: int) -> tuple[torch.Tensor, tuple[int, int]]:
    """Decode ``path`` -> (``[3, S, S]`` uint8, original ``(width, height)``).

    Raises:
        UnreadableImageError: the file cannot be decoded.
    """
    try:
        with warnings.catch_warnings():
            # Pillow only warns between MAX_IMAGE_PIXELS and twice that; refuse those too
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as im:
                im.load()
                orig = im.size
                rgb = resize_center_crop(to_rgb(im), size)
    except Exception as e:  # Pillow raises many exception types for bad files
        raise UnreadableImageError(f"cannot read image {path}: {type(e).__name__}: {e}") from e
    arr = np.array(rgb, dtype=np.uint8)  # (S, S, 3)
    return torch.from_numpy(arr).permute(2, 0, 1).contiguous(), orig


def read_mask(path: Path, size: int, image_size_wh: tuple[int, int]) -> torch.Tensor:
    """Read a mask file (nonzero in any colour channel = inside) -> ``[S, S]`` bool.

    The mask is brought to the image's original size first if it differs, then gets the
    image's resize-and-crop with nearest-neighbour sampling.
    """
    try:
        with Image.open(path) as im:
            im.load()
            arr = np.asarray(im)
            if arr.ndim == 3:
                bands = im.getbands()
                keep = [k for k, b in enumerate(bands) if b != "A"] or [0]
                arr = np.asarray(arr[..., keep].any(-1))
    except Exception as e:  # Pillow raises many exception types for bad files
        raise UnreadableImageError(f"cannot read mask {path}: {type(e).__name__}: {e}") from e
    m = Image.fromarray((arr != 0).astype(np.uint8) * 255, mode="L")
    if m.size != image_size_wh:
        m = m.resize(image_size_wh, Image.Resampling.NEAREST)
    m = resize_center_crop(m, size, Image.Resampling.NEAREST)
    return torch.from_numpy(np.array(m) > 127)


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

    Subclasses set ``self.strict`` and implement :meth:`load_sample`, which raises
    :class:`UnreadableImageError` when a file cannot be decoded. ``__getitem__`` then
    returns the next readable sample instead (or raises when ``strict``).
    """

    strict: bool = False
    dataset_name: str = "dataset"

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
            except UnreadableImageError as e:
                if self.strict:
                    raise
                self._bad.add(j)
                self.load_failures += 1
                if self.load_failures == 1:
                    warnings.warn(
                        f"{self.dataset_name}: {e}; using the next readable image instead "
                        "(further failures are counted in .load_failures)",
                        DatasetWarning,
                        stacklevel=2,
                    )
        raise RuntimeError(f"{self.dataset_name}: no readable image left among {n} files")


def verify_files(paths: list[Path], strict: bool, dataset: str) -> tuple[list[int], list[str]]:
    """Indices of the paths that pass :func:`check_image`, and ``"path (reason)"`` of the others."""
    keep, bad = [], []
    for k, p in enumerate(paths):
        reason = check_image(p)
        if reason is None:
            keep.append(k)
            continue
        if strict:
            raise UnreadableImageError(f"{dataset}: cannot read image {p}: {reason}")
        bad.append(f"{p} ({reason})")
    return keep, bad


# ----------------------------------------------------------------------------- folder


@dataclass
class _Item:
    path: str  # a plain string: 60,000 Path objects cost seconds
    key: str  # path relative to its root, posix separators
    label: int


def _scan_images(directory: Path) -> list[str]:
    """Posix paths, relative to ``directory``, of the image files below it (hidden names skipped).

    ``os.scandir`` reads each directory once and knows file types without a ``stat`` per
    file, and plain strings avoid pathlib's per-object cost: a 60,000-image folder scans in
    a fraction of a second. Sorted as paths (by their parts), like ``sorted(Path, ...)``.
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
        layout = "expected root/<class>/<image> files (" + ", ".join(IMAGE_EXTENSIONS) + ")"
        self.root = check_root(root, "folder", "root", layout)
        self.split, self.image_size, self.seed, self.strict = split, image_size, seed, strict

        by_class = scan_folder(self.root)
        if not by_class:
            raise ValueError(f"folder: no images found under {self.root}; {layout}")
        self.class_names = list(by_class)
        class_index = {c: k for k, c in enumerate(self.class_names)}

        roots: list[tuple[Path, dict[str, list[str]]]] = [(self.root, by_class)]
        self.test_root = None
        if test_root is not None:
            self.test_root = check_root(test_root, "folder", "test_root", layout)
            test_by_class = scan_folder(self.test_root)
            if not test_by_class:
                raise ValueError(f"folder: no images found under test_root {self.test_root}; {layout}")
            unknown = sorted(set(test_by_class) - set(class_index))
            if unknown:
                raise ValueError(
                    f"folder: test_root {self.test_root} has classes not in root {self.root}: {', '.join(unknown)}"
                )
            roots.append((self.test_root, test_by_class))

        # items of every root, then the ones of this split
        all_items: list[list[_Item]] = []
        for base, classes in roots:
            items = [
                _Item(os.path.join(base, key), key, class_index[c]) for c, keys in classes.items() for key in keys
            ]
            all_items.append(items)
        if self.test_root is not None:
            base = self.root if split == "train" else self.test_root
            items = all_items[0] if split == "train" else all_items[1]
        else:
            base = self.root
            flags = split_per_class([len(p) for p in by_class.values()], seed)
            is_test = np.concatenate(flags)
            items = [it for it, t in zip(all_items[0], is_test) if bool(t) == (split == "test")]
            if not items:
                raise ValueError(f"folder: the {split} split of {self.root} is empty (too few images per class)")

        # masks and the concept vocabulary (shared by both splits)
        mask_index: list[dict[str, dict[str, Path]]] = []
        unmatched: list[str] = []
        for (r, _), its in zip(roots, all_items):
            found, um = scan_masks(r, [it.key for it in its])
            mask_index.append(found)
            unmatched += um
        class_concepts = [concept_text(c) for c in self.class_names]
        mask_names = sorted({c for found in mask_index for per in found.values() for c in per})
        extra = [m for m in mask_names if m not in class_concepts]
        self.concept_names = class_concepts + extra
        concept_index = {c: k for k, c in enumerate(self.concept_names)}
        self.concept_groups = {"class": list(range(len(class_concepts)))}
        if extra:
            self.concept_groups["mask"] = list(range(len(class_concepts), len(self.concept_names)))
        self.mask_concepts = sorted(concept_index[m] for m in mask_names)
        my_masks = mask_index[0] if (self.test_root is None or split == "train") else mask_index[1]

        # captions
        cap_path: Path | None
        given = captions_file if (split == "train" or self.test_root is None) else test_captions_file
        if given is not None:
            cap_path = Path(given).expanduser()
            if not cap_path.is_absolute():
                cap_path = base / cap_path
            if not cap_path.is_file():
                raise FileNotFoundError(f"folder: captions file {cap_path} does not exist")
        else:
            cap_path = base / CAPTIONS_FILE if (base / CAPTIONS_FILE).is_file() else None
        captions, bad_lines = read_captions_jsonl(cap_path, strict) if cap_path is not None else ({}, [])

        # unreadable files are found when first read (ImageFilesDataset), not by opening
        # every file here: that took 24 s on a 60,000-image folder
        bad_files: list[str] = []

        self.paths = [it.path for it in items]
        self.keys = [it.key for it in items]
        self.labels = torch.tensor([it.label for it in items], dtype=torch.int64)
        self.captions: list[str] = []
        missing_caption = 0
        for it in items:
            cap = captions.get(it.key)
            if cap is None:
                name = concept_text(self.class_names[it.label])
                cap = f"a photo of {article(name)} {name}"
                missing_caption += cap_path is not None
            self.captions.append(cap)
        self.mask_files: list[list[tuple[int, Path]]] = [
            sorted((concept_index[c], p) for c, p in my_masks.get(it.key, {}).items()) for it in items
        ]

        problems = []
        if bad_files:
            problems.append(f"skipped {len(bad_files)} unreadable image(s): {summarize(bad_files)}")
        if bad_lines:
            problems.append(f"skipped {len(bad_lines)} malformed line(s) of {cap_path}: {summarize(bad_lines)}")
        if missing_caption:
            problems.append(f"{missing_caption} image(s) have no caption in {cap_path}; using 'a photo of a <class>'")
        if unmatched:
            problems.append(f"ignored {len(unmatched)} mask file(s) matching no image: {summarize(unmatched)}")
        if problems:
            warnings.warn(f"folder {base} [{split}]: " + "; ".join(problems), DatasetWarning, stacklevel=3)
        self.skipped_files = bad_files
        self.malformed_caption_lines = bad_lines

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
def folder(
    split: str = "train",
    root: str | None = None,
    test_root: str | None = None,
    image_size: int = 32,
    num_train: int | None = None,
    num_test: int | None = None,
    seed: int = 0,
    strict: bool = False,
    captions_file: str | None = None,
    test_captions_file: str | None = None,
) -> FolderDataset:
    """Your images in root/<class>/ folders, optional captions.jsonl and masks/."""
    return FolderDataset(
        root,  # type: ignore[arg-type]  # None -> clear error in check_root
        split=split,
        image_size=image_size,
        seed=seed,
        strict=strict,
        test_root=test_root,
        captions_file=captions_file,
        test_captions_file=test_captions_file,
    )
