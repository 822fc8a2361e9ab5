"""Overlay colours, blending and the file writers."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from xbyol.explain import overlay, save_heatmaps_npy, save_overlay

IMG = torch.tensor([[[10, 200]], [[20, 100]], [[30, 0]]], dtype=torch.uint8)  # [3, 1, 2]


def test_alpha_zero_is_the_image_and_alpha_one_the_colormap() -> None:
    heat = torch.tensor([[0.0, 1.0]])
    assert torch.equal(overlay(IMG, heat, alpha=0.0), IMG.permute(1, 2, 0))
    gray = overlay(IMG, heat, alpha=1.0, cmap="gray")
    assert gray.tolist() == [[[0, 0, 0], [255, 255, 255]]]
    # jet: 0 -> dark blue (0, 0, 0.5), 1 -> dark red (0.5, 0, 0)
    jet = overlay(IMG, heat, alpha=1.0, cmap="jet")
    assert jet.tolist() == [[[0, 0, 128], [128, 0, 0]]]


def test_half_blend_and_float_images() -> None:
    heat = torch.tensor([[1.0, 1.0]])
    got = overlay(IMG, heat, alpha=0.5, cmap="gray")  # (img + 255) / 2
    expected = ((IMG.permute(1, 2, 0).float() + 255) / 2).round().to(torch.uint8)
    assert torch.equal(got, expected)
    assert got.dtype == torch.uint8 and got.shape == (1, 2, 3)
    assert torch.equal(overlay(IMG.float() / 255, heat, alpha=0.5, cmap="gray"), expected)
    # values outside [0, 1] are clamped
    clamped = overlay(IMG, torch.tensor([[-3.0, 7.0]]), alpha=1.0, cmap="gray")
    assert torch.equal(clamped, overlay(IMG, torch.tensor([[0.0, 1.0]]), alpha=1.0, cmap="gray"))


def test_overlay_errors() -> None:
    with pytest.raises(ValueError, match=r"image must be \[3, H, W\]"):
        overlay(IMG[0], torch.zeros(1, 2))
    with pytest.raises(ValueError, match="heatmap must be"):
        overlay(IMG, torch.zeros(2, 2))
    with pytest.raises(ValueError, match="alpha"):
        overlay(IMG, torch.zeros(1, 2), alpha=1.5)
    with pytest.raises(ValueError, match="NaN"):
        overlay(IMG, torch.tensor([[0.0, float("nan")]]))
    with pytest.raises(ValueError, match="colormap"):
        overlay(IMG, torch.zeros(1, 2), cmap="not-a-cmap")


def test_writers_round_trip(tmp_path) -> None:
    heat = torch.tensor([[0.25, 0.75]])
    png = save_overlay(tmp_path / "sub" / "o.png", IMG, heat, alpha=0.3)
    assert np.array_equal(np.asarray(Image.open(png)), overlay(IMG, heat, alpha=0.3).numpy())
    maps = torch.rand(3, 4, 5, dtype=torch.float64)
    npy = save_heatmaps_npy(tmp_path / "h.npy", maps)
    loaded = np.load(npy)
    assert loaded.dtype == np.float32 and np.allclose(loaded, maps.numpy())
    with pytest.raises(ValueError, match="heatmaps"):
        save_heatmaps_npy(tmp_path / "x.npy", torch.zeros(1, 1, 2, 2))


def test_by_value_keeps_the_image_where_the_map_is_zero() -> None:
    # pixel 0: heat 0 -> the image itself; pixel 1: heat 0.5, alpha 0.8 -> opacity 0.4 of the gray colour 0.5
    heat = torch.tensor([[0.0, 0.5]])
    got = overlay(IMG, heat, alpha=0.8, cmap="gray", by_value=True)
    gray_half = 128 / 255  # the 256-entry lookup table's entry for 0.5 (index round(127.5) = 128)
    expected_1 = [round((0.6 * v / 255 + 0.4 * gray_half) * 255) for v in (200, 100, 0)]
    assert got.tolist() == [[[10, 20, 30], expected_1]]
    assert expected_1 == [171, 111, 51]  # worked by hand: 0.6 * 200 + 0.4 * 128 = 171.2, ...
