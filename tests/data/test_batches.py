"""``get_batch`` (one vectorised gather) equals collating ``dataset[i]`` one by one, for every in-memory dataset."""

from __future__ import annotations

import os

import pytest
import torch
from data_fixtures import make_idx, make_image_folder

from xbyol import config as config_mod
from xbyol.config import Config, ConfigError, DataCfg
from xbyol.data import create_dataset
from xbyol.data.base import SampleDataset, batch_loader, collate, resolve_num_workers
from xbyol.data.folder import FolderDataset
from xbyol.training.sampler import step_batches

# repeated, unsorted and negative indices: the batch must follow the list exactly
INDICES = [3, 0, 7, 3, -1, 5]


def _datasets(tmp_path):
    fm = make_idx(tmp_path / "fm", n_train=10, n_test=4, side=6, gz=False)
    return {
        "shapes": create_dataset(DataCfg(name="shapes", num_train=12, num_test=4, image_size=24), "train"),
        "digits": create_dataset(DataCfg(name="digits", image_size=8), "test"),
        "fashion-mnist": create_dataset(DataCfg(name="fashion-mnist", root=str(fm), image_size=6), "train"),
    }


@pytest.mark.parametrize("name", ["shapes", "digits", "fashion-mnist"])
def test_get_batch_equals_collated_samples(tmp_path, name):
    ds = _datasets(tmp_path)[name]
    fast = ds.get_batch(INDICES)
    slow = collate([ds[i] for i in INDICES])
    assert fast.keys() == slow.keys()
    for key, expected in slow.items():
        got = fast[key]
        if isinstance(expected, torch.Tensor):
            assert got.dtype == expected.dtype and got.shape == expected.shape, key
            assert torch.equal(got, expected), key
        else:
            assert got == expected, key
    assert fast["index"].tolist() == [3, 0, 7, 3, len(ds) - 1, 5]


@pytest.mark.parametrize("name", ["shapes", "digits", "fashion-mnist"])
def test_get_batch_without_masks_is_the_same_batch_less_the_masks(tmp_path, name):
    ds = _datasets(tmp_path)[name]
    full, lean = ds.get_batch(INDICES), ds.get_batch(INDICES, masks=False)
    assert "masks" not in lean and lean.keys() == full.keys() - {"masks"}
    assert ("masks" in full) == (name == "shapes")  # the digit images have no masks
    for key, value in lean.items():
        assert torch.equal(value, full[key]) if isinstance(value, torch.Tensor) else value == full[key], key


def test_get_batch_without_masks_on_a_dataset_without_a_fast_path(tmp_path):
    # the base class collates dataset[i] and drops the masks
    class Two(SampleDataset):
        def __len__(self):
            return 2

        def __getitem__(self, i):
            return {"image": torch.full((3, 2, 2), i, dtype=torch.uint8), "masks": torch.ones(1, 2, 2, dtype=torch.bool),
                    "index": i}

    lean = Two().get_batch([1, 0], masks=False)
    assert set(lean) == {"image", "index"} and lean["index"].tolist() == [1, 0]
    assert set(Two().get_batch([1])) == {"image", "masks", "index"}


@pytest.mark.parametrize("name", ["shapes", "digits", "fashion-mnist"])
def test_get_batch_rejects_an_index_out_of_range(tmp_path, name):
    ds = _datasets(tmp_path)[name]
    with pytest.raises(IndexError, match=f"index {len(ds)} out of range for {len(ds)} images"):
        ds.get_batch([0, len(ds)])


def test_batch_loader_yields_each_index_list_in_order(tmp_path):
    ds = _datasets(tmp_path)["shapes"]
    batches = [[0, 1, 2], [5, 4], [11]]
    got = [b["index"].tolist() for b in batch_loader(ds, batches)]
    assert got == batches


def test_batch_loader_can_leave_out_the_masks(tmp_path):
    ds = _datasets(tmp_path)["shapes"]
    assert all("masks" in b for b in batch_loader(ds, [[0, 1]]))
    assert all("masks" not in b for b in batch_loader(ds, [[0, 1], [2]], masks=False))


def test_training_batches_come_without_masks(tmp_path):
    # no method's training step reads the masks, and on shapes they are most of a batch's cost
    cfg = Config()
    cfg.data.batch_size = 4
    ds = _datasets(tmp_path)["shapes"]
    got = list(step_batches(ds, cfg, start_step=0, total=2, rank=0, world=1))
    assert len(got) == 2 and all("masks" not in b and b["image"].shape[0] == 4 for _, b in got)
    # each batch comes with the indices the sampler asked for, which it holds
    assert all(b["index"].tolist() == idx for idx, b in got)


def test_num_workers_auto_is_cores_minus_one_on_cuda_and_zero_on_cpu(monkeypatch):
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(16)), raising=False)
    assert resolve_num_workers("auto", torch.device("cpu")) == 0
    assert resolve_num_workers("auto", torch.device("cuda", 0)) == 15
    assert resolve_num_workers("auto", torch.device("cuda", 0), processes=2) == 7  # each DDP process its share
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0}, raising=False)
    assert resolve_num_workers("auto", torch.device("cuda", 0)) == 0  # one core: nothing left for workers
    assert resolve_num_workers(3, torch.device("cpu")) == 3  # a number is taken as it is
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(16)), raising=False)
    assert resolve_num_workers("auto", torch.device("cuda", 0), reads_files=False) == 0  # in memory: one gather


def test_only_datasets_read_from_files_say_so(tmp_path):
    assert not any(ds.reads_files for ds in _datasets(tmp_path).values())
    make_image_folder(tmp_path / "f", {"a": 3, "b": 3})
    assert FolderDataset(tmp_path / "f").reads_files


def test_num_workers_config_takes_a_number_or_auto():
    assert Config().data.num_workers == "auto"
    assert config_mod.load(None, ["data.num_workers=2"]).data.num_workers == 2
    with pytest.raises(ConfigError, match="data.num_workers: 'many' is not allowed"):
        config_mod.load(None, ["data.num_workers=many"])
    with pytest.raises(ConfigError, match="data.num_workers: -1 is below"):
        config_mod.load(None, ["data.num_workers=-1"])


def test_batch_loader_with_workers_prefetches_and_pins_as_asked(tmp_path):
    ds = _datasets(tmp_path)["shapes"]
    loader = batch_loader(ds, [[0, 1], [2, 3], [4]], num_workers=1, prefetch_factor=3, masks=False)
    assert loader.persistent_workers and loader.prefetch_factor == 3 and not loader.pin_memory
    assert [b["index"].tolist() for b in loader] == [[0, 1], [2, 3], [4]]
    assert batch_loader(ds, [[0]], pin_memory=True).pin_memory
