"""Collapse monitors: hand-worked singular values, collapsed and isotropic embeddings."""

import math

import pytest
import torch

from xbyol.methods.collapse import effective_rank, embedding_std


def _rankme(sigmas: list[float]) -> float:
    """RankMe written out from the definition for given singular values."""
    total = sum(sigmas)
    p = [s / total + 1e-7 for s in sigmas]
    return math.exp(-sum(pk * math.log(pk) for pk in p))


def test_identical_rows_are_collapsed():
    z = torch.tensor([[1.0, -2.0, 0.5, 3.0]]).repeat(64, 1)
    assert embedding_std(z) == pytest.approx(0.0, abs=1e-7)
    assert effective_rank(z) == pytest.approx(1.0, abs=1e-4)  # sigma = (s, 0, 0, 0)
    assert effective_rank(z) == pytest.approx(_rankme([1.0, 0.0, 0.0, 0.0]), rel=1e-9)


def test_rank_of_diagonal_matrices():
    z = torch.diag(torch.tensor([1.0, 1.0, 0.0, 0.0, 0.0]))  # sigma = (1, 1, 0, 0, 0)
    assert effective_rank(z) == pytest.approx(2.0, rel=1e-5)
    assert effective_rank(z) == pytest.approx(_rankme([1, 1, 0, 0, 0]), rel=1e-9)
    # sigma = (3, 1): p = (3/4, 1/4), entropy 0.5623, rank 1.7548
    z = torch.diag(torch.tensor([3.0, 1.0]))
    assert effective_rank(z) == pytest.approx(math.exp(-(0.75 * math.log(0.75) + 0.25 * math.log(0.25))), rel=1e-5)
    assert effective_rank(z) == pytest.approx(1.7548, abs=1e-4)
    assert effective_rank(torch.zeros(4, 3)) == 0.0


def test_isotropic_gaussian_is_healthy():
    g = torch.Generator().manual_seed(0)
    d = 16
    z = torch.randn(8192, d, generator=g)
    assert embedding_std(z) == pytest.approx(1 / math.sqrt(d), rel=0.02)
    assert d * 0.98 < effective_rank(z) <= d


def test_embedding_std_hand_value_and_scale_invariance():
    # rows e1, e2: each dimension holds (1, 0): unbiased std = sqrt(0.5)
    z = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    assert embedding_std(z) == pytest.approx(math.sqrt(0.5), rel=1e-6)
    assert embedding_std(z * torch.tensor([[5.0], [0.1]])) == pytest.approx(math.sqrt(0.5), rel=1e-6)


def test_low_rank_embeddings():
    g = torch.Generator().manual_seed(1)
    z = torch.randn(2048, 3, generator=g) @ torch.randn(3, 64, generator=g)  # rank 3 in 64 dims
    assert effective_rank(z) < 3.0 + 1e-3


def test_bad_shapes_raise():
    with pytest.raises(ValueError, match=r"\[N, D\]"):
        embedding_std(torch.zeros(4))
    with pytest.raises(ValueError, match="at least 2 rows"):
        embedding_std(torch.zeros(1, 4))
