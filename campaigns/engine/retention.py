"""Deleting final campaigns: by an operator (``campaigns delete``, ``DELETE
/v1/campaigns/{id}``), or by age (``DISPATCHER_RETENTION_DAYS``, in the sweep).

Only a campaign whose report is final may go: completed or cancelled, no call
live or in doubt, every accepted call settled, no dispatcher holding it. The
report should be exported first; after the delete nothing of it is left.
"""

from __future__ import annotations

import structlog

from campaigns.domain.lifecycle import FINAL_STATES
from campaigns.queue import campaign_job_keys
from campaigns.store import CampaignRecord, Store, callback_store, now_ms

__all__ = ["delete_campaign", "delete_expired", "why_not_deletable"]

_DAY_MS = 86_400_000
_PER_SWEEP = 100
"""Campaigns one sweep deletes at most: the rest wait for the next sweep."""

log = structlog.stdlib.get_logger("campaigns.engine.retention")


async def why_not_deletable(
    store: Store, campaign: CampaignRecord, callback_url: str | None = None
) -> str | None:
    """Why the campaign may not be deleted yet, or None. ``callback_url``: the
    account's (``DISPATCHER_CALLBACK_URL``): with a URL, events not yet delivered
    keep the campaign; without one they would be dropped undelivered anyway."""
    if campaign.state not in FINAL_STATES:
        return f"it is {campaign.state}: only completed or cancelled campaigns can be deleted"
    if campaign.live or campaign.unresolved or campaign.in_doubt:
        return "calls of it are live or in doubt; delete it once they are final"
    if campaign.settled < campaign.accepted:
        return "calls of it are not settled yet; delete it once its report is final"
    if await store.lease_holder(campaign.campaign_id) is not None:
        return "its dispatcher is still letting go; try again in a few seconds"
    if campaign.spec.callbacks.url or callback_url:
        waiting = await callback_store(store).undelivered(campaign.campaign_id)
        if waiting:
            return (
                f"{len(waiting)} of its callback events are not delivered yet; delete it "
                f"once they are (campaigns callbacks {campaign.campaign_id})"
            )
    return None


async def delete_campaign(store: Store, campaign: CampaignRecord) -> int:
    """Delete every key of a deletable campaign (checked by the caller); keys deleted."""
    keys = campaign_job_keys(
        campaign.campaign_id, campaign.dispatch_seq, campaign.spec.alerts.thresholds_percent
    )
    await callback_store(store).forget(campaign.campaign_id)
    deleted = await store.forget(campaign.campaign_id, keys)
    log.info("campaign_deleted", campaign_id=campaign.campaign_id, keys=deleted)
    return deleted


async def delete_expired(
    store: Store,
    retention_days: int,
    *,
    now: int | None = None,
    callback_url: str | None = None,
) -> list[str]:
    """Delete final campaigns that finished more than ``retention_days`` ago (at most
    :data:`_PER_SWEEP` a call): they were created before that too, so only the
    index's older part is read."""
    now = now_ms() if now is None else now
    cutoff = now - retention_days * _DAY_MS
    deleted: list[str] = []
    after: tuple[int, str] | None = None
    while len(deleted) < _PER_SWEEP:
        positions = await store.campaigns_in_order(after, 200, high_ms=cutoff)
        if not positions:
            break
        after = positions[-1]
        for campaign in await store.campaigns(*(cid for _, cid in positions)):
            if campaign is None or campaign.finished_at_ms is None:
                continue
            campaign_id = campaign.campaign_id
            if campaign.finished_at_ms > cutoff or await why_not_deletable(
                store, campaign, callback_url
            ):
                continue
            await delete_campaign(store, campaign)
            deleted.append(campaign_id)
            if len(deleted) >= _PER_SWEEP:
                break
    return deleted
