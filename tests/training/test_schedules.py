import math

import pytest

from xbyol.training.schedules import lr_at, tau_at


def test_tau_follows_the_paper_cosine():
    assert tau_at(0, 100, 0.996) == pytest.approx(0.996)
    assert tau_at(100, 100, 0.996) == pytest.approx(1.0)
    assert tau_at(50, 100, 0.996) == pytest.approx(1 - 0.004 * 0.5)
    k, K = 30, 100
    assert tau_at(k, K, 0.99) == pytest.approx(1 - 0.01 * (math.cos(math.pi * k / K) + 1) / 2)
    assert isinstance(tau_at(3, 10, 0.99), float)


def test_tau_is_monotone_and_clamped():
    vals = [tau_at(k, 20, 0.9) for k in range(-2, 25)]
    assert all(b >= a for a, b in zip(vals, vals[1:]))
    assert vals[0] == pytest.approx(0.9) and vals[-1] == pytest.approx(1.0)


def test_lr_warmup_then_cosine():
    assert lr_at(0, 100, 1.0, 10) == pytest.approx(0.1)
    assert lr_at(9, 100, 1.0, 10) == pytest.approx(1.0)
    assert lr_at(10, 100, 1.0, 10) == pytest.approx(1.0)
    assert lr_at(55, 100, 1.0, 10) == pytest.approx(0.5)
    assert lr_at(100, 100, 1.0, 10) == pytest.approx(0.0)
    assert lr_at(0, 10, 2.0, 0) == pytest.approx(2.0)


def test_schedules_reject_zero_steps():
    with pytest.raises(ValueError):
        tau_at(0, 0, 0.99)
    with pytest.raises(ValueError):
        lr_at(0, 0, 0.1, 0)
