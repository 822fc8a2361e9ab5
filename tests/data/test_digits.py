"""digits: stratified 80/20 split, exact pixel scaling, bilinear resize against scikit-image."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits

from xbyol.config import DataCfg
from xbyol.data import create_dataset
from xbyol.data.digits import DIGIT_NAMES, DigitsDataset


@pytest.fixture(scope="module")
def bunch():
    return load_digits()


def test_split_sizes_disjoint_and_stratified(bunch):
    tr, te = DigitsDataset("train", seed=0), DigitsDataset("test", seed=0)
    assert len(tr) == 1437 and len(te) == 360  # 1797 images, 20% (rounded up) for test
    a, b = set(tr.source_indices.tolist()), set(te.source_indices.tolist())
    assert not a & b and len(a | b) == 1797
    per_class = np.bincount(bunch.target, minlength=10)
    test_counts = np.bincount(te.labels.numpy(), minlength=10)
    assert np.all(np.abs(test_counts - 0.2 * per_class) <= 1)
    assert np.array_equal(tr.labels.numpy(), bunch.target[tr.source_indices])


def test_split_depends_only_on_seed():
    a, b, c = DigitsDataset("test", seed=1), DigitsDataset("test", seed=1), DigitsDataset("test", seed=2)
    assert np.array_equal(a.source_indices, b.source_indices)
    assert not np.array_equal(a.source_indices, c.source_indices)


def test_native_size_is_exact_scaling(bunch):
    ds = DigitsDataset("train", image_size=8)
    s = ds[3]
    src = bunch.images[ds.source_indices[3]]  # (8, 8) in 0..16
    want = np.rint(src * 255.0 / 16.0).astype(np.uint8)
    assert s["image"].dtype == torch.uint8 and s["image"].shape == (3, 8, 8)
    for ch in range(3):
        np.testing.assert_array_equal(s["image"][ch].numpy(), want)
    assert int(s["image"].max()) == round(src.max() * 255 / 16)


def test_bilinear_resize_matches_scikit_image(bunch):
    from skimage.transform import resize

    ds = DigitsDataset("test", image_size=32)
    src = bunch.images[ds.source_indices[0]] * (255.0 / 16.0)
    ref = resize(src, (32, 32), order=1, mode="edge", anti_aliasing=False, preserve_range=True)
    got = ds[0]["image"][0].numpy().astype(np.float64)
    assert np.abs(got - ref).max() <= 0.5 + 1e-6  # equal up to rounding to uint8


def test_sample_contract_caption_and_concepts():
    ds = create_dataset(DataCfg(name="digits", image_size=16, seed=0, num_train=5, num_test=5), "train")
    assert ds.class_names == DIGIT_NAMES == ds.concept_names and ds.concept_groups == {"digit": list(range(10))}
    assert ds.mask_concepts == [] and ds.has_captions
    for i in (0, 1, 100):
        s = ds[i]
        y = s["label"]
        assert s["caption"] == f"a handwritten digit {DIGIT_NAMES[y]}"
        assert s["concepts"].dtype == torch.bool and s["concepts"].nonzero().flatten().tolist() == [y]
        assert "masks" not in s and s["index"] == i
    assert len(ds) == 1437  # num_train does not apply to a real dataset
