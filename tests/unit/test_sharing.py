"""Shares of an account ceiling by weight: water-filling's three promises."""

from __future__ import annotations

import math

from hypothesis import given
from hypothesis import strategies as st

from campaigns.domain.sharing import fair_level, fair_shares

_demand = st.one_of(st.floats(0.01, 1000), st.just(math.inf))
_campaigns = st.lists(st.tuples(_demand, st.floats(0.1, 100)), min_size=1, max_size=40)


def _close(a: float, b: float) -> bool:
    return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-9)


@given(st.floats(0.1, 5000), _campaigns)
def test_shares_fill_the_ceiling_and_never_pass_it(capacity: float, campaigns: list) -> None:
    demands, weights = [d for d, _ in campaigns], [w for _, w in campaigns]
    shares = fair_shares(capacity, demands, weights)
    assert all(0 <= s <= d for s, d in zip(shares, demands, strict=True))
    if sum(demands) <= capacity:
        assert shares == demands  # the ceiling does not bind: everyone its own pace
    else:
        assert _close(sum(shares), capacity)  # work-conserving: nothing left over


@given(st.floats(0.1, 5000), _campaigns)
def test_capped_campaigns_share_by_weight(capacity: float, campaigns: list) -> None:
    demands, weights = [d for d, _ in campaigns], [w for _, w in campaigns]
    level = fair_level(capacity, demands, weights)
    shares = fair_shares(capacity, demands, weights)
    capped = [i for i, (s, d) in enumerate(zip(shares, demands, strict=True)) if s < d]
    for i in capped:
        assert _close(shares[i] / weights[i], level)
        # One that got all it wanted wanted no more than its weight's share.
    for i in set(range(len(demands))) - set(capped):
        assert demands[i] <= level * weights[i] * (1 + 1e-9)


def test_weight_three_gets_three_times_weight_one() -> None:
    shares = fair_shares(60, [10.0] * 100, [3.0] * 10 + [1.0] * 90)
    assert _close(shares[0], 3 * shares[-1])
    assert _close(sum(shares), 60)


def test_a_campaign_wanting_less_leaves_the_rest_to_the_others() -> None:
    assert fair_shares(10, [1, 100, 100], [5, 1, 1]) == [1, 4.5, 4.5]
    assert fair_shares(10, [1, 2, 3], [1, 1, 1]) == [1, 2, 3]
