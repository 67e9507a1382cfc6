"""The pace rule: a rate as slots and a window, never faster than asked."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from campaigns.domain.pacing import MARGIN, NO_LIMIT, PaceRule, pace_rule


def test_whole_rates_allow_that_many_in_a_second_with_a_one_percent_margin() -> None:
    assert MARGIN == 0.01
    assert pace_rule(10) == PaceRule(101_000, 10, 1_010_000)
    assert pace_rule(100) == PaceRule(10_100, 100, 1_010_000)


def test_fractional_rates_use_their_whole_part_over_the_matching_time() -> None:
    assert pace_rule(2.5) == PaceRule(404_000, 2, 808_000)
    assert pace_rule(0.5) == PaceRule(2_020_000, 1, 2_020_000)


def test_no_rate_is_no_limit() -> None:
    assert pace_rule(None) is NO_LIMIT
    assert not NO_LIMIT.limited
    assert pace_rule(1).limited


@pytest.mark.parametrize("bad", [0.0, -1.0, math.inf, math.nan])
def test_a_rate_must_be_positive_and_finite(bad: float) -> None:
    with pytest.raises(ValueError, match="calls per second"):
        pace_rule(bad)


@given(st.floats(min_value=0.001, max_value=100_000, allow_nan=False, allow_infinity=False))
def test_neither_the_schedule_nor_the_window_is_faster_than_the_rate(rate: float) -> None:
    rule = pace_rule(rate)
    assert 1_000_000 / rule.interval_us <= rate
    assert rule.burst * 1_000_000 / rule.window_us <= rate
    # and the margin leaves room for jitter: a whole second's worth spans >= 1 s + 1 %
    assert rule.window_us >= rule.burst * 1_000_000 / rate * (1 + MARGIN) - 1
    assert rule.burst >= 1
