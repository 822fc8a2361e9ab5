"""ByolViews: shapes, determinism, per-sample randomness, exact behaviour of each op, masks following the geometry."""

import dataclasses

import pytest
import torch

from xbyol.augment import ByolViews, blur_kernel_size, make_views, preprocess
from xbyol.augment.views import RandomGaussianBlur
from xbyol.config import AugCfg, Config

# Every random op off, whole-image crop, views left in [0, 1]: the pipeline is the identity.
IDENTITY = AugCfg(
    crop_scale_min=1.0,
    crop_scale_max=1.0,
    flip_p=0.0,
    jitter_p=0.0,
    grayscale_p=0.0,
    blur_p=(0.0, 0.0),
    solarize_p=(0.0, 0.0),
    normalize=False,
)
# The crop is one batched bilinear warp (grid_sample); an identity warp is exact only up to
# float rounding of the sampling grid (~3e-6), far below one grey level (1/255 = 4e-3).
WARP_ATOL = 1e-5


def identity(**kw) -> AugCfg:
    return dataclasses.replace(IDENTITY, **kw)


def images(b: int = 8, size: int = 32, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (b, 3, size, size), dtype=torch.uint8, generator=g)


def test_shapes_dtypes_device():
    views = ByolViews(AugCfg(), image_size=24)
    v1, v2 = views(images(size=40))
    for v in (v1, v2):
        assert v.shape == (8, 3, 24, 24) and v.dtype == torch.float32 and v.device.type == "cpu"
        assert torch.isfinite(v).all()


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_views_on_cuda_are_seeded_and_stay_on_device():
    views = ByolViews(AugCfg(), image_size=32)
    x = images().cuda()
    (a1, a2), (b1, b2) = views(x, seed=3), views(x, seed=3)
    assert a1.device == x.device and a2.device == x.device
    assert torch.equal(a1, b1) and torch.equal(a2, b2)


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_views_on_cuda_equal_the_views_on_the_cpu():
    # parameters are drawn on the CPU for both, so only float rounding may differ (the blur's convolution
    # may run in TF32 on the GPU: up to ~1e-3); a sample merged into the wrong row would differ by far more
    cfg = dataclasses.replace(AugCfg(), jitter_p=0.6, grayscale_p=0.3, solarize_p=(0.3, 0.7))  # subsets on both merge paths
    views = ByolViews(cfg, image_size=32)
    x = images(b=64)
    for cpu, gpu in zip(views(x, seed=4), views(x.cuda(), seed=4)):
        torch.testing.assert_close(gpu.cpu(), cpu, rtol=0, atol=5e-3)
        assert (gpu.cpu() - cpu).abs().mean() < 1e-4


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_views_on_cuda_never_wait_for_the_device():
    # every parameter is drawn on the CPU; a blocking upload would synchronise the stream each time
    cfg = dataclasses.replace(AugCfg(), jitter_p=0.6, grayscale_p=0.3, solarize_p=(0.3, 0.7))
    views = ByolViews(cfg, image_size=32)
    x = images(b=64).cuda()
    views(x)  # first call: kernels loaded outside the check
    torch.cuda.set_sync_debug_mode("error")
    try:
        views(x)
    finally:
        torch.cuda.set_sync_debug_mode("default")


def test_same_seed_same_views_and_global_rng_untouched():
    views = ByolViews(AugCfg(), image_size=32)
    x = images()
    state = torch.get_rng_state()
    a1, a2 = views(x, seed=7)
    assert torch.equal(torch.get_rng_state(), state)
    b1, b2 = views(x, seed=7)
    c1, c2 = views(x, seed=8)
    assert torch.equal(a1, b1) and torch.equal(a2, b2)
    assert not torch.allclose(a1, c1) and not torch.allclose(a2, c2)


def test_parameters_are_drawn_per_sample_and_views_differ():
    views = ByolViews(AugCfg(), image_size=32)
    x = images(b=1).expand(16, -1, -1, -1).contiguous()  # 16 copies of one image
    v1, v2 = views(x, seed=0)
    distinct = {tuple(v.flatten()[:64].tolist()) for v in v1}
    assert len(distinct) == 16  # every copy got its own crop / flip / colour parameters
    assert (v1 - v2).abs().amax(dim=(1, 2, 3)).min() > 1e-3  # view 1 != view 2 for every sample


