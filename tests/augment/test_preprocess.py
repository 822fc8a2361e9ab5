"""preprocess / unnormalize: hand-computed values and input checks."""

import pytest
import torch

from xbyol.augment import IMAGE_MEAN, IMAGE_STD, preprocess, unnormalize


def test_preprocess_uint8_hand_values():
    x = torch.zeros(1, 3, 2, 2, dtype=torch.uint8)
    x[0, :, 0, 0] = 255
    out = preprocess(x)
    assert out.dtype == torch.float32 and out.shape == (1, 3, 2, 2)
    for c in range(3):
        assert out[0, c, 0, 0].item() == pytest.approx((1.0 - IMAGE_MEAN[c]) / IMAGE_STD[c], abs=1e-6)
        assert out[0, c, 1, 1].item() == pytest.approx(-IMAGE_MEAN[c] / IMAGE_STD[c], abs=1e-6)


def test_preprocess_float_equals_uint8_over_255():
    x = torch.randint(0, 256, (4, 3, 5, 7), dtype=torch.uint8)
    torch.testing.assert_close(preprocess(x), preprocess(x.float() / 255), rtol=0, atol=1e-6)


def test_unnormalize_inverts_preprocess():
    x = torch.randint(0, 256, (2, 3, 6, 6), dtype=torch.uint8)
    back = unnormalize(preprocess(x))
    torch.testing.assert_close(back, x.float() / 255, rtol=0, atol=1e-6)
    assert unnormalize(torch.full((1, 3, 2, 2), 100.0)).max().item() == 1.0  # clamped for display


@pytest.mark.parametrize("shape", [(3, 8, 8), (2, 1, 8, 8), (2, 4, 8, 8)])
def test_preprocess_rejects_bad_shape(shape):
    with pytest.raises(ValueError, match=r"\[B, 3, H, W\]"):
        preprocess(torch.zeros(shape, dtype=torch.uint8))


def test_preprocess_rejects_int_dtype():
    with pytest.raises(TypeError, match="uint8"):
        preprocess(torch.zeros(1, 3, 4, 4, dtype=torch.int64))


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_preprocess_stays_on_device():
    x = torch.zeros(1, 3, 4, 4, dtype=torch.uint8, device="cuda")
    assert preprocess(x).device == x.device
