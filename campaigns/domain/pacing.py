"""Pace rules: a rate in calls per second as the slot arithmetic the store enforces.

A rule is two limits checked together, in Redis time, in microseconds:

- a schedule (GCRA): slots ``interval`` apart, so requests start evenly, with
  no burst after a gap and no gap between batches, workers or restarts;
- a window: at most ``burst`` requests in any ``window``, so that a request
  which started late never lets the next ones crowd into one second. For a
  whole rate (10/s) that is "never more than 10 in any 1 s window"; for a
  fractional one (2.5/s) it is "never more than 2 in any 0.8 s".

Both carry a margin, :data:`MARGIN` (1 %) unless ``DISPATCHER_PACE_MARGIN_PERCENT``
says otherwise: the pace is enforced where a request is allowed to start, and
the provider sees it a claim's answer, a stamp and an HTTP write later, with a
few milliseconds of jitter on a quiet host. Slots 1 % apart and windows 1 %
long (10 ms of a second) absorb that, so the provider's own count of any 1 s
window stays within the rate; the rate delivered is 99 % of the one
configured. On a loaded host the jitter is tens of milliseconds (``make bench``,
``loaded``): a margin of that many hundredths of a second keeps the provider's
count, at the price of a rate delivered ``1 / (1 + margin)`` of the one set.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

__all__ = ["MARGIN", "NO_LIMIT", "PaceRule", "pace_rule"]

MARGIN = 0.01


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


def pace_rule(calls_per_second: float | None, margin: float = MARGIN) -> PaceRule:
    """The rule for a rate; ``None`` is no limit; ``margin`` a fraction (0.01: 1 %)."""
    if calls_per_second is None:
        return NO_LIMIT
    if not (math.isfinite(calls_per_second) and calls_per_second > 0):
        raise ValueError(f"calls per second must be a positive number, got {calls_per_second!r}")
    period = 1_000_000 / calls_per_second * (1 + margin)
    burst = max(1, math.floor(calls_per_second))
    return PaceRule(max(1, math.ceil(period)), burst, math.ceil(burst * period))
