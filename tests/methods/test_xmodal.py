import math
import warnings

import pytest
import torch
from hand_worked import FixedViews, flat, linear
from torch import nn

from xbyol.config import DataCfg, from_dict
from xbyol.data import collate, create_dataset
from xbyol.methods.clip import CLIP
from xbyol.methods.xmodal import CollapseWarning, CrossModalBYOL

SMALL = {
    "data.num_train": 64,
    "model.backbone": "resnet10_16",
    "method.crossmodal.embed_dim": 16,
    "method.crossmodal.hidden": 32,
    "method.crossmodal.text_adapter_hidden": 32,
    "train.monitor_every": 1,
}


def _cfg(**over):
    return from_dict({}, {**SMALL, "method.name": "xmodal", **over})


@pytest.fixture(scope="module")
def shapes():
    return create_dataset(DataCfg(name="shapes", num_train=64, image_size=32), "train")


def _batch(ds, n=16):
    return collate([ds[i] for i in range(n)])


def _step(method, batch):
    out = method.training_step(batch)
    out["loss"].backward()
    return out


@pytest.mark.parametrize("encoder", ["frozen", "scratch"])
def test_gradients_do_not_reach_targets(shapes, encoder):
    torch.manual_seed(0)
    cfg = _cfg(**{
        "method.crossmodal.text_encoder": encoder,
        "method.crossmodal.image_intra_weight": 0.5,
        "method.crossmodal.text_intra_weight": 0.5,
    })
    m = CrossModalBYOL(cfg, shapes)
    out = _step(m, _batch(shapes))
    assert {"loss_xmodal", "loss_i2t", "loss_t2i", "loss_image", "loss_text"} <= set(out)
    targets = [m.target_backbone, m.target_image_projector, m.target_text_encoder, m.target_text_projector]
    for t in targets:
        for p in t.parameters():
            assert not p.requires_grad and p.grad is None
    for online in [m.backbone, m.image_projector, m.image_predictor, m.text_encoder, m.text_projector, m.text_predictor]:
        assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in online.parameters())
    assert out["embed/image"].shape == out["embed/text"].shape == (16, 16)
    assert not out["embed/image"].requires_grad


def test_frozen_encoder_keeps_minilm_out_of_parameters_and_state(shapes):
    m = CrossModalBYOL(_cfg(), shapes)
    n_trainable = sum(p.numel() for p in m.parameters() if p.requires_grad)
    assert n_trainable < 2_000_000  # MiniLM alone has 22.7M
    keys = list(m.state_dict())
    assert not any("bert" in k or "auto_model" in k for k in keys)
    assert m.target_text_encoder.table is m.text_encoder.table  # shared, not copied
    fresh = CrossModalBYOL(_cfg(), shapes)
    fresh.load_state_dict(m.state_dict())  # strict round trip


def test_ema_update_moves_targets_toward_online(shapes):
    m = CrossModalBYOL(_cfg(), shapes)
    with torch.no_grad():
        for p in m.text_projector.parameters():
            p.add_(1.0)
    online = torch.cat([p.flatten() for p in m.text_projector.parameters()])
    before = torch.cat([p.flatten() for p in m.target_text_projector.parameters()])
    logs = m.after_optimizer_step(0.75)
    after = torch.cat([p.flatten() for p in m.target_text_projector.parameters()])
    tau = logs["tau"]
    assert tau == 0.75
    assert torch.allclose(after, tau * before + (1 - tau) * online, atol=1e-6)


def test_retrieval_embeddings_score_the_trained_cosines(shapes):
    torch.manual_seed(0)
    m = CrossModalBYOL(_cfg(), shapes).eval()
    from xbyol.augment import preprocess

    b = _batch(shapes, 8)
    x = preprocess(b["image"])
    ei, et = m.embed_images(x), m.embed_texts(b["caption"])
    assert ei.shape == et.shape == (8, 32)
    assert torch.allclose(ei.norm(dim=1), torch.ones(8), atol=1e-5)
    with torch.no_grad():
        p_img = m.image_predictor(m.image_projector(m.backbone(x)))
        zt_txt = m.target_text_projector(m.target_text_encoder(b["caption"]))
        zt_img = m.target_image_projector(m.target_backbone(x))
        p_txt = m.text_predictor(m.text_projector(m.text_encoder(b["caption"])))
    cos = torch.nn.functional.cosine_similarity
    expected = 0.5 * (cos(p_img[:, None], zt_txt[None], dim=-1) + cos(zt_img[:, None], p_txt[None], dim=-1))
    assert torch.allclose(ei @ et.T, expected, atol=1e-5)
    assert torch.allclose(m.encode(x), m.backbone(x))


