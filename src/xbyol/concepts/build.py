"""The concept bank of a run: texts from the dataset (or a concepts file), embedded through
the cache, or read back from the run directory when it already holds them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from xbyol.concepts.bank import ConceptBank
from xbyol.concepts.vocabulary import concept_texts_for
from xbyol.config import SemanticCfg


def bank_for(semantic: SemanticCfg, dataset: Any, run_dir: str | Path | None = None) -> ConceptBank:
    """Build (or read back) the concept bank described by ``method.semantic`` for ``dataset``.

    A bank saved in ``run_dir`` is reused, without the text model, when it holds the same
    texts and prompt; otherwise the texts are embedded through the cache.

    Args:
        semantic: ``cfg.method.semantic`` (prompt, text_model, concepts_file).
        dataset: the training dataset (vocabulary, captions or class names).
        run_dir: optional run directory holding ``concepts.json`` and ``concept_embeddings.pt``.
    """
    texts, groups, _ = concept_texts_for(dataset, semantic.concepts_file)
    if run_dir is not None and ConceptBank.exists(run_dir):
        saved = ConceptBank.load(run_dir)
        if saved.texts == texts and saved.prompt == semantic.prompt and saved.model.get("model") == semantic.text_model:
            return saved
    return ConceptBank.from_texts(texts, model=semantic.text_model, prompt=semantic.prompt, groups=groups)
