"""The contact policy at dispatch time: what the claim script needs from the clock.

The claim script (``store/lua/claim.lua``) applies the rules atomically: the
schedule, do-not-call and suppress lists, the frequency cap, retries. It
never does time-zone math: this module tells it which zone groups have their
calling window open now (the window calculator, ``domain/window.py``, cached
per campaign and second), and, when the claim finds nothing it may call, says
until when the dispatcher should wait (the next window opening, the schedule's
start, the first due retry or parked contact), bounded so that a resume,
cancel or list change is seen (``DISPATCHER_WAIT_RECHECK_SECONDS``, a minute).

A claim that passes over contacts (suppressed, capped) answers ``skipped`` and
is simply repeated; one that finds the schedule over runs the chunked expire
script until nothing is left, then claims again, which completes the campaign.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from campaigns.domain.window import Window, zone
from campaigns.settings import Settings
from campaigns.store import CampaignRecord, Claim, Store, now_ms

__all__ = ["ContactPolicy", "Wait"]

_MIN_WAIT_SECONDS = 0.2
_CLAIM_ROUNDS = 20
"""Claims per :meth:`ContactPolicy.claim` call when each one passes over contacts."""
_EXPIRE_CHUNK = 1000


@dataclass(frozen=True, slots=True)
class Wait:
    """Why a campaign has nothing to call now, and when that may change."""

    reason: str
    until_ms: int | None

    def defer_seconds(self, now: int, most: float) -> float:
        """How long to defer the next dispatch: until then, at most ``most`` seconds."""
        if self.until_ms is None:
            return most
        return min(most, max(_MIN_WAIT_SECONDS, (self.until_ms - now) / 1000))


class ContactPolicy:
    """Claim context and wait decisions for one worker process (holds small caches)."""

    def __init__(self, store: Store, settings: Settings) -> None:
        self.store = store
        self.settings = settings
        self._windows: dict[str, tuple[object, Window]] = {}
        self._open: dict[str, tuple[int, tuple[int, ...]]] = {}
        self.clock: Callable[[], int] = now_ms
        """Milliseconds since the epoch; a seam for tests that need another day."""

    def _window(self, campaign: CampaignRecord) -> Window | None:
        rules = campaign.spec.calling_window
        if rules is None:
            return None
        cached = self._windows.get(campaign.campaign_id)
        if cached is None or cached[0] != rules:
            cached = (rules, rules.window())
            self._windows[campaign.campaign_id] = cached
        return cached[1]

    def open_groups(self, campaign: CampaignRecord, now: int) -> tuple[int, ...]:
        """Zone groups whose window is open at ``now`` in every one of their zones."""
        window = self._window(campaign)
        if window is None:
            return tuple(range(len(campaign.zone_groups)))
        second = now // 1000
        cached = self._open.get(campaign.campaign_id)
        if cached is not None and cached[0] == second:
            return cached[1]
        at = _instant(now)
        found = tuple(
            group
            for group, zones in enumerate(campaign.zone_groups)
            if window.open_everywhere([zone(z) for z in zones], at)
        )
        self._open[campaign.campaign_id] = (second, found)
        return found

    def next_opening(
        self, campaign: CampaignRecord, groups: tuple[int, ...], now: int
    ) -> int | None:
        """When the first of ``groups`` opens (ms), or None if none opens in the horizon."""
        window = self._window(campaign)
        if window is None:
            return None
        at = _instant(now)
        found: list[int] = []
        for group in groups:
            if group >= len(campaign.zone_groups):
                continue
            opening = window.next_open([zone(z) for z in campaign.zone_groups[group]], at)
            if opening is not None:
                found.append(int(opening.timestamp() * 1000))
        return min(found) if found else None

    def wait_for(self, campaign: CampaignRecord, claim: Claim, now: int) -> Wait:
        """Until when a ``wait`` claim should wait, and why."""
        reason = claim.wait_reason or "window"
        until = claim.due_ms
        if claim.closed_groups:
            opening = self.next_opening(campaign, claim.closed_groups, now)
            if opening is not None and (until is None or opening < until):
                until = opening
        return Wait(reason, until)

    def claim_args(self, campaign: CampaignRecord) -> dict[str, Any]:
        """The policy's arguments to :meth:`Store.claim`: the clock reading, the
        zone groups open at it, the frequency cap."""
        now = self.clock()
        return {
            "now": now,
            "open_groups": self.open_groups(campaign, now),
            "cap": self.settings.frequency_cap,
        }

    async def claim(self, campaign: CampaignRecord, lease_token: str, **claim: Any) -> Claim:
        """Claim under the contact policy: repeat past skipped contacts, expire at the
        schedule's end. Any outcome but ``skipped`` and ``expire`` is returned;
        ``claim`` holds the claim's other arguments (the operator's messages)."""
        result = Claim("skipped")
        for _ in range(_CLAIM_ROUNDS):
            result = await self.store.claim(
                campaign.campaign_id, lease_token, **claim, **self.claim_args(campaign)
            )
            if result.outcome == "expire":
                await self.expire(campaign.campaign_id, lease_token)
            elif result.outcome != "skipped":
                return result
        return result

    async def expire(self, campaign_id: str, lease_token: str) -> None:
        """Record every contact left as expired (or capped), a chunk per script call."""
        left = 1
        while left > 0:
            left = await self.store.expire(
                campaign_id, lease_token, limit=_EXPIRE_CHUNK, now=self.clock()
            )


def _instant(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, UTC)