def test_identity_config_equals_preprocess():
    x = images()
    v1, v2 = ByolViews(IDENTITY, 32)(x, seed=0)
    torch.testing.assert_close(v1, x.float() / 255, rtol=0, atol=WARP_ATOL)
    torch.testing.assert_close(v2, x.float() / 255, rtol=0, atol=WARP_ATOL)
    n1, n2 = ByolViews(identity(normalize=True), 32)(x, seed=0)
    torch.testing.assert_close(n1, preprocess(x), rtol=0, atol=WARP_ATOL / 0.224)
    torch.testing.assert_close(n2, preprocess(x), rtol=0, atol=WARP_ATOL / 0.224)


def test_grayscale_uses_luma_weights_and_equal_channels():
    x = images()
    v1, _ = ByolViews(identity(grayscale_p=1.0), 32)(x, seed=0)
    assert torch.equal(v1[:, 0], v1[:, 1]) and torch.equal(v1[:, 1], v1[:, 2])
    xf = x.float() / 255
    luma = 0.299 * xf[:, 0] + 0.587 * xf[:, 1] + 0.114 * xf[:, 2]
    torch.testing.assert_close(v1[:, 0], luma, rtol=0, atol=WARP_ATOL)


def test_solarize_threshold_half_no_additive_shift():
    # float input in [0, 1] is accepted as is; values chosen away from the 0.5 threshold
    vals = torch.tensor([0.0, 0.1, 0.3, 0.49, 0.51, 0.7, 0.9, 1.0])
    x = vals.view(1, 1, 1, 8).expand(4, 3, 8, 8).contiguous()
    v1, v2 = ByolViews(identity(solarize_p=(0.0, 1.0)), 8)(x, seed=0)
    expected = torch.where(x < 0.5, x, 1.0 - x)
    torch.testing.assert_close(v2, expected, rtol=0, atol=WARP_ATOL)
    torch.testing.assert_close(v1, x, rtol=0, atol=WARP_ATOL)  # view 1 never solarises here


def test_colour_jitter_brightness_is_multiplicative_like_torchvision():
    # torchvision/BYOL brightness multiplies each pixel by one factor in [0.6, 1.4];
    # kornia's ColorJiggle would add (factor - 1) instead.
    pixel = torch.tensor([0.2, 0.4, 0.1])
    x = pixel.view(1, 3, 1, 1).expand(16, 3, 8, 8).contiguous()
    v1, _ = ByolViews(identity(jitter=(0.4, 0.0, 0.0, 0.0), jitter_p=1.0), 8)(x, seed=0)
    ratio = v1[:, :, 0, 0] / pixel  # (16, 3)
    torch.testing.assert_close(ratio, ratio[:, :1].expand(-1, 3), rtol=1e-4, atol=0)
    assert ratio.min() >= 0.6 - 1e-4 and ratio.max() <= 1.4 + 1e-4
    assert ratio[:, 0].std() > 0.05  # factors differ per sample


def test_view_one_is_always_blurred():
    checker = ((torch.arange(32).view(1, -1) + torch.arange(32).view(-1, 1)) % 2).float()  # (32, 32)
    x = checker.expand(4, 3, 32, 32).contiguous()
    # sigma >= 1 so that every draw visibly smooths (sigma near 0.1 is numerically the identity at 3 px)
    v1, v2 = ByolViews(identity(blur_p=(1.0, 0.0), blur_sigma=(1.0, 2.0)), 32)(x, seed=0)
    assert v1.std(dim=(1, 2, 3)).max() < 0.8 * x.std()  # every sample smoothed
    torch.testing.assert_close(v2, x, rtol=0, atol=WARP_ATOL)


def test_blur_kernel_size():
    assert blur_kernel_size(0.1, 224) == 23  # the paper's 23 px
    assert blur_kernel_size(0.1, 32) == 3
    assert blur_kernel_size(0.1, 64) == 7
    assert blur_kernel_size(0.1, 8) == 0  # too small: no blur
    assert blur_kernel_size(0.0, 224) == 0
    blur = [m for m in ByolViews(AugCfg(), 32).view1 if isinstance(m, RandomGaussianBlur)]
    assert len(blur) == 1 and blur[0].kernel_size == 3


def test_tiny_images_skip_blur_and_run():
    views = ByolViews(AugCfg(), image_size=8)
    assert not any(isinstance(m, RandomGaussianBlur) for m in views.view1)
    v1, v2 = views(images(b=4, size=8), seed=0)
    assert v1.shape == v2.shape == (4, 3, 8, 8)


