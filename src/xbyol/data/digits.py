"""``digits``: scikit-learn's bundled handwritten digits (real data, offline).

The 1,797 images of ``sklearn.datasets.load_digits`` are 8x8 grayscale in ``0..16``.
They are scaled to ``0..255``, resized to ``image_size`` with bilinear interpolation
(torch) and repeated to three channels. The train/test split is a fixed stratified
80/20 split (``sklearn.model_selection.train_test_split`` with ``random_state=seed``),
so both splits hold the ten classes in the same proportions (``data.validation``: the last
20% of the training split is the evaluation split instead). Concepts are the ten digit
names (group ``"digit"``, one-hot); captions read "a handwritten digit seven".
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from xbyol.config import DataCfg
from xbyol.data.base import DATASETS, GrayClassDataset
from xbyol.data.validation import DIGITS_FRACTION, held_out_rows

DIGIT_NAMES = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
TEST_FRACTION = 0.2


def split_indices(labels: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Stratified 80/20 ``(train, test)`` index arrays, fixed by ``seed``."""
    from sklearn.model_selection import train_test_split

    idx = np.arange(len(labels))
    train, test = train_test_split(idx, test_size=TEST_FRACTION, stratify=labels, random_state=seed)
    return np.sort(train), np.sort(test)


def resize_digits(images: np.ndarray, image_size: int) -> torch.Tensor:
    """``[N, 8, 8]`` values in ``0..16`` -> ``[N, 1, S, S]`` uint8 in ``0..255`` (bilinear)."""
    x = torch.from_numpy(images.astype(np.float32) * (255.0 / 16.0))[:, None]  # (N, 1, 8, 8)
    if image_size != x.shape[-1]:
        x = F.interpolate(x, size=(image_size, image_size), mode="bilinear", align_corners=False)  # (N, 1, S, S)
    return x.round().clamp(0, 255).to(torch.uint8)


class DigitsDataset(GrayClassDataset):
    """scikit-learn digits as 3-channel uint8 images.

    Args:
        split: ``"train"`` or ``"test"``.
        image_size: output side in pixels.
        seed: seed of the stratified split.
        validation: both splits from the training split: its last 20% is the test split, the rest
            the train split (:mod:`xbyol.data.validation`).
    """

    name = "digits"
    class_names = list(DIGIT_NAMES)
    concept_names = list(DIGIT_NAMES)
    concept_groups = {"digit": list(range(10))}
    has_captions = True

    def __init__(self, split: str = "train", image_size: int = 32, seed: int = 0, validation: bool = False) -> None:
        from sklearn.datasets import load_digits

        if split not in ("train", "test"):
            raise ValueError(f"digits: split must be 'train' or 'test', got {split!r}")
        if image_size < 1:
            raise ValueError(f"digits: image_size must be positive, got {image_size}")
        self.split = split
        self.image_size = image_size
        self.seed, self.validation = seed, validation
        bunch = load_digits()
        train, test = split_indices(bunch.target, seed)
        if validation:
            train, test = (train[held_out_rows(len(train), DIGITS_FRACTION, s, "digits")] for s in ("train", "test"))
        self.source_indices = train if split == "train" else test  # rows of load_digits()
        self.images = resize_digits(bunch.images[self.source_indices], image_size)  # (N, 1, S, S)
        self.labels = torch.from_numpy(bunch.target[self.source_indices].astype(np.int64))

    def caption(self, label: int) -> str:
        return f"a handwritten digit {DIGIT_NAMES[label]}"

    def describe(self) -> str:
        split = "validation" if self.validation and self.split == "test" else self.split
        return f"digits[{split}]: {len(self)} images {self.image_size}px, split seed {self.seed}"


@DATASETS.register("digits")
def digits(cfg: DataCfg, split: str) -> DigitsDataset:
    """scikit-learn handwritten digits (1,797 real 8x8 images, bundled), stratified 80/20 split."""
    return DigitsDataset(split=split, image_size=cfg.image_size, seed=cfg.seed, validation=cfg.validation)
