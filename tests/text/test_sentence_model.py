import pytest
import torch

from xbyol.text.sentence_model import (
    BUNDLED_MODEL,
    encode_frozen,
    model_fingerprint,
    resolve_model_dir,
    shared_sentence_model,
)


def test_resolve_bundled_and_errors(tmp_path):
    path = resolve_model_dir(BUNDLED_MODEL)
    assert (path / "model.safetensors").is_file() and (path / "tokenizer.json").is_file()
    assert resolve_model_dir(path) == path  # a local directory is accepted as it is
    with pytest.raises(FileNotFoundError, match="never downloaded"):
        resolve_model_dir("sentence-transformers/all-mpnet-base-v2")
    with pytest.raises(FileNotFoundError, match="no weights file"):
        model_fingerprint(tmp_path)


def test_encode_frozen_unit_norm_and_semantics():
    model = shared_sentence_model(BUNDLED_MODEL)
    emb = encode_frozen(model, ["a small red circle", "a small red circle", "a tiny crimson disc", "quarterly tax report"])
    assert emb.shape == (4, 384)
    assert torch.allclose(emb.norm(dim=1), torch.ones(4), atol=1e-5)
    assert torch.allclose(emb[0], emb[1], atol=1e-6)
    assert emb[0] @ emb[2] > emb[0] @ emb[3]  # a real sentence encoder, not random weights
    assert shared_sentence_model(BUNDLED_MODEL) is model
