"""cifar10 / cifar100: pickle readers on tiny batches, layout errors, safe unpickling."""

from __future__ import annotations

import os
import pickle

import pytest
import torch
from data_fixtures import make_cifar10

from xbyol.config import DataCfg
from xbyol.data import create_dataset
from xbyol.data.cifar import CifarDataset


@pytest.mark.parametrize("protocol", [2, 5])
def test_cifar10_reads_batches_in_order(tmp_path, protocol):
    folder = make_cifar10(tmp_path, protocol=protocol)
    tr = CifarDataset("cifar10", folder, "train")
    te = CifarDataset("cifar10", folder, "test")
    assert len(tr) == 10 and len(te) == 3
    assert tr.labels.tolist() == list(range(10)) and te.labels.tolist() == [0, 1, 2]  # k % 10 for k = 50..52
    s = tr[7]  # 7th image overall: batch 4, second row; planes R=7, G=107, B=207
    assert s["image"].dtype == torch.uint8 and s["image"].shape == (3, 32, 32)
    assert s["image"][0].eq(7).all() and s["image"][1].eq(107).all() and s["image"][2].eq(207).all()
    assert s["label"] == 7 and s["caption"] == "a photo of a horse"
    assert tr[0]["caption"] == "a photo of an airplane"
    assert tr.class_names[1] == "automobile" and tr.concept_groups == {"class": list(range(10))}
    assert s["concepts"].nonzero().flatten().tolist() == [7]
    assert te[0]["image"][0].eq(50).all()


def test_root_may_be_the_folder_or_its_parent(cifar10_root):
    a = create_dataset(DataCfg(name="cifar10", root=str(cifar10_root)), "train")
    b = create_dataset(DataCfg(name="cifar10", root=str(cifar10_root / "cifar-10-batches-py"), seed=3, num_train=2), "train")
    assert torch.equal(a.images, b.images) and len(b) == 10


def test_resize_on_read(cifar10_root):
    ds = create_dataset(DataCfg(name="cifar10", root=str(cifar10_root), image_size=16), "test")
    img = ds[1]["image"]
    assert img.shape == (3, 16, 16) and img.dtype == torch.uint8
    assert img[0].eq(51).all()  # a constant image stays constant


def test_cifar100_fine_and_coarse_concepts(cifar100_root):
    ds = create_dataset(DataCfg(name="cifar100", root=str(cifar100_root)), "train")
    assert ds.class_names == ["apple", "aquarium fish", "bear", "beaver"]
    assert ds.concept_names == ds.class_names + ["fruit and vegetables", "fish"]
    assert ds.concept_groups == {"class": [0, 1, 2, 3], "superclass": [4, 5]}
    s = ds[3]  # fine label 3 (beaver), coarse 3 // 2 = 1 (fish)
    assert s["label"] == 3 and s["concepts"].nonzero().flatten().tolist() == [3, 5]
    assert ds[1]["caption"] == "a photo of an aquarium fish"
    te = create_dataset(DataCfg(name="cifar100", root=str(cifar100_root)), "test")
    assert len(te) == 4 and te[0]["image"][2].eq(210).all()


def test_missing_files_name_what_is_expected(tmp_path, cifar10_root):
    with pytest.raises(FileNotFoundError, match=r"data_batch_1, .*test_batch, batches.meta in .*cifar-10-batches-py"):
        create_dataset(DataCfg(name="cifar10", root=str(tmp_path / "nothing_here_yet" )))
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match=r"train, test, meta in .*empty.* cifar-100-python"):
        create_dataset(DataCfg(name="cifar100", root=str(tmp_path / "empty")))
    os.remove(cifar10_root / "cifar-10-batches-py" / "data_batch_3")
    with pytest.raises(FileNotFoundError, match="lacks data_batch_3"):
        create_dataset(DataCfg(name="cifar10", root=str(cifar10_root)))
    with pytest.raises(ValueError, match="root is required"):
        create_dataset(DataCfg(name="cifar10"))


class _Evil:
    def __reduce__(self):
        return (os.system, ("echo hacked",))


def test_refuses_pickles_that_run_code(cifar10_root):
    meta = cifar10_root / "cifar-10-batches-py" / "batches.meta"
    meta.write_bytes(pickle.dumps({b"label_names": [b"a"], b"payload": _Evil()}, protocol=2))
    with pytest.raises(ValueError, match="refusing to load .*system"):
        CifarDataset("cifar10", cifar10_root)


def test_malformed_batch_is_a_clear_error(cifar10_root):
    bad = cifar10_root / "cifar-10-batches-py" / "data_batch_2"
    bad.write_bytes(pickle.dumps({b"labels": [0, 1]}, protocol=2))
    with pytest.raises(ValueError, match="data_batch_2: missing key 'data'"):
        CifarDataset("cifar10", cifar10_root)
    bad.write_bytes(b"\x80\x02garbage")
    with pytest.raises(ValueError, match="cannot read CIFAR pickle .*data_batch_2"):
        CifarDataset("cifar10", cifar10_root)
