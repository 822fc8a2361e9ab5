"""BYOL's training step worked by hand: the symmetric 2 - 2cos loss of fixed linear networks, and the
interpretable layer's filter loss added with its weight."""

from __future__ import annotations

import math

import pytest
import torch
from hand_worked import FixedViews, flat, linear
from torch import nn

from xbyol.config import DataCfg, from_dict, to_dict
from xbyol.data import create_dataset
from xbyol.methods.byol import BYOL
from xbyol.models.interpretable import InterpretableBackbone

SQRT2 = math.sqrt(2.0)


class MeanRedGreen(nn.Module):
    """A backbone whose feature map is the mean (r, g) of an image: [B, 3, H, W] -> [B, 2, 1, 1]."""

    num_features = 2

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return x[:, :2].mean(dim=(2, 3), keepdim=True)  # (B, 2, 1, 1)

    def forward_head(self, f: torch.Tensor) -> torch.Tensor:
        return f.flatten(1)  # (B, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


# view 1: mean colours (3, 4, 0) and (1, 0, 0); view 2: (0, 5, 0) and (1, 1, 0)
V1, V2 = flat([(3, 4, 0), (1, 0, 0)]), flat([(0, 5, 0), (1, 1, 0)])
# representations = projections z1 = (3, 4), (1, 0); z2 = (0, 5), (1, 1); predictions p = swap(z):
# p1 = (4, 3), (0, 1); p2 = (5, 0), (1, 1). The targets are z (the same maps).
# image 0: 2 - 2cos((4, 3), (0, 5)) + 2 - 2cos((5, 0), (3, 4)) = 2 - 1.2 + 2 - 1.2 = 1.6
# image 1: 2 - 2cos((0, 1), (1, 1)) + 2 - 2cos((1, 1), (1, 0)) = 2 (2 - sqrt 2)
BYOL_BY_HAND = (1.6 + 2 * (2 - SQRT2)) / 2


def _identity_interpretable(weight: float) -> InterpretableBackbone:
    """MeanRedGreen under an interpretable 3x3 conv that passes its 1x1 maps through (centre tap 1)."""
    backbone = InterpretableBackbone(MeanRedGreen(), weight=weight)
    with torch.no_grad():
        backbone.interpretable.conv.weight.zero_()
        backbone.interpretable.conv.weight[:, :, 1, 1] = torch.eye(2)
    return backbone


def _method(tiny_cfg, interpretable: bool, weight: float = 0.0) -> BYOL:
    over = {"model.interpretable_layer": interpretable, "model.interpretable_weight": weight,
            "method.concat_views": True}
    cfg = from_dict(to_dict(tiny_cfg), over)
    method = BYOL(cfg, create_dataset(DataCfg(name="shapes", num_train=16, image_size=cfg.data.image_size), "train"))
    method.backbone = _identity_interpretable(weight) if interpretable else MeanRedGreen()
    method.target_backbone = MeanRedGreen()
    method.projector, method.target_projector = linear([[1, 0], [0, 1]]), linear([[1, 0], [0, 1]])
    method.predictor = linear([[0, 1], [1, 0]])
    method.views = FixedViews(V1, V2)
    return method


def _filter_loss_1x1(column: list[float]) -> float:
    """-MI(X; T) of one filter with 1x1 maps (Zhang et al. 2018): two templates, T+ = tau = 0.5 and T- = -tau,
    priors 1/2 each; p(x_b | T) = softmax over the batch of T * x_b."""
    tau = 0.5
    pos = [math.exp(tau * a) for a in column]
    neg = [math.exp(-tau * a) for a in column]
    pos = [v / sum(pos) for v in pos]
    neg = [v / sum(neg) for v in neg]
    mi = 0.0
    for p_pos, p_neg in zip(pos, neg):
        p_x = 0.5 * (p_pos + p_neg)
        mi += 0.5 * p_pos * math.log(p_pos / p_x) + 0.5 * p_neg * math.log(p_neg / p_x)
    return -mi


def test_byol_loss_worked_by_hand(tiny_cfg):
    out = _method(tiny_cfg, interpretable=False).training_step({"image": V1})
    assert out["loss_byol"].item() == pytest.approx(BYOL_BY_HAND, rel=1e-6)
    assert out["loss"].item() == pytest.approx(BYOL_BY_HAND, rel=1e-6)
    assert "loss_filter" not in out
    torch.testing.assert_close(out["embed/projection"], torch.tensor([[3.0, 4.0], [1.0, 0.0]]))


def test_interpretable_filter_loss_is_added_with_its_weight(tiny_cfg):
    out = _method(tiny_cfg, interpretable=True, weight=0.3).training_step({"image": V1})
    # the filter loss sees both views in one batch (concatenated): the red maps are 3, 1, 0, 1, the green 4, 0, 5, 1
    filt = 0.5 * (_filter_loss_1x1([3, 1, 0, 1]) + _filter_loss_1x1([4, 0, 5, 1]))
    assert filt < 0
    assert out["loss_filter"].item() == pytest.approx(0.3 * filt, rel=1e-5)
    assert out["loss_byol"].item() == pytest.approx(BYOL_BY_HAND, rel=1e-6)  # the 1x1 mask keeps a peak as it is
    assert out["loss"].item() == pytest.approx(BYOL_BY_HAND + 0.3 * filt, rel=1e-5)
