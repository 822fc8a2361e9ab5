"""Datasets by name: ``create_dataset(name, split, **kw)``; ``names()`` lists them."""

from __future__ import annotations

from xbyol.data.base import SampleDataset, collate
from xbyol.registry import Registry

DATASETS: Registry[SampleDataset] = Registry("dataset")


def _load_builtin() -> None:
    # importing the modules registers them
    from xbyol.data import cifar, coco_captions, digits, folder, mnist, shapes  # noqa: F401


def create_dataset(name: str, split: str = "train", **kwargs) -> SampleDataset:
    """Build dataset ``name`` for ``split`` ("train" or "test")."""
    _load_builtin()
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    return DATASETS.create(name, split=split, **kwargs)


def names() -> list[str]:
    _load_builtin()
    return DATASETS.names()


__all__ = ["DATASETS", "SampleDataset", "collate", "create_dataset", "names"]
