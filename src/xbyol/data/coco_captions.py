"""``coco-captions``: images with several captions each, in the COCO captions format.

``captions_file`` is a COCO-style JSON object::

    {"images": [{"id": 1, "file_name": "000001.jpg"}, ...],
     "annotations": [{"image_id": 1, "caption": "a dog on a sofa"}, ...]}

and ``root`` is the image directory (``file_name`` is read relative to it).

- Every sample carries ``captions`` (all captions of the image, in file order) and
  ``caption``: the first one for the test split, a random one for the train split
  (a generator seeded by ``seed``, and by the DataLoader worker seed inside workers).
- ``label`` is -1; there are no classes and no concepts.
- Skipped and counted in one warning (``strict=True`` raises instead): empty captions,
  captions of unknown image ids, images without captions, missing or unreadable image
  files. Invalid JSON or a wrong structure is an error naming the file and the problem.
- Split: with ``test_captions_file`` the train split is ``captions_file`` and the test
  split ``test_captions_file`` (images under ``test_root`` if given, else ``root``);
  otherwise a deterministic 80/20 split of the images, in JSON order, permuted by
  ``seed``.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

from xbyol.config import DataCfg
from xbyol.data.base import DATASETS, Sample
from xbyol.data.folder import DatasetWarning, ImageFilesDataset, check_root, summarize
from xbyol.data.io import read_image, verify_files

TEST_FRACTION = 0.2


def read_coco_captions(path: str | Path) -> tuple[list[tuple[Any, str]], dict[Any, list[str]], list[str]]:
    """Parse a COCO captions JSON.

    Returns:
        ``[(image id, file_name)]`` in file order, image id -> non-empty captions (stripped),
        and the problems found (empty captions, unknown image ids).

    Raises:
        FileNotFoundError: the file does not exist.
        ValueError: invalid JSON or not the COCO captions structure (the message names the file).
    """
    p = Path(path).expanduser()
    if not p.is_file():
        raise FileNotFoundError(f"coco-captions: captions file {p} does not exist")
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise ValueError(f"coco-captions: {p} is not valid JSON: {e.msg} (line {e.lineno}, column {e.colno})") from None
    except UnicodeDecodeError as e:
        raise ValueError(f"coco-captions: {p} is not UTF-8 text: {e}") from None
    if not isinstance(data, dict) or not isinstance(data.get("images"), list) or not isinstance(
        data.get("annotations"), list
    ):
        raise ValueError(
            f"coco-captions: {p} must be a JSON object with lists 'images' and 'annotations' (COCO captions format)"
        )
    images: list[tuple[Any, str]] = []
    seen: set[Any] = set()
    for k, img in enumerate(data["images"]):
        if not isinstance(img, dict) or "id" not in img or not isinstance(img.get("file_name"), str):
            raise ValueError(f"coco-captions: {p}: images[{k}] needs 'id' and a string 'file_name', got {img!r:.120}")
        iid = img["id"]
        if not isinstance(iid, (int, str)) or isinstance(iid, bool):
            raise ValueError(f"coco-captions: {p}: images[{k}].id must be an integer or a string, got {iid!r:.60}")
        if iid in seen:
            raise ValueError(f"coco-captions: {p}: images[{k}] repeats image id {iid!r}")
        seen.add(iid)
        images.append((iid, img["file_name"]))
    captions: dict[Any, list[str]] = {}
    problems: list[str] = []
    for k, ann in enumerate(data["annotations"]):
        if not isinstance(ann, dict) or "image_id" not in ann or "caption" not in ann:
            raise ValueError(f"coco-captions: {p}: annotations[{k}] needs 'image_id' and 'caption', got {ann!r:.120}")
        cap = ann["caption"]
        if not isinstance(cap, str):
            raise ValueError(f"coco-captions: {p}: annotations[{k}].caption must be a string, got {cap!r:.60}")
        cap = " ".join(cap.split())
        if not cap:
            problems.append(f"annotations[{k}] (empty caption)")
        elif ann["image_id"] not in seen:
            problems.append(f"annotations[{k}] (unknown image id {ann['image_id']!r})")
        else:
            captions.setdefault(ann["image_id"], []).append(cap)
    return images, captions, problems


def split_images(n: int, seed: int, fraction: float = TEST_FRACTION) -> tuple[np.ndarray, np.ndarray]:
    """Deterministic ``(train, test)`` positions: ``round(fraction * n)`` test images chosen by ``seed``."""
    perm = np.random.default_rng(seed).permutation(n)
    n_test = min(int(np.floor(fraction * n + 0.5)), max(n - 1, 0))
    return np.sort(perm[n_test:]), np.sort(perm[:n_test])


class CocoCaptionsDataset(ImageFilesDataset):
    """Images with several captions each (see the module docstring).

    Args:
        root: image directory.
        captions_file: COCO captions JSON.
        split: ``"train"`` or ``"test"``.
        image_size: output side (shorter side resized, centre crop).
        seed: split seed and seed of the train caption choice.
        strict: raise on the first skipped caption or image.
        test_root: image directory of ``test_captions_file`` (default ``root``).
        test_captions_file: COCO JSON of the test split (default: 20% of ``captions_file``).
    """

    dataset_name = "coco-captions"
    has_captions = True
    class_names: list[str] = []
    concept_names: list[str] = []
    concept_groups: dict[str, list[int]] = {}
    mask_concepts: list[int] = []

    def __init__(
        self,
        root: str | Path | None,
        captions_file: str | Path | None,
        split: str = "train",
        image_size: int = 32,
        seed: int = 0,
        strict: bool = False,
        test_root: str | Path | None = None,
        test_captions_file: str | Path | None = None,
    ) -> None:
        super().__init__()
        if split not in ("train", "test"):
            raise ValueError(f"coco-captions: split must be 'train' or 'test', got {split!r}")
        self.split, self.image_size, self.seed, self.strict = split, image_size, seed, strict
        if captions_file is None:
            raise ValueError("coco-captions: captions_file is required (data.captions_file = the COCO captions JSON)")
        use_test_file = split == "test" and test_captions_file is not None
        use_test_root = use_test_file and test_root is not None
        self.root = check_root(
            test_root if use_test_root else root,
            "coco-captions",
            "test_root" if use_test_root else "root",
            "the directory holding the images named in the captions file",
        )
        self.captions_file = Path(test_captions_file if use_test_file and test_captions_file is not None else captions_file).expanduser()

        images, captions, problems = read_coco_captions(self.captions_file)
        if strict and problems:
            raise ValueError(f"coco-captions: {self.captions_file}: {problems[0]}")
        if test_captions_file is None:
            train, test = split_images(len(images), seed)
            images = [images[k] for k in (train if split == "train" else test)]

        no_caption = [f"{fn} (id {iid!r})" for iid, fn in images if not captions.get(iid)]
        if strict and no_caption:
            raise ValueError(f"coco-captions: {self.captions_file}: image {no_caption[0]} has no caption")
        images = [(iid, fn) for iid, fn in images if captions.get(iid)]
        paths = [self.root / fn for _, fn in images]
        missing = [str(p) for p in paths if not p.is_file()]
        if strict and missing:
            raise FileNotFoundError(f"coco-captions: image {missing[0]} named in {self.captions_file} does not exist")
        present = [k for k, p in enumerate(paths) if p.is_file()]
        keep, bad = verify_files([paths[k] for k in present], strict, "coco-captions")
        chosen = [present[k] for k in keep]
        if not chosen:
            raise ValueError(
                f"coco-captions: no usable image with captions in the {split} split of {self.captions_file}"
            )

        self.image_ids = [images[k][0] for k in chosen]
        self.paths = [paths[k] for k in chosen]
        self.all_captions = [captions[iid] for iid in self.image_ids]
        msgs = []
        if problems:
            msgs.append(f"skipped {len(problems)} caption(s): {summarize(problems)}")
        if no_caption:
            msgs.append(f"skipped {len(no_caption)} image(s) without captions: {summarize(no_caption)}")
        if missing:
            msgs.append(f"skipped {len(missing)} missing image file(s): {summarize(missing)}")
        if bad:
            msgs.append(f"skipped {len(bad)} unreadable image(s): {summarize(bad)}")
        if msgs:
            msg = f"coco-captions {self.captions_file} [{split}]: " + "; ".join(msgs)
            warnings.warn(msg, DatasetWarning, stacklevel=3)
        self.num_skipped_images = len(no_caption) + len(missing) + len(bad)
        self.num_skipped_captions = len(problems)
        self._rng: np.random.Generator | None = None
        self._rng_worker: int | None = None

    def __len__(self) -> int:
        return len(self.paths)

    def _caption_rng(self) -> np.random.Generator:
        info = torch.utils.data.get_worker_info()
        worker_seed = None if info is None else int(info.seed)
        if self._rng is None or self._rng_worker != worker_seed:
            entropy = [self.seed] if worker_seed is None else [self.seed, worker_seed]
            self._rng, self._rng_worker = np.random.default_rng(entropy), worker_seed
        return self._rng

    def load_sample(self, i: int) -> Sample:
        image, _ = read_image(self.paths[i], self.image_size)
        caps = self.all_captions[i]
        k = int(self._caption_rng().integers(len(caps))) if self.split == "train" and len(caps) > 1 else 0
        return {"image": image, "label": -1, "caption": caps[k], "captions": list(caps), "index": i}

    def describe(self) -> str:
        n = sum(len(c) for c in self.all_captions)
        return f"coco-captions[{self.split}] {self.root}: {len(self)} images, {n} captions"


@DATASETS.register("coco-captions")
def coco_captions(cfg: DataCfg, split: str) -> CocoCaptionsDataset:
    """Images + COCO-format captions JSON (data.root = image dir, data.captions_file = JSON)."""
    return CocoCaptionsDataset(
        cfg.root,
        cfg.captions_file,
        split=split,
        image_size=cfg.image_size,
        seed=cfg.seed,
        strict=cfg.strict,
        test_root=cfg.test_root,
        test_captions_file=cfg.test_captions_file,
    )


__all__ = ["CocoCaptionsDataset", "read_coco_captions", "split_images"]
