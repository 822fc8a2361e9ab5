import copy
import math

import pytest
import torch

from xbyol.models import create_backbone
from xbyol.models.interpretable import (
    InterpretableConv,
    entropy_of_prior,
    filter_loss,
    mask_features,
    position_masks,
    templates,
    wrap_interpretable,
)


def test_templates_2x2_by_hand():
    # n = 2, beta = 4: 1 - 4 d / 2 = 1 - 2d -> +1 at mu, -1 at d = 1, clamp(-3) = -1 at d = 2
    m = position_masks(2, 2)
    assert m[0].tolist() == [[1.0, -1.0], [-1.0, -1.0]]
    assert m[3].tolist() == [[-1.0, -1.0], [-1.0, 1.0]]
    t, prior = templates(2, 2)
    tau = 0.5 / 4
    assert t[0].tolist() == [[tau, -tau], [-tau, -tau]]
    assert t[4].tolist() == [[-tau, -tau], [-tau, -tau]]  # negative template
    # alpha = 4/5: each positive prior alpha/4 = 0.2 and the negative 1 - alpha = 0.2
    torch.testing.assert_close(prior, torch.full((5,), 0.2))
    # 3x3: 1 - 4 * 1 / 3 at distance 1
    assert position_masks(3, 3)[0, 0, 1].item() == pytest.approx(1 - 4 / 3)


def test_filter_loss_hand_computed_2x2():
    # X = {x1 = peak 4 at position 0, x2 = zeros}; tr(x1 . T_0) = 4 tau = 0.5, tr(x1 . T_other) = -0.5,
    # tr(x2 . T) = 0. So p(x1 | T_0) = s, p(x1 | T_other) = 1 - s with s = sigmoid(0.5);
    # p(x1) = 0.2 (4 - 3s), p(x2) = 0.2 (1 + 3s); MI = 0.2 sum_T sum_x p(x|T) log(p(x|T) / p(x)).
    s = 1 / (1 + math.exp(-0.5))
    p1, p2 = 0.2 * (4 - 3 * s), 0.2 * (1 + 3 * s)
    t0 = s * math.log(s / p1) + (1 - s) * math.log((1 - s) / p2)
    other = (1 - s) * math.log((1 - s) / p1) + s * math.log(s / p2)
    expected = -0.2 * (t0 + 4 * other)
    x = torch.zeros(2, 1, 2, 2, dtype=torch.float64)
    x[0, 0, 0, 0] = 4.0
    assert filter_loss(x).item() == pytest.approx(expected, abs=1e-12)
    # two filters, the second identical across images (MI 0): the mean halves the loss
    x2 = torch.cat([x, torch.ones(2, 1, 2, 2, dtype=torch.float64)], dim=1)
    assert filter_loss(x2).item() == pytest.approx(expected / 2, abs=1e-12)


def test_tau_scales_like_the_activations():
    # tr(x . T) is linear in x and in tau: tau = 10 * paper  <=>  10 x with the paper's tau
    x = torch.rand(6, 3, 4, 4, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    paper = 0.5 / 16
    assert filter_loss(x, tau=10 * paper).item() == pytest.approx(filter_loss(10 * x).item(), abs=1e-12)
    assert filter_loss(10 * x).item() < filter_loss(x).item()  # sharper likelihoods, more information
    assert wrap_interpretable(create_backbone("resnet10_16"), tau=0.5).interpretable.tau == 0.5


def test_filter_loss_bounds_and_direction():
    # identical maps carry no information: MI = 0
    assert filter_loss(torch.full((3, 2, 4, 4), 0.7)).item() == pytest.approx(0.0, abs=1e-6)
    # sharp peaks at distinct positions (and one empty image) -> lower loss than diffuse random maps
    peaks = torch.zeros(16, 1, 4, 4)
    for i in range(15):
        peaks[i, 0, i // 4, i % 4] = 50.0
    diffuse = torch.rand(16, 1, 4, 4, generator=torch.Generator().manual_seed(0))
    lp, ld = filter_loss(peaks).item(), filter_loss(diffuse).item()
    assert lp < ld < 0
    assert lp >= -entropy_of_prior(4, 4) - 1e-6
    with pytest.raises(ValueError, match=r"\[B, C, h, w\]"):
        filter_loss(torch.zeros(2, 4, 4))


def test_mask_features_by_hand():
    x = torch.tensor([[1.0, 2.0], [3.0, 0.0]]).view(1, 1, 2, 2)
    # argmax at (1, 0): mask +1 there, -1 elsewhere -> relu keeps only the peak
    assert mask_features(x)[0, 0].tolist() == [[0.0, 0.0], [3.0, 0.0]]
    y = torch.zeros(1, 1, 3, 3)
    y[0, 0, 1, 1], y[0, 0, 0, 1], y[0, 0, 0, 0] = 3.0, 2.0, 1.0
    # 3x3: distance 1 -> 1 - 4/3 < 0, so neighbours are removed too
    out = mask_features(y)[0, 0]
    assert out[1, 1].item() == 3.0 and out.sum().item() == 3.0


def test_wrapped_backbone_contract_and_loss_gradient():
    torch.manual_seed(0)
    bb = create_backbone("resnet10_16")
    net = wrap_interpretable(bb, weight=0.5)
    assert net.num_features == bb.num_features
    assert isinstance(net.feature_layer, InterpretableConv)
    assert net.stages is bb.stages
    with pytest.raises(RuntimeError, match="forward first"):
        net.aux_loss()
    x = torch.randn(4, 3, 32, 32)
    f = net.forward_features(x)
    assert f.shape == (4, bb.num_features, 4, 4) and (f >= 0).all()
    assert net(x).shape == (4, bb.num_features)
    aux = net.aux_loss()
    assert aux.item() == pytest.approx(0.5 * filter_loss(net.interpretable.last_activations).item())
    aux.backward()
    assert net.interpretable.conv.weight.grad.abs().sum() > 0
    assert bb.stem[0].weight.grad.abs().sum() > 0
    twin = copy.deepcopy(net)  # EMA targets deep-copy the backbone
    twin.load_state_dict(net.state_dict())
    with pytest.raises(ValueError, match="weight"):
        wrap_interpretable(create_backbone("resnet10_16"), weight=-1.0)


def test_filter_loss_under_bf16_autocast_keeps_float_precision():
    # activations like a trained layer's (peaks of ~100 over 8 x 8 maps) with tau = 0.5: scores of ~100,
    # which bf16 rounds to 0.5; the loss must match the float64 value and stay within [-H(T), 0]
    g = torch.Generator().manual_seed(0)
    x = torch.rand(128, 4, 8, 8, generator=g) ** 8 * 100
    exact = filter_loss(x.bfloat16().double(), tau=0.5).item()  # the same bf16 activations, in float64
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = filter_loss(x.bfloat16(), tau=0.5).item()
    assert got == pytest.approx(exact, abs=1e-3)
    assert -entropy_of_prior(8, 8) <= got <= 0
