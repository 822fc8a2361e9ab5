"""Datasets by name: ``create_dataset(cfg.data, split)`` or ``create_dataset(name, split, **options)``;
``names()`` lists them.

Importing the package registers the built-in datasets: each module registers a factory
``fn(cfg: DataCfg, split: str) -> SampleDataset`` in :data:`DATASETS`.
"""

from __future__ import annotations

from typing import Any

from xbyol.config import Config, ConfigError, DataCfg, from_dict, to_dict
from xbyol.data import cifar, coco_captions, digits, folder, mnist, shapes  # noqa: F401 - registers the built-ins
from xbyol.data.base import DATASETS, SampleDataset, collate


def create_dataset(cfg: DataCfg | str, split: str = "train", **options: Any) -> SampleDataset:
    """Build the ``split`` ("train" or "test") of a dataset.

    Either from data options, ``create_dataset(cfg.data, "test")``, or torchvision-style
    from a name and keywords, ``create_dataset("fashion-mnist", "train", image_size=28)``;
    the keywords are ``data.*`` keys (``root``, ``image_size``, ``seed``, ...) and also
    override the fields of a given ``DataCfg``. Keys and values are checked as in a config
    file (:class:`~xbyol.config.ConfigError` naming the key).
    """
    if isinstance(cfg, str):
        cfg = from_dict({"data": {**options, "name": cfg}}).data
    elif not isinstance(cfg, DataCfg):
        raise TypeError(f"create_dataset: expected a dataset name or data options (a DataCfg, e.g. cfg.data), "
                        f"got {type(cfg).__name__} {cfg!r}")
    elif options:
        cfg = from_dict({"data": {**to_dict(cfg), **options}}).data
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    dataset = DATASETS.create(cfg.name, cfg=cfg, split=split)
    if cfg.validation and not getattr(dataset, "validation", False):
        raise ConfigError(f"data.validation: {cfg.name} has no validation split; mnist, fashion-mnist and digits have one")
    return dataset


def build_dataset(cfg: Config, split: str) -> SampleDataset:
    """The ``split`` dataset of a run's config (``create_dataset(cfg.data, split)``)."""
    return create_dataset(cfg.data, split)


def names() -> list[str]:
    """Names of the registered datasets."""
    return DATASETS.names()


__all__ = ["DATASETS", "SampleDataset", "build_dataset", "collate", "create_dataset", "names"]