def test_collapse_warning(shapes):
    m = CrossModalBYOL(_cfg(), shapes)
    with pytest.warns(CollapseWarning, match="text embeddings are collapsing"):
        m.watch_collapse({"image": torch.randn(32, 16), "text": torch.ones(32, 16)})
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        m.watch_collapse({"image": torch.randn(32, 16), "text": torch.randn(32, 16)})


def test_collapse_warning_is_rate_limited(shapes):
    m = CrossModalBYOL(_cfg(**{"train.monitor_every": 3}), shapes)
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        for _ in range(6):
            m.watch_collapse({"text": torch.ones(8, 4)})
    assert sum(issubclass(w.category, CollapseWarning) for w in rec) == 2


def test_clip_same_towers_and_temperature(shapes):
    torch.manual_seed(0)
    cfg = _cfg(**{"method.name": "clip"})
    m = CLIP(cfg, shapes)
    assert m.log_logit_scale.item() == pytest.approx(math.log(1 / 0.07))
    assert not hasattr(m, "target_backbone") and not hasattr(m, "image_predictor")
    ref = CrossModalBYOL(_cfg(), shapes)
    shapes_of = lambda mod: [tuple(p.shape) for p in mod.parameters()]  # noqa: E731
    for name in ("backbone", "text_encoder", "image_projector", "text_projector"):
        assert shapes_of(getattr(m, name)) == shapes_of(getattr(ref, name))
    out = _step(m, _batch(shapes))
    assert m.log_logit_scale.grad is not None and out["loss"].item() > 0
    with torch.no_grad():
        m.log_logit_scale.fill_(10.0)
    logs = m.after_optimizer_step(0.996)
    assert logs["logit_scale"] == pytest.approx(100.0, rel=1e-5)
    from xbyol.augment import preprocess

    m.eval()
    b = _batch(shapes, 4)
    assert torch.allclose(m.embed_images(preprocess(b["image"])).norm(dim=1), torch.ones(4), atol=1e-5)


def test_mild_crop_only_in_training(shapes):
    m = CrossModalBYOL(_cfg(**{"method.crossmodal.image_aug": "crop"}), shapes)
    imgs = _batch(shapes, 4)["image"]
    from xbyol.augment import preprocess

    m.eval()
    assert torch.equal(m.paired_images(imgs), preprocess(imgs))
    m.train()
    assert m.paired_images(imgs).shape == (4, 3, 32, 32)


def _backbone_grad(method, batch) -> torch.Tensor:
    method.zero_grad(set_to_none=True)
    method.training_step(batch)["loss"].backward()
    return torch.cat([p.grad.flatten() for p in method.backbone.parameters() if p.grad is not None])


def test_shuffling_captions_changes_the_image_branch_gradient(shapes):
    """Cross-modal coupling: the image branch learns from *its* caption. A loss written as a
    sum of per-modality terms would give the same image gradient whatever the captions."""
    torch.manual_seed(0)
    m = CrossModalBYOL(_cfg(), shapes)  # image_aug none, no intra-modal terms
    batch = _batch(shapes)
    paired = _backbone_grad(m, batch)
    rolled = dict(batch, caption=list(batch["caption"][1:]) + [batch["caption"][0]])  # same images, wrong captions
    assert sum(a != b for a, b in zip(batch["caption"], rolled["caption"])) >= 12
    shuffled = _backbone_grad(m, rolled)
    perm = torch.randperm(16, generator=torch.Generator().manual_seed(1))
    reordered = dict(batch, image=batch["image"][perm], caption=[batch["caption"][i] for i in perm])
    same_pairs = _backbone_grad(m, reordered)  # the same pairs in another order
    scale = paired.norm()
    assert scale > 0
    assert (shuffled - paired).norm() > 0.5 * scale  # measured 1.55 x
    assert (same_pairs - paired).norm() < 1e-4 * scale  # measured 3e-6 x (float32 reordering)


