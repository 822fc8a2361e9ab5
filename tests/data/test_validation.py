"""``data.validation``: the end of the training images is the evaluation split, the rest trains, the test set is not read."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from data_fixtures import make_idx

from xbyol.config import ConfigError, from_dict
from xbyol.data import create_dataset
from xbyol.data.validation import DIGITS_FRACTION, IDX_FRACTION, held_out_rows
from xbyol.eval.evaluate import evaluate, format_results
from xbyol.training import train


def test_the_held_out_rows_are_the_documented_ones():
    assert held_out_rows(60_000, IDX_FRACTION, "test", "fashion-mnist") == slice(50_000, 60_000)  # the last 10,000
    assert held_out_rows(60_000, IDX_FRACTION, "train", "fashion-mnist") == slice(0, 50_000)
    assert held_out_rows(1437, DIGITS_FRACTION, "test", "digits") == slice(1150, 1437)  # round(287.4) = 287
    with pytest.raises(ValueError, match="tiny: data.validation needs more than 2 training images"):
        held_out_rows(2, 0.2, "test", "tiny")  # 0.4 rounds to no image


def test_digits_validation_splits_the_training_split_and_leaves_the_test_split_out():
    train_all = create_dataset("digits", "train", image_size=8)
    test = create_dataset("digits", "test", image_size=8)
    tr = create_dataset("digits", "train", image_size=8, validation=True)
    val = create_dataset("digits", "test", image_size=8, validation=True)
    assert (len(train_all), len(tr), len(val)) == (1437, 1150, 287)
    # the validation images are the last 287 of the training split, in order; the rest trains
    assert tr.source_indices.tolist() + val.source_indices.tolist() == train_all.source_indices.tolist()
    assert not set(val.source_indices.tolist()) & set(test.source_indices.tolist())
    assert torch.equal(val.images, train_all.images[1150:]) and val.describe().startswith("digits[validation]: 287 images")
    assert set(val.labels.tolist()) == set(range(10))  # every class is represented


def test_idx_validation_reads_only_the_training_files(tmp_path):
    # 12 training images: image k is the ramp k * 10 + column, label k % 10; the last sixth (2 images) is validation
    root = make_idx(tmp_path / "fm", n_train=12, n_test=4, side=8, gz=False)
    for f in root.glob("t10k-*"):
        f.unlink()  # the test files are not needed
    tr = create_dataset("fashion-mnist", "train", root=str(root), image_size=8, validation=True)
    val = create_dataset("fashion-mnist", "test", root=str(root), image_size=8, validation=True)
    assert len(tr) == 10 and tr.labels.tolist() == list(range(10))
    assert len(val) == 2 and val.labels.tolist() == [0, 1]
    np.testing.assert_array_equal(val.images[:, 0, 0].numpy(), [np.arange(100, 108), np.arange(110, 118)])
    with pytest.raises(FileNotFoundError, match="t10k-images"):
        create_dataset("fashion-mnist", "test", root=str(root), image_size=8)  # without it the test files are read


def test_datasets_without_a_validation_split_refuse_the_option():
    with pytest.raises(ConfigError, match="data.validation: shapes has no validation split"):
        create_dataset("shapes", "train", num_train=8, num_test=4, validation=True)


def test_eval_scores_the_validation_split(tmp_path, tiny_overrides):
    over = {**tiny_overrides, "data.name": "digits", "data.image_size": 8, "data.validation": True, "train.steps": 2,
            "out_dir": str(tmp_path), "name": "v"}
    run_dir = train(from_dict({}, over))
    res = evaluate(run_dir, progress=False, only=[])
    assert res["split"] == "validation"
    assert "trained: features of 1150 train + 287 test images" in res["stage_seconds"]
    assert format_results(res).splitlines()[0].startswith("scored on the validation split")
