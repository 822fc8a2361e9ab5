"""Stratified picks: every label shown, equal counts where possible, spread within a label."""

from __future__ import annotations

import pytest
import torch

from xbyol.data.sampling import dataset_labels, stratified_indices


def test_class_sorted_labels_get_every_class():
    labels = [0] * 10 + [1] * 10 + [2] * 10  # a class-sorted folder
    assert stratified_indices(labels, 6) == [0, 5, 10, 15, 20, 25]  # 2 per class, spread in each
    assert stratified_indices(labels, 4) == [0, 5, 10, 20]  # 4 = 2 + 1 + 1: label 0 gets the extra
    assert stratified_indices(labels, 3) == [0, 10, 20]  # the first N would have been [0, 1, 2]: one class


def test_a_small_class_gives_what_it_has():
    labels = [1] * 8 + [0] * 2 + [-1]
    got = stratified_indices(labels, 7)
    assert [labels[i] for i in got].count(-1) == 1 and [labels[i] for i in got].count(0) == 2
    assert got == [0, 2, 4, 6, 8, 9, 10]  # label 1: 4 picks spread over its 8 images
    assert stratified_indices(labels, 50) == list(range(11))
    assert stratified_indices(labels, 0) == []
    with pytest.raises(ValueError, match="k must be >= 0"):
        stratified_indices(labels, -1)


def test_dataset_labels_reads_the_attribute_or_the_samples():
    class WithAttr:
        labels = torch.tensor([2, 0, 1])

        def __len__(self):
            return 3

    class Plain:
        def __len__(self):
            return 2

        def __getitem__(self, i):
            return {"label": [5, 7][i]}

    assert dataset_labels(WithAttr()) == [2, 0, 1]
    assert dataset_labels(Plain()) == [5, 7]
