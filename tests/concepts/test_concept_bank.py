"""Concept bank: validation, cache (a hit never builds the text model), run-dir persistence,
and the bundled MiniLM (slow)."""

from __future__ import annotations

import hashlib

import pytest
import torch

from xbyol.concepts.bank import ConceptBank, apply_prompt
from xbyol.text import sentence_model


class FakeModel:
    """Stands in for SentenceTransformer: deterministic, deliberately non-unit embeddings."""

    def encode(self, texts, **kw):
        rows = []
        for t in texts:
            g = torch.Generator().manual_seed(int(hashlib.sha256(t.encode()).hexdigest()[:8], 16))
            rows.append(3.0 * torch.randn(6, generator=g))
        return torch.stack(rows)


@pytest.fixture
def fake_model(tmp_path, monkeypatch):
    """A local 'model directory' and a counting loader in place of sentence-transformers."""
    d = tmp_path / "fake-model"
    d.mkdir()
    (d / "model.safetensors").write_bytes(b"not really weights")
    calls = {"n": 0, "texts": []}

    def load(model, device="cpu"):
        calls["n"] += 1
        return FakeModel()

    monkeypatch.setattr(sentence_model, "shared_sentence_model", load)
    monkeypatch.setenv("XBYOL_CACHE_DIR", str(tmp_path / "cache"))
    return d, calls


def test_embeddings_are_unit_and_record_the_model(fake_model):
    d, calls = fake_model
    bank = ConceptBank.from_texts(["red", "circle"], model=str(d), groups={"colour": [0], "shape": [1]})
    assert bank.embeddings.shape == (2, 6)
    assert torch.allclose(bank.embeddings.norm(dim=-1), torch.ones(2))
    assert bank.model["weights_sha256"] == hashlib.sha256(b"not really weights").hexdigest()
    assert bank.model["model"] == str(d) and bank.groups == {"colour": [0], "shape": [1]}
    assert calls["n"] == 1


def test_cache_hit_does_not_construct_the_text_model(fake_model, monkeypatch):
    d, calls = fake_model
    first = ConceptBank.from_texts(["red", "circle"], model=str(d), prompt="a photo of something {}")

    def refuse(model, device="cpu"):
        raise AssertionError("the text model was constructed on a cache hit")

    monkeypatch.setattr(sentence_model, "shared_sentence_model", refuse)
    second = ConceptBank.from_texts(["red", "circle"], model=str(d), prompt="a photo of something {}")
    assert torch.equal(first.embeddings, second.embeddings)
    with pytest.raises(AssertionError, match="constructed"):  # another prompt is another key
        ConceptBank.from_texts(["red", "circle"], model=str(d), prompt="{}")


def test_prompt_is_applied_before_embedding(fake_model):
    d, _ = fake_model
    plain = ConceptBank.from_texts(["red"], model=str(d))
    prompted = ConceptBank.from_texts(["red"], model=str(d), prompt="a photo of something {}")
    direct = ConceptBank.from_texts(["a photo of something red"], model=str(d))
    assert torch.allclose(prompted.embeddings, direct.embeddings)
    assert not torch.allclose(prompted.embeddings, plain.embeddings)


def test_changed_weights_change_the_key(fake_model):
    d, calls = fake_model
    ConceptBank.from_texts(["red"], model=str(d))
    (d / "model.safetensors").write_bytes(b"other weights, other size")
    ConceptBank.from_texts(["red"], model=str(d))
    assert calls["n"] == 2


def test_clear_errors(fake_model, tmp_path):
    d, _ = fake_model
    with pytest.raises(ValueError, match="empty"):
        ConceptBank.from_texts([], model=str(d))
    with pytest.raises(ValueError, match="duplicate concept 'Red'"):
        ConceptBank.from_texts(["red", "Red"], model=str(d))
    with pytest.raises(FileNotFoundError, match="neither 'all-MiniLM-L6-v2'"):
        ConceptBank.from_texts(["red"], model=str(tmp_path / "no-such-model"))
    with pytest.raises(FileNotFoundError, match="no weights file"):
        ConceptBank.from_texts(["red"], model=str(tmp_path))
    with pytest.raises(ValueError, match="exactly once"):
        apply_prompt("a photo", ["red"])


def test_save_load_roundtrip_and_embed_known_texts_without_model(fake_model, tmp_path, monkeypatch):
    d, _ = fake_model
    bank = ConceptBank.from_texts(["red", "circle"], model=str(d), groups={"shape": [1]})
    bank.save(tmp_path / "run")
    monkeypatch.setattr(sentence_model, "shared_sentence_model", lambda *a, **k: (_ for _ in ()).throw(AssertionError))
    back = ConceptBank.load(tmp_path / "run")
    assert back.texts == bank.texts and back.groups == bank.groups and back.model == bank.model
    assert torch.equal(back.embeddings, bank.embeddings)
    assert torch.equal(back.embed(["Circle"]), bank.embeddings[1:2])
    with pytest.raises(KeyError, match="not in the bank"):
        back.index("square")


def test_embed_new_text_uses_the_same_model(fake_model):
    d, _ = fake_model
    bank = ConceptBank.from_texts(["red", "circle"], model=str(d))
    emb = bank.embed(["red circle", "red"])
    assert torch.allclose(emb[0], ConceptBank.from_texts(["red circle"], model=str(d)).embeddings[0])
    assert torch.equal(emb[1], bank.embeddings[0])


@pytest.mark.slow
def test_bundled_minilm_offline(tmp_path, monkeypatch):
    monkeypatch.setenv("XBYOL_CACHE_DIR", str(tmp_path))
    bank = ConceptBank.from_texts(["red circle", "red square", "a sleeping dog"])
    assert bank.embeddings.shape == (3, 384)
    assert torch.allclose(bank.embeddings.norm(dim=-1), torch.ones(3), atol=1e-5)
    cos = bank.embeddings @ bank.embeddings.T
    assert cos[0, 1] > cos[0, 2] + 0.2  # two red shapes are closer than a shape and a dog
    weights = sentence_model.bundled_model_dir() / "model.safetensors"
    assert bank.model["weights_sha256"] == hashlib.sha256(weights.read_bytes()).hexdigest()
    assert bank.model["model"] == "all-MiniLM-L6-v2"
