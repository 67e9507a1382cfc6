"""Deleting a final campaign: every key of it, and its entries in shared keys.

A campaign's attempts can be many (one hash each), so they go a page at a
time, oldest first, trimmed from the campaign's attempt list as they go; the
campaign's own keys and its index entries go last. A delete that dies half way
leaves the campaign listed, marked ``deleting``, and is finished by running it
again (``campaigns delete``, or the retention sweep). What it removes:

- ``P:a:A`` of each attempt, and A in ``P:calls`` (by its call ID), ``P:unsettled``,
  ``P:sent_to:N`` and ``P:freq:N`` (by its number);
- every ``P:c:C:*`` key (:data:`CAMPAIGN_KEYS`, and each zone group's pending list);
- C in ``P:campaigns``, ``P:running`` and ``P:cooldown``, and its event IDs in
  ``P:callbacks:failed`` (its undelivered callback events keep it from being
  deleted: ``engine/retention.py``);
- the keys the caller names besides (the queue's job and result keys of C).
"""

from __future__ import annotations

from collections.abc import Awaitable, Sequence
from typing import TYPE_CHECKING, Any, cast

from campaigns.domain.policy import contact_number
from campaigns.store.records import integer, text

if TYPE_CHECKING:
    from campaigns.store._store import Store

__all__ = ["CAMPAIGN_KEYS", "forget_campaign"]

CAMPAIGN_KEYS = (
    "meta",
    "contacts",
    "pending",
    "retry",
    "parked",
    "suppress",
    "unsent",
    "tries",
    "attempts",
    "unresolved",
    "lease",
    "pace",
    "pace_log",
    "alerts",
    "reconciliation",
    "history",
    "callbacks:failed",
    "callbacks:log",
)
"""Every ``P:c:C:<what>`` key (``campaigns/store/keys.py``) but the staging keys,
which expire by themselves within the hour, and ``pending:G`` (from ``groups``)."""
_PAGE = 500


async def forget_campaign(store: Store, campaign_id: str, extra_keys: Sequence[str] = ()) -> int:
    """Delete the campaign as described above; the number of keys deleted.

    The caller has checked that the campaign is final with nothing in flight.
    """
    redis, keys = store.redis, store.keys
    meta = keys.meta(campaign_id)
    await cast(Awaitable[Any], redis.hset(meta, "deleting", "1"))
    attempts_key = keys.campaign(campaign_id, "attempts")
    deleted = 0
    while True:
        page = await cast(Awaitable[list[Any]], redis.lrange(attempts_key, 0, _PAGE - 1))
        ids = [str(text(i)) for i in page]
        if not ids:
            break
        async with redis.pipeline(transaction=False) as pipe:
            for attempt_id in ids:
                pipe.hmget(keys.attempt(attempt_id), ["call_id", "contact_json"])
            found = await pipe.execute()
        async with redis.pipeline(transaction=False) as pipe:
            for attempt_id, (call_id, contact) in zip(ids, found, strict=True):
                pipe.delete(keys.attempt(attempt_id))
                pipe.zrem(keys.unsettled, attempt_id)
                if call_id is not None:
                    pipe.hdel(keys.calls, str(text(call_id)))
                number = _number(text(contact))
                if number is not None:
                    pipe.zrem(keys.sent_to(number), attempt_id)
                    pipe.zrem(keys.frequency(number), attempt_id)
            pipe.ltrim(attempts_key, len(ids), -1)
            await pipe.execute()
        deleted += len(ids)
    groups = integer(text(await cast(Awaitable[Any], redis.hget(meta, "groups"))), 1)
    own = [keys.campaign(campaign_id, what) for what in CAMPAIGN_KEYS]
    own += [keys.pending(campaign_id, group) for group in range(1, groups)]
    async with redis.pipeline(transaction=True) as pipe:
        pipe.delete(*own, *extra_keys)
        pipe.zrem(keys.campaigns, campaign_id)
        pipe.srem(keys.running, campaign_id)
        pipe.zrem(keys.cooldown, campaign_id)
        pipe.zrem(keys.dispatch_due, campaign_id)
        removed, *_ = await pipe.execute()
    return deleted + int(removed)


def _number(contact: str | None) -> str | None:
    """The number an attempt called, from its stored contact (None if unreadable)."""
    try:
        return None if not contact else contact_number(contact)
    except ValueError:
        return None
