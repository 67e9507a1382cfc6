"""What one worker carries: its campaigns' runs, counted in calls, not campaigns.

A worker holds the runs of any number of running campaigns at once, each an
asyncio task that sleeps until its campaign's next pace slot (the schedule is
in Redis, ``domain/pacing.py``). A sleeping run costs no request and no
connection, so the limits are the things that do cost something:

- open create requests, over all of the worker's campaigns
  (``DISPATCHER_WORKER_MAX_OPEN_REQUESTS``), taken before a claim, so a claim
  never holds a reservation while it waits for a request to be allowed;
- Redis connections (``DISPATCHER_REDIS_MAX_CONNECTIONS``, a blocking pool);
- CPU.

A held run must still notice at once when an operator pauses, cancels or
changes its campaign (``pause`` waits for the run to let go of the lease):
one watch per worker reads the state and terms of every campaign it holds in
one pipelined round trip every :data:`WATCH_SECONDS` and wakes the runs whose
campaign changed. Nothing depends on the watch for safety: the claim checks
the state and terms atomically, the watch only makes the run claim sooner.

Campaigns are spread over workers by :func:`fair_share`: a worker past its
share leaves a newly due run in the queue for a moment, for a worker that has
room to take; past that moment it takes it anyway, so no campaign waits for a
worker that is not there.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from dataclasses import dataclass, field

from campaigns import metrics
from campaigns.domain.lifecycle import State
from campaigns.settings import Settings
from campaigns.store import Store
from campaigns.store.faults import fault_log, is_redis_fault

__all__ = ["SHARE_GRACE_SECONDS", "WATCH_SECONDS", "WorkerCapacity", "fair_share"]

WATCH_SECONDS = 0.25
"""How often the watch reads the held campaigns' state: the longest a pause
waits for a sleeping run to notice."""
SHARE_GRACE_SECONDS = 1.0
"""How long a worker past its share leaves a due run for another worker."""
_SHARE_SLACK = 0.05
_SHARE_FRESH_SECONDS = 2.0


def fair_share(campaigns: int, workers: int) -> int:
    """The most runs one of ``workers`` live workers should hold of ``campaigns``.

    A little above an even split (5 % and one run), so workers do not hand
    runs back and forth over a difference of one."""
    workers = max(workers, 1)
    even = math.ceil(campaigns / workers)
    return even + math.ceil(even * _SHARE_SLACK) + 1


@dataclass(slots=True)
class _Held:
    campaign_id: str
    terms: int
    changed: asyncio.Event = field(default_factory=asyncio.Event)


class WorkerCapacity:
    """One worker's limits, shared by every campaign run it holds."""

    def __init__(self, store: Store, settings: Settings) -> None:
        self.store = store
        self.requests = asyncio.Semaphore(settings.worker_max_open_requests)
        """One permit per open create request of this worker, over all campaigns."""
        self._held: dict[str, _Held] = {}
        self._watch: asyncio.Task[None] | None = None
        self._load: tuple[float, int, int] = (-math.inf, 0, 1)

    @property
    def held(self) -> int:
        """Runs this worker holds now."""
        return len(self._held)

    def hold(self, token: str, campaign_id: str, terms: int) -> asyncio.Event:
        """A run took its campaign's lease: the event is set once the campaign stops
        running or its terms change, so a sleeping run wakes and claims again."""
        held = _Held(campaign_id, terms)
        self._held[token] = held
        metrics.held_runs(len(self._held))
        if self._watch is None or self._watch.done():
            self._watch = asyncio.create_task(self._watch_held())
        return held.changed

    def let_go(self, token: str) -> None:
        self._held.pop(token, None)
        metrics.held_runs(len(self._held))

    def wake_all(self) -> None:
        """The worker is draining: every sleeping run wakes and hands over."""
        for held in self._held.values():
            held.changed.set()

    async def close(self) -> None:
        if self._watch is not None:
            self._watch.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watch

    async def share(self, queue_name: str, due_runs: int) -> int:
        """This worker's share of the runs, with ``due_runs`` about to start.

        The running campaigns and the live workers are read at most every
        couple of seconds (two commands in one round trip)."""
        at, running, workers = self._load
        if time.monotonic() - at > _SHARE_FRESH_SECONDS:
            running, workers = await self.store.dispatch_load(queue_name)
            self._load = (time.monotonic(), running, workers)
        return fair_share(max(running, self.held + due_runs), workers)

    async def _watch_held(self) -> None:
        while self._held:
            await asyncio.sleep(WATCH_SECONDS)
            held = list(self._held.values())
            if not held:
                return
            try:
                seen = await self.store.states_and_terms([h.campaign_id for h in held])
            except Exception as exc:
                if not is_redis_fault(exc):
                    raise
                fault_log.failed(exc, where="watch")
                continue
            for run, (state, terms) in zip(held, seen, strict=True):
                if state is not State.RUNNING or terms != run.terms:
                    run.changed.set()
