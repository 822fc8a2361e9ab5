"""Text side of the cross-modal methods: model loading, cached frozen features, encoders."""

from xbyol.text.cache import TextFeatureTable, build_text_table
from xbyol.text.captions import caption_dropout, item_captions, second_text_view
from xbyol.text.encoders import (
    FinetuneTextEncoder,
    FrozenTextEncoder,
    ResidualAdapter,
    ScratchTextEncoder,
    build_text_encoder,
)
from xbyol.text.sentence_model import (
    BUNDLED_MODEL,
    cached_embeddings,
    embedding_cache_dir,
    encode_frozen,
    encode_texts,
    load_sentence_model,
    model_fingerprint,
    resolve_text_model,
    shared_sentence_model,
)

__all__ = [
    "BUNDLED_MODEL",
    "FinetuneTextEncoder",
    "FrozenTextEncoder",
    "ResidualAdapter",
    "ScratchTextEncoder",
    "TextFeatureTable",
    "build_text_encoder",
    "build_text_table",
    "cached_embeddings",
    "caption_dropout",
    "embedding_cache_dir",
    "encode_frozen",
    "encode_texts",
    "item_captions",
    "load_sentence_model",
    "model_fingerprint",
    "resolve_text_model",
    "second_text_view",
    "shared_sentence_model",
]
