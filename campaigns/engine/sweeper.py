"""The sweeper: gets stalled campaigns moving again, ends provider cool-downs, and
deletes final campaigns past ``DISPATCHER_RETENTION_DAYS``.

arq re-runs a SIGKILLed job only after its in-progress key expires, so the
dispatcher does not rely on that: a running campaign with no lease holder and
no recent heartbeat gets a fresh dispatch chain (older jobs stand down, since
they carry an older sequence number).

A pass costs what is overdue, not what exists: every sign of life (a heartbeat,
a run queued for later) moves the campaign's time in ``P:dispatch_due``, and a
pass reads only the campaigns past it. A thousand campaigns waiting for a
window cost the sweeper nothing until their next run is late. Once every
:data:`FULL_SWEEP_SECONDS` (over every worker) a full pass over every running
and recently queued campaign is the backstop.
"""

from __future__ import annotations

import structlog

from campaigns.domain.lifecycle import Move, State
from campaigns.engine.retention import delete_expired
from campaigns.queue import JobQueue
from campaigns.settings import Settings
from campaigns.store import Store, now_ms

__all__ = ["sweep"]

_DAY_MS = 86_400_000
FULL_SWEEP_SECONDS = 60
"""How often (over every worker) a pass looks at every running campaign, not
only at those overdue in ``P:dispatch_due``."""
_OVERDUE_PER_PASS = 1000
RETENTION_INTERVAL_SECONDS = 600
"""How often (over every worker) a sweep looks for campaigns past the retention:
a pass reads the index's older part, which can be long."""


async def sweep(store: Store, queue: JobQueue, settings: Settings) -> list[str]:
    """One pass; returns the campaigns it restarted."""
    log = structlog.stdlib.get_logger("campaigns.engine.sweeper")
    kicked: list[str] = []
    for campaign_id in await store.due_cooldowns():
        done, _ = await store.transition(campaign_id, Move.END_COOL_DOWN)
        if done:
            log.info("campaign_resumed", campaign_id=campaign_id, reason="provider cool-down over")
            kicked.append(campaign_id)
    stall_ms = int((settings.lease_seconds + 5) * 1000)
    now = now_ms()
    candidates = await store.overdue_campaigns(now - stall_ms, _OVERDUE_PER_PASS)
    if await store.full_sweep_due(FULL_SWEEP_SECONDS):
        # Running campaigns nobody dispatches, and campaigns whose first job was lost.
        candidates += await store.running_campaigns()
        candidates += await store.campaigns_created_between(now - _DAY_MS, now - stall_ms)
    for campaign_id in dict.fromkeys(candidates):
        if campaign_id in kicked or await _alive(store, queue, campaign_id, now - stall_ms):
            continue
        log.warning("campaign_stalled", campaign_id=campaign_id)
        kicked.append(campaign_id)
    for campaign_id in kicked:
        await store.heartbeat(campaign_id)
        await queue.dispatch(campaign_id, await store.bump_dispatch_seq(campaign_id))
    if settings.retention_days is not None and await store.retention_due(
        RETENTION_INTERVAL_SECONDS
    ):
        await delete_expired(
            store, settings.retention_days, now=now, callback_url=settings.callback_url
        )
    return kicked


async def _alive(store: Store, queue: JobQueue, campaign_id: str, since_ms: int) -> bool:
    """Whether the campaign needs no restart: it is not dispatched at all (its
    entry in the due set is dropped), a worker holds it, it showed a sign of
    life since ``since_ms``, or its next run is queued behind others."""
    campaign = await store.campaign(campaign_id)
    if campaign is None or campaign.state not in (State.RUNNING, State.QUEUED):
        await store.drop_dispatch_due(campaign_id)
        return True
    if await store.lease_holder(campaign_id) is not None:
        return True
    if await store.last_heartbeat_ms(campaign_id) >= since_ms:
        return True
    # Its next batch is queued behind others: a backlog, not a stall.
    return await queue.dispatch_waiting(campaign_id, campaign.dispatch_seq)
