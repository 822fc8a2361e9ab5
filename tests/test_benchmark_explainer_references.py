"""benchmarks/explainer_references.py: its helpers by hand (landmarks, grids, sample counts, the paired interval)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from load_script import benchmark_script

from xbyol.data.shapes import ShapesDataset

ROOT = Path(__file__).resolve().parents[1]
T_975_2 = 4.302652729911275  # Student t, 97.5% quantile, 2 degrees of freedom (printed t tables: 4.303)


@pytest.fixture(scope="module")
def er():
    with benchmark_script("explainer_references") as module:
        yield module


def test_sample_grid_runs_from_m_plus_1_to_shaps_default(er):
    assert er.sample_grid(12) == [13, 24, 48, 96, 192, 384, 768, 2072]
    assert er.sample_grid(6)[0] == 7 and er.sample_grid(6)[-1] == 2 * 6 + 2048


def test_grid_segments_by_hand(er):
    seg = er.grid_segments(6, 2, 3)  # 6 x 6 pixels, 2 rows x 3 columns of 3 x 2 pixels
    assert seg[0].tolist() == [0, 0, 1, 1, 2, 2] and seg[5].tolist() == [3, 3, 4, 4, 5, 5]


def test_paired_interval_is_the_t_interval_of_the_differences(er):
    lo, hi = er.paired_interval([-1.0, -2.0, -3.0])  # mean -2, sd 1
    assert (lo, hi) == pytest.approx((-2 - T_975_2 / 3**0.5, -2 + T_975_2 / 3**0.5))
    assert er.paired_verdict((lo, hi)) == "no difference at this budget"
    assert er.paired_verdict((-3.0, -0.1)) == "lower" and er.paired_verdict((0.1, 2.0)) == "higher"
    assert er.paired_interval([1.0]) is None


def test_single_object_landmarks_are_the_box_centre_and_corners(er):
    class Fake:
        id_maps = torch.zeros(3, 8, 8, dtype=torch.uint8)

    Fake.id_maps[0, 2:5, 1:6] = 1  # one object: rows 2-4, columns 1-5 -> box [2, 5) x [1, 6)
    Fake.id_maps[1, 0, 0], Fake.id_maps[1, 7, 7] = 1, 2  # two objects: left out
    Fake.id_maps[2, 6, 3] = 1  # one pixel: box [6, 7) x [3, 4)
    keep, landmarks = er.single_object_landmarks(Fake())
    assert keep.tolist() == [0, 2]
    assert landmarks[0].tolist() == [[3.5, 3.5], [2, 1], [2, 6], [5, 1], [5, 6]]
    assert landmarks[1].tolist() == [[6.5, 3.5], [6, 3], [6, 4], [7, 3], [7, 4]]
    assert len(er.single_object_landmarks(ShapesDataset("test", num=40, image_size=32))[0]) > 0


def test_merge_is_deep(er):
    into = {"a": {"x": 1, "y": {"p": 1}}, "b": 1}
    er.merge(into, {"a": {"y": {"q": 2}}, "b": 2})
    assert into == {"a": {"x": 1, "y": {"p": 1, "q": 2}}, "b": 2}
