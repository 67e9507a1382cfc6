"""The pace rule: a rate as slots and a window, never faster than asked."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from campaigns.domain.pacing import NO_LIMIT, WINDOW_MARGIN_US, PaceRule, pace_rule


def test_whole_rates_allow_exactly_that_many_in_a_second_plus_the_margin() -> None:
    assert pace_rule(10) == PaceRule(100_000, 10, 1_000_000 + WINDOW_MARGIN_US)
    assert pace_rule(100) == PaceRule(10_000, 100, 1_000_000 + WINDOW_MARGIN_US)


def test_fractional_rates_use_their_whole_part_over_the_matching_time() -> None:
    assert pace_rule(2.5) == PaceRule(400_000, 2, 800_000 + WINDOW_MARGIN_US)
    assert pace_rule(0.5) == PaceRule(2_000_000, 1, 2_000_000 + WINDOW_MARGIN_US)


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
    assert rule.burst >= 1
