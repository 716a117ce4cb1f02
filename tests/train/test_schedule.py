"""The shared learning-rate shape: warm-up, cosine, floor."""

import math

import pytest

from cadenza.train.schedule import warmup_cosine


def test_warmup_then_cosine_to_the_floor():
    assert warmup_cosine(0, 10, 110, 0.1) == pytest.approx(0.1)  # (0 + 1) / 10
    assert warmup_cosine(9, 10, 110, 0.1) == pytest.approx(1.0)
    assert warmup_cosine(10, 10, 110, 0.1) == pytest.approx(1.0)
    assert warmup_cosine(60, 10, 110, 0.1) == pytest.approx(0.1 + 0.9 * 0.5)  # half way down
    assert warmup_cosine(110, 10, 110, 0.1) == pytest.approx(0.1)
    assert warmup_cosine(500, 10, 110, 0.05) == pytest.approx(0.05)  # past the end: the floor
    assert warmup_cosine(0, 0, 100, 0.0) == pytest.approx(1.0)  # no warm-up
    steps = [warmup_cosine(s, 10, 110, 0.1) for s in range(10, 111)]
    assert all(a >= b for a, b in zip(steps, steps[1:])) and not math.isnan(sum(steps))
