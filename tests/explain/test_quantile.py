import math

import pytest
import torch

from xbyol.explain.quantile import StreamingQuantile, needed_top_values


def _stream(x: torch.Tensor, sq: StreamingQuantile, batch: int) -> None:
    for i in range(0, x.shape[0], batch):
        sq.update(x[i : i + batch])


@pytest.mark.parametrize("q", [0.005, 0.01, 0.2])
def test_matches_torch_quantile_when_sized(q):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(5000, 6, generator=g, dtype=torch.float64) * torch.arange(1, 7)  # (N, C)
    sq = StreamingQuantile(6, q, expected_count=x.shape[0])
    _stream(x, sq, 97)
    assert sq.exact
    ref = torch.quantile(x, 1 - q, dim=0)
    torch.testing.assert_close(sq.quantile(), ref, rtol=0, atol=1e-12)
    # memory bound: about q*N + 1 values per unit, not N
    assert sq.top_values().shape[0] == needed_top_values(5000, q) + sq.margin
    assert sq.top_values().shape[0] <= math.ceil(q * 5000) + 3
    sq.update(x[:10])  # past expected_count: the buffer grows (2x the count)
    assert sq.capacity(sq.count) == needed_top_values(2 * 5010, q) + sq.margin


def test_hand_values():
    # 200 values 0..199 in one unit: q = 0.005 -> p = 0.995 * 199 = 198.005 -> 198.005
    x = torch.arange(200, dtype=torch.float64).flip(0).view(-1, 1)
    sq = StreamingQuantile(1, 0.005, expected_count=200)
    _stream(x, sq, 7)
    assert sq.quantile().item() == pytest.approx(198.005, abs=1e-9)
    assert needed_top_values(200, 0.005) == 2


def test_growing_buffer_exact_on_random_order_and_lower_bound_otherwise():
    g = torch.Generator().manual_seed(1)
    x = torch.rand(20000, 3, generator=g, dtype=torch.float64)
    ref = torch.quantile(x, 0.99, dim=0)
    sq = StreamingQuantile(3, 0.01)  # count unknown: buffer grows with what it has seen
    _stream(x, sq, 500)
    assert not sq.exact  # values were dropped while the count was unknown: no guarantee ...
    torch.testing.assert_close(sq.quantile(), ref, rtol=0, atol=1e-12)  # ... but right in random order
    # adversarial order: large values first, then many zeros -> dropped values are missed
    big = torch.linspace(1, 2, 100, dtype=torch.float64).view(-1, 1)
    y = torch.cat([big, torch.zeros(9900, 1, dtype=torch.float64)])
    sq = StreamingQuantile(1, 0.01)
    _stream(y, sq, 100)
    assert not sq.exact
    assert sq.quantile().item() <= torch.quantile(y, 0.99).item() + 1e-12
    sized = StreamingQuantile(1, 0.01, expected_count=y.shape[0])
    _stream(y, sized, 100)
    assert sized.exact
    assert sized.quantile().item() == pytest.approx(torch.quantile(y, 0.99).item(), abs=1e-12)


def test_float32_input_close_to_torch():
    g = torch.Generator().manual_seed(2)
    x = torch.randn(3001, 4, generator=g).relu()  # many exact zeros, like ReLU maps
    sq = StreamingQuantile(4, 0.005, expected_count=4000)
    _stream(x, sq, 128)
    torch.testing.assert_close(sq.quantile().float(), torch.quantile(x, 0.995, dim=0), rtol=1e-5, atol=1e-6)


def test_bad_input():
    with pytest.raises(ValueError, match="q must be"):
        StreamingQuantile(3, 1.5)
    sq = StreamingQuantile(3, 0.1)
    with pytest.raises(ValueError, match=r"\[n, 3\]"):
        sq.update(torch.zeros(4, 2))
    with pytest.raises(RuntimeError, match="no values"):
        sq.quantile()
