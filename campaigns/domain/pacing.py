"""Pace rules: a rate in calls per second as the slot arithmetic the store enforces.

A rule is two limits checked together, in Redis time, in microseconds:

- a schedule (GCRA): slots ``interval`` apart, so requests start evenly, with
  no burst after a gap and no gap between batches, workers or restarts;
- a window: at most ``burst`` requests in any ``window``, so that a request
  which started late never lets the next ones crowd into one second. For a
  whole rate (10/s) that is "never more than 10 in any 1 s window"; for a
  fractional one (2.5/s) it is "never more than 2 in any 0.8 s".

``window`` carries a margin of :data:`WINDOW_MARGIN_US`: the window is counted
where the request is stamped, and the provider sees it a little later, with
jitter. The margin costs 0.1 % of a rate of 1/s or more.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

__all__ = ["NO_LIMIT", "WINDOW_MARGIN_US", "PaceRule", "pace_rule"]

WINDOW_MARGIN_US = 1_000


@dataclass(frozen=True, slots=True)
class PaceRule:
    interval_us: int
    """Microseconds between slots; 0 means no limit."""
    burst: int
    """Requests allowed in any ``window_us``."""
    window_us: int

    @property
    def limited(self) -> bool:
        return self.interval_us > 0


NO_LIMIT = PaceRule(0, 0, 0)


def pace_rule(calls_per_second: float | None) -> PaceRule:
    """The rule for a rate; ``None`` is no limit."""
    if calls_per_second is None:
        return NO_LIMIT
    if not (math.isfinite(calls_per_second) and calls_per_second > 0):
        raise ValueError(f"calls per second must be a positive number, got {calls_per_second!r}")
    interval = max(1, math.ceil(1_000_000 / calls_per_second))  # never faster than asked
    burst = max(1, math.floor(calls_per_second))
    return PaceRule(interval, burst, burst * interval + WINDOW_MARGIN_US)
