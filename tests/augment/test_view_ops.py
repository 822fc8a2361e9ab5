"""The plain-torch ops behind ByolViews agree with kornia's implementations on the same inputs and parameters."""

import math

import kornia
import pytest
import torch

from xbyol.augment import ByolViews
from xbyol.augment.blur import gaussian_blur, gaussian_taps, separable_blur
from xbyol.augment.views import (
    ColorJitter,
    RandomResizedCropFlip,
    _on_subset,
    adjust_brightness,
    adjust_contrast,
    adjust_hue,
    adjust_saturation,
    solarize,
)
from xbyol.config import AugCfg


def rand_images(b: int = 16, size: int = 12, seed: int = 0, quantised: bool = False) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    if quantised:  # many exact ties between channels, grey pixels, pure black and white
        return torch.randint(0, 4, (b, 3, size, size), generator=g).float() / 3
    return torch.rand(b, 3, size, size, generator=g)


def factors(lo: float, hi: float, b: int = 16, seed: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(b, generator=g) * (hi - lo) + lo


@pytest.mark.parametrize("quantised", [False, True])
def test_brightness_contrast_saturation_match_kornia_color_jitter_steps(quantised):
    x = rand_images(quantised=quantised)
    f = factors(0.0, 2.0)  # beyond the jitter range, so the clamps are exercised
    torch.testing.assert_close(adjust_brightness(x, f), kornia.enhance.adjust_brightness_accumulative(x, f), rtol=0, atol=1e-6)
    torch.testing.assert_close(adjust_contrast(x, f), kornia.enhance.adjust_contrast_with_mean_subtraction(x, f), rtol=0, atol=1e-6)
    torch.testing.assert_close(adjust_saturation(x, f), kornia.enhance.adjust_saturation_with_gray_subtraction(x, f), rtol=0, atol=1e-6)


@pytest.mark.parametrize("quantised", [False, True])
def test_hue_matches_kornia_hsv_round_trip(quantised):
    x = rand_images(quantised=quantised)
    f = factors(-0.5, 0.5)  # fractions of a turn, the whole admissible range
    f[0], f[1] = 0.0, 0.5
    expected = kornia.enhance.adjust_hue(x, f * 2 * math.pi)
    torch.testing.assert_close(adjust_hue(x, f), expected, rtol=0, atol=1e-5)


def test_hue_hand_values():
    # pure red turned by a third of a turn is pure green, by two thirds pure blue; grey stays grey
    x = torch.tensor([[1.0, 0.0, 0.0], [1.0, 0.0, 0.0], [0.4, 0.4, 0.4], [0.8, 0.4, 0.2]]).view(4, 3, 1, 1)
    out = adjust_hue(x, torch.tensor([1 / 3, 2 / 3 - 1, 0.25, 0.0])).view(4, 3)
    torch.testing.assert_close(out[0], torch.tensor([0.0, 1.0, 0.0]), rtol=0, atol=1e-6)
    torch.testing.assert_close(out[1], torch.tensor([0.0, 0.0, 1.0]), rtol=0, atol=1e-6)
    torch.testing.assert_close(out[2], torch.tensor([0.4, 0.4, 0.4]), rtol=0, atol=0)
    torch.testing.assert_close(out[3], torch.tensor([0.8, 0.4, 0.2]), rtol=0, atol=1e-6)


@pytest.mark.parametrize("kernel", [3, 7])
def test_blur_matches_kornia_gaussian_blur2d(kernel):
    x = rand_images(size=16)
    sigma = factors(0.1, 2.0)
    expected = kornia.filters.gaussian_blur2d(x, (kernel, kernel), sigma.view(-1, 1).expand(-1, 2), border_type="reflect")
    torch.testing.assert_close(gaussian_blur(x, sigma, kernel), expected, rtol=0, atol=1e-6)
    with pytest.raises(ValueError, match="odd"):
        gaussian_blur(x, sigma, 4)


def test_gaussian_taps_and_a_delta_at_the_border_worked_by_hand():
    # sigma 1, 3 taps: exp(-1/2) = 0.606531, 1, 0.606531; sum 2.213061
    w0, w1 = 0.606531 / 2.213061, 1.0 / 2.213061  # 0.274069, 0.451863
    taps = gaussian_taps(torch.tensor([1.0]), 3)
    torch.testing.assert_close(taps, torch.tensor([[w0, w1, w0]], dtype=torch.float64), rtol=0, atol=1e-6)
    x = torch.zeros(1, 1, 3, 3)
    x[0, 0, 0, 0] = 1.0
    # reflect padding mirrors the delta's zero neighbour: each pass maps (1, 0, 0) to (w1, w0, 0)
    expected = torch.tensor([[w1 * w1, w1 * w0, 0.0], [w0 * w1, w0 * w0, 0.0], [0.0, 0.0, 0.0]])
    torch.testing.assert_close(gaussian_blur(x, torch.tensor([1.0]), 3)[0, 0], expected, rtol=0, atol=1e-6)
    # zero padding: the delta only loses the weight that falls outside, (1, 0, 0) -> (w1, w0, 0) too;
    # a delta in the middle spreads as the outer product of the taps
    x[0, 0, 0, 0], x[0, 0, 1, 1] = 0.0, 1.0
    mid = separable_blur(x, taps[0], padding="zeros")[0, 0]
    torch.testing.assert_close(mid, torch.outer(taps[0], taps[0]).float(), rtol=0, atol=1e-6)


def test_crop_grid_reads_the_box_corners_worked_by_hand(monkeypatch):
    # source pixel (y, x) holds 10 y + x; the box x0=2, y0=1, w=5, h=3 resized to 3 x 3 reads
    # x = 2 + j (5 - 1) / 2 = 2, 4, 6 and y = 1 + i (3 - 1) / 2 = 1, 2, 3 (integer points: exact)
    img = (10 * torch.arange(10.0).view(10, 1) + torch.arange(10.0).view(1, 10)).expand(1, 3, 10, 10)
    op = RandomResizedCropFlip(3, (0.08, 1.0), (3 / 4, 4 / 3), flip_p=0.0)
    monkeypatch.setattr(op, "sample_boxes", lambda n, h, w: torch.tensor([[2.0, 1.0, 5.0, 3.0]]))
    out, _ = op(img)
    expected = torch.tensor([[12.0, 14.0, 16.0], [22.0, 24.0, 26.0], [32.0, 34.0, 36.0]])
    torch.testing.assert_close(out[0, 0], expected, rtol=0, atol=1e-4)
    op.flip_p = 1.0
    flipped, _ = op(img)
    torch.testing.assert_close(flipped[0, 0], expected.flip(1), rtol=0, atol=1e-4)


def test_solarize_threshold():
    x = torch.tensor([0.0, 0.25, 0.4999, 0.5, 0.75, 1.0]).view(1, 1, 1, 6)
    torch.testing.assert_close(solarize(x).flatten(), torch.tensor([0.0, 0.25, 0.4999, 0.5, 0.25, 0.0]))
    # min(x, 1 - x) is exactly the thresholded form on [0, 1], ties and quantised values included
    y = torch.cat([rand_images(), rand_images(quantised=True)])
    assert torch.equal(solarize(y), torch.where(y < 0.5, y, 1.0 - y))


def test_hue_stays_in_range_without_a_clamp():
    # the turned channels are M - C w with C <= M and w in [0, 1]: never below 0 or above the pixel's max
    x = torch.cat([rand_images(b=64, seed=s) for s in range(4)] + [rand_images(quantised=True)])
    for f in (-0.5, -0.25, 1 / 6, 0.5):
        out = adjust_hue(x, torch.full((x.shape[0],), f))
        assert out.min() >= 0.0
        assert (out <= x.amax(dim=1, keepdim=True)).all()


@pytest.mark.parametrize("p", [0.3, 0.8])  # a small subset (gathered) and a large one (whole batch, then lerp)
def test_ops_on_a_subset_change_exactly_those_samples(p):
    x = rand_images(b=40)
    apply = torch.rand(40, generator=torch.Generator().manual_seed(7)) < p
    assert 0 < int(apply.sum()) < 40 and (2 * int(apply.sum()) > 40) == (p > 0.5)
    f = factors(-0.5, 0.5, b=40)
    seen = []

    def turn(xs, idx):
        seen.append(idx.numel())
        return adjust_hue(xs, f[idx])

    out = _on_subset(x, apply, turn)
    for i in range(40):
        expected = adjust_hue(x[i : i + 1], f[i : i + 1])[0] if apply[i] else x[i]
        assert torch.equal(out[i], expected), i  # bit for bit: per-sample ops do not see the rest of the batch
    assert seen == [40 if p > 0.5 else int(apply.sum())]
    # an op whose result broadcasts over the channels (grayscale) merges the same way
    grey_out = _on_subset(x, apply, lambda xs, _: xs.mean(1, keepdim=True).expand_as(xs))
    assert torch.equal(grey_out[apply], x[apply].mean(1, keepdim=True).expand(-1, 3, -1, -1))
    assert torch.equal(grey_out[~apply], x[~apply])


def test_crop_matches_kornia_crop_and_resize_on_the_drawn_boxes():
    x = rand_images(b=32, size=20)
    op = RandomResizedCropFlip(12, (0.08, 1.0), (3 / 4, 4 / 3), flip_p=0.0)
    torch.manual_seed(3)
    out, _ = op(x)
    torch.manual_seed(3)
    boxes = op.sample_boxes(32, 20, 20)  # the same draws: (x0, y0, w, h)
    x0, y0, w, h = boxes.unbind(1)
    x1, y1 = x0 + w - 1, y0 + h - 1
    corners = torch.stack([torch.stack([x0, y0], 1), torch.stack([x1, y0], 1), torch.stack([x1, y1], 1), torch.stack([x0, y1], 1)], 1)
    expected = kornia.geometry.transform.crop_and_resize(x, corners, (12, 12), mode="bilinear", align_corners=True)
    torch.testing.assert_close(out, expected, rtol=0, atol=1e-5)


def test_flip_is_the_mirror_of_the_same_crop():
    x = rand_images(b=8, size=20)
    torch.manual_seed(5)
    plain, _ = RandomResizedCropFlip(12, (0.2, 1.0), (3 / 4, 4 / 3), flip_p=0.0)(x)
    torch.manual_seed(5)
    flipped, _ = RandomResizedCropFlip(12, (0.2, 1.0), (3 / 4, 4 / 3), flip_p=1.0)(x)
    torch.testing.assert_close(flipped, plain.flip(-1), rtol=0, atol=1e-5)


def test_crop_boxes_follow_the_scale_and_ratio_ranges():
    torch.manual_seed(0)
    op = RandomResizedCropFlip(32, (0.3, 0.7), (3 / 4, 4 / 3), flip_p=0.0)
    boxes = op.sample_boxes(4000, 32, 32)
    x0, y0, w, h = boxes.unbind(1)
    assert torch.equal(boxes, boxes.round())  # integer boxes
    assert (x0 >= 0).all() and (y0 >= 0).all() and (x0 + w <= 32).all() and (y0 + h <= 32).all()
    area = w * h / 1024
    assert area.min() > 0.3 * 0.85 and area.max() < 0.7 * 1.15  # up to the rounding of w and h
    aspect = w / h
    assert aspect.min() > 0.75 * 0.9 and aspect.max() < 4 / 3 * 1.1
    assert 0.45 < area.mean() < 0.55  # uniform in area
    assert x0.float().std() > 2 and y0.float().std() > 2  # positions vary


def test_crop_falls_back_to_the_largest_box_of_the_nearest_ratio_when_no_candidate_fits():
    # area 1 with aspect 1.2-1.3 never fits an 8x8 image (w rounds to 9): torchvision's fallback keeps the
    # full width and the height of the nearest allowed ratio, round(8 / 1.2) = 7, at a random row
    torch.manual_seed(0)
    boxes = RandomResizedCropFlip(8, (1.0, 1.0), (1.2, 1.3), flip_p=0.0).sample_boxes(64, 8, 8)
    assert torch.equal(boxes[:, [0, 2, 3]], torch.tensor([[0.0, 8.0, 7.0]]).expand(64, 3))
    assert set(boxes[:, 1].tolist()) == {0.0, 1.0}
    whole = RandomResizedCropFlip(8, (1.0, 1.0), (0.9, 1.1), flip_p=0.0).sample_boxes(16, 8, 8)
    assert torch.equal(whole, torch.tensor([[0.0, 0.0, 8.0, 8.0]]).expand(16, 4))


def test_jitter_applies_per_sample_with_its_probability():
    x = rand_images(b=200, size=4)
    torch.manual_seed(0)
    out = ColorJitter(0.4, 0.4, 0.2, 0.1, p=0.5)(x)
    same = (out == x).flatten(1).all(1)
    assert 60 < int(same.sum()) < 140  # roughly half untouched, bit for bit
    assert ((out - x).abs().flatten(1).amax(1)[~same] > 1e-4).all()


def test_channels_last_in_gives_channels_last_out_with_the_same_values():
    x = torch.randint(0, 256, (8, 3, 32, 32), dtype=torch.uint8)
    views = ByolViews(AugCfg(), 32)
    a1, a2 = views(x, seed=0)
    b1, b2 = views(x.contiguous(memory_format=torch.channels_last), seed=0)
    assert b1.is_contiguous(memory_format=torch.channels_last) and b2.is_contiguous(memory_format=torch.channels_last)
    assert a1.is_contiguous()
    torch.testing.assert_close(b1, a1, rtol=0, atol=1e-6)
    torch.testing.assert_close(b2, a2, rtol=0, atol=1e-6)


def test_views_ignore_the_callers_autocast():
    x = torch.randint(0, 256, (8, 3, 32, 32), dtype=torch.uint8)
    views = ByolViews(AugCfg(), 32)
    a1, _ = views(x, seed=0)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        b1, _ = views(x, seed=0)
    assert b1.dtype == torch.float32
    assert torch.equal(a1, b1)


def test_bad_jitter_is_rejected():
    with pytest.raises(ValueError, match="aug.jitter"):
        ByolViews(AugCfg(jitter=(0.4, 0.4, 0.2, 0.6)), 32)
    with pytest.raises(ValueError, match="aug.jitter"):
        ByolViews(AugCfg(jitter=(-0.1, 0.4, 0.2, 0.1)), 32)
