"""Shares of an account ceiling: weighted max-min fairness (water-filling).

The account's ceilings (``DISPATCHER_PROVIDER_CALLS_PER_SECOND``, and
``DISPATCHER_PROVIDER_MAX_LIVE_CALLS``) are shared by the campaigns sending
against them, each by its ``pacing.weight``, as Amazon Connect's outbound
campaigns allocate capacity. A share is ``min(demand, level * weight)``: the
level is raised until the shares fill the ceiling, so

- when the demands fit under the ceiling, each campaign gets its own demand (its
  configured pace): the ceiling does not bind and weights change nothing;
- a campaign that wants less than ``level * weight`` leaves the rest to the
  others (work-conserving);
- among the campaigns the ceiling holds, shares are proportional to weights.

The store applies this inside the claim (``store/lua/_pace.lua``, the same
arithmetic in Lua, recomputed at most once a second); this module is its
reference and what the tests hold it to.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

__all__ = ["HELD_BY", "HeldBy", "fair_level", "fair_shares"]

HeldBy = Literal["account_ceiling", "weight_share", "worker_capacity"]
"""Why a campaign got fewer calls than its pace: the account's ceiling (calls per
second or live calls) held it; its weight's share of a ceiling that binds held
it; the worker had no room to start the request."""
HELD_BY: tuple[HeldBy, ...] = ("account_ceiling", "weight_share", "worker_capacity")


def fair_level(capacity: float, demands: Sequence[float], weights: Sequence[float]) -> float:
    """The water level: each share is ``min(demand, level * weight)``; ``inf`` when
    every demand fits (the ceiling does not bind)."""
    if sum(demands) <= capacity:
        return math.inf
    left, weight_left = capacity, sum(weights)
    for i in sorted(range(len(demands)), key=lambda i: demands[i] / weights[i]):
        if demands[i] * weight_left > left * weights[i]:
            return left / weight_left
        left -= demands[i]
        weight_left -= weights[i]
    return math.inf  # unreachable: the demands exceed the capacity


def fair_shares(capacity: float, demands: Sequence[float], weights: Sequence[float]) -> list[float]:
    """Each campaign's share of ``capacity`` (see the module docstring)."""
    level = fair_level(capacity, demands, weights)
    return [min(d, level * w) for d, w in zip(demands, weights, strict=True)]
