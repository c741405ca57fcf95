"""The infinite learning-rate schedule (a pure function of the step)."""

import math

import pytest

from lifelong.schedules import InfiniteSchedule


def test_infinite_schedule_continuity_and_anneal():
    s = InfiniteSchedule(lr_max=1e-3, warmup_steps=5, cooldown_steps=20, const_ratio=0.75, min_ratio=0.05)
    for boundary in (5, 20):
        assert s.lr(boundary) == pytest.approx(s.lr(boundary + 1), abs=2e-5)
    assert all(s.lr(n) >= s.lr(n + 1) for n in range(5, 100))
    assert s.lr(10_000) == pytest.approx(7.5e-4)
    assert s.anneal_lr(0, 10) == pytest.approx(7.5e-4)
    assert s.anneal_lr(10, 10) == pytest.approx(5e-5)
    assert s.anneal_lr(5, 10) == pytest.approx(math.sqrt(7.5e-4 * 5e-5))
    with pytest.raises(ValueError, match="warmup_steps"):
        InfiniteSchedule(1.0, 10, 5)
