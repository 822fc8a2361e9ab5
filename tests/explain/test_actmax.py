import pytest
import torch
from torch import nn

from xbyol.augment import normalize, preprocess
from xbyol.explain.actmax import (
    ChannelObjective,
    DirectionObjective,
    image_grid,
    maximize,
    parse_unit,
    save_grid,
    total_variation,
)
from xbyol.models import create_backbone


@pytest.fixture(scope="module")
def net():
    torch.manual_seed(0)
    return create_backbone("resnet10_16").eval()


def test_maximised_image_beats_every_dataset_image(net):
    from xbyol.data.shapes import ShapesDataset

    ds = ShapesDataset("test", num=64, image_size=32)
    images = torch.stack([ds[i]["image"] for i in range(len(ds))])
    obj = ChannelObjective("stages.3", 5)
    with torch.no_grad():
        data_scores = obj(net, preprocess(images))  # (64,)
    out = maximize(net, obj, 32, steps=32, lr=0.1, jitter=1, seed=0)
    assert out.shape == (1, 3, 32, 32) and out.min() >= 0 and out.max() <= 1
    with torch.no_grad():
        score = obj(net, normalize(out))
    assert score.item() > data_scores.max().item()


def test_deterministic_under_seed_and_side_effect_free(net):
    net.train()
    obj = ChannelObjective("stages.2", 3, where="centre")
    kw = dict(steps=6, n=2, param="fourier", decorrelate=True)
    a = maximize(net, obj, 16, seed=3, **kw)
    b = maximize(net, obj, 16, seed=3, **kw)
    c = maximize(net, obj, 16, seed=4, **kw)
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert net.training  # mode restored
    net.eval()
    assert all(p.grad is None for p in net.parameters())  # only the image was differentiated
    assert all(not m._forward_hooks for m in net.modules())  # hooks released
    p1 = maximize(net, obj, 16, steps=4, seed=1, param="pixel", blur_every=2)
    p2 = maximize(net, obj, 16, steps=4, seed=1, param="pixel", blur_every=2)
    assert torch.equal(p1, p2)


def test_direction_objective_is_cosine():
    lin = nn.Linear(3, 2, bias=False)
    with torch.no_grad():
        lin.weight.copy_(torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]))
    model = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), lin)
    obj = DirectionObjective(torch.tensor([1.0, 0.0]))
    x = torch.zeros(2, 3, 4, 4)
    x[0, 0], x[0, 1] = 1.0, 1.0  # output (1, 1): cos 1/sqrt(2)
    x[1, 0] = 2.0  # output (2, 0): cos 1
    torch.testing.assert_close(obj(model, x), torch.tensor([2**-0.5, 1.0]))
    head = nn.Linear(2, 2, bias=False)
    with torch.no_grad():
        head.weight.copy_(torch.tensor([[0.0, 1.0], [1.0, 0.0]]))  # swap
    torch.testing.assert_close(DirectionObjective(torch.tensor([1.0, 0.0]), head)(model, x), torch.tensor([2**-0.5, 0.0]))
    out = maximize(model, obj, 8, steps=30, lr=0.1, jitter=0, tv_weight=0.0, blur_every=0, decorrelate=False)
    assert obj(model, normalize(out)).item() > 0.95  # red channel up, green down


def test_helpers_by_hand(tmp_path):
    assert parse_unit("stages.3:12") == ("stages.3", 12)
    with pytest.raises(ValueError, match="LAYER:CHANNEL"):
        parse_unit("stages.3")
    img = torch.zeros(1, 3, 2, 2)
    img[0, :, 0, 0] = 1.0  # |dx| mean over 3x2x1 = 1/2, |dy| the same
    assert total_variation(img).item() == pytest.approx(1.0)
    g = image_grid(torch.zeros(3, 3, 4, 4), nrow=2, pad=1)
    assert g.shape == (3, 2 * 5 + 1, 2 * 5 + 1) and g[:, 0].eq(1).all() and g[:, 1, 1].eq(0).all()
    path = save_grid(torch.rand(2, 3, 8, 8), tmp_path / "g.png", min_side=32)
    from PIL import Image

    assert Image.open(path).size == (2 * 32 + 3 * 2, 32 + 2 * 2)  # 8 px enlarged 4x, padding 2
    with pytest.raises(ValueError, match="channel 99 out of range"):
        ChannelObjective("stages.0", 99)(create_backbone("resnet10_16").eval(), torch.zeros(1, 3, 8, 8))
    with pytest.raises(ValueError, match="param"):
        maximize(nn.Identity(), lambda m, x: x.mean(), 8, param="wavelet")


def test_linear_unit_reaches_the_box_corner_closed_form():
    # A linear unit over the image in [0, 1]: score = sum w * normalize(img). normalize is affine with a
    # positive scale per channel, so the maximum over the box [0, 1]^n is the corner img = 1 where w > 0,
    # else 0 (and the minimum the opposite corner). Nothing regularises the image here.
    g = torch.Generator().manual_seed(0)
    w = torch.randn(3, 8, 8, generator=g)
    w = torch.where(w.abs() < 0.05, torch.full_like(w, 0.05), w)  # no weight too close to 0

    def unit(model, x):  # x: normalised images (N, 3, 8, 8)
        return (x * w).sum(dim=(1, 2, 3))

    corner = (w > 0).float()[None]  # (1, 3, 8, 8)
    best, worst = unit(None, normalize(corner)).item(), unit(None, normalize(1 - corner)).item()
    out = maximize(nn.Identity(), unit, 8, steps=200, lr=0.1, jitter=0, tv_weight=0.0, blur_every=0, decorrelate=False)
    assert torch.equal(out[0] > 0.5, corner[0] > 0.5)  # every pixel on the right side
    assert (out - corner).abs().max().item() < 0.02  # and at the corner
    reached = unit(None, normalize(out)).item()
    assert reached <= best + 1e-4  # the corner is the maximum
    assert (reached - worst) / (best - worst) > 0.99


def test_a_unit_silent_on_grey_is_still_maximised_from_the_default_noise_start():
    # unit = mean_ij relu(sum_c x_c - 3) on normalised images: negative everywhere on a grey image
    # (grey 0.5 normalises to 0.07, 0.20, 0.42), so a near-grey start has no gradient and never moves.
    # The closed-form maximum over [0, 1] images is the white image: sum_c (1 - mean_c) / std_c - 3.
    conv = nn.Conv2d(3, 1, 1)
    with torch.no_grad():
        conv.weight.fill_(1.0)
        conv.bias.fill_(-3.0)
    model = nn.Sequential(conv, nn.ReLU())
    obj = ChannelObjective("1", 0)
    white = obj(model, normalize(torch.ones(1, 3, 8, 8))).item()
    assert white == pytest.approx(sum((1 - m) / s for m, s in zip((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))) - 3, abs=1e-4)
    assert obj(model, normalize(torch.full((1, 3, 8, 8), 0.5))).item() == 0.0
    stuck = maximize(model, obj, 8, steps=60, init_std=0.01)
    assert obj(model, normalize(stuck)).item() == 0.0  # the old near-grey start: no gradient, no progress
    out = maximize(model, obj, 8)  # the defaults, regularisers included
    assert obj(model, normalize(out)).item() > 0.9 * white
