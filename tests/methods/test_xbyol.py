"""Explainable BYOL: the loss is BYOL + lambda * semantic, unlabelled images train BYOL only,
the concept mode returns attention weights, and a short run on shapes learns concepts."""

from __future__ import annotations

import math

import pytest
import torch
from hand_worked import FixedViews, flat, linear
from torch import nn

from xbyol.concepts.attention import ConceptAttention
from xbyol.rundir import CONCEPT_MAP, RunDir
from xbyol.text import sentence_model

E = 48  # width of the fake text embeddings


def fake_encode(model, texts, batch_size=64):
    """Deterministic, nearly orthogonal unit vectors instead of MiniLM (no model load)."""
    rows = []
    for t in texts:
        g = torch.Generator().manual_seed(sum(ord(c) * (i + 1) for i, c in enumerate(t)))
        rows.append(torch.randn(E, generator=g))
    return torch.nn.functional.normalize(torch.stack(rows), dim=-1)


@pytest.fixture
def fake_text(monkeypatch, tmp_path):
    # a cache of its own: fake embeddings must not meet real MiniLM ones cached by other tests
    monkeypatch.setenv("XBYOL_CACHE_DIR", str(tmp_path / "fake-text-cache"))
    monkeypatch.setattr(sentence_model, "encode_texts", fake_encode)


def _cfg(tiny_cfg, **over):
    from xbyol.config import from_dict, to_dict

    d = to_dict(tiny_cfg)
    d["method"]["name"] = "xbyol"
    return from_dict(d, over)


def _method_and_batch(cfg):
    from xbyol.config import DataCfg
    from xbyol.data import create_dataset
    from xbyol.data.base import collate
    from xbyol.methods import create_method

    ds = create_dataset(DataCfg(name="shapes", num_train=64, image_size=cfg.data.image_size), "train")
    torch.manual_seed(0)
    return create_method(cfg, ds), collate([ds[i] for i in range(16)])


def test_every_part_gets_a_gradient_and_the_bank_is_a_buffer(tiny_cfg, fake_text):
    method, batch = _method_and_batch(_cfg(tiny_cfg, **{"method.semantic.weight": 0.7}))
    out = method.training_step(batch)
    assert out["labelled_fraction"].item() == 1.0
    out["loss"].backward()
    for name in ("concept_head.weight", "attention.gate.weight", "attention.log_scale", "backbone.stem.0.weight"):
        p = dict(method.named_parameters()).get(name)
        if p is None:  # backbone naming is not this test's business: take its first parameter
            p = next(method.backbone.parameters())
        assert p.grad is not None and p.grad.abs().sum() > 0, name
    assert "concept_embeddings" in method.state_dict()
    assert not any(n.startswith("concept_embeddings") for n, _ in method.named_parameters())


# ----------------------------------------------------------------------------- a case worked by hand
#
# The method's networks are swapped for fixed linear maps, so every number below follows from
# the formulas alone: the backbone is the mean colour of an image ([B, 3, H, W] -> [B, 3]), the
# projector (online and target) keeps (r, g), the predictor swaps the two coordinates, the
# concept head is the identity and the bank is two orthonormal concepts e_0 = (1, 0), e_1 = (0, 1).

T = 0.5  # semantic temperature
SQRT2 = math.sqrt(2.0)


