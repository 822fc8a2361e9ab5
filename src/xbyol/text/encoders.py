"""Text encoders of the cross-modal methods: ``forward(list[str]) -> [B, out_dim]``.

- :class:`FrozenTextEncoder` (``text_encoder: frozen``, the default): the bundled
  all-MiniLM-L6-v2 kept frozen, its features read from a cached table
  (:mod:`xbyol.text.cache`), followed by a trainable residual adapter.
- :class:`FinetuneTextEncoder` (``finetune``): MiniLM with its last ``finetune_layers``
  transformer layers trained, mean-pooled and L2-normalised.
- :class:`ScratchTextEncoder` (``scratch``): a small transformer trained from scratch on
  the dataset's captions, tokenised with the MiniLM tokenizer over the sub-vocabulary
  the training captions use.
"""

from __future__ import annotations

import functools
import json
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from xbyol.text.cache import TextFeatureTable, build_text_table
from xbyol.text.sentence_model import load_sentence_model, offline, resolve_model_dir


class _Shared:
    """Holds an object that ``copy.deepcopy`` must share, not copy (tokenizers)."""

    def __init__(self, obj: Any) -> None:
        self.obj = obj

    def __deepcopy__(self, memo: dict) -> "_Shared":
        return self


def mean_pool(tokens: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """Mean of the token embeddings ``[B, T, E]`` over the unmasked positions -> ``[B, E]``."""
    mask = attention_mask.unsqueeze(-1).to(tokens.dtype)  # (B, T, 1)
    return (tokens * mask).sum(dim=1) / mask.sum(dim=1).clamp_min(1e-9)  # (B, E)


def _device_of(module: nn.Module) -> torch.device:
    for t in module.parameters():
        return t.device
    for t in module.buffers():  # type: ignore[assignment]  # a buffer, not a Parameter
        return t.device
    return torch.device("cpu")


class ResidualAdapter(nn.Module):
    """``x + W2 gelu(W1 LN(x))`` with ``W2`` zero-initialised: the identity at the start.

    Args:
        dim: feature width.
        hidden: hidden width.
    """

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)
        nn.init.zeros_(self.fc2.weight)
        nn.init.zeros_(self.fc2.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.fc2(F.gelu(self.fc1(self.norm(x))))  # (B, D)


class FrozenTextEncoder(nn.Module):
    """Frozen sentence-encoder features (cached) plus a trainable adapter.

    Args:
        table: cached features of the training captions (unknown texts are encoded on use).
        adapter_hidden: hidden width of the residual adapter.

    Attributes:
        out_dim: output width (the sentence encoder's, 384 for MiniLM).
    """

    def __init__(self, table: TextFeatureTable, adapter_hidden: int = 384) -> None:
        super().__init__()
        self.table = table
        self.out_dim = table.dim
        self.adapter = ResidualAdapter(table.dim, adapter_hidden)

    def features(self, texts: list[str]) -> torch.Tensor:
        """The frozen unit features ``[B, E]`` (no gradient)."""
        return self.table.lookup(texts, _device_of(self))

    def forward(self, texts: list[str]) -> torch.Tensor:
        return self.adapter(self.features(texts))  # (B, E)


def _num_layers(model: str) -> int | None:
    """``num_hidden_layers`` from the model's ``config.json``, read without loading the weights."""
    cfg = resolve_model_dir(model) / "config.json"
    try:
        return int(json.loads(cfg.read_text())["num_hidden_layers"])
    except (OSError, KeyError, ValueError, TypeError):
        return None


class FinetuneTextEncoder(nn.Module):
    """A sentence-transformers BERT whose last ``trainable_layers`` layers are trained.

    Frozen layers stay in eval mode (no dropout) while the module trains.

    Args:
        model: sentence-transformers name or local directory.
        trainable_layers: number of last transformer layers to train (0 freezes all).
        max_tokens: truncation length of the tokenizer.
    """

    def __init__(self, model: str, trainable_layers: int = 1, max_tokens: int = 64) -> None:
        super().__init__()
        n_layers = _num_layers(model)
        if n_layers is not None and not 0 <= trainable_layers <= n_layers:
            raise ValueError(f"method.crossmodal.finetune_layers: {trainable_layers} is outside 0..{n_layers} for {model}")
        st = load_sentence_model(model, "cpu")
        self.bert = st[0].auto_model
        self.tokenizer = _Shared(st.tokenizer)
        self.max_tokens = max_tokens
        layers = self.bert.encoder.layer
        if not 0 <= trainable_layers <= len(layers):
            raise ValueError(f"method.crossmodal.finetune_layers: {trainable_layers} is outside 0..{len(layers)} for {model}")
        self.bert.requires_grad_(False)
        self.num_trainable = trainable_layers
        for layer in self.trainable_layers():
            layer.requires_grad_(True)
        self.out_dim = int(self.bert.config.hidden_size)

    def trainable_layers(self) -> list[nn.Module]:
        layers = list(self.bert.encoder.layer)
        return layers[len(layers) - self.num_trainable :]

    def train(self, mode: bool = True) -> "FinetuneTextEncoder":
        super().train(mode)
        self.bert.eval()
        for layer in self.trainable_layers():
            layer.train(mode)
        return self

    def forward(self, texts: list[str]) -> torch.Tensor:
        enc = self.tokenizer.obj(list(texts), padding=True, truncation=True, max_length=self.max_tokens, return_tensors="pt")
        enc = {k: v.to(_device_of(self)) for k, v in enc.items()}
        tokens = self.bert(**enc).last_hidden_state  # (B, T, E)
        return F.normalize(mean_pool(tokens, enc["attention_mask"]), dim=-1)  # (B, E)


@functools.lru_cache(maxsize=4)
def _tokenizer(path: str) -> Any:
    # heavy third-party import, paid only when a finetune/scratch encoder tokenises
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(path)


def load_tokenizer(model: str) -> Any:
    """The (cached) Hugging Face tokenizer of a sentence-transformers model, offline."""
    offline()
    return _tokenizer(str(resolve_model_dir(model)))


class ScratchTextEncoder(nn.Module):
    """A small pre-norm transformer over the MiniLM tokens of the training captions.

    The vocabulary is the set of token ids the training captions use (plus padding and
    unknown), so the embedding table stays small; other tokens map to unknown.

    Args:
        captions: training captions (define the vocabulary).
        model: sentence-transformers name or directory whose tokenizer is used.
        width: model width (= ``out_dim``).
        layers: transformer layers.
        heads: attention heads.
        max_tokens: truncation length.
    """

    PAD, UNK = 0, 1

    def __init__(
        self, captions: list[str], model: str = "all-MiniLM-L6-v2", width: int = 128, layers: int = 2, heads: int = 4, max_tokens: int = 48
    ) -> None:
        super().__init__()
        tok = load_tokenizer(model)
        self.tokenizer = _Shared(tok)
        self.max_tokens = max_tokens
        ids = tok(sorted(set(captions)), truncation=True, max_length=max_tokens)["input_ids"]
        used = sorted({i for row in ids for i in row})
        token_map = torch.full((len(tok),), self.UNK, dtype=torch.long)
        token_map[torch.tensor(used, dtype=torch.long)] = torch.arange(2, len(used) + 2)
        self.token_map: torch.Tensor
        self.register_buffer("token_map", token_map)
        self.embed = nn.Embedding(len(used) + 2, width, padding_idx=self.PAD)
        self.pos = nn.Parameter(torch.randn(max_tokens, width) * 0.02)
        layer = nn.TransformerEncoderLayer(width, heads, 2 * width, dropout=0.1, activation="gelu", batch_first=True, norm_first=True)
        self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(width)
        self.out_dim = width

    def tokenize(self, texts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """Compact token ids ``[B, T]`` and attention mask ``[B, T]`` on the module's device."""
        enc = self.tokenizer.obj(list(texts), padding=True, truncation=True, max_length=self.max_tokens, return_tensors="pt")
        device = self.token_map.device
        mask = enc["attention_mask"].to(device).bool()  # (B, T)
        ids = self.token_map[enc["input_ids"].to(device)].masked_fill(~mask, self.PAD)  # (B, T)
        return ids, mask

    def forward(self, texts: list[str]) -> torch.Tensor:
        ids, mask = self.tokenize(texts)
        x = self.embed(ids) + self.pos[: ids.shape[1]]  # (B, T, W)
        x = self.encoder(x, src_key_padding_mask=~mask)  # (B, T, W)
        return self.norm(mean_pool(x, mask))  # (B, W)


def build_text_encoder(xcfg: Any, captions: list[str]) -> nn.Module:
    """The text encoder chosen by ``method.crossmodal`` (a ``CrossModalCfg``).

    Args:
        xcfg: ``cfg.method.crossmodal``.
        captions: every training caption (cached for ``frozen``; the vocabulary of ``scratch``).
    """
    kind = xcfg.text_encoder
    if kind == "frozen":
        return FrozenTextEncoder(build_text_table(captions, xcfg.text_model), adapter_hidden=xcfg.text_adapter_hidden)
    if kind == "finetune":
        return FinetuneTextEncoder(xcfg.text_model, xcfg.finetune_layers)
    if kind == "scratch":
        return ScratchTextEncoder(
            captions, xcfg.text_model, width=xcfg.scratch_width, layers=xcfg.scratch_layers, heads=xcfg.scratch_heads
        )
    raise ValueError(f"method.crossmodal.text_encoder: unknown {kind!r}; choose frozen, finetune or scratch")
