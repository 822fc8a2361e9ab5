"""Builders of tiny on-disk datasets (image folders, CIFAR pickles, COCO captions) for the tests."""

from __future__ import annotations

import io
import json
import pickle
from pathlib import Path

import numpy as np
from PIL import Image


def save_rgb(
    path: Path, rgb: tuple[int, int, int] | np.ndarray, size: tuple[int, int] = (8, 8), fmt: str | None = None
) -> None:
    """A solid-colour (or given ``[H, W, 3]`` array) RGB image."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(rgb, np.ndarray):
        img = Image.fromarray(rgb.astype(np.uint8), "RGB")
    else:
        img = Image.new("RGB", size, rgb)
    img.save(path, format=fmt)


def truncated_bytes(fmt: str, cut_from_end: int | None = None) -> bytes:
    """A 24x24 noise image encoded as ``fmt`` and cut short (half, or ``cut_from_end`` bytes)."""
    rng = np.random.default_rng(0)
    img = Image.fromarray(rng.integers(0, 255, (24, 24, 3), dtype=np.uint8))
    buf = io.BytesIO()
    img.save(buf, fmt)
    data = buf.getvalue()
    return data[: len(data) - cut_from_end] if cut_from_end else data[: len(data) // 2]


def make_image_folder(root: Path, counts: dict[str, int], size: int = 8) -> list[str]:
    """``root/<class>/img<k>.png`` solid images with distinct colours; returns the keys."""
    keys = []
    for c, (name, n) in enumerate(counts.items()):
        for k in range(n):
            save_rgb(root / name / f"img{k}.png", (10 * c + 1, 5 * k + 2, 100), (size, size))
            keys.append(f"{name}/img{k}.png")
    return keys


def cifar_batch(n: int, start: int, n_classes: int, coarse: bool = False) -> dict:
    """A CIFAR-like batch: image ``k`` has R = k, G = 100 + k, B = 200 + k everywhere."""
    ks = np.arange(start, start + n)
    planes = np.stack([np.full((n, 1024), 0), np.full((n, 1024), 100), np.full((n, 1024), 200)], 1) + ks[:, None, None]
    d = {b"data": planes.reshape(n, 3072).astype(np.uint8), b"filenames": [f"img{k}.png".encode() for k in ks]}
    if coarse:
        d[b"fine_labels"] = [int(k % n_classes) for k in ks]
        d[b"coarse_labels"] = [int(k % n_classes) // 2 for k in ks]
    else:
        d[b"labels"] = [int(k % n_classes) for k in ks]
    return d


def make_cifar10(parent: Path, protocol: int = 2) -> Path:
    """``parent/cifar-10-batches-py`` with 5 train batches of 2 images and a test batch of 3."""
    d = parent / "cifar-10-batches-py"
    d.mkdir(parents=True)
    for b in range(5):
        (d / f"data_batch_{b + 1}").write_bytes(pickle.dumps(cifar_batch(2, 2 * b, 10), protocol=protocol))
    (d / "test_batch").write_bytes(pickle.dumps(cifar_batch(3, 50, 10), protocol=protocol))
    names = [b"airplane", b"automobile", b"bird", b"cat", b"deer", b"dog", b"frog", b"horse", b"ship", b"truck"]
    (d / "batches.meta").write_bytes(pickle.dumps({b"label_names": names, b"num_vis": 3072}, protocol=protocol))
    return d


def make_cifar100(parent: Path, protocol: int = 4) -> Path:
    """``parent/cifar-100-python`` with 4 fine classes in 2 superclasses."""
    d = parent / "cifar-100-python"
    d.mkdir(parents=True)
    (d / "train").write_bytes(pickle.dumps(cifar_batch(6, 0, 4, coarse=True), protocol=protocol))
    (d / "test").write_bytes(pickle.dumps(cifar_batch(4, 10, 4, coarse=True), protocol=protocol))
    meta = {b"fine_label_names": [b"apple", b"aquarium_fish", b"bear", b"beaver"],
            b"coarse_label_names": [b"fruit_and_vegetables", b"fish"]}
    (d / "meta").write_bytes(pickle.dumps(meta, protocol=protocol))
    return d


def make_coco(root: Path, n_images: int = 10, extra: bool = False) -> tuple[Path, Path]:
    """``root/images/*.png`` + ``root/captions.json`` with three captions per image.

    With ``extra``: an empty caption, a caption of an unknown image id, an image without
    captions, an image whose file is missing and a truncated image file.
    """
    img_dir = root / "images"
    images, anns = [], []
    for k in range(n_images):
        save_rgb(img_dir / f"{k:03d}.png", (k, 2 * k, 3 * k))
        images.append({"id": 100 + k, "file_name": f"{k:03d}.png"})
        for c in range(3):
            anns.append({"id": len(anns), "image_id": 100 + k, "caption": f"image {k} caption {c}"})
    if extra:
        anns.append({"image_id": 100, "caption": "   "})
        anns.append({"image_id": 999, "caption": "an orphan caption"})
        save_rgb(img_dir / "nocap.png", (1, 1, 1))
        images.append({"id": 200, "file_name": "nocap.png"})
        images.append({"id": 201, "file_name": "missing.png"})
        anns.append({"image_id": 201, "caption": "a caption of a missing file"})
        (img_dir / "broken.png").write_bytes(truncated_bytes("PNG"))
        images.append({"id": 202, "file_name": "broken.png"})
        anns.append({"image_id": 202, "caption": "a caption of a broken file"})
    path = root / "captions.json"
    path.write_text(json.dumps({"images": images, "annotations": anns}))
    return img_dir, path


def make_idx(root: Path, n_train: int = 10, n_test: int = 4, side: int = 6, gz: bool = True) -> Path:
    """The four MNIST-format files in ``root``: image ``k`` of a split is a ramp ``(k * 10 + column)``
    and its label is ``k % 10``; ``gz`` writes the gzipped names."""
    from xbyol.data.idx import write_idx

    root.mkdir(parents=True, exist_ok=True)
    suffix = ".gz" if gz else ""
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        images = (np.arange(n)[:, None, None] * 10 + np.arange(side)[None, None, :]).repeat(side, 1)  # (n, side, side)
        write_idx(root / f"{prefix}-images-idx3-ubyte{suffix}", images.astype(np.uint8))
        write_idx(root / f"{prefix}-labels-idx1-ubyte{suffix}", (np.arange(n) % 10).astype(np.uint8))
    return root
