import pytest
import torch

from xbyol.text import sentence_model
from xbyol.text.cache import TextFeatureTable, build_text_table
from xbyol.text.sentence_model import (
    BUNDLED_MODEL,
    embedding_cache_dir,
    encode_frozen,
    load_sentence_model,
)

CAPTIONS = ["a small red circle", "a large blue star on the left", "a small red circle", "a green cross"]


@pytest.mark.slow  # first use imports sentence-transformers (~5-10 s)
def test_cached_features_equal_fresh_encodings(tmp_path, monkeypatch):
    table = build_text_table(CAPTIONS, BUNDLED_MODEL, cache_dir=tmp_path)
    assert table.texts == sorted(set(CAPTIONS))  # deduplicated
    assert len(list(tmp_path.glob("*.pt"))) == 1
    fresh_model = load_sentence_model(BUNDLED_MODEL)  # a separate instance, one text at a time
    fresh = torch.cat([encode_frozen(fresh_model, [t]) for t in CAPTIONS])
    assert torch.allclose(table.lookup(CAPTIONS), fresh, atol=1e-5)

    # a second build reads the disk cache and encodes nothing
    def boom(*a, **k):
        raise AssertionError("encoded again instead of reading the cache")

    monkeypatch.setattr(sentence_model, "encode_texts", boom)
    again = build_text_table(list(reversed(CAPTIONS)), BUNDLED_MODEL, cache_dir=tmp_path)
    assert again.texts == table.texts and torch.equal(again.features, table.features)


def test_unknown_texts_are_encoded_on_use(tmp_path):
    table = build_text_table(CAPTIONS, BUNDLED_MODEL, cache_dir=tmp_path)
    new = "a purple square at the bottom"
    got = table.lookup([CAPTIONS[1], new, CAPTIONS[1]])
    ref = encode_frozen(load_sentence_model(BUNDLED_MODEL), [new])[0]
    assert torch.allclose(got[1], ref, atol=1e-5)
    assert torch.equal(got[0], got[2]) and new in table.extra


def test_table_validation_and_deepcopy_shares():
    import copy

    t = TextFeatureTable("m", ["a", "b"], torch.eye(2))
    assert copy.deepcopy(t) is t
    assert t.lookup(["b", "a"]).tolist() == [[0.0, 1.0], [1.0, 0.0]]
    with pytest.raises(ValueError, match="distinct"):
        TextFeatureTable("m", ["a", "a"], torch.eye(2))
    with pytest.raises(ValueError, match="no caption"):
        build_text_table([], BUNDLED_MODEL)


def test_cache_dir_env(monkeypatch, tmp_path):
    monkeypatch.setenv("XBYOL_CACHE_DIR", str(tmp_path))
    assert embedding_cache_dir() == tmp_path / "embeddings"
    assert embedding_cache_dir(tmp_path / "x") == tmp_path / "x"
