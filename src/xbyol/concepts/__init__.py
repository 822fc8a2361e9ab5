"""Concepts: a bank of concept texts embedded by a sentence encoder, per-image concept
targets, concept attention, and the map from a run's representation into concept space."""

from xbyol.concepts.attention import ConceptAttention, ConceptFusion
from xbyol.concepts.bank import ConceptBank
from xbyol.concepts.build import bank_for
from xbyol.concepts.explain_embedding import concept_weights, explain_embedding
from xbyol.concepts.projection import ConceptMap, apply_dense, concept_projection, fit_concept_map
from xbyol.concepts.vocabulary import ConceptLabeler, caption_targets, concept_texts_for, read_concepts_file

__all__ = [
    "ConceptAttention",
    "ConceptBank",
    "ConceptFusion",
    "ConceptLabeler",
    "ConceptMap",
    "apply_dense",
    "bank_for",
    "caption_targets",
    "concept_projection",
    "concept_texts_for",
    "concept_weights",
    "explain_embedding",
    "fit_concept_map",
    "read_concepts_file",
]
