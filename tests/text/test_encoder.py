import pytest
import torch

from xbyol.text.encoder import (
    BUNDLED_MODEL,
    encode_frozen,
    mean_pool,
    model_fingerprint,
    resolve_text_model,
    shared_sentence_model,
)


def test_resolve_bundled_and_errors(tmp_path):
    path = resolve_text_model(BUNDLED_MODEL)
    assert (path / "model.safetensors").is_file() and (path / "tokenizer.json").is_file()
    assert resolve_text_model(path) == path  # a local directory is accepted as it is
    with pytest.raises(FileNotFoundError, match="never downloaded"):
        resolve_text_model("sentence-transformers/all-mpnet-base-v2")
    with pytest.raises(FileNotFoundError, match="no weights file"):
        model_fingerprint(tmp_path)


def test_mean_pool_hand_computed():
    tokens = torch.tensor([[[1.0, 2.0], [3.0, 4.0], [100.0, 100.0]]])
    mask = torch.tensor([[1, 1, 0]])
    assert mean_pool(tokens, mask).tolist() == [[2.0, 3.0]]


def test_encode_frozen_unit_norm_and_semantics():
    model = shared_sentence_model(BUNDLED_MODEL)
    emb = encode_frozen(model, ["a small red circle", "a small red circle", "a tiny crimson disc", "quarterly tax report"])
    assert emb.shape == (4, 384)
    assert torch.allclose(emb.norm(dim=1), torch.ones(4), atol=1e-5)
    assert torch.allclose(emb[0], emb[1], atol=1e-6)
    assert emb[0] @ emb[2] > emb[0] @ emb[3]  # a real sentence encoder, not random weights
    assert shared_sentence_model(BUNDLED_MODEL) is model
