import math

import pytest
import torch

from xbyol.eval.retrieval import (
    caption_relevance,
    chance_median_rank,
    chance_recall_at_k,
    first_relevant_rank,
    median_rank,
    recall_at_k,
    retrieval_summary,
)
from xbyol.rundir import extract_features


def test_first_relevant_rank_hand_built():
    sim = torch.tensor(
        [
            [0.9, 0.1, 0.5, 0.3],  # relevant item 0 ranks first
            [0.9, 0.1, 0.5, 0.3],  # relevant item 3: behind 0.9 and 0.5 -> rank 3
            [0.2, 0.8, 0.7, 0.1],  # relevant items 2 and 3: best is 2 (0.7), behind 0.8 -> rank 2
        ]
    )
    rel = torch.tensor(
        [[True, False, False, False], [False, False, False, True], [False, False, True, True]]
    )
    assert first_relevant_rank(sim, rel).tolist() == [1, 3, 2]


def test_ties_count_against_the_query():
    sim = torch.ones(2, 5)  # a collapsed model: every score equal
    rel = torch.zeros(2, 5, dtype=torch.bool)
    rel[0, 2] = True
    rel[1, [0, 1]] = True
    assert first_relevant_rank(sim, rel).tolist() == [5, 4]


def test_recall_and_median():
    ranks = torch.tensor([1, 3, 2, 7, 12])
    assert recall_at_k(ranks, (1, 5, 10)) == pytest.approx({1: 0.2, 5: 0.6, 10: 0.8})
    assert median_rank(ranks) == 3.0
    assert median_rank(torch.tensor([1, 2, 4, 10])) == 3.0


def test_chance_levels_hand_computed():
    # one relevant item among 10: P(rank <= k) = k / 10
    assert chance_recall_at_k([1], 10, (1, 5, 10)) == pytest.approx({1: 0.1, 5: 0.5, 10: 1.0})
    # two relevant among 10, K = 5: 1 - C(8, 5) / C(10, 5) = 1 - 56 / 252
    assert chance_recall_at_k([2], 10, (5,))[5] == pytest.approx(1 - 56 / 252)
    # averaged over queries
    mixed = chance_recall_at_k([1, 2], 10, (1,))[1]
    assert mixed == pytest.approx((0.1 + 0.2) / 2)
    # K beyond the gallery is certain
    assert chance_recall_at_k([1], 3, (10,))[10] == pytest.approx(1.0)
    assert chance_median_rank([1], 10) == 5
    # r = 9 of G = 10: P(rank = 1) = 0.9
    assert chance_median_rank([9], 10) == 1
    # exact binomial ratio on a larger gallery
    g, r, k = 500, 7, 10
    exact = 1 - math.comb(g - r, k) / math.comb(g, k)
    assert chance_recall_at_k([r], g, (k,))[k] == pytest.approx(exact, rel=1e-9)


def test_chance_matches_random_scores():
    torch.manual_seed(0)
    q, g = 4000, 50
    rel = torch.zeros(q, g, dtype=torch.bool)
    rel[:, :3] = True
    ranks = first_relevant_rank(torch.rand(q, g), rel)
    empirical = recall_at_k(ranks, (1, 5))
    chance = chance_recall_at_k([3] * q, g, (1, 5))
    assert empirical[1] == pytest.approx(chance[1], abs=0.02)
    assert empirical[5] == pytest.approx(chance[5], abs=0.03)


def test_caption_relevance_rule():
    queries = [["a red circle"], ["a blue square", "a square"], ["nothing matches"]]
    gallery = [["a red circle"], ["a square"], ["a red circle"]]
    rel = caption_relevance(queries, gallery)
    assert rel.tolist() == [[True, False, True], [False, True, False], [False, False, False]]


def test_summary_and_errors():
    s = retrieval_summary(torch.tensor([1, 2]), [1, 1], 4, ks=(1,))
    assert s["R@1"] == 0.5 and s["chance_R@1"] == pytest.approx(0.25)
    assert s["median_rank"] == 1.5 and s["chance_median_rank"] == 2 and s["queries"] == 2
    with pytest.raises(ValueError, match="no relevant"):
        first_relevant_rank(torch.rand(2, 3), torch.zeros(2, 3, dtype=torch.bool))
    with pytest.raises(ValueError, match="one shape"):
        first_relevant_rank(torch.rand(2, 3), torch.ones(2, 4, dtype=torch.bool))
    with pytest.raises(ValueError, match="relevant items"):
        chance_recall_at_k([0], 5)


class _FakeDataset:
    """Three images; image 0 has two captions, images 0 and 2 share "red"."""

    has_captions = True
    all_captions = [["red", "crimson"], ["blue"], ["red"]]

    def __len__(self):
        return 3

    def __getitem__(self, i):
        return {"image": torch.full((3, 4, 4), i, dtype=torch.uint8), "caption": self.all_captions[i][0], "index": i,
                "label": -1}


class _FakeMethod:
    IMG = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.6, 0.8]])
    TXT = {"red": [1.0, 0.0], "crimson": [0.8, 0.6], "blue": [0.0, 1.0]}

    def embed_images(self, x):
        from xbyol.augment import IMAGE_MEAN, IMAGE_STD

        idx = ((x[:, 0, 0, 0] * IMAGE_STD[0] + IMAGE_MEAN[0]) * 255).round().long()
        return self.IMG[idx]

    def embed_texts(self, texts):
        return torch.tensor([self.TXT[t] for t in texts])


def test_evaluator_protocol_hand_computed():
    import types

    from xbyol.eval.retrieval_eval import retrieval_metrics

    ds = _FakeDataset()
    def encode(split, indices=None, fn=None, progress=False):
        return extract_features(fn, ds)[0]

    run = types.SimpleNamespace(method=_FakeMethod(), dataset=lambda split: ds, device=torch.device("cpu"), encode=encode)
    res = retrieval_metrics(run, ks=(1, 2))
    i2t, t2i = res["image_to_text"], res["text_to_image"]
    # image->text over the distinct captions [blue, crimson, red]: ranks 1, 1, 3
    assert i2t["R@1"] == pytest.approx(2 / 3) and i2t["R@2"] == pytest.approx(2 / 3)
    assert i2t["median_rank"] == 1 and i2t["gallery"] == 3 and i2t["queries"] == 3
    # image 0 has 2 correct captions of 3, images 1 and 2 one each
    assert i2t["chance_R@1"] == pytest.approx((2 / 3 + 1 / 3 + 1 / 3) / 3)
    # text->image: queries blue, crimson, red, red (every caption); ranks 1, 2, 1, 1
    assert t2i["queries"] == 4 and t2i["R@1"] == pytest.approx(3 / 4) and t2i["R@2"] == 1.0
    assert t2i["chance_R@1"] == pytest.approx((1 / 3 + 1 / 3 + 2 / 3 + 2 / 3) / 4)
