"""Text side of the cross-modal methods: model loading, cached frozen features, encoders."""

from xbyol.text.cache import TextFeatureTable, build_text_table, text_cache_dir
from xbyol.text.captions import caption_dropout, item_captions, second_text_view
from xbyol.text.encoder import (
    BUNDLED_MODEL,
    encode_frozen,
    load_sentence_model,
    model_fingerprint,
    resolve_text_model,
    shared_sentence_model,
)
from xbyol.text.encoders import (
    FinetuneTextEncoder,
    FrozenTextEncoder,
    ResidualAdapter,
    ScratchTextEncoder,
    build_text_encoder,
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
    "caption_dropout",
    "encode_frozen",
    "item_captions",
    "load_sentence_model",
    "model_fingerprint",
    "resolve_text_model",
    "second_text_view",
    "shared_sentence_model",
    "text_cache_dir",
]
