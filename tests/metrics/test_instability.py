"""Location instability (Zhang et al. 2018) on hand-worked positions and landmarks."""

import math

import pytest
import torch

from xbyol.metrics.instability import location_instability, peak_positions


def test_peak_positions_are_cell_centres_in_pixels():
    maps = torch.zeros(2, 2, 2, 4)  # N=2, F=2, h=2, w=4 on an 8 x 16 image: cells of 4 x 4 pixels
    maps[0, 0, 1, 2] = 3.0  # row 1, col 2 -> (6, 10)
    maps[0, 1, 0, 0] = 1.0  # -> (2, 2)
    maps[1, 0, 0, 3] = 0.5  # -> (2, 14)
    pos, fired = peak_positions(maps, (8, 16))
    assert pos[0, 0].tolist() == [6.0, 10.0] and pos[0, 1].tolist() == [2.0, 2.0] and pos[1, 0].tolist() == [2.0, 14.0]
    assert fired.tolist() == [[True, True], [True, False]]  # image 1, filter 1: an all-zero map never fires


def test_location_instability_by_hand():
    # image 6 x 8: diagonal 10. One landmark at (0, 0), (3, 4), (6, 8) in three images.
    landmarks = torch.tensor([[[0.0, 0.0]], [[3.0, 4.0]], [[6.0, 8.0]]])  # (N=3, K=1, 2)
    # filter 0 follows the landmark at a fixed offset (0, 1): distance 1/10 every time -> std 0
    # filter 1 stays at (0, 0): distances 0, 5, 10 -> 0, 0.5, 1; population std sqrt(1/6)
    positions = torch.stack([landmarks[:, 0] + torch.tensor([0.0, 1.0]), torch.zeros(3, 2)], dim=1)  # (3, F=2, 2)
    out = location_instability(positions, landmarks, (6, 8))
    assert out[0].item() == pytest.approx(0.0, abs=1e-12)
    assert out[1].item() == pytest.approx(math.sqrt(1 / 6))
    # a second landmark that filter 1 is always 0.5 diagonals from: D = 0, so the mean over K halves
    second = torch.tensor([[[3.0, 4.0]], [[6.0, 8.0]], [[9.0, 12.0]]])  # filter 1 at (0,0): 0.5, 1.0, 1.5 -> std sqrt(1/6) too
    two = location_instability(positions, torch.cat([landmarks, second], dim=1), (6, 8))
    assert two[1].item() == pytest.approx(math.sqrt(1 / 6))
    fixed = torch.tensor([[[0.0, 5.0]], [[0.0, 5.0]], [[0.0, 5.0]]])  # filter 1 always 0.5 away: D = 0
    mixed = location_instability(positions, torch.cat([landmarks, fixed], dim=1), (6, 8))
    assert mixed[1].item() == pytest.approx(math.sqrt(1 / 6) / 2)
    # leaving out image 2 for filter 1: distances 0, 0.5 -> std 0.25; one valid image -> NaN
    valid = torch.tensor([[True, True], [True, True], [True, False]])
    assert location_instability(positions, landmarks, (6, 8), valid)[1].item() == pytest.approx(0.25)
    valid[1, 1] = False
    assert math.isnan(location_instability(positions, landmarks, (6, 8), valid)[1].item())
    with pytest.raises(ValueError, match="positions"):
        location_instability(positions[0], landmarks, (6, 8))
