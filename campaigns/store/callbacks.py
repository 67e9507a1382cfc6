"""The callbacks outbox and delivery log in Redis.

The Lua scripts that change a campaign's state or settle an attempt append the
event to one stream (:attr:`Keys.callbacks_outbox`) in the same script, so an
event exists exactly when its change does. Delivery reads the stream through
one consumer group: an entry stays in the group's pending list until it is
acknowledged, so a worker killed mid-delivery leaves it to be sent again (at
least once, under the same event ID). Redis counts the deliveries of each
pending entry, which is what the backoff and the give-up are computed from.
An event that runs out of attempts moves, in one transaction, to its campaign's
failed hash, where an operator reads it and replays it (``callback_replay.lua``).
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar, cast

from redis.asyncio import Redis
from redis.exceptions import ResponseError

from campaigns.store.keys import Keys, campaign_of
from campaigns.store.records import text
from campaigns.store.scripts import load_script

if TYPE_CHECKING:
    from campaigns.store._store import Store

__all__ = ["GROUP", "LOG_LENGTH", "CallbackStore", "OutboxEvent", "callback_store"]

GROUP = "deliverers"
"""The one consumer group every worker reads the outbox through."""
_CONSUMER = "worker"
"""One consumer name for every worker: ownership does not matter, since a pass
claims only entries idle past their backoff, and one pass runs at a time (a
lock); per-worker names would pile up in the group forever."""
_PENDING_SCAN = 1000
"""Pending entries looked at per claim (one ``XPENDING``)."""
LOG_LENGTH = 100
"""Delivery results kept per campaign, newest first (about 15 KB of Redis per campaign)."""

T = TypeVar("T")


def _aw(result: Awaitable[T] | T) -> Awaitable[T]:
    return cast(Awaitable[T], result)


@dataclass(frozen=True, slots=True)
class OutboxEvent:
    """One outbox entry: its stream ID, its fields as the script wrote them, and
    how many times it has been handed out for delivery (this time included)."""

    stream_id: str
    fields: dict[str, str]
    deliveries: int = 1

    @property
    def event_id(self) -> str:
        return self.fields.get("event_id", self.stream_id)

    @property
    def campaign_id(self) -> str:
        return self.fields.get("campaign_id") or campaign_of(self.event_id)


def _fields(raw: Mapping[Any, Any] | None) -> dict[str, str]:
    return {str(text(k)): str(text(v)) for k, v in (raw or {}).items()}


class CallbackStore:
    """Reads and atomic writes of the outbox, the failed events and the delivery log."""

    def __init__(self, redis: Redis, keys: Keys) -> None:
        self.redis = redis
        self.keys = keys
        self._replay = load_script("callback_replay").bind(redis)

    def _failed(self, campaign_id: str) -> str:
        return self.keys.campaign(campaign_id, "callbacks:failed")

    def _log(self, campaign_id: str) -> str:
        return self.keys.campaign(campaign_id, "callbacks:log")

    async def waiting(self) -> int:
        """Events in the outbox, new or pending (delivered ones are deleted): a pass
        with nothing to do costs one command and creates no key."""
        return int(await self.redis.xlen(self.keys.callbacks_outbox))

    async def undelivered(self, campaign_id: str, page: int = 1000) -> list[str]:
        """Stream IDs of the campaign's events still in the outbox (new or being
        retried). One pass over the outbox (capped at ~100,000 entries)."""
        found: list[str] = []
        start = "-"
        outbox = self.keys.callbacks_outbox
        while True:
            entries = await self.redis.xrange(outbox, min=start, count=page)
            for stream_id, raw in entries:
                event = OutboxEvent(str(text(stream_id)), _fields(raw))
                if event.campaign_id == campaign_id:
                    found.append(event.stream_id)
            if len(entries) < page:
                return found
            start = "(" + str(text(entries[-1][0]))

    async def forget(self, campaign_id: str) -> int:
        """Take the campaign's events out of the outbox and its given-up events out of
        the account's index (its own failed hash and delivery log are among the
        campaign's keys, deleted with them); the events dropped undelivered."""
        outbox, failed = self.keys.callbacks_outbox, self.keys.callbacks_failed
        waiting = await self.undelivered(campaign_id)
        mine = [m async for m, _ in self.redis.zscan_iter(failed, match=f"{campaign_id}:*")]
        async with self.redis.pipeline(transaction=True) as pipe:
            if waiting:
                await self._ensure_group()
                pipe.xack(outbox, GROUP, *waiting)
                pipe.xdel(outbox, *waiting)
            if mine:
                pipe.zrem(failed, *mine)
            await pipe.execute()
        return len(waiting)

    async def take_lock(self, token: str, ttl_ms: int) -> bool:
        """One delivery pass at a time across workers (expires if its holder dies)."""
        return bool(await self.redis.set(self.keys.callbacks_lock, token, nx=True, px=ttl_ms))

    async def release_lock(self, token: str) -> None:
        key = self.keys.callbacks_lock
        if text(await self.redis.get(key)) == token:
            await self.redis.delete(key)

    async def _ensure_group(self) -> None:
        try:
            # From the start: events written before the first worker are delivered too.
            await self.redis.xgroup_create(self.keys.callbacks_outbox, GROUP, id="0", mkstream=True)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    async def read_new(self, count: int) -> list[OutboxEvent]:
        """Entries never handed out before (their first delivery)."""
        await self._ensure_group()
        answer = await self.redis.xreadgroup(
            GROUP, _CONSUMER, {self.keys.callbacks_outbox: ">"}, count=count
        )
        events: list[OutboxEvent] = []
        for _stream, entries in answer or []:
            for stream_id, raw in entries:
                events.append(OutboxEvent(str(text(stream_id)), _fields(raw)))
        return events

    async def claim_due(self, backoff_ms: Callable[[int], int], count: int) -> list[OutboxEvent]:
        """Entries whose last delivery failed (or whose worker died) and whose backoff
        is over: claimed again, which counts one more delivery."""
        await self._ensure_group()
        outbox = self.keys.callbacks_outbox
        # Looks further than it takes: older entries wait longer, and must not
        # hide newer ones whose shorter backoff is over.
        pending = await self.redis.xpending_range(outbox, GROUP, "-", "+", _PENDING_SCAN)
        due: list[tuple[str, int, int]] = []
        for row in pending:
            wait = backoff_ms(int(row["times_delivered"]))
            if int(row["time_since_delivered"]) >= wait and len(due) < count:
                due.append((str(text(row["message_id"])), int(row["times_delivered"]), wait))
        events: list[OutboxEvent] = []
        for stream_id, delivered, wait in due:
            claimed = await self.redis.xclaim(outbox, GROUP, _CONSUMER, wait, [stream_id])
            for entry_id, raw in claimed or []:
                if raw is None:
                    continue  # trimmed from the capped stream meanwhile: Redis drops it
                events.append(OutboxEvent(str(text(entry_id)), _fields(raw), delivered + 1))
        return events

    def _note(self, pipe: Any, event: OutboxEvent, result: str, **extra: Any) -> None:
        entry: dict[str, Any] = {
            "event_id": event.event_id,
            "type": event.fields.get("type"),
            "result": result,
            "delivery": event.deliveries,
            **extra,
        }
        pipe.lpush(self._log(event.campaign_id), json.dumps(entry))
        pipe.ltrim(self._log(event.campaign_id), 0, LOG_LENGTH - 1)

    async def delivered(
        self, event: OutboxEvent, *, status_code: int, at_ms: int, result: str = "delivered"
    ) -> None:
        """Acknowledged and removed from the outbox, and logged, in one transaction
        (``result`` ``no_url``: there was nowhere to send it; not logged)."""
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.xack(self.keys.callbacks_outbox, GROUP, event.stream_id)
            pipe.xdel(self.keys.callbacks_outbox, event.stream_id)
            if result != "no_url":  # an account without callbacks keeps no log
                self._note(pipe, event, result, status_code=status_code, at=at_ms)
            await pipe.execute()

    async def will_retry(self, event: OutboxEvent, *, error: str, at_ms: int) -> None:
        """Left pending (the group keeps it); the log says why this delivery failed."""
        async with self.redis.pipeline(transaction=True) as pipe:
            self._note(pipe, event, "retrying", error=error, at=at_ms)
            await pipe.execute()

    async def give_up(self, event: OutboxEvent, *, error: str, at_ms: int) -> None:
        """Out of attempts: into the campaign's failed events, out of the outbox, atomically."""
        record = {
            "event_id": event.event_id,
            "campaign_id": event.campaign_id,
            "type": event.fields.get("type"),
            "deliveries": event.deliveries,
            "last_error": error,
            "failed_at": at_ms,
            "fields": [item for pair in event.fields.items() for item in pair],
        }
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hset(self._failed(event.campaign_id), event.event_id, json.dumps(record))
            pipe.zadd(self.keys.callbacks_failed, {event.event_id: at_ms})
            pipe.xack(self.keys.callbacks_outbox, GROUP, event.stream_id)
            pipe.xdel(self.keys.callbacks_outbox, event.stream_id)
            self._note(pipe, event, "failed", error=error, at=at_ms)
            await pipe.execute()

    async def failed(self, campaign_id: str) -> list[dict[str, Any]]:
        """The campaign's events whose delivery gave up, oldest first."""
        raw = await _aw(self.redis.hvals(self._failed(campaign_id)))
        rows = [json.loads(str(text(r))) for r in raw]
        for row in rows:
            row.pop("fields", None)
        return sorted(rows, key=lambda r: (r.get("failed_at", 0), r.get("event_id", "")))

    async def log(self, campaign_id: str, limit: int = 100) -> list[dict[str, Any]]:
        """The newest delivery results of the campaign's events, newest first."""
        raw = await _aw(self.redis.lrange(self._log(campaign_id), 0, limit - 1))
        return [json.loads(str(text(r))) for r in raw]

    async def all_failed(self) -> list[str]:
        """Every failed event ID of the account, oldest first."""
        return [str(text(m)) for m in await self.redis.zrange(self.keys.callbacks_failed, 0, -1)]

    async def replay(self, event_id: str, *, now_ms: int) -> bool:
        """Put a failed event back in the outbox under the same event ID; False if it
        is not a failed event (never failed, or already replayed)."""
        campaign_id = campaign_of(event_id)
        result = await self._replay(
            failed=self._failed(campaign_id),
            failed_index=self.keys.callbacks_failed,
            outbox=self.keys.callbacks_outbox,
            log=self._log(campaign_id),
            event_id=event_id,
            now=now_ms,
            log_length=LOG_LENGTH,
        )
        return text(result) == "ok"


def callback_store(store: Store) -> CallbackStore:
    """The outbox and delivery log of the account whose campaigns ``store`` holds."""
    return CallbackStore(store.redis, store.keys)
