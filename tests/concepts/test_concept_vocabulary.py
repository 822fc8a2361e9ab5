"""Concept vocabulary sources and per-image targets."""

from __future__ import annotations

import pytest
import torch

from xbyol.concepts.vocabulary import (
    ConceptLabeler,
    caption_targets,
    caption_vocabulary,
    concept_texts_for,
    read_concepts_file,
)


class Meta:
    def __init__(self, concept_names=(), concept_groups=None, class_names=(), has_captions=False):
        self.concept_names = list(concept_names)
        self.concept_groups = concept_groups or {}
        self.class_names = list(class_names)
        self.has_captions = has_captions


def test_concepts_file_groups_and_comments(tmp_path):
    p = tmp_path / "c.txt"
    p.write_text("# my concepts\ncolour: red\ncolour: blue  # primary\n\nshape: circle\nstriped\n")
    texts, groups = read_concepts_file(p)
    assert texts == ["red", "blue", "circle", "striped"]
    assert groups == {"colour": [0, 1], "shape": [2]}
    p.write_text("red\nRed\n")
    with pytest.raises(ValueError, match="duplicate"):
        read_concepts_file(p)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        read_concepts_file(tmp_path / "missing.txt")


def test_caption_matching_words_and_plurals():
    caps = ["Two red circles and a blue square", "a reddish triangle", "a small red circle"]
    t = caption_targets(caps, ["red", "circle", "red circle", "square"])
    assert t.tolist() == [[True, True, True, True], [False, False, False, False], [True, True, True, False]]


def test_text_sources_in_order_of_precedence(tmp_path):
    vocab = Meta(["red", "circle"], {"colour": [0], "shape": [1]}, ["a", "b"])
    assert concept_texts_for(vocab) == (["red", "circle"], {"colour": [0], "shape": [1]}, "vocabulary")
    classes = Meta(class_names=["cat", "dog"])
    assert concept_texts_for(classes) == (["cat", "dog"], {"class": [0, 1]}, "classes")
    f = tmp_path / "c.txt"
    f.write_text("blue\n")
    assert concept_texts_for(vocab, str(f))[0] == ["blue"]
    with pytest.raises(ValueError, match="concepts_file"):
        concept_texts_for(Meta())


def test_caption_vocabulary_skips_stopwords():
    caps = ["a red circle", "the red square", "red circle left of a square"] * 2
    assert caption_vocabulary(caps, max_concepts=3) == ["red", "circle", "square"]


def test_labeler_combines_sources():
    ds = Meta(["red", "circle"], class_names=["cat"])
    lab = ConceptLabeler(["circle", "cat", "unknown", "red"], ds)
    assert lab.sources == ["concepts", "label", None, "concepts"]
    batch = {"image": torch.zeros(2, 3, 4, 4, dtype=torch.uint8),
             "concepts": torch.tensor([[True, False], [False, True]]), "label": torch.tensor([0, 1])}
    assert lab(batch).tolist() == [[False, True, False, True], [True, False, False, False]]
    caps = ConceptLabeler(["dog"], Meta(has_captions=True))
    assert caps({"image": torch.zeros(2, 3, 4, 4), "caption": ["a dog", "a cat"]}).tolist() == [[True], [False]]