# ----------------------------------------------------------------------------- a case worked by hand
#
# The towers are swapped for fixed linear maps, so every number follows from the formulas alone.
# Image tower: mean colour [B, 3, H, W] -> [B, 3], projector (online and target) keeps (r, g),
# predictor swaps the coordinates. Text tower: a lookup table of 2-d vectors, identity projector,
# predictor the shear (x, y) -> (x + y, y) (not orthogonal, so the two directions differ).

SQRT2, SQRT5 = math.sqrt(2.0), math.sqrt(5.0)
TEXT = {"red": (0.0, 1.0), "blue": (1.0, 1.0), "crimson": (1.0, 0.0), "navy": (0.0, 2.0)}


class MeanColour(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean(dim=(2, 3))  # (B, 3)


class Lookup(nn.Module):
    def forward(self, texts: list[str]) -> torch.Tensor:
        return torch.tensor([TEXT[t] for t in texts])  # (B, 2)


def test_loss_worked_by_hand(shapes):
    m = CrossModalBYOL(_cfg(**{"method.crossmodal.text_encoder": "scratch", "method.crossmodal.image_intra_weight": 0.5,
                               "method.crossmodal.text_intra_weight": 0.25}), shapes)
    m.backbone, m.target_backbone = MeanColour(), MeanColour()
    m.image_projector, m.target_image_projector = linear([[1, 0, 0], [0, 1, 0]]), linear([[1, 0, 0], [0, 1, 0]])
    m.image_predictor = linear([[0, 1], [1, 0]])
    m.text_encoder, m.target_text_encoder = Lookup(), Lookup()
    m.text_projector, m.target_text_projector = linear([[1, 0], [0, 1]]), linear([[1, 0], [0, 1]])
    m.text_predictor = linear([[1, 1], [0, 1]])
    m.views = FixedViews(flat([(3, 4, 0), (1, 0, 0)]), flat([(0, 5, 0), (1, 1, 0)]))
    m.paired_images = lambda images: images  # no preprocessing: the mean colours below are the inputs
    m.watch_collapse = lambda embeds: None  # two samples: no std to watch
    batch = {"image": flat([(3, 4, 0), (1, 0, 0)]), "caption": ["red", "blue"],
             "captions": [["red", "crimson"], ["blue", "navy"]]}  # the second text view is the other caption
    out = m.training_step(batch)
    # paired images: z_img = (3, 4), (1, 0); p_img = (4, 3), (0, 1)
    # captions: z_txt = (0, 1), (1, 1); p_txt = (1, 1), (2, 1)
    i2t = [2 - 2 * 0.6, 2 - SQRT2]  # 2 - 2cos(p_img, z_txt): cos((4, 3), (0, 1)), cos((0, 1), (1, 1))
    t2i = [2 - 1.4 * SQRT2, 2 - 4 / SQRT5]  # 2 - 2cos(p_txt, z_img): cos((1, 1), (3, 4)), cos((2, 1), (1, 0))
    assert out["loss_i2t"].item() == pytest.approx(sum(i2t) / 2, rel=1e-6)
    assert out["loss_t2i"].item() == pytest.approx(sum(t2i) / 2, rel=1e-6)
    xmodal = (sum(i2t) + sum(t2i)) / 2
    assert out["loss_xmodal"].item() == pytest.approx(xmodal, rel=1e-6)
    # image views: z1 = (3, 4), (1, 0), z2 = (0, 5), (1, 1); p = swap(z)
    # image 0: 2 - 2cos((4, 3), (0, 5)) + 2 - 2cos((5, 0), (3, 4)) = 1.6; image 1: 2 (2 - sqrt 2)
    image = (1.6 + 2 * (2 - SQRT2)) / 2
    assert out["loss_image"].item() == pytest.approx(image, rel=1e-6)
    # text views red/crimson and blue/navy: z1 = (0, 1), (1, 1), z2 = (1, 0), (0, 2);
    # p1 = (1, 1), (2, 1), p2 = (1, 0), (2, 2)
    # pair 0: 2 - 2cos((1, 1), (1, 0)) + 2 - 2cos((1, 0), (0, 1)) = 4 - sqrt 2
    # pair 1: 2 - 2cos((2, 1), (0, 2)) + 2 - 2cos((2, 2), (1, 1)) = 2 - 2 / sqrt 5
    text = (4 - SQRT2 + 2 - 2 / SQRT5) / 2
    assert out["loss_text"].item() == pytest.approx(text, rel=1e-6)
    assert out["loss"].item() == pytest.approx(xmodal + 0.5 * image + 0.25 * text, rel=1e-6)
