"""Per-unit top quantiles of a stream of activations, without holding the stream.

Network dissection thresholds unit ``k`` at ``T_k`` with ``P(a_k > T_k) = q`` over every
spatial position of every probe image (Bau et al. 2017, arXiv 1704.05796; q = 0.005).
For a small ``q`` only the largest values decide ``T_k``, so :class:`StreamingQuantile`
keeps, per unit, a running top-``k`` buffer and reads the quantile off it.

Exactness and memory. ``torch.quantile(x, 1 - q)`` (linear interpolation) of ``N`` values
reads the ascending order statistics at ``floor(p)`` and ``ceil(p)`` with
``p = (1 - q)(N - 1)``, i.e. it needs the top ``needed(N) = N - floor(p)`` values
(``~ q N + 1``; nondecreasing in ``N``). A value among the top ``k`` of the whole stream is
among the top ``k`` of every prefix that contains it, so a buffer that never held fewer
than ``needed(N_final)`` values gives the exact answer. When ``expected_count`` (an upper
bound of ``N``; dissection knows it: images x h x w) is given, the buffer is sized for it
from the start and the result is exact for any ``N <= expected_count``. Without it, or
past it, the buffer grows with the count seen, sized for ``growth`` (default 2) times the
count so far (``needed(growth * count) + margin``): in a randomly ordered stream a value
dropped at count ``c`` ranked below ``q * growth * c`` of the prefix, i.e. about
``q * growth * N`` of the whole stream, so it is not needed; in an adversarial order (large
values first) dropped values can be needed, and the result is then a lower bound of the
exact quantile. :attr:`StreamingQuantile.exact` tells which case happened.

Memory: ``num_units x (needed(max(N, growth * N)) + margin)`` values of the input dtype, i.e.
``O(q * N * C)``. For q = 0.005, 2,000 images of 4 x 4 positions and 256 units that is
162 values per unit (166 KB); for 63,305 Broden images at 7 x 7 and 2,048 units,
15.5 k values per unit (127 MB in float32). Updates cost one ``topk`` over
``buffer + batch`` rows per batch.
"""

from __future__ import annotations

import math

import torch


def needed_top_values(count: int, q: float) -> int:
    """How many of the largest values ``torch.quantile(x, 1 - q)`` reads for ``count`` values."""
    if count <= 0:
        return 0
    p = (1.0 - q) * (count - 1)
    return count - math.floor(p)


class StreamingQuantile:
    """Running top-``q`` quantile per unit over rows of ``[N, C]`` batches.

    Args:
        num_units: ``C``, the number of columns (units) of every batch.
        q: upper-tail probability, ``0 < q < 1``: the result ``T`` has ``P(a > T) = q``.
        expected_count: an upper bound of the total number of rows; sizes the buffer
            so the result is exact (see the module docstring).
        margin: extra values kept beyond the strict need.
        growth: the buffer is sized for ``growth`` times the count seen so far (``>= 1``).

    Example:
        >>> sq = StreamingQuantile(num_units=8, q=0.005, expected_count=10_000)
        >>> for x in batches:  # each [n, 8]
        ...     sq.update(x)
        >>> thresholds = sq.quantile()  # [8], == torch.quantile(all_x, 0.995, dim=0)
    """

    def __init__(
        self, num_units: int, q: float, expected_count: int | None = None, margin: int = 2, growth: float = 2.0
    ) -> None:
        if not 0.0 < q < 1.0:
            raise ValueError(f"q must be in (0, 1), got {q!r}")
        if num_units < 1:
            raise ValueError(f"num_units must be >= 1, got {num_units!r}")
        if expected_count is not None and expected_count < 1:
            raise ValueError(f"expected_count must be >= 1, got {expected_count!r}")
        self.num_units = num_units
        self.q = q
        if growth < 1.0:
            raise ValueError(f"growth must be >= 1, got {growth!r}")
        self.margin = margin
        self.growth = growth
        self.expected_count = expected_count
        self.count = 0
        self._min_dropped_at: int | None = None  # smallest buffer size at which values were discarded
        self.buffer: torch.Tensor | None = None  # (k, C), descending per column

    def capacity(self, count: int) -> int:
        """Buffer size used once ``count`` rows have been seen."""
        bound = self.expected_count if self.expected_count and count <= self.expected_count else math.ceil(self.growth * count)
        return needed_top_values(bound, self.q) + self.margin

    def update(self, x: torch.Tensor) -> None:
        """Add a batch of rows.

        Args:
            x: ``[n, C]`` values (any float dtype; kept in that dtype).
        """
        if x.dim() != 2 or x.shape[1] != self.num_units:
            raise ValueError(f"x: expected shape [n, {self.num_units}], got {list(x.shape)}")
        if x.shape[0] == 0:
            return
        x = x.detach()
        self.count += x.shape[0]
        cap = self.capacity(self.count)
        pool = x if self.buffer is None else torch.cat([self.buffer, x.to(self.buffer.dtype)])  # (k + n, C)
        if pool.shape[0] > cap:
            self._min_dropped_at = cap if self._min_dropped_at is None else min(self._min_dropped_at, cap)
        k = min(cap, pool.shape[0])
        self.buffer = pool.topk(k, dim=0, largest=True, sorted=True).values  # (k, C)

    @property
    def exact(self) -> bool:
        """Whether :meth:`quantile` equals the exact quantile of everything seen."""
        return self._min_dropped_at is None or self._min_dropped_at >= needed_top_values(self.count, self.q)

    def quantile(self) -> torch.Tensor:
        """Per-unit ``1 - q`` quantile of everything seen, ``[C]`` (float64).

        Equals ``torch.quantile(all_rows, 1 - q, dim=0)`` (linear interpolation) when
        :attr:`exact` is true; otherwise a lower bound of it.
        """
        if self.buffer is None:
            raise RuntimeError("StreamingQuantile.quantile(): no values seen yet")
        n = self.count
        p = (1.0 - self.q) * (n - 1)
        lo = math.floor(p)
        hi = min(lo + 1, n - 1)
        frac = p - lo
        buf = self.buffer.double()
        # ascending index i is descending rank n - 1 - i
        r_lo = min(n - 1 - lo, buf.shape[0] - 1)
        r_hi = min(n - 1 - hi, buf.shape[0] - 1)
        v_lo, v_hi = buf[r_lo], buf[r_hi]  # (C,)
        return v_lo + frac * (v_hi - v_lo)

    def top_values(self) -> torch.Tensor:
        """The buffer: the largest values kept per unit, ``[k, C]`` in descending order."""
        if self.buffer is None:
            raise RuntimeError("StreamingQuantile.top_values(): no values seen yet")
        return self.buffer