def test_masks_follow_a_flip_exactly():
    x = images()
    masks = torch.stack([x[:, 0] > 127, x[:, 1] > 60], dim=1)  # (B, 2, H, W)
    (v1, m1), (v2, m2) = ByolViews(identity(flip_p=1.0), 32).forward_with_masks(x, masks, seed=0)
    assert m1.dtype == torch.bool and m1.shape == masks.shape
    assert torch.equal(m1, masks.flip(-1)) and torch.equal(m2, masks.flip(-1))
    torch.testing.assert_close(v1, x.flip(-1).float() / 255, rtol=0, atol=WARP_ATOL)


def test_masks_follow_random_flips_per_sample():
    x = images(b=32)
    masks = (x[:, :1] > 127)  # a thresholded image channel
    (v1, m1), _ = ByolViews(identity(flip_p=0.5), 32).forward_with_masks(x, masks, seed=1)
    assert torch.equal(m1, v1[:, :1] > 127.5 / 255)
    flipped = torch.tensor([torch.equal(a, b.flip(-1)) and not torch.equal(a, b) for a, b in zip(m1, masks)])
    assert 0 < flipped.sum() < 32  # some samples flipped, some not


def test_masks_follow_random_crops_and_flips():
    # Channels 0/1 are linear ramps in x/y: a bilinear crop of a linear ramp is exact, so each view pixel
    # tells the source coordinate it was sampled from; the nearest-resampled mask must agree with it.
    s = 32
    ramp = torch.arange(s, dtype=torch.float32) / (s - 1)
    x = torch.stack([ramp.view(1, s).expand(s, s), ramp.view(s, 1).expand(s, s), torch.zeros(s, s)])
    x = x.expand(64, 3, s, s).contiguous()
    cols = torch.arange(s).view(1, s).expand(s, s)
    rows = torch.arange(s).view(s, 1).expand(s, s)
    masks = torch.stack([cols >= 16, rows >= 8], 0).expand(64, 2, s, s).contiguous()
    cfg = identity(crop_scale_min=0.2, flip_p=0.5)
    (v1, m1), (v2, m2) = ByolViews(cfg, s).forward_with_masks(x, masks, seed=2)
    for v, m in ((v1, m1), (v2, m2)):
        src_x, src_y = v[:, 0] * (s - 1), v[:, 1] * (s - 1)  # (B, S, S) source coordinates
        clear = ((src_x - 15.5).abs() > 0.02) & ((src_y - 7.5).abs() > 0.02)  # away from rounding ties
        assert torch.equal(m[:, 0][clear], (src_x >= 15.5)[clear])
        assert torch.equal(m[:, 1][clear], (src_y >= 7.5)[clear])
        assert clear.float().mean() > 0.9
    assert not torch.equal(m1, masks)  # the crops did move the masks


def test_forward_with_masks_gives_the_same_images_as_forward():
    views = ByolViews(AugCfg(), 32)
    x = images()
    masks = torch.zeros(8, 3, 32, 32, dtype=torch.bool)
    v1, v2 = views(x, seed=5)
    (w1, _), (w2, _) = views.forward_with_masks(x, masks, seed=5)
    assert torch.equal(v1, w1) and torch.equal(v2, w2)


def test_masks_are_untouched_by_photometric_ops():
    x = images()
    masks = x[:, :2] > 100
    cfg = identity(jitter_p=1.0, grayscale_p=1.0, blur_p=(1.0, 1.0), solarize_p=(1.0, 1.0))
    (_, m1), (_, m2) = ByolViews(cfg, 32).forward_with_masks(x, masks, seed=0)
    assert torch.equal(m1, masks) and torch.equal(m2, masks)


def test_mask_input_errors():
    views = ByolViews(AugCfg(), 32)
    x = images()
    with pytest.raises(TypeError, match="torch.bool"):
        views.forward_with_masks(x, torch.zeros(8, 2, 32, 32))
    with pytest.raises(ValueError, match=r"\[B, K, H, W\]"):
        views.forward_with_masks(x, torch.zeros(8, 2, 16, 16, dtype=torch.bool))


def test_bad_config_is_rejected():
    with pytest.raises(ValueError, match="crop_scale"):
        ByolViews(AugCfg(crop_scale_min=0.9, crop_scale_max=0.5), 32)
    with pytest.raises(ValueError, match="blur_p"):
        ByolViews(AugCfg(blur_p=(1.5, 0.1)), 32)


def test_make_views_from_run_config():
    cfg = Config()
    views = make_views(cfg)
    assert views.image_size == cfg.data.image_size
    assert make_views(cfg.aug, 16).image_size == 16
    with pytest.raises(ValueError, match="image_size"):
        make_views(cfg.aug)
