import pytest
import torch

from xbyol.config import CrossModalCfg
from xbyol.text.encoders import (
    FinetuneTextEncoder,
    FrozenTextEncoder,
    ResidualAdapter,
    ScratchTextEncoder,
    build_text_encoder,
    mean_pool,
)
from xbyol.text.sentence_model import (
    BUNDLED_MODEL,
    encode_frozen,
    shared_sentence_model,
)

CAPTIONS = ["a small red circle at the top", "a large blue star on the left and a small green cross"]


def test_adapter_starts_as_identity():
    a = ResidualAdapter(6, 12)
    x = torch.randn(3, 6)
    assert torch.equal(a(x), x)


def test_mean_pool_hand_computed():
    tokens = torch.tensor([[[1.0, 2.0], [3.0, 4.0], [100.0, 100.0]]])
    mask = torch.tensor([[1, 1, 0]])
    assert mean_pool(tokens, mask).tolist() == [[2.0, 3.0]]


@pytest.mark.slow  # loads MiniLM twice (~5-10 s)
def test_finetune_matches_sentence_transformers_and_trains_last_layer_only():
    enc = FinetuneTextEncoder(BUNDLED_MODEL, trainable_layers=1)
    enc.eval()
    with torch.no_grad():
        ours = enc(CAPTIONS)
    ref = encode_frozen(shared_sentence_model(BUNDLED_MODEL), CAPTIONS)  # the library's own pipeline
    assert torch.allclose(ours, ref, atol=1e-5)

    enc.train()
    assert not enc.bert.encoder.layer[0].training and enc.bert.encoder.layer[-1].training
    enc(CAPTIONS).sum().backward()
    trainable = {n for n, p in enc.named_parameters() if p.requires_grad}
    assert trainable and all(n.startswith("bert.encoder.layer.5.") for n in trainable)
    assert all(p.grad is None for n, p in enc.named_parameters() if n not in trainable)
    with pytest.raises(ValueError, match="finetune_layers"):
        FinetuneTextEncoder(BUNDLED_MODEL, trainable_layers=7)


def test_scratch_vocabulary_and_padding_invariance():
    torch.manual_seed(0)
    enc = ScratchTextEncoder(CAPTIONS, BUNDLED_MODEL, width=16, layers=1, heads=2).eval()
    ids, mask = enc.tokenize(["a small red circle", "zebra"])
    assert ids[1, 1].item() == ScratchTextEncoder.UNK  # "zebra" is not in the training captions
    assert (ids[~mask] == ScratchTextEncoder.PAD).all()
    assert enc.embed.num_embeddings < 40  # sub-vocabulary, not the 30522 MiniLM tokens
    with torch.no_grad():
        alone = enc(["a red circle"])
        batched = enc(["a red circle", CAPTIONS[1]])
    assert torch.allclose(alone[0], batched[0], atol=1e-5)  # padding does not leak
    assert enc.out_dim == 16 and batched.shape == (2, 16)


def test_build_text_encoder_kinds(tmp_path, monkeypatch):
    monkeypatch.setenv("XBYOL_CACHE_DIR", str(tmp_path))
    frozen = build_text_encoder(CrossModalCfg(text_adapter_hidden=8), CAPTIONS)
    assert isinstance(frozen, FrozenTextEncoder) and frozen.out_dim == 384
    assert len(frozen.table) == 2 and (tmp_path / "embeddings").is_dir()
    scratch = build_text_encoder(CrossModalCfg(text_encoder="scratch", scratch_width=16, scratch_heads=2), CAPTIONS)
    assert isinstance(scratch, ScratchTextEncoder)
