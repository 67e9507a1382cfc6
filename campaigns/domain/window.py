"""The calling-window calculator: is a number's window open now, and when does it open next.

Pure: a clock reading (an aware UTC ``datetime``) goes in, an answer comes out,
so the rules are testable on a fixed clock. Times are *wall-clock* times in
each zone (``zoneinfo``, DST included): a window ``09:00``-``20:00`` is open
while the local clock reads from 09:00 up to, not including, 20:00.

- **Days** name the local day a window *opens* on. A window whose end is
  earlier than its start crosses midnight: ``20:00``-``02:00`` on ``fri`` is
  open Friday 20:00 to Saturday 02:00. ``24:00`` as an end means midnight at
  the end of the day (``00:00``-``24:00`` is all day).
- **Restricted dates** are local dates on which nothing is open: the window
  that opens on one is cancelled, and the part of an overnight window that
  runs into one is closed too.
- **Several zones** (a number that phonenumbers maps to more than one zone):
  callable only while the window is open in every one of them.
- **DST.** On a spring-forward day a start inside the skipped hour opens the
  window the moment the clock jumps past it; on a fall-back day a start
  inside the repeated hour opens it at the first occurrence.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo

__all__ = ["DAY_NAMES", "ETA_HORIZON_MINUTES", "Window", "drain_time", "zone"]

DAY_NAMES = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
"""Day names as the spec writes them, in ``date.weekday()`` order."""

_DAY_SECONDS = 86_400
_SEARCH_DAYS = 800
"""How far ahead an opening is looked for: restricted dates are at most two years' worth."""
_GROUP_ROUNDS = 200
"""Bound on the search for an instant when several zones are open together."""


@lru_cache(maxsize=4096)
def zone(name: str) -> ZoneInfo:
    """A cached ``ZoneInfo`` (KeyError-free callers check names at validation)."""
    return ZoneInfo(name)


@dataclass(frozen=True, slots=True)
class Window:
    """Open days, wall-clock start and end (seconds after local midnight), closed dates."""

    days: frozenset[int]
    start: int
    end: int
    restricted: frozenset[date] = frozenset()

    def __post_init__(self) -> None:
        if not self.days or not self.days <= set(range(7)):
            raise ValueError("days must be a non-empty set of weekdays 0-6")
        if not 0 <= self.start < _DAY_SECONDS or not 0 < self.end <= _DAY_SECONDS:
            raise ValueError("start must be in [0, 24h) and end in (0, 24h]")
        if self.start == self.end:
            raise ValueError("start and end are equal: the window would never open")

    @property
    def overnight(self) -> bool:
        """Ends the next day (the end is before the start)."""
        return self.end < self.start

    def _opens_on(self, day: date) -> bool:
        return day.weekday() in self.days and day not in self.restricted

    def open_in(self, tz: ZoneInfo, at: datetime) -> bool:
        """Whether the window is open at instant ``at`` on the clocks of zone ``tz``."""
        local = at.astimezone(tz)
        today = local.date()
        if today in self.restricted:
            return False
        second = local.hour * 3600 + local.minute * 60 + local.second
        if not self.overnight:
            return self.start <= second < self.end and self._opens_on(today)
        if second >= self.start:
            return self._opens_on(today)
        return second < self.end and self._opens_on(today - timedelta(days=1))

    def open_everywhere(self, zones: Iterable[ZoneInfo], at: datetime) -> bool:
        return all(self.open_in(tz, at) for tz in zones)

    def next_open_in(self, tz: ZoneInfo, at: datetime) -> datetime | None:
        """The first instant at or after ``at`` when the window is open in ``tz``."""
        if self.open_in(tz, at):
            return at
        first = at.astimezone(tz).date()
        for offset in range(_SEARCH_DAYS):
            day = first + timedelta(days=offset)
            if not self._opens_on(day):
                continue
            opening = self._opening(tz, day)
            if opening is not None and opening >= at:
                return opening
        return None

    def _opening(self, tz: ZoneInfo, day: date) -> datetime | None:
        """When the window that opens on local ``day`` actually opens (DST-aware)."""
        wall = datetime.combine(day, time(self.start // 3600, self.start % 3600 // 60))
        wall = wall.replace(second=self.start % 60)
        early, late = sorted(wall.replace(tzinfo=tz, fold=fold).astimezone(UTC) for fold in (0, 1))
        if self.open_in(tz, early):
            return early
        if early == late or not self.open_in(tz, late):
            return None
        # The start falls in a skipped hour: the window opens when the clock jumps.
        low, high = int(early.timestamp()), int(late.timestamp())
        while high - low > 1:
            middle = (low + high) // 2
            if self.open_in(tz, datetime.fromtimestamp(middle, UTC)):
                high = middle
            else:
                low = middle
        return datetime.fromtimestamp(high, UTC)

    def next_open(self, zones: Sequence[ZoneInfo], at: datetime) -> datetime | None:
        """The first instant at or after ``at`` when the window is open in every zone.

        None when there is none within the search horizon (for example two
        zones whose windows never overlap).
        """
        moment = at
        for _ in range(_GROUP_ROUNDS):
            openings = [self.next_open_in(tz, moment) for tz in zones]
            if any(o is None for o in openings):
                return None
            candidate = max(o for o in openings if o is not None)
            if self.open_everywhere(zones, candidate):
                return candidate
            # A zone closed again before the last one opened: look past it.
            moment = candidate
        return None


ETA_HORIZON_MINUTES = 200_000
"""How far ahead :func:`drain_time` looks (about four and a half months)."""


def drain_time(
    window: Window | None,
    groups: Sequence[Sequence[ZoneInfo]],
    pending: Sequence[int],
    calls_per_second: float,
    start: datetime,
    end: datetime | None = None,
) -> datetime | None:
    """When ``pending[g]`` contacts of each zone group ``g`` are all dialled.

    Minute by minute from ``start``: the minute's calls (the campaign's pace,
    one pace for all its groups) go to the groups whose window is open then,
    oldest group first, as the dispatcher claims from open groups only. With
    ``end`` (the schedule's ``end_at``) the answer is at most ``end``: what is
    left then expires. None beyond :data:`ETA_HORIZON_MINUTES`.
    """
    left: list[float] = [float(n) for n in pending]
    per_minute = calls_per_second * 60
    moment = start
    limit = start + timedelta(minutes=ETA_HORIZON_MINUTES)
    while moment < limit:
        if end is not None and moment >= end:
            return end
        capacity = per_minute
        for group, zones in enumerate(groups):
            if capacity <= 0:
                break
            if left[group] <= 0 or (
                window is not None and not window.open_everywhere(zones, moment)
            ):
                continue
            taken = min(left[group], capacity)
            left[group] -= taken
            capacity -= taken
        if all(n <= 0 for n in left):
            used = per_minute - capacity
            return moment + timedelta(seconds=used / calls_per_second)
        if window is not None and capacity == per_minute:
            # Nothing open: jump to the next opening of any group with contacts left.
            openings = [
                window.next_open(zones, moment)
                for zones, n in zip(groups, left, strict=True)
                if n > 0
            ]
            found = [o for o in openings if o is not None]
            if not found:
                return None
            moment = max(min(found), moment + timedelta(seconds=1))
            continue
        moment += timedelta(minutes=1)
    return None
