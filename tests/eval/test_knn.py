"""Weighted kNN: hand-worked votes, k > N, agreement with a brute-force NumPy reference."""

import math

import numpy as np
import pytest
import torch

from xbyol.eval.knn import knn_accuracy, knn_predict

# Bank in 2-D (scales differ on purpose: the vote uses cosine similarity).
BANK = torch.tensor([[2.0, 0.0], [0.0, 3.0], [1.0, 1.0]])
LABELS = torch.tensor([0, 1, 1])
QUERY = torch.tensor([[5.0, 0.0]])  # cos with the bank: 1, 0, 1/sqrt(2)
C45 = 1 / math.sqrt(2)


def test_hand_worked_votes_k2():
    scores = knn_predict(QUERY, BANK, LABELS, num_classes=3, k=2, t=0.5)
    # neighbours: item 0 (cos 1, label 0) and item 2 (cos 0.707, label 1)
    expected = torch.tensor([[math.exp(1 / 0.5), math.exp(C45 / 0.5), 0.0]])
    torch.testing.assert_close(scores, expected, rtol=1e-6, atol=0)


def test_temperature_changes_the_winner():
    # all three neighbours; t = 0.5: class 0 wins (e^2 = 7.39 > e^0 + e^1.41 = 5.11)
    s_sharp = knn_predict(QUERY, BANK, LABELS, num_classes=2, k=3, t=0.5)
    torch.testing.assert_close(s_sharp, torch.tensor([[math.exp(2), 1 + math.exp(2 * C45)]]), rtol=1e-6, atol=0)
    assert s_sharp.argmax().item() == 0
    # t = 1: class 1 wins (e^1 = 2.72 < e^0 + e^0.707 = 3.03)
    s_soft = knn_predict(QUERY, BANK, LABELS, num_classes=2, k=3, t=1.0)
    torch.testing.assert_close(s_soft, torch.tensor([[math.e, 1 + math.exp(C45)]]), rtol=1e-6, atol=0)
    assert s_soft.argmax().item() == 1


def test_k_larger_than_bank_uses_every_item():
    big = knn_predict(QUERY, BANK, LABELS, num_classes=2, k=50, t=1.0)
    all3 = knn_predict(QUERY, BANK, LABELS, num_classes=2, k=3, t=1.0)
    assert torch.equal(big, all3)


def _reference_scores(query, bank, labels, num_classes, k, t):
    q = query / np.linalg.norm(query, axis=1, keepdims=True)
    b = bank / np.linalg.norm(bank, axis=1, keepdims=True)
    out = np.zeros((len(q), num_classes))
    for i, row in enumerate(q @ b.T):
        for j in np.argsort(-row)[:k]:
            out[i, labels[j]] += np.exp(row[j] / t)
    return out


@pytest.mark.parametrize("k,t,chunk", [(1, 0.07, 1024), (5, 0.1, 7), (20, 0.07, 16), (300, 0.5, 64)])
def test_agrees_with_bruteforce_reference(k, t, chunk):
    rng = np.random.default_rng(k)
    bank, query = rng.normal(size=(200, 16)), rng.normal(size=(50, 16))
    labels = rng.integers(0, 6, size=200)
    scores = knn_predict(torch.tensor(query), torch.tensor(bank), torch.tensor(labels), 6, k=k, t=t, chunk_size=chunk)
    ref = _reference_scores(query, bank, labels, 6, min(k, 200), t)
    np.testing.assert_allclose(scores.numpy(), ref, rtol=1e-4, atol=1e-6)


def test_knn_accuracy_on_clusters_and_shuffled_labels():
    g = torch.Generator().manual_seed(0)
    centres = torch.randn(4, 32, generator=g) * 3
    y_tr, y_te = torch.arange(400) % 4, torch.arange(100) % 4
    x_tr = centres[y_tr] + torch.randn(400, 32, generator=g)
    x_te = centres[y_te] + torch.randn(100, 32, generator=g)
    assert knn_accuracy(x_tr, y_tr, x_te, y_te, k=20, t=0.07) == 1.0
    shuffled = y_tr[torch.randperm(400, generator=g)]
    assert knn_accuracy(x_tr, shuffled, x_te, y_te, k=20, t=0.07) < 0.5  # chance = 0.25


def test_accuracy_counts_exact_fraction():
    bank = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    labels = torch.tensor([0, 1])
    test = torch.tensor([[1.0, 0.1], [0.1, 1.0], [1.0, 0.2], [0.9, 0.0]])
    assert knn_accuracy(bank, labels, test, torch.tensor([0, 1, 1, 1]), k=1) == pytest.approx(0.5)


def test_bad_inputs_raise():
    with pytest.raises(ValueError, match="same D"):
        knn_predict(torch.zeros(2, 3), torch.zeros(4, 2), torch.zeros(4, dtype=torch.long), 2)
    with pytest.raises(ValueError, match=r"\[0, 2\)"):
        knn_predict(torch.ones(2, 2), torch.ones(2, 2), torch.tensor([0, 2]), 2)
    with pytest.raises(ValueError, match="k must be"):
        knn_predict(torch.ones(2, 2), torch.ones(2, 2), torch.tensor([0, 1]), 2, k=0)
    with pytest.raises(ValueError, match="temperature"):
        knn_predict(torch.ones(2, 2), torch.ones(2, 2), torch.tensor([0, 1]), 2, t=0.0)
