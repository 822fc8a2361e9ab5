import pytest
import torch

from xbyol.text.captions import caption_dropout, item_captions, second_text_view


def test_dropout_extremes_and_determinism():
    texts = ["a small red circle at the top", "star"]
    assert caption_dropout(texts, 0.0) == texts
    one = caption_dropout(texts, 1.0, torch.Generator().manual_seed(0))
    assert [len(t.split()) for t in one] == [1, 1] and one[1] == "star"
    assert set(one[0].split()) <= set(texts[0].split())
    a = caption_dropout(texts * 10, 0.5, torch.Generator().manual_seed(3))
    b = caption_dropout(texts * 10, 0.5, torch.Generator().manual_seed(3))
    assert a == b
    kept = sum(len(t.split()) for t in a[::2]) / (10 * 7)
    assert 0.2 < kept < 0.8
    with pytest.raises(ValueError, match="probability"):
        caption_dropout(texts, 1.5)


def test_second_view_prefers_another_caption():
    g = torch.Generator().manual_seed(0)
    out = second_text_view(["a cat", "a dog"], [["a cat", "a kitten"], ["a dog"]], 0.0, g)
    assert out == ["a kitten", "a dog"]


class _Caps:
    has_captions = True

    def __init__(self, captions):
        self.captions = captions

    def __len__(self):
        return len(self.captions)


class _Samples:
    has_captions = True

    def __len__(self):
        return 2

    def __getitem__(self, i):
        return {"caption": f"c{i}", "captions": [f"c{i}", f"d{i}"]} if i == 0 else {"caption": "c1"}


def test_item_captions_sources():
    assert item_captions(_Caps(["a", "b"])) == [["a"], ["b"]]
    assert item_captions(_Caps([["a", "b"], ["c"]])) == [["a", "b"], ["c"]]
    assert item_captions(_Samples()) == [["c0", "d0"], ["c1"]]

    class NoCaps:
        has_captions = False

        def __len__(self):
            return 1

    with pytest.raises(ValueError, match="no captions"):
        item_captions(NoCaps())