class MeanColour(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean(dim=(2, 3))  # (B, 3)


# view 1: mean colours (3, 4, 0) and (1, 0, 0); view 2: (0, 5, 0) and (1, 1, 0)
V1, V2 = flat([(3, 4, 0), (1, 0, 0)]), flat([(0, 5, 0), (1, 1, 0)])
# online projections z1 = (3, 4), (1, 0); z2 = (0, 5), (1, 1); predictions p = swap(z):
# p1 = (4, 3), (0, 1); p2 = (5, 0), (1, 1). The targets are z (same maps, EMA of identical weights).
# image 0: 2 - 2cos((4, 3), (0, 5)) + 2 - 2cos((5, 0), (3, 4)) = 2 - 1.2 + 2 - 1.2 = 1.6
# image 1: 2 - 2cos((0, 1), (1, 1)) + 2 - 2cos((1, 1), (1, 0)) = 2 (2 - sqrt 2)
BYOL_BY_HAND = (1.6 + 2 * (2 - SQRT2)) / 2


def _hand_method(tiny_cfg, **over):
    method, _ = _method_and_batch(_cfg(tiny_cfg, **{"method.semantic.temperature": T, "aug.normalize": False, **over}))
    method.backbone, method.target_backbone = MeanColour(), MeanColour()
    method.projector, method.target_projector = linear([[1, 0, 0], [0, 1, 0]]), linear([[1, 0, 0], [0, 1, 0]])
    method.predictor = linear([[0, 1], [1, 0]])
    method.concept_head = linear([[1, 0], [0, 1]])
    method.concept_embeddings = torch.eye(2)
    if method.attention is not None:
        method.attention = ConceptAttention(2, init_temperature=T)  # gate 0.5, alpha = softmax(cos / T)
    method.views = FixedViews(V1, V2)
    method._bank_saved = True  # the swapped bank no longer matches the texts: nothing to save
    # clean images (uint8, scaled by 1/255): mean colours (1, 0, 0) and (0.2, 0.4, 0)
    return method, {"image": flat([(255, 0, 0), (51, 102, 0)], torch.uint8)}


def _contrastive(cos_pos: float, cos_neg: float) -> float:
    """-log softmax over two concepts at the positive one: log(1 + exp((cos_neg - cos_pos) / T))."""
    return math.log1p(math.exp((cos_neg - cos_pos) / T))


def _fused_cosines(u: tuple[float, float]) -> tuple[float, float]:
    """Cosines with e_0, e_1 of z_hat = 0.5 u + 0.5 alpha, alpha = softmax(u / T), for a unit u (bank = I)."""
    a0 = 1.0 / (1.0 + math.exp((u[1] - u[0]) / T))
    f = (0.5 * u[0] + 0.5 * a0, 0.5 * u[1] + 0.5 * (1 - a0))
    n = math.hypot(*f)
    return f[0] / n, f[1] / n


def test_loss_worked_by_hand_views_contrastive_with_fusion(tiny_cfg, fake_text):
    method, batch = _hand_method(tiny_cfg, **{"method.semantic.input": "views", "method.semantic.weight": 0.7})
    method.labeler = lambda b: torch.tensor([[True, False], [False, True]])  # image 0 has e_0, image 1 has e_1
    out = method.training_step(batch)
    assert out["loss_byol"].item() == pytest.approx(BYOL_BY_HAND, rel=1e-6)
    # both views, targets repeated; unit z: (0.6, 0.8), (1, 0), (0, 1), (1, 1) / sqrt 2
    units = [(0.6, 0.8), (1.0, 0.0), (0.0, 1.0), (1 / SQRT2, 1 / SQRT2)]
    positive = [0, 1, 0, 1]
    sem_z = sum(_contrastive(u[k], u[1 - k]) for u, k in zip(units, positive)) / 4
    assert sem_z == pytest.approx((math.log1p(math.exp(0.4)) + 2 * math.log1p(math.exp(2)) + math.log(2)) / 4)
    fused = [_fused_cosines(u) for u in units]
    sem_fused = sum(_contrastive(c[k], c[1 - k]) for c, k in zip(fused, positive)) / 4
    assert out["loss_semantic_z"].item() == pytest.approx(sem_z, rel=1e-6)
    assert out["loss_semantic_fused"].item() == pytest.approx(sem_fused, rel=1e-6)
    assert out["loss_semantic"].item() == pytest.approx(0.5 * (sem_z + sem_fused), rel=1e-6)
    assert out["loss"].item() == pytest.approx(BYOL_BY_HAND + 0.7 * 0.5 * (sem_z + sem_fused), rel=1e-6)
    assert out["gate"].item() == pytest.approx(0.5)
    assert out["labelled_fraction"].item() == 1.0


def test_loss_worked_by_hand_clean_images_cosine_partly_labelled(tiny_cfg, fake_text):
    method, batch = _hand_method(tiny_cfg, **{"method.semantic.input": "clean", "method.semantic.loss": "cosine",
                                              "method.semantic.fusion": False, "method.semantic.weight": 2.0})
    method.labeler = lambda b: torch.tensor([[False, False], [True, True]])  # image 0 unlabelled
    out = method.training_step(batch)
    assert out["loss_byol"].item() == pytest.approx(BYOL_BY_HAND, rel=1e-6)
    # the semantic term sees the clean image 1 only: unit (0.2, 0.4) = (1, 2) / sqrt 5, both concepts positive
    sem = -(1 / math.sqrt(5) + 2 / math.sqrt(5)) / 2
    assert out["loss_semantic"].item() == pytest.approx(sem, rel=1e-6)
    assert out["loss"].item() == pytest.approx(BYOL_BY_HAND + 2.0 * sem, abs=1e-6)  # float32 sum
    assert out["labelled_fraction"].item() == 0.5
    assert out["embed/concept"].shape == (2, 2)


def test_unlabelled_images_train_byol_only(tiny_cfg, fake_text):
    method, batch = _hand_method(tiny_cfg)
    method.labeler = lambda b: torch.zeros(2, 2, dtype=torch.bool)
    out = method.training_step(batch)
    assert out["loss_semantic"].item() == 0.0
    assert out["loss"].item() == pytest.approx(BYOL_BY_HAND, rel=1e-6)
    assert out["labelled_fraction"].item() == 0.0


def test_cosine_form_and_no_fusion(tiny_cfg, fake_text):
    method, batch = _method_and_batch(_cfg(tiny_cfg, **{"method.semantic.loss": "cosine", "method.semantic.fusion": False,
                                                        "method.semantic.input": "views"}))
    assert method.attention is None
    out = method.training_step(batch)
    assert -1.0 <= out["loss_semantic"].item() <= 1.0  # a mean of negative cosines
    assert out["embed/concept"].shape == (32, E)  # both views


def test_concept_mode_encoding(tiny_cfg, fake_text):
    from xbyol.augment import preprocess

    method, batch = _method_and_batch(_cfg(tiny_cfg))
    method.eval()
    x = preprocess(batch["image"])
    assert method.encode(x).shape == (16, method.backbone.num_features)
    fused, alpha = method.encode(x, concept_mode=True)
    assert fused.shape == (16, E) and alpha.shape == (16, len(method.bank))
    assert torch.allclose(alpha.sum(-1), torch.ones(16), atol=1e-5)
    gate = method.concept_encoding(x).gate
    assert bool((gate > 0).all() and (gate < 1).all())


def test_dataset_without_any_known_concept_is_a_clear_error(tiny_cfg, fake_text, tmp_path):
    from xbyol.data.base import SampleDataset
    from xbyol.methods.xbyol import XBYOL

    class Unlabelled(SampleDataset):  # class names only, no vocabulary, no captions
        class_names = ["cat", "dog"]

    f = tmp_path / "concepts.txt"
    f.write_text("zebra\ngiraffe\n")
    cfg = _cfg(tiny_cfg, **{"method.semantic.concepts_file": str(f)})
    with pytest.raises(ValueError, match="none of the 2 concepts"):
        XBYOL(cfg, Unlabelled())


# ----------------------------------------------------------------------------- a short run


@pytest.fixture(scope="module")
def short_runs(tmp_path_factory, tiny_overrides):
    """A 30-step xbyol run and a 2-step byol run on 24 px shapes (fake text embeddings)."""
    from xbyol.config import from_dict
    from xbyol.training import train

    mp = pytest.MonkeyPatch()
    root = tmp_path_factory.mktemp("xbyol_runs")
    mp.setenv("XBYOL_CACHE_DIR", str(root / "cache"))
    mp.setattr(sentence_model, "encode_texts", fake_encode)
    base = dict(tiny_overrides, **{"out_dir": str(root), "data.image_size": 24, "data.num_train": 256,
                                   "data.num_test": 128, "data.batch_size": 32, "train.lr": 3e-3})
    runs = {}
    try:
        runs["xbyol"] = train(from_dict({}, dict(base, **{"name": "x", "method.name": "xbyol", "train.steps": 30})))
        runs["byol"] = train(from_dict({}, dict(base, **{"name": "b", "method.name": "byol", "train.steps": 2})))
        yield runs
    finally:
        mp.undo()


@pytest.mark.slow
def test_short_run_learns_concepts_above_chance(short_runs, fake_text):
    from xbyol.eval.concept_eval import concept_scores
    from xbyol.run import load_run

    run = load_run(short_runs["xbyol"])
    assert (short_runs["xbyol"] / "concepts.json").is_file()
    res = concept_scores(run)
    assert res["map"] == "learned"
    acc = res["concept_accuracy"]
    groups = ("shape", "colour", "size", "position")
    excess = sum(acc[g] - acc[f"{g}_chance"] for g in groups) / len(groups)
    assert excess > 0.04, acc  # 30 steps on 256 images: about +0.09 over chance on average
    assert acc["colour"] > acc["colour_chance"], acc
    assert res["scs_margin"] > 0
    assert set(res["sscs"]) == {"shape", "colour", "size", "position", "mean"}
    assert 0.0 <= res["sscs"]["mean"] <= 1.0
    for variant in ("sscs", "sscs_concepts", "sscs_gt_foreground", "sscs_gt_foreground_concepts"):
        # random maps stay below the ground truth pooled to the same resolution
        assert res[f"{variant}_chance"]["mean"] < res[f"{variant}_ceiling"]["mean"] <= 1.0, variant
    assert res["sscs_gt_foreground"]["mean"] > res["sscs_gt_foreground_concepts"]["mean"]  # background IoU is 1


@pytest.mark.slow
def test_explain_embedding_for_xbyol_and_byol_runs(short_runs, fake_text):
    import xbyol.concepts as concepts
    from xbyol.run import load_run

    for name in ("xbyol", "byol"):
        run = load_run(short_runs[name])
        images = torch.stack([run.dataset("test")[i]["image"] for i in range(3)])
        out = concepts.explain_embedding(run, images, top_k=4)
        assert len(out) == 3 and all(len(row) == 4 for row in out)
        for row in out:
            weights = [w for _, w in row]
            assert weights == sorted(weights, reverse=True) and 0 < sum(weights) <= 1 + 1e-6
            assert all(c in run.dataset("train").concept_names for c, _ in row)
    byol = RunDir(short_runs["byol"])
    assert len(list(byol.cache_dir().glob(CONCEPT_MAP.replace(".pt", "-*.pt")))) == 1  # cached outside the run dir
    assert not (byol.root / CONCEPT_MAP).exists()


@pytest.mark.slow
def test_concepts_command_prints_top_concepts(short_runs, fake_text, tmp_path, capsys):
    from PIL import Image

    from xbyol.cli import main

    png = tmp_path / "img.png"
    Image.new("RGB", (40, 30), (173, 35, 35)).save(png)
    assert main(["concepts", str(short_runs["xbyol"]), str(png), "--indices", "0", "-k", "3"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == str(png) and lines[4].startswith("test[0] (")
    weights = [float(line.split()[0]) for line in lines[1:4]]
    assert weights == sorted(weights, reverse=True)
    assert main(["concepts", str(short_runs["xbyol"])]) == 2  # nothing to explain: a clear error


@pytest.mark.slow
def test_explain_embedding_top_concept_is_faithful(short_runs, fake_text):
    """Removing the top concept's direction from the representation lowers that concept's weight,
    and the retrieval of images that have it, more than removing a random concept's direction."""
    from xbyol.explain.concept_faithfulness import explanation_faithfulness
    from xbyol.run import load_run

    r = explanation_faithfulness(load_run(short_runs["xbyol"]))
    # measured (30 steps, 256 images): weight drop 0.023 vs 0.0065 (top wins on 69% of images),
    # AP drop 0.125 vs 0.016 over 13 concepts
    assert r["images"] > 100 and r["concepts"] >= 3
    assert r["score_drop_top"] > r["score_drop_random"]
    assert r["score_top_wins"] > 0.5
    assert r["ap_drop_top"] > r["ap_drop_random"]


def test_byol_weight_zero_trains_the_semantic_loss_alone(tiny_cfg, fake_text):
    """method.semantic.byol_weight=0: the predictor (used only by the BYOL term) gets no gradient,
    the encoder still does; at 1 the predictor is trained."""
    for byol_weight, predictor_trained in ((0.0, False), (1.0, True)):
        method, batch = _method_and_batch(_cfg(tiny_cfg, **{"method.semantic.byol_weight": byol_weight}))
        method.training_step(batch)["loss"].backward()
        grads = {n: p.grad for n, p in method.named_parameters()}
        predictor = [g for n, g in grads.items() if n.startswith("predictor.")]
        assert predictor
        assert any(g is not None and g.abs().sum() > 0 for g in predictor) is predictor_trained
        assert any(g is not None and g.abs().sum() > 0 for n, g in grads.items() if n.startswith("backbone."))
