"""Datasets by name: ``create_dataset(cfg.data, split)``; ``names()`` lists them.

Importing the package registers the built-in datasets: each module registers a factory
``fn(cfg: DataCfg, split: str) -> SampleDataset`` in :data:`DATASETS`.
"""

from __future__ import annotations

from xbyol.config import Config, DataCfg
from xbyol.data import cifar, coco_captions, digits, folder, mnist, shapes  # noqa: F401 - registers the built-ins
from xbyol.data.base import DATASETS, SampleDataset, collate


def create_dataset(cfg: DataCfg, split: str = "train") -> SampleDataset:
    """Build the dataset ``cfg.name`` for ``split`` ("train" or "test") from the data options ``cfg``."""
    if not isinstance(cfg, DataCfg):
        raise TypeError(
            f"create_dataset: expected the data options (a DataCfg, e.g. cfg.data), got {type(cfg).__name__} {cfg!r}"
        )
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    return DATASETS.create(cfg.name, cfg=cfg, split=split)


def build_dataset(cfg: Config, split: str) -> SampleDataset:
    """The ``split`` dataset of a run's config (``create_dataset(cfg.data, split)``)."""
    return create_dataset(cfg.data, split)


def names() -> list[str]:
    """Names of the registered datasets."""
    return DATASETS.names()


__all__ = ["DATASETS", "SampleDataset", "build_dataset", "collate", "create_dataset", "names"]
