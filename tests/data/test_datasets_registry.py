"""Every registered dataset builds from the config's data options and collates a batch."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from data_fixtures import make_cifar10, make_cifar100, make_coco, make_idx, make_image_folder
from torch.utils.data import DataLoader

from xbyol import data
from xbyol.config import ConfigError, DataCfg


def data_options(name: str, tmp_path: Path) -> DataCfg:
    """The data options of dataset ``name`` (as the trainer passes them), with fixtures where a root is needed."""
    cfg = DataCfg(name=name, image_size=24, num_train=12, num_test=6, seed=1)
    if name == "folder":
        make_image_folder(tmp_path / "f", {"apple": 4, "box": 3})
        cfg.root = str(tmp_path / "f")
    elif name == "cifar10":
        cfg.root = str(make_cifar10(tmp_path))
    elif name == "cifar100":
        cfg.root = str(tmp_path)
        make_cifar100(tmp_path)
    elif name == "coco-captions":
        img_dir, captions = make_coco(tmp_path)
        cfg.root, cfg.captions_file = str(img_dir), str(captions)
    elif name in ("mnist", "fashion-mnist"):
        cfg.root = str(make_idx(tmp_path / name))
    return cfg


def test_all_builtin_datasets_are_registered():
    assert set(data.names()) >= {"shapes", "digits", "folder", "cifar10", "cifar100", "coco-captions", "mnist", "fashion-mnist"}


@pytest.mark.parametrize("name", data.names())
@pytest.mark.parametrize("split", ["train", "test"])
def test_build_and_collate(name, split, tmp_path):
    ds = data.create_dataset(data_options(name, tmp_path), split)
    assert isinstance(ds, data.SampleDataset) and len(ds) > 0 and ds.image_size == 24
    batch = next(iter(DataLoader(ds, batch_size=2, collate_fn=data.collate)))
    assert batch["image"].dtype == torch.uint8 and batch["image"].shape == (2, 3, 24, 24)
    assert batch["label"].dtype == torch.int64 and batch["label"].shape == (2,)
    assert batch["index"].tolist() == [0, 1]
    if ds.class_names:
        assert ((batch["label"] >= 0) & (batch["label"] < len(ds.class_names))).all()
    else:
        assert (batch["label"] == -1).all()
    if ds.concept_names:
        assert batch["concepts"].dtype == torch.bool and batch["concepts"].shape == (2, len(ds.concept_names))
        assert batch["concepts"].any(1).all()
        for group, idx in ds.concept_groups.items():
            assert idx and all(0 <= k < len(ds.concept_names) for k in idx), group
    if ds.mask_concepts:
        assert batch["masks"].dtype == torch.bool and batch["masks"].shape == (2, len(ds.concept_names), 24, 24)
        unannotated = [k for k in range(len(ds.concept_names)) if k not in ds.mask_concepts]
        assert not batch["masks"][:, unannotated].any()
    else:
        assert "masks" not in batch
    if ds.has_captions:
        assert len(batch["caption"]) == 2 and all(isinstance(c, str) and c for c in batch["caption"])
    assert isinstance(ds.describe(), str)


# fashion-mnist falls back to Debian's folder when root is None (tests/data/test_mnist.py)
@pytest.mark.parametrize("name", ["folder", "cifar10", "cifar100", "coco-captions", "mnist"])
def test_missing_root_is_a_clear_error(name, tmp_path):
    cfg = data_options(name, tmp_path)
    cfg.root = None
    with pytest.raises(ValueError, match=f"{name}: root is required"):
        data.create_dataset(cfg)
    cfg.root = str(tmp_path / "missing_dir")
    with pytest.raises(FileNotFoundError, match="missing_dir"):
        data.create_dataset(cfg)


def test_unknown_split_and_name():
    with pytest.raises(ValueError, match="split"):
        data.create_dataset(DataCfg(name="shapes"), "val")
    with pytest.raises(KeyError, match="available"):
        data.create_dataset(DataCfg(name="imagenet"))
    with pytest.raises(TypeError, match="expected a dataset name or data options \\(a DataCfg"):
        data.create_dataset({"name": "shapes"}, "train")


def test_a_name_and_keywords_build_what_the_data_options_build(tmp_path):
    """torchvision style, ``create_dataset(name, split, **options)``, beside ``create_dataset(DataCfg, split)``."""
    root = make_idx(tmp_path / "fm", n_train=12, n_test=4, side=28)
    by_name = data.create_dataset("fashion-mnist", "train", image_size=28, root=str(root))
    by_cfg = data.create_dataset(DataCfg(name="fashion-mnist", root=str(root), image_size=28), "train")
    assert len(by_name) == 12 and torch.equal(by_name.images, by_cfg.images) and torch.equal(by_name.labels, by_cfg.labels)
    # keywords also override the fields of a DataCfg
    small = data.create_dataset(DataCfg(name="fashion-mnist", root=str(root)), "test", image_size=14)
    assert small.images.shape == (4, 1, 14, 14)


def test_keywords_are_checked_like_config_keys():
    with pytest.raises(ConfigError, match="unknown config key data.colour"):
        data.create_dataset("shapes", "train", colour="red")
    with pytest.raises(ConfigError, match="data.image_size: expected an integer, got 'big'"):
        data.create_dataset(DataCfg(name="shapes"), "train", image_size="big")
