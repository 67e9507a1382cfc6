"""The campaign store: every read and atomic write of campaign state in Redis.

Each state change that must not race (claim + reserve, record, settle,
operator transitions) is one Lua script (``lua/``), so any number of workers
and operators see one consistent order of events. Key names come from
:mod:`campaigns.store.keys`; states, statuses and halt codes from
:mod:`campaigns.domain.lifecycle`. The store makes no domain decision: worst
cases, estimates and operator wording are handed in by the caller.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import uuid
from collections.abc import (
    AsyncGenerator,
    AsyncIterator,
    Awaitable,
    Callable,
    Iterable,
    Mapping,
    Sequence,
)
from typing import Any, Literal, TypeVar, cast

from redis.asyncio import Redis
from redis.exceptions import RedisError

from campaigns.domain.changes import CampaignChange
from campaigns.domain.contacts import Contacts, Tally
from campaigns.domain.lifecycle import (
    ACTIVE_STATES,
    BUDGET_CHANGE_STATES,
    FINAL_CALL_STATUSES,
    NEVER_SENT_STATUSES,
    AttemptStatus,
    Move,
    OperatorAction,
    State,
)
from campaigns.domain.money import MAX_MICROS
from campaigns.domain.pacing import MARGIN, NO_LIMIT, PaceRule, pace_rule
from campaigns.domain.policy import ZoneGroups, contact_number, parse_instant
from campaigns.domain.sharing import HeldBy
from campaigns.domain.spec import CampaignSpec, identify
from campaigns.store.forget import forget_campaign
from campaigns.store.history import HISTORY_LIMIT, History
from campaigns.store.keys import Keys, campaign_of
from campaigns.store.records import (
    Attempt,
    BudgetBelowFloor,
    BudgetChange,
    CampaignRecord,
    Claim,
    ClaimOutcome,
    StaleTerms,
    StoreError,
    SubmitConflict,
    TermsChange,
    attempt_from_hash,
    campaign_from_hash,
    decode,
    integer,
    text,
    unsent_attempt,
)
from campaigns.store.replicas import NotReplicated, ReplicaAck
from campaigns.store.scripts import load_script

__all__ = ["Store", "now_ms"]

_STAGING_SECONDS = 3600
"""Staged contacts outlive a submitting process that died by at most this long."""
_CONTACT_CHUNK = 1000
_FINGERPRINT_VERSION = 2
"""2: values, not spellings (``"1.0"`` is ``"1.00"``); campaigns without it hold 1."""
_NEVER_SENT = frozenset(str(s) for s in NEVER_SENT_STATUSES)
T = TypeVar("T")


def _aw(result: Awaitable[T] | T) -> Awaitable[T]:
    """redis-py types async commands as ``Awaitable[T] | T``; this narrows them."""
    return cast(Awaitable[T], result)


def _str(value: Any) -> str:
    return cast(str, text(value))


def now_ms() -> int:
    return int(time.time() * 1000)


class Store:
    """All reads and atomic writes of campaign state in Redis."""

    def __init__(
        self,
        redis: Redis,
        prefix: str = "dsp",
        *,
        replicas: ReplicaAck | tuple[int, int] | None = None,
    ) -> None:
        self.redis = redis
        self.prefix = prefix
        self.keys = Keys(prefix)
        # The writes the dispatcher or an operator acts on wait for replicas
        # (docs/operations.md#what-a-redis-failure-can-lose); the rest do not.
        self.replicas = ReplicaAck.of(replicas)
        confirm = self.replicas
        self._submit = load_script("submit").bind(redis, confirm)
        self._stage = load_script("stage_contacts").bind(redis)
        self._claim = load_script("claim").bind(redis, confirm)
        self._expire = load_script("expire").bind(redis)
        self._accepted = load_script("record_accepted").bind(redis, confirm)
        self._rejected = load_script("record_rejected").bind(redis, confirm)
        self._in_doubt = load_script("mark_in_doubt").bind(redis, confirm)
        self._settle = load_script("settle").bind(redis, confirm)
        self._transition = load_script("transition").bind(redis, confirm)
        self._lease_acquire = load_script("lease_acquire").bind(redis)
        self._lease_release = load_script("lease_release").bind(redis)
        self._lease_renew = load_script("lease_renew").bind(redis)
        self._stamp = load_script("stamp_send").bind(redis, confirm)
        self._unstamp = load_script("unstamp_send").bind(redis, confirm)
        self._advance = load_script("advance_seq").bind(redis)
        self._take_due = load_script("take_due").bind(redis)
        self._commitments = load_script("account_commitments").bind(redis)
        self._account_put = load_script("account_put").bind(redis)
        self._pace = load_script("pace").bind(redis)
        self._hold = load_script("hold_account").bind(redis)
        self._change = load_script("change_terms").bind(redis, confirm)
        self._add_contacts = load_script("add_contacts").bind(redis, confirm)
        self.history = History(redis, self.keys)

    def _c(self, campaign_id: str, what: str) -> str:
        return self.keys.campaign(campaign_id, what)

    campaign_of = staticmethod(campaign_of)

    # ------------------------------------------------------------------ submit
    async def submit(
        self,
        source: Contacts | CampaignSpec,
        *,
        worst_case_micros: int,
        estimated_micros_per_contact: int,
        before_commit: Callable[[ZoneGroups], None] | None = None,
    ) -> tuple[Literal["created", "exists"], Tally]:
        """Write a validated spec and its contacts; same spec again is a no-op.

        Returns whether it was created and what the read found (contacts,
        duplicates dropped, fingerprint).

        Contacts are validated and staged a chunk at a time as they are read
        (the file is never held whole), then renamed into place by one script,
        so a bad row or a crash mid-write leaves nothing visible: the staging
        keys are deleted (or expire). A campaign that exists is compared by
        fingerprint after a full read that writes nothing. ``before_commit`` sees
        the contacts' zone groups once all are read; what it raises leaves nothing.
        """
        contacts = source if isinstance(source, Contacts) else Contacts(source)
        spec = identify(contacts.spec, None)  # no ID: refused here too, nothing written
        cid = spec.campaign_id
        existing, version = (
            text(v)
            for v in await _aw(
                self.redis.hmget(self.keys.meta(cid), ["fingerprint", "fingerprint_version"])
            )
        )
        if existing is not None:
            tally = contacts.tally(required=True)
            if existing == tally.fingerprint:
                return "exists", tally
            if version is None and existing == contacts.tally(legacy=True).fingerprint:
                return "exists", tally  # stored before fingerprints compared values
            raise SubmitConflict(f"campaign {cid!r} exists with a different spec")
        token = uuid.uuid4().hex
        staging_contacts = self.keys.staging(cid, token, "contacts")
        staging_pending = self.keys.staging(cid, token, "pending")
        staging_suppress = self.keys.staging(cid, token, "suppress")
        zones = ZoneGroups(spec.calling_window)
        reader = contacts.read(required=True)
        try:
            for first in range(0, len(spec.suppress), _CONTACT_CHUNK):
                numbers = spec.suppress[first : first + _CONTACT_CHUNK]
                async with self.redis.pipeline(transaction=False) as pipe:
                    pipe.sadd(staging_suppress, *numbers)
                    pipe.expire(staging_suppress, _STAGING_SECONDS)
                    await pipe.execute()
            start = 0
            async with contextlib.aclosing(_read_ahead(reader)) as chunks:
                async for chunk in chunks:
                    staged = await self._stage(
                        staging_contacts=staging_contacts,
                        staging_pending=staging_pending,
                        first=start,
                        contacts="\n".join(chunk),
                        groups=_zone_groups_of(zones, chunk),
                        ttl=_STAGING_SECONDS,
                    )
                    if staged != len(chunk):
                        raise StoreError(f"staged {staged} of {len(chunk)} contacts")
                    start += len(chunk)
            tally = reader.tally
            if before_commit is not None:
                before_commit(zones)
            spec_json = spec.model_dump(mode="json", exclude={"contacts", "suppress"})
            fields: dict[str, str | int] = {
                "state": State.QUEUED,
                "spec": json.dumps(spec_json, separators=(",", ":")),
                "currency": spec.currency,
                "budget": spec.budget_in_micros,
                "reserved": 0,
                "spent": 0,
                "worst_case": worst_case_micros,
                "max_in_flight": spec.pacing.max_in_flight,
                "weight": repr(spec.pacing.weight),
                "contacts": tally.contacts,
                "accepted": 0,
                "rejected": 0,
                "in_doubt": 0,
                "settled": 0,
                "live": 0,
                "dispatch_seq": 0,
                "duplicates_dropped": tally.duplicates_dropped,
                "estimated": estimated_micros_per_contact * tally.contacts,
                "fingerprint_version": _FINGERPRINT_VERSION,
                "name": spec.name,
                **_policy_fields(spec, zones),
            }
            result = text(
                await self._submit(
                    meta=self.keys.meta(cid),
                    contacts=self._c(cid, "contacts"),
                    pending=self._c(cid, "pending"),
                    campaigns=self.keys.campaigns,
                    staging_contacts=staging_contacts,
                    staging_pending=staging_pending,
                    suppress=self._c(cid, "suppress"),
                    staging_suppress=staging_suppress,
                    fingerprint=tally.fingerprint,
                    now=now_ms(),
                    campaign_id=cid,
                    # Strings, so the script writes integers exactly as given.
                    fields=json.dumps({k: str(v) for k, v in fields.items()}),
                )
            )
        finally:
            staged_groups = [f"{staging_pending}:{g}" for g in range(1, len(zones.zones))]
            await _aw(
                self.redis.delete(
                    staging_contacts, staging_pending, staging_suppress, *staged_groups
                )
            )
        if result == "conflict":
            raise SubmitConflict(f"campaign {cid!r} exists with a different spec")
        return ("exists" if result == "exists" else "created"), tally

    # ------------------------------------------------------------------ reads
    async def campaign(self, campaign_id: str) -> CampaignRecord | None:
        """One campaign; ``pending`` counts every contact still to call: in its zone
        group's list, waiting for a retry, or parked by the frequency cap."""
        return (await self.campaigns(campaign_id))[0]

    async def campaigns(self, *campaign_ids: str) -> list[CampaignRecord | None]:
        """Several campaigns (:meth:`campaign`) in one round trip (two with zone groups).

        Read without ``MULTI``: a ``MULTI`` is refused whole while Redis is at
        ``maxmemory``, and operators need ``status`` then most. The counts are
        for display and the batch size: one claim landing between two reads
        shifts a count by one, nothing else."""
        async with self.redis.pipeline(transaction=False) as pipe:
            for campaign_id in campaign_ids:
                pipe.hgetall(self.keys.meta(campaign_id))
                pipe.llen(self._c(campaign_id, "pending"))
                pipe.zcard(self._c(campaign_id, "unresolved"))
                pipe.zcard(self._c(campaign_id, "retry"))
                pipe.zcard(self._c(campaign_id, "parked"))
            results = await pipe.execute()
        rows = [results[i : i + 5] for i in range(0, len(results), 5)]
        metas = [decode(row[0]) for row in rows]
        by_group = [[int(row[1])] for row in rows]
        extra = [
            (index, group)
            for index, meta in enumerate(metas)
            for group in range(1, integer(meta.get("groups"), 1))
        ]
        if extra:
            async with self.redis.pipeline(transaction=False) as pipe:
                for index, group in extra:
                    pipe.llen(self.keys.pending(campaign_ids[index], group))
                for (index, _), count in zip(extra, await pipe.execute(), strict=True):
                    by_group[index].append(int(count))
        return [
            campaign_from_hash(
                campaign_id,
                meta,
                sum(by_group[index]) + int(retry) + int(parked),
                int(unresolved),
                retry_waiting=int(retry),
                parked=int(parked),
                pending_by_group=tuple(by_group[index]),
            )
            for index, (campaign_id, meta, (_, _, unresolved, retry, parked)) in enumerate(
                zip(campaign_ids, metas, rows, strict=True)
            )
        ]

    async def campaign_ids(self) -> list[str]:
        return [_str(m) for m in await _aw(self.redis.zrange(self.keys.campaigns, 0, -1))]

    async def campaigns_in_order(
        self,
        after: tuple[int, str] | None,
        count: int,
        *,
        low_ms: int | None = None,
        high_ms: int | None = None,
    ) -> list[tuple[int, str]]:
        """Up to ``count`` campaigns ``(created_at ms, ID)`` in creation order (ties by
        ID), strictly after the position ``after``, created within ``low_ms`` ..
        ``high_ms`` inclusive: read from the ``P:campaigns`` index, a page at a time."""
        low = 0 if low_ms is None else low_ms
        if after is not None:
            low = max(low, after[0])
        high: int | str = "+inf" if high_ms is None else high_ms
        found: list[tuple[int, str]] = []
        offset = 0
        while len(found) < count:
            rows = await _aw(
                self.redis.zrangebyscore(
                    self.keys.campaigns, low, high, start=offset, num=count, withscores=True
                )
            )
            if not rows:
                break
            offset += len(rows)
            for member, score in rows:
                position = (int(score), _str(member))
                if after is None or position > after:
                    found.append(position)
        return found[:count]

    async def campaign_labels(self, campaign_ids: Sequence[str]) -> list[tuple[str, str]]:
        """``(state, name)`` of each campaign, in one round trip (a list's filters)."""
        async with self.redis.pipeline(transaction=False) as pipe:
            for cid in campaign_ids:
                pipe.hmget(self.keys.meta(cid), ["state", "name", "spec"])
            rows = await pipe.execute()
        labels: list[tuple[str, str]] = []
        for state, name, spec in rows:
            if name is None and spec is not None:  # submitted before the name was kept apart
                name = json.loads(spec).get("name", "")
            labels.append((text(state) or "", text(name) or ""))
        return labels

    async def retention_due(self, interval_seconds: int) -> bool:
        """Whether this worker runs the retention pass now (then no other does for
        ``interval_seconds``)."""
        taken = await _aw(
            self.redis.set(self.keys.retention_pass, "1", nx=True, ex=interval_seconds)
        )
        return bool(taken)

    async def full_sweep_due(self, interval_seconds: int) -> bool:
        """Whether this worker runs the sweeper's full pass now (then no other does
        for ``interval_seconds``)."""
        taken = await _aw(self.redis.set(self.keys.full_sweep, "1", nx=True, ex=interval_seconds))
        return bool(taken)

    async def overdue_campaigns(self, before_ms: int, limit: int) -> list[str]:
        """Campaigns whose dispatch showed no sign of life since ``before_ms``."""
        found = await _aw(
            self.redis.zrangebyscore(self.keys.dispatch_due, "-inf", before_ms, start=0, num=limit)
        )
        return [_str(m) for m in found]

    async def expect_dispatch(self, campaign_id: str) -> None:
        """A run was queued for now: the sweeper looks again if none shows up in time."""
        await _aw(self.redis.zadd(self.keys.dispatch_due, {campaign_id: now_ms()}))

    async def drop_dispatch_due(self, campaign_id: str) -> None:
        """The campaign is not dispatched any more (paused, final, gone)."""
        await _aw(self.redis.zrem(self.keys.dispatch_due, campaign_id))

    async def forget(self, campaign_id: str, extra_keys: Sequence[str] = ()) -> int:
        """Delete a final campaign's every key (:mod:`campaigns.store.forget`)."""
        return await forget_campaign(self, campaign_id, extra_keys)

    async def campaigns_created_between(self, start_ms: int, end_ms: int) -> list[str]:
        found = await _aw(self.redis.zrangebyscore(self.keys.campaigns, start_ms, end_ms))
        return [_str(m) for m in found]

    async def running_campaigns(self) -> list[str]:
        return sorted(_str(m) for m in await _aw(self.redis.smembers(self.keys.running)))

    async def dispatch_load(self, queue_name: str) -> tuple[int, int]:
        """Running campaigns and live workers of ``queue_name``: one round trip."""
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.scard(self.keys.running)
            pipe.zcount(self.keys.workers(queue_name), now_ms(), "+inf")
            running, workers = await pipe.execute()
        return int(running), int(workers)

    async def states_and_terms(self, campaign_ids: Sequence[str]) -> list[tuple[State | None, int]]:
        """Each campaign's state and terms version, all in one round trip."""
        if not campaign_ids:
            return []
        async with self.redis.pipeline(transaction=False) as pipe:
            for campaign_id in campaign_ids:
                pipe.hmget(self.keys.meta(campaign_id), ["state", "terms"])
            rows = await pipe.execute()
        return [(None if row[0] is None else State(_str(row[0])), integer(row[1])) for row in rows]

    async def attempt(self, attempt_id: str) -> Attempt | None:
        raw = decode(await _aw(self.redis.hgetall(self.keys.attempt(attempt_id))))
        if "status" not in raw:
            return None
        return attempt_from_hash(raw)

    async def attempt_for_call(self, call_id: str) -> str | None:
        return text(await _aw(self.redis.hget(self.keys.calls, call_id)))

    async def attempts(self, campaign_id: str, page: int = 500) -> AsyncIterator[Attempt]:
        """Every attempt of a campaign in claim order, read a page at a time; then the
        contacts the schedule's end left undialled (expired, capped), one row each."""
        start = 0
        while True:
            read, rows = await self._claimed_rows(campaign_id, start, page)
            if not read:
                break
            for attempt in rows:
                yield attempt
            start += page
        async for attempt in self._unsent(campaign_id, page):
            yield attempt

    async def _unsent(self, campaign_id: str, page: int) -> AsyncIterator[Attempt]:
        """The unsent list's ``status|index|try`` entries as attempt rows (expire.lua)."""
        ended = integer(await _aw(self.redis.hget(self.keys.meta(campaign_id), "end_at")))
        start = 0
        while rows := await self._unsent_rows(campaign_id, start, page, ended):
            for attempt in rows:
                yield attempt
            start += page

    async def _claimed_rows(
        self, campaign_id: str, start: int, count: int
    ) -> tuple[int, list[Attempt]]:
        """Entries ``start`` on of the claim-order list: how many there were, and the
        attempts among them (an ID whose hash is gone has no row)."""
        key = self._c(campaign_id, "attempts")
        ids = await _aw(self.redis.lrange(key, start, start + count - 1))
        if not ids:
            return 0, []
        async with self.redis.pipeline(transaction=False) as pipe:
            for attempt_id in ids:
                pipe.hgetall(self.keys.attempt(_str(attempt_id)))
            rows = [decode(row) for row in await pipe.execute()]
        return len(ids), [attempt_from_hash(row) for row in rows if "status" in row]

    async def _unsent_rows(
        self, campaign_id: str, start: int, count: int, ended: int
    ) -> list[Attempt]:
        key = self._c(campaign_id, "unsent")
        entries = [
            _str(e).split("|") for e in await _aw(self.redis.lrange(key, start, start + count - 1))
        ]
        if not entries:
            return []
        found = await _aw(
            self.redis.hmget(self._c(campaign_id, "contacts"), [e[1] for e in entries])
        )
        return [
            unsent_attempt(
                campaign_id, int(index), int(try_no), AttemptStatus(status), text(contact), ended
            )
            for (status, index, try_no), contact in zip(entries, found, strict=True)
        ]

    async def attempts_page(
        self, campaign_id: str, position: tuple[int, int], limit: int
    ) -> tuple[list[Attempt], tuple[int, int], bool]:
        """At most ``limit`` rows of :meth:`attempts`, from ``position`` (claim-list
        entries read, unsent entries read): the rows, the position after them, and
        whether more rows exist now. Reads only this page's entries, so its cost is
        ``limit``, not the campaign's size. Claims made after a page moved on to the
        unsent rows come first on the next page: every row is read exactly once."""
        claimed, unsent = position
        read, found = await self._claimed_rows(campaign_id, claimed, limit)
        claimed += read
        if read < limit:
            ended = integer(await _aw(self.redis.hget(self.keys.meta(campaign_id), "end_at")))
            rows = await self._unsent_rows(campaign_id, unsent, limit - read, ended)
            unsent += len(rows)
            found += rows
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.llen(self._c(campaign_id, "attempts"))
            pipe.llen(self._c(campaign_id, "unsent"))
            claims, unsents = await pipe.execute()
        return found, (claimed, unsent), claims > claimed or unsents > unsent

    async def final_calls(
        self, campaign_id: str, page: int = 1000
    ) -> AsyncIterator[tuple[str, int, int | None]]:
        """Each call with a final status, in claim order: (final status, billed
        seconds, cost in micros once settled). One pass over the claim list, five
        fields an attempt: what the outcome statistics need and no more."""
        key = self._c(campaign_id, "attempts")
        fields = ["status", "final_status", "billsec", "cost", "settled"]
        start = 0
        while ids := await _aw(self.redis.lrange(key, start, start + page - 1)):
            async with self.redis.pipeline(transaction=False) as pipe:
                for attempt_id in ids:
                    pipe.hmget(self.keys.attempt(_str(attempt_id)), fields)
                rows = await pipe.execute()
            for status, final, billsec, cost, settled in rows:
                if text(status) == AttemptStatus.ACCEPTED and final:
                    settled_cost = integer(cost) if text(settled) == "1" and cost else None
                    yield _str(final), integer(billsec), settled_cost
            start += page

    async def latest_attempts(
        self, campaign_id: str, page: int = 1000
    ) -> dict[int, tuple[AttemptStatus, str | None, str | None]]:
        """Each contact's latest attempt: contact index -> (status, final call status,
        reject kind); the expired and capped rows count too. A contact never
        claimed has none."""
        found: dict[int, tuple[AttemptStatus, str | None, str | None]] = {}
        key = self._c(campaign_id, "attempts")
        start = 0
        while ids := await _aw(self.redis.lrange(key, start, start + page - 1)):
            async with self.redis.pipeline(transaction=False) as pipe:
                for attempt_id in ids:
                    pipe.hmget(
                        self.keys.attempt(_str(attempt_id)),
                        ["status", "final_status", "reject_kind"],
                    )
                rows = await pipe.execute()
            for attempt_id, (status, final, kind) in zip(ids, rows, strict=True):
                if status is not None:
                    index = int(_str(attempt_id).split(":")[1])
                    found[index] = (AttemptStatus(_str(status)), text(final), text(kind))
            start += page
        unsent = self._c(campaign_id, "unsent")
        for entry in await _aw(self.redis.lrange(unsent, 0, -1)):
            never_sent, position, _ = _str(entry).split("|")
            found[int(position)] = (AttemptStatus(never_sent), None, None)
        return found

    async def contact_documents(self, campaign_id: str, indexes: Sequence[int]) -> list[str | None]:
        """The stored contact JSON of each index (None where there is none)."""
        if not indexes:
            return []
        found = await _aw(self.redis.hmget(self._c(campaign_id, "contacts"), list(indexes)))
        return [text(f) for f in found]

    async def note_cancelled_while(self, campaign_id: str, why: str) -> None:
        """Why a cancelled campaign had stopped before it was cancelled (``halted``)."""
        await _aw(self.redis.hset(self.keys.meta(campaign_id), "cancelled_while", why))

    async def unresolved_attempts(self, campaign_id: str) -> list[Attempt]:
        ids = await _aw(self.redis.zrange(self._c(campaign_id, "unresolved"), 0, -1))
        found = [await self.attempt(_str(i)) for i in ids]
        return [a for a in found if a is not None]

    async def campaign_clock(self, campaign_id: str) -> dict[str, int | None]:
        """The times ``status`` explains a campaign with: its dispatcher's last
        heartbeat, its last state change, and when a cool-down ends (ms)."""
        return (await self.campaign_clocks(campaign_id))[0]

    async def campaign_clocks(self, *campaign_ids: str) -> list[dict[str, int | None]]:
        """:meth:`campaign_clock` of several campaigns in one round trip."""
        async with self.redis.pipeline(transaction=False) as pipe:
            for campaign_id in campaign_ids:
                pipe.hmget(self.keys.meta(campaign_id), ["heartbeat_at", "updated_at"])
                pipe.zscore(self.keys.cooldown, campaign_id)
            results = await pipe.execute()
        return [
            {
                "heartbeat_at": integer(heartbeat) or None,
                "updated_at": integer(updated) or None,
                "cooldown_until": None if cooldown is None else int(cooldown),
            }
            for (heartbeat, updated), cooldown in zip(results[::2], results[1::2], strict=True)
        ]

    async def recent_claims(self, campaign_id: str, since_ms: int, page: int = 200) -> list[int]:
        """Claim times (ms) of the attempts claimed at or after ``since_ms``, newest first.

        Reads the attempt list from its tail a page at a time, so the cost is
        the recent attempts, not the campaign's size.
        """
        key = self._c(campaign_id, "attempts")
        found: list[int] = []
        end = -1
        while True:
            ids = await _aw(self.redis.lrange(key, end - page + 1, end))
            if not ids:
                return found
            async with self.redis.pipeline(transaction=False) as pipe:
                for attempt_id in ids:
                    pipe.hmget(self.keys.attempt(_str(attempt_id)), ["created_at", "status"])
                rows = [(integer(t), text(s)) for t, s in await pipe.execute()]
            for claimed, status in reversed(rows):
                if claimed < since_ms:
                    return found
                if status not in _NEVER_SENT:
                    found.append(claimed)
            if len(ids) < page:
                return found
            end -= page

    async def note_worker_alive(self, queue_name: str, worker: str, until_ms: int) -> None:
        """A worker of ``queue_name`` is alive until ``until_ms`` (its health record)."""
        key = self.keys.workers(queue_name)
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.zadd(key, {worker: until_ms})
            pipe.zremrangebyscore(key, "-inf", f"({now_ms()}")
            await pipe.execute()

    async def note_worker_gone(self, queue_name: str, worker: str) -> None:
        """A worker of ``queue_name`` stopped (cleanly)."""
        await _aw(self.redis.zrem(self.keys.workers(queue_name), worker))

    async def worker_alive(self, queue_name: str, at_ms: int) -> bool:
        """Whether any worker of ``queue_name`` said it is alive at ``at_ms``: one
        read of one key, whatever the size of the keyspace (no SCAN)."""
        found = await _aw(
            self.redis.zrangebyscore(self.keys.workers(queue_name), at_ms, "+inf", start=0, num=1)
        )
        return bool(found)

    # ------------------------------------------------------------------ dispatch
    async def acquire_lease(self, campaign_id: str, token: str, ttl_seconds: float) -> bool:
        lease = self._c(campaign_id, "lease")
        return bool(await self._lease_acquire(lease=lease, token=token, ttl_ms=_ms(ttl_seconds)))

    async def renew_lease(self, campaign_id: str, token: str, ttl_seconds: float) -> bool:
        """Extend a lease we still hold; never take back one that lapsed."""
        lease = self._c(campaign_id, "lease")
        return bool(await self._lease_renew(lease=lease, token=token, ttl_ms=_ms(ttl_seconds)))

    async def release_lease(self, campaign_id: str, token: str) -> None:
        await self._lease_release(lease=self._c(campaign_id, "lease"), token=token)

    async def lease_holder(self, campaign_id: str) -> str | None:
        return text(await _aw(self.redis.get(self._c(campaign_id, "lease"))))

    async def claim(
        self,
        campaign_id: str,
        lease_token: str,
        *,
        review_message: str,
        budget_message: str,
        pace: PaceRule = NO_LIMIT,
        account_pace: PaceRule = NO_LIMIT,
        max_live: int | None = None,
        open_groups: Sequence[int] = (0,),
        cap: tuple[int, int] | None = None,
        now: int | None = None,
        skip_limit: int = 100,
        terms: int | None = None,
    ) -> Claim:
        """Check running, apply the contact policy, take a pace slot, claim the next
        contact and reserve its worst case: one script.

        The messages are the operator's words for the two halts the claim can
        decide (attempts in doubt; budget below one call's worst case).
        ``pace_wait`` means the campaign's next slot is not due yet: it stays
        held in Redis, and the claim made when it is due takes it.
        ``open_groups`` are the zone groups whose calling window is open now
        (the caller's time-zone math: ``campaigns/engine/policy.py``); ``cap`` is
        ``(max calls, window ms)`` per number across campaigns, or None.
        ``terms``: the version of the campaign's terms the caller read
        (``CampaignRecord.terms``); changed since, the claim answers
        ``terms_changed`` and claims nothing.
        """
        result = await self._claim(
            **self._pace_args(campaign_id, pace, account_pace),
            account_live=self.keys.account("live"),
            max_live=max_live or 0,
            meta=self.keys.meta(campaign_id),
            pending=self._c(campaign_id, "pending"),
            tries=self._c(campaign_id, "tries"),
            unresolved=self._c(campaign_id, "unresolved"),
            lease=self._c(campaign_id, "lease"),
            attempts=self._c(campaign_id, "attempts"),
            running=self.keys.running,
            outbox=self.keys.callbacks_outbox,
            cooldown=self.keys.cooldown,
            contacts=self._c(campaign_id, "contacts"),
            retry=self._c(campaign_id, "retry"),
            parked=self._c(campaign_id, "parked"),
            suppress=self._c(campaign_id, "suppress"),
            dnc=self.keys.dnc,
            attempt_prefix=self.keys.attempt_prefix,
            freq_prefix=self.keys.frequency_prefix,
            campaign_id=campaign_id,
            lease_token=lease_token,
            now=now_ms() if now is None else now,
            review_message=review_message,
            budget_message=budget_message,
            open_groups=",".join(str(g) for g in open_groups),
            cap_max=0 if cap is None else cap[0],
            cap_window_ms=0 if cap is None else cap[1],
            skip_limit=max(1, skip_limit),
            terms="" if terms is None else terms,
        )
        outcome = cast(ClaimOutcome, _str(result[0]))
        state = State(_str(result[1])) if result[1] else None
        if outcome == "pace_wait":
            return Claim(outcome, state=state, wait_seconds=integer(result[2]) / 1e6)
        if outcome == "wait":
            due = _str(result[3])
            closed = _str(result[4])
            return Claim(
                outcome,
                state=state,
                wait_reason=_str(result[2]),
                due_ms=int(due) if due else None,
                closed_groups=tuple(int(g) for g in closed.split(",") if g),
            )
        if outcome != "claimed":
            return Claim(outcome, state=state)
        attempt_id = _str(result[2])
        contact = json.loads(_str(result[3]))
        return Claim(
            "claimed",
            Attempt(
                attempt_id=attempt_id,
                campaign_id=campaign_id,
                contact_index=integer(result[4]),
                to=contact["to"],
                ref=contact.get("ref", ""),
                variables=contact.get("variables", {}),
                status=AttemptStatus.SENDING,
                reserved_micros=integer(result[5]),
            ),
            state,
        )

    def _pace_args(self, campaign_id: str, pace: PaceRule, account: PaceRule) -> dict[str, Any]:
        return {
            "pace": self._c(campaign_id, "pace"),
            "pace_log": self._c(campaign_id, "pace_log"),
            "account_pace": self.keys.account("pace"),
            "account_pace_log": self.keys.account("pace_log"),
            "account_hold": self.keys.account("pace_hold"),
            "account_contenders": self.keys.account("contenders"),
            "account_weights": self.keys.account("weights"),
            "account_share": self.keys.account("share"),
            "campaign_prefix": self.keys.campaign_prefix,
            "pace_interval": pace.interval_us,
            "pace_burst": pace.burst,
            "pace_window": pace.window_us,
            "account_interval": account.interval_us,
            "account_burst": account.burst,
            "account_window": account.window_us,
        }

    async def take_pace_slot(
        self,
        campaign_id: str,
        pace: PaceRule,
        account_pace: PaceRule = NO_LIMIT,
        max_live: int | None = None,
    ) -> float:
        """For a request without a claim (a retry, a re-send): 0 when it may start
        now (it is counted), else the seconds until the campaign's held slot."""
        result = await self._pace(
            meta=self.keys.meta(campaign_id),
            campaign_id=campaign_id,
            max_live=max_live or 0,
            **self._pace_args(campaign_id, pace, account_pace),
        )
        return integer(result) / 1e6

    async def note_held(self, campaign_id: str, reason: HeldBy) -> None:
        """Why the campaign is getting less than its pace (``status``: ``held_by``):
        the claim notes ``account_ceiling`` and ``weight_share`` itself; a worker
        notes ``worker_capacity`` when it had no room to start the request."""
        key = self._c(campaign_id, "pace")
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hset(key, mapping={"held_by": reason, "held_at": now_ms() * 1000})
            pipe.pexpire(key, 120_000, gt=True)
            pipe.pexpire(key, 120_000, nx=True)
            await pipe.execute()

    async def held_by(self, campaign_id: str, since_ms: int) -> HeldBy | None:
        """What last held the campaign below its pace at or after ``since_ms``."""
        reason, at = await _aw(
            self.redis.hmget(self._c(campaign_id, "pace"), ["held_by", "held_at"])
        )
        if reason is None or integer(at) < since_ms * 1000:
            return None
        return cast(HeldBy, _str(reason))

    async def hold_account(self, seconds: float) -> None:
        """No campaign starts a create request for ``seconds`` (a 429's Retry-After)."""
        await self._hold(account_hold=self.keys.account("pace_hold"), hold_us=int(seconds * 1e6))

    async def account_live_calls(self) -> int:
        return integer(await _aw(self.redis.get(self.keys.account("live"))))

    async def expire(
        self, campaign_id: str, lease_token: str, *, limit: int = 1000, now: int | None = None
    ) -> int:
        """The schedule ended: record up to ``limit`` contacts still to call as expired
        (capped if parked by the frequency cap). Returns how many are left, or -1
        when the campaign is not running under this lease or has not ended."""
        result = await self._expire(
            meta=self.keys.meta(campaign_id),
            pending=self._c(campaign_id, "pending"),
            tries=self._c(campaign_id, "tries"),
            lease=self._c(campaign_id, "lease"),
            retry=self._c(campaign_id, "retry"),
            parked=self._c(campaign_id, "parked"),
            unsent=self._c(campaign_id, "unsent"),
            campaign_id=campaign_id,
            lease_token=lease_token,
            now=now_ms() if now is None else now,
            limit=max(1, limit),
        )
        return int(result)

    async def note_waiting(
        self, campaign_id: str, reason: str | None, until_ms: int | None = None
    ) -> None:
        """Remember why the dispatcher found nothing to call now, and until when
        (None: it is sending again). ``status`` and the sweeper read it."""
        key = self.keys.meta(campaign_id)
        if reason is None:
            await _aw(self.redis.hdel(key, "wait_reason", "wait_since", "wait_until"))
            return
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hget(key, "wait_reason")
            pipe.hset(key, "wait_reason", reason)
            if until_ms is None:
                pipe.hdel(key, "wait_until")
            else:
                pipe.hset(key, "wait_until", str(until_ms))
            previous = (await pipe.execute())[0]
        if text(previous) != reason:
            await _aw(self.redis.hset(key, "wait_since", str(now_ms())))

    async def stamp_send(
        self, attempt_id: str, body: str, lease_token: str, *, may_be_placed: bool = False
    ) -> str:
        """Check running + lease + unresolved and keep the body, right before a send.

        ``ok`` means the request may leave now; ``not_running`` or ``lease_lost``
        mean it must not; any other answer is the attempt's status (someone
        else resolved it, or ``suppressed``: its number went on a do-not-call
        list after the claim, so it was recorded as never sent). A re-send keeps
        the first body: the same bytes go out under the same Idempotency-Key.
        ``may_be_placed``: an earlier send may have become a call; then the
        lists are not checked (the re-send finds that call, it dials no one new).
        The first send's time is kept (``first_sent_at``), the last one's in
        ``sent_at``; the attempt joins its number's ``sent_to`` index.

        A stamp the replicas did not acknowledge raises :class:`NotReplicated`
        and nothing may be sent on it; a first one is taken back first, so the
        attempt reads as never sent rather than as an answer lost.
        """
        cid = campaign_of(attempt_id)
        now = now_ms()
        try:
            result = await self._stamp(
                meta=self.keys.meta(cid),
                lease=self._c(cid, "lease"),
                attempt=self.keys.attempt(attempt_id),
                unresolved=self._c(cid, "unresolved"),
                dnc=self.keys.dnc,
                suppress=self._c(cid, "suppress"),
                account_live=self.keys.account("live"),
                lease_token=lease_token,
                body=body,
                now=now,
                attempt_id=attempt_id,
                fresh="0" if may_be_placed else "1",
                sent_to_prefix=self.keys.sent_to(""),
            )
        except NotReplicated:
            if not may_be_placed:
                with contextlib.suppress(RedisError):
                    # Unconfirmed itself at worst: the attempt then reads as maybe
                    # sent and is resolved like a lost answer, never dialled twice.
                    await self._unstamp(
                        attempt=self.keys.attempt(attempt_id),
                        attempt_id=attempt_id,
                        sent_at=now,
                        sent_to_prefix=self.keys.sent_to(""),
                    )
            raise
        return _str(result)

    async def record_accepted(
        self,
        attempt_id: str,
        call_id: str,
        poll_in_seconds: float,
        *,
        create_answer: bool = False,
    ) -> str:
        """Store the call ID the moment the provider returns it. Idempotent.

        ``create_answer``: our own create request returned it (not a lookup or an
        event), which ends a run of unusable create answers (:meth:`note_garbage`).
        """
        cid = campaign_of(attempt_id)
        now = now_ms()
        result = await self._accepted(
            meta=self.keys.meta(cid),
            attempt=self.keys.attempt(attempt_id),
            unresolved=self._c(cid, "unresolved"),
            unsettled=self.keys.unsettled,
            calls=self.keys.calls,
            pending=self._c(cid, "pending"),
            account_live=self.keys.account("live"),
            call_id=call_id,
            now=now,
            poll_due=now + _ms(poll_in_seconds),
            attempt_id=attempt_id,
            sent_to_prefix=self.keys.sent_to(""),
            create_answer="1" if create_answer else "0",
        )
        return _str(result)

    async def record_rejected(
        self,
        attempt_id: str,
        kind: Literal["contact", "halt", "not_placed"],
        code: str,
        message: str,
    ) -> str:
        """Reject an attempt; a halt-class one also halts the campaign, atomically.

        ``contact``: the contact is finished. ``halt``: the contact goes back to
        pending and the campaign halts with the code. ``not_placed``: an operator
        confirmed no call exists; the contact goes back to pending.
        """
        cid = campaign_of(attempt_id)
        result = await self._rejected(
            meta=self.keys.meta(cid),
            attempt=self.keys.attempt(attempt_id),
            unresolved=self._c(cid, "unresolved"),
            pending=self._c(cid, "pending"),
            running=self.keys.running,
            cooldown=self.keys.cooldown,
            outbox=self.keys.callbacks_outbox,
            account_live=self.keys.account("live"),
            kind=kind,
            code=code,
            message=message,
            now=now_ms(),
            attempt_id=attempt_id,
            campaign_id=cid,
            sent_to_prefix=self.keys.sent_to(""),
        )
        return _str(result)

    async def sent_to(self, number: str) -> list[str]:
        """Attempts sent to ``number`` whose call ID is not known (sending or in doubt)."""
        found = await _aw(self.redis.zrange(self.keys.sent_to(number), 0, 99))
        return [_str(m) for m in found]

    async def call_owners(self, call_ids: Sequence[str]) -> dict[str, str | None]:
        """The attempt each provider call ID is recorded for (None: not recorded)."""
        if not call_ids:
            return {}
        found = await _aw(self.redis.hmget(self.keys.calls, list(call_ids)))
        return {call_id: text(owner) for call_id, owner in zip(call_ids, found, strict=True)}

    async def note_garbage(self, campaign_id: str) -> int:
        """Count a create answer without a usable call ID; returns how many in a row
        (an answer with an ID clears the count: ``record_accepted``)."""
        key = self.keys.meta(campaign_id)
        return int(await _aw(self.redis.hincrby(key, "garbage_streak", 1)))

    async def note_answered(self, attempt_id: str, at_ms: int) -> None:
        """When the provider says the call was answered (an event before the final one)."""
        await _aw(self.redis.hsetnx(self.keys.attempt(attempt_id), "answered_at", str(at_ms)))

    async def note_ended(self, attempt_id: str, at_ms: int) -> None:
        """When the provider says the call ended (its final event or the call object)."""
        await _aw(self.redis.hsetnx(self.keys.attempt(attempt_id), "ended_at", str(at_ms)))

    async def note_hung_up(self, attempt_id: str) -> None:
        """We asked the provider to end this call at ``max_call_seconds``."""
        await _aw(self.redis.hsetnx(self.keys.attempt(attempt_id), "hung_up_at", str(now_ms())))

    async def note_past_max(self, attempt_id: str) -> bool:
        """A live call outlived ``max_call_seconds`` and the dialect cannot end it: its
        reservation may be exceeded. Counted once per attempt (meta ``past_max``)."""
        key = self.keys.attempt(attempt_id)
        if not await _aw(self.redis.hsetnx(key, "past_max_at", str(now_ms()))):
            return False
        await _aw(self.redis.hincrby(self.keys.meta(campaign_of(attempt_id)), "past_max", 1))
        return True

    async def note_lookup_failure(self, attempt_id: str) -> int:
        """Count failed look-ups of an attempt's call; returns the count so far."""
        key = self.keys.attempt(attempt_id)
        return int(await _aw(self.redis.hincrby(key, "lookup_failures", 1)))

    async def mark_in_doubt(
        self, attempt_id: str, reason: str, *, code: str = "", halt: bool = False
    ) -> str:
        """The attempt may or may not be a call: keep its reservation, ask an operator.

        With ``halt``, the campaign halts with ``code`` too (a halt-class answer
        to an attempt that an earlier send may already have placed).
        """
        cid = campaign_of(attempt_id)
        result = await self._in_doubt(
            meta=self.keys.meta(cid),
            attempt=self.keys.attempt(attempt_id),
            unresolved=self._c(cid, "unresolved"),
            running=self.keys.running,
            outbox=self.keys.callbacks_outbox,
            cooldown=self.keys.cooldown,
            now=now_ms(),
            attempt_id=attempt_id,
            reason=reason,
            code=code,
            halt="1" if halt else "0",
            campaign_id=cid,
        )
        return _str(result)

    async def transition(
        self,
        campaign_id: str,
        move: Move,
        *,
        halt_code: str = "",
        halt_message: str = "",
        cooldown_until_ms: int | None = None,
    ) -> tuple[bool, State]:
        """One atomic check-and-set of the campaign state. Returns (done, previous state)."""
        result = await self._transition(
            meta=self.keys.meta(campaign_id),
            running=self.keys.running,
            outbox=self.keys.callbacks_outbox,
            cooldown=self.keys.cooldown,
            campaign_id=campaign_id,
            allowed_from=",".join(sorted(move.from_states)),
            to=move.to,
            now=now_ms(),
            halt_code=halt_code,
            halt_message=halt_message,
            cooldown_until="" if cooldown_until_ms is None else cooldown_until_ms,
            required_halt_code=move.requires_halt_code or "",
        )
        outcome, previous = text(result[0]), _str(result[1])
        if outcome == "missing":
            raise StoreError(f"no campaign {campaign_id!r}")
        return outcome == "ok", State(previous)

    async def set_budget(
        self, campaign_id: str, budget_micros: int, history_head: Mapping[str, Any]
    ) -> BudgetChange:
        """Set the budget atomically against spend and reservations, and record it.

        Raises :class:`BudgetBelowFloor` (nothing changed) when ``budget_micros`` is
        below ``spent + reserved`` at that instant, :class:`StoreError` when the
        campaign does not exist or is over.
        """
        change = CampaignChange(budget_micros=budget_micros)
        return await self.change_terms(campaign_id, history_head, change, expected_spec="")

    async def stored_spec(self, campaign_id: str) -> str | None:
        """The stored spec JSON as kept (a change is made against exactly this text)."""
        return text(await _aw(self.redis.hget(self.keys.meta(campaign_id), "spec")))

    async def change_terms(
        self,
        campaign_id: str,
        history_head: Mapping[str, Any],
        change: CampaignChange,
        *,
        expected_spec: str,
        pace_margin: float = MARGIN,
    ) -> BudgetChange:
        """Change the budget and the other terms in one script (``change_terms.lua``),
        each recorded in the history (``history_head`` plus before and after).

        ``expected_spec`` is the stored spec the change was made from
        (:meth:`stored_spec`). Raises :class:`BudgetBelowFloor` below the floor,
        :class:`StaleTerms` when the stored spec is no longer that one (read
        again), :class:`StoreError` when the campaign does not exist or is over;
        nothing changed.
        """
        terms = None
        if change.terms:
            change_head = {**history_head, "action": str(OperatorAction.CHANGE)}
            terms = _terms_change(change, expected_spec, change_head, pace_margin)
        budget_head = {**history_head, "action": str(OperatorAction.BUDGET)}
        head = json.dumps(budget_head, separators=(",", ":"))
        result = await self._change(
            meta=self.keys.meta(campaign_id),
            history=self.keys.history(campaign_id),
            pace=self._c(campaign_id, "pace"),
            pace_log=self._c(campaign_id, "pace_log"),
            allowed=",".join(sorted(BUDGET_CHANGE_STATES)),
            now=now_ms(),
            expected_spec="" if terms is None else expected_spec,
            spec="" if terms is None else terms.spec,
            fields="{}" if terms is None else json.dumps(terms.fields),
            clear="" if terms is None else ",".join(terms.clear),
            pace_interval=""
            if terms is None or terms.pace_interval is None
            else terms.pace_interval,
            budget="" if change.budget_micros is None else str(change.budget_micros),
            budget_entry=head[:-1],
            change_entry="" if terms is None else terms.entry,
            history_limit=HISTORY_LIMIT,
        )
        outcome = _str(result[0])
        if outcome == "missing":
            raise StoreError(f"no campaign {campaign_id!r}")
        if outcome == "refused":
            raise StoreError(
                f"cannot change the terms of campaign {campaign_id!r}: it is {_str(result[1])}"
            )
        if outcome == "stale":
            raise StaleTerms(f"campaign {campaign_id!r} changed meanwhile")
        budget_micros = change.budget_micros
        if outcome == "below":
            assert budget_micros is not None
            raise BudgetBelowFloor(
                campaign_id, budget_micros, integer(result[1]), integer(result[2])
            )
        before = integer(result[1])
        return BudgetChange(
            campaign_id,
            before=before,
            after=before if budget_micros is None else budget_micros,
            spent=integer(result[2]),
            reserved=integer(result[3]),
            state=State(_str(result[4])),
            halt_code=text(result[5]) or None,
        )

    async def contact_numbers(self, campaign_id: str) -> tuple[int, set[str]]:
        """How many contacts the campaign has and their numbers, read a page at a
        time (``HSCAN``): what an add compares against (:meth:`add_contacts`)."""
        meta = self.keys.meta(campaign_id)
        count = integer(await _aw(self.redis.hget(meta, "contacts")))
        numbers: set[str] = set()
        async for _, doc in self.redis.hscan_iter(self._c(campaign_id, "contacts"), count=1000):
            numbers.add(contact_number(_str(doc)))
        return count, numbers

    async def add_contacts(
        self,
        campaign_id: str,
        contacts: Sequence[str],
        *,
        expected: int,
        zones: ZoneGroups,
        estimated_micros: int,
        entry: Mapping[str, Any],
    ) -> int:
        """Add contacts (canonical JSON, none the campaign has) in one script,
        grouped by ``zones`` (seeded with the campaign's groups), when the campaign
        still has ``expected`` contacts; returns how many it has now. Raises
        :class:`StaleTerms` (another add came first: read again) or
        :class:`StoreError` (missing, or over)."""
        grouped = _zone_groups_of(zones, list(contacts))
        result = await self._add_contacts(
            meta=self.keys.meta(campaign_id),
            contacts=self._c(campaign_id, "contacts"),
            pending=self._c(campaign_id, "pending"),
            history=self.keys.history(campaign_id),
            allowed=",".join(sorted(ACTIVE_STATES)),
            expected=expected,
            docs="\n".join(contacts),  # canonical JSON escapes every newline
            groups=grouped,
            zone_groups=(
                json.dumps(zones.zones or [[]], separators=(",", ":")) if zones.by_recipient else ""
            ),
            group_count=max(1, len(zones.zones)),
            estimated=estimated_micros,
            entry=json.dumps(dict(entry), separators=(",", ":")),
            history_limit=HISTORY_LIMIT,
            now=now_ms(),
        )
        outcome = _str(result[0])
        if outcome == "missing":
            raise StoreError(f"no campaign {campaign_id!r}")
        if outcome == "refused":
            raise StoreError(
                f"cannot add contacts to campaign {campaign_id!r}: it is {_str(result[1])}"
            )
        if outcome == "stale":
            raise StaleTerms(f"campaign {campaign_id!r} took other contacts meanwhile")
        return integer(result[2])

    async def next_dispatch_seq(self, campaign_id: str, current: int) -> int | None:
        """Advance the dispatch sequence if this job is still the current one."""
        value = int(await self._advance(meta=self.keys.meta(campaign_id), expected_seq=current))
        return value if value > 0 else None

    async def bump_dispatch_seq(self, campaign_id: str) -> int:
        """Start a new dispatch chain (submit, resume, sweeper); older jobs stand down."""
        key = self.keys.meta(campaign_id)
        return int(await _aw(self.redis.hincrby(key, "dispatch_seq", 1)))

    async def state(self, campaign_id: str) -> State | None:
        value = text(await _aw(self.redis.hget(self.keys.meta(campaign_id), "state")))
        return None if value is None else State(value)

    async def heartbeat(self, campaign_id: str, next_run_ms: int | None = None) -> None:
        """A sign of life of the campaign's dispatch; ``next_run_ms``: its next run is
        queued for then, so the sweeper need not look at it before (idle is free)."""
        now = now_ms()
        due = now if next_run_ms is None else max(now, next_run_ms)
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.hset(self.keys.meta(campaign_id), "heartbeat_at", str(now))
            pipe.zadd(self.keys.dispatch_due, {campaign_id: due})
            await pipe.execute()

    async def last_heartbeat_ms(self, campaign_id: str) -> int:
        return integer(await _aw(self.redis.hget(self.keys.meta(campaign_id), "heartbeat_at")))

    async def due_cooldowns(self) -> list[str]:
        due = await _aw(self.redis.zrangebyscore(self.keys.cooldown, "-inf", now_ms()))
        return [_str(m) for m in due]

    # ------------------------------------------------------------------ settlement
    async def take_due_calls(self, limit: int, hold_seconds: float) -> list[str]:
        """Attempt IDs whose call is due for a poll, held off others for a while."""
        due = await self._take_due(
            unsettled=self.keys.unsettled, now=now_ms(), hold_ms=_ms(hold_seconds), limit=limit
        )
        return [_str(m) for m in due]

    async def reschedule_poll(
        self, attempt_id: str, delay_seconds: float, *, final_seen: bool = False
    ) -> None:
        key = self.keys.attempt(attempt_id)
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.zadd(self.keys.unsettled, {attempt_id: now_ms() + _ms(delay_seconds)}, xx=True)
            pipe.hincrby(key, "polls", 1)
            if final_seen:
                pipe.hsetnx(key, "final_seen_at", str(now_ms()))
            await pipe.execute()

    async def settle(
        self,
        attempt_id: str,
        *,
        final_status: str,
        billsec: int,
        cost_micros: int,
        estimated: bool,
        currency: str,
        currency_mismatch: str = "",
    ) -> str:
        """Book a final call: release its reservation, add its cost. Idempotent.

        Returns ``ok``, ``over_reservation``, ``duplicate``, the attempt's
        status when it is not an accepted call, or ``invalid:<field>`` when a
        value is out of range (checked here and again in the script, before
        its first write): then nothing at all is written.
        """
        invalid = _settle_refusal(final_status, billsec, cost_micros, currency, currency_mismatch)
        if invalid:
            return invalid
        cid = campaign_of(attempt_id)
        result = await self._settle(
            meta=self.keys.meta(cid),
            attempt=self.keys.attempt(attempt_id),
            unsettled=self.keys.unsettled,
            account_live=self.keys.account("live"),
            tries=self._c(cid, "tries"),
            outbox=self.keys.callbacks_outbox,
            retry=self._c(cid, "retry"),
            final_status=final_status,
            billsec=billsec,
            cost=cost_micros,
            estimated="1" if estimated else "0",
            currency=currency,
            now=now_ms(),
            attempt_id=attempt_id,
            mismatch=currency_mismatch,
        )
        return _str(result)

    async def settle_forget(self, attempt_id: str) -> None:
        """Stop polling an attempt that has nothing left to settle."""
        await _aw(self.redis.zrem(self.keys.unsettled, attempt_id))

    async def unsettled_count(self) -> int:
        return int(await _aw(self.redis.zcard(self.keys.unsettled)))

    async def dead_letter(self, entry: Mapping[str, Any]) -> None:
        await _aw(self.redis.lpush(self.keys.deadletter, json.dumps(dict(entry), default=str)))
        await _aw(self.redis.ltrim(self.keys.deadletter, 0, 9999))

    async def dead_letters(self, limit: int = 100) -> list[dict[str, Any]]:
        rows = await _aw(self.redis.lrange(self.keys.deadletter, 0, limit - 1))
        return [json.loads(_str(r)) for r in rows]

    async def save_reconciliation(self, campaign_id: str, result: Mapping[str, Any]) -> None:
        key = self._c(campaign_id, "reconciliation")
        await _aw(self.redis.set(key, json.dumps(dict(result))))

    async def last_reconciliation(self, campaign_id: str) -> dict[str, Any] | None:
        raw = text(await _aw(self.redis.get(self._c(campaign_id, "reconciliation"))))
        return None if raw is None else dict(json.loads(raw))

    # ------------------------------------------------------------------ account
    async def account_commitments(self) -> dict[str, tuple[int, int, str]]:
        """``{campaign: (reserved, spent, spec fingerprint)}`` over every campaign
        that has reserved or spent anything.

        Read by one script, so the sums are of one instant across all campaigns
        sharing the provider account; the fingerprint names the spec (and so the
        price) the reservation was made at.
        """
        flat = await self._commitments(
            campaigns=self.keys.campaigns, campaign_prefix=self.keys.campaign_prefix
        )
        return {
            _str(flat[i]): (integer(flat[i + 1]), integer(flat[i + 2]), _str(flat[i + 3]))
            for i in range(0, len(flat), 4)
        }

    async def put_account(
        self, what: Literal["balance", "usage"], document: Mapping[str, Any], ttl_seconds: float
    ) -> bool:
        """Cache an account document (it carries ``at_ms``) unless a newer one is cached."""
        return bool(
            await self._account_put(
                key=self.keys.account(what),
                newest=self.keys.account(f"{what}_at"),
                at_ms=int(document["at_ms"]),
                document=json.dumps(dict(document), separators=(",", ":")),
                ttl_ms=max(1, _ms(ttl_seconds)),
            )
        )

    async def account(self, what: Literal["balance", "usage"]) -> dict[str, Any] | None:
        """The cached account document, or None when absent, expired or unreadable."""
        raw = text(await _aw(self.redis.get(self.keys.account(what))))
        if raw is None:
            return None
        try:
            document = json.loads(raw)
        except ValueError:
            return None
        return document if isinstance(document, dict) else None

    async def mark_low_balance(self, at_ms: int) -> bool:
        """True once per crossing below the low-balance mark (until it is cleared)."""
        key = self.keys.account("low_balance")
        return bool(await _aw(self.redis.set(key, str(at_ms), nx=True)))

    async def clear_low_balance(self) -> None:
        """The balance is back above the mark: the next crossing alerts again."""
        await _aw(self.redis.delete(self.keys.account("low_balance")))

    # ------------------------------------------------------------------ alerts
    async def mark_alert_fired(self, campaign_id: str, threshold: int) -> bool:
        """True the first time a threshold is crossed for a campaign, never again."""
        return bool(await _aw(self.redis.sadd(self._c(campaign_id, "alerts"), threshold)))


async def _read_ahead(chunks: Iterable[list[str]]) -> AsyncGenerator[list[str]]:
    """``chunks``, each next one read in a thread while the caller stages this one.

    Reading a CSV (parse, validate, JSON) is this process's CPU and staging is
    Redis's: on two cores they overlap instead of taking turns. The read stays
    one pass in order; a bad row's error comes out where the chunk would have.
    Closed early, it waits for the read in flight (its error, if any, dropped:
    the caller's own stands) so the reader is never left running.
    """
    rows = iter(chunks)
    following = asyncio.ensure_future(asyncio.to_thread(next, rows, None))
    try:
        while (chunk := await following) is not None:
            following = asyncio.ensure_future(asyncio.to_thread(next, rows, None))
            yield chunk
    finally:
        await asyncio.wait([following])
        if not following.cancelled():
            following.exception()  # retrieved, so asyncio does not log it


def _zone_groups_of(zones: ZoneGroups, chunk: list[str]) -> str:
    """Each staged contact's zone group, comma separated ('' when all are group 0)."""
    if not zones.by_recipient:
        return ""
    return ",".join(str(zones.group_of(contact_number(doc))) for doc in chunk)


def _policy_fields(spec: CampaignSpec, zones: ZoneGroups) -> dict[str, str | int]:
    """The meta fields the claim, settle and expire scripts read the contact policy from."""
    fields: dict[str, str | int] = {"groups": max(1, len(zones.zones))}
    if spec.calling_window is not None:
        fields["zone_groups"] = json.dumps(zones.zones or [[]], separators=(",", ":"))
    if spec.schedule is not None:
        if spec.schedule.start_ms is not None:
            fields["start_at"] = spec.schedule.start_ms
        if spec.schedule.end_ms is not None:
            fields["end_at"] = spec.schedule.end_ms
    if spec.retry is not None and spec.retry.rules():
        fields["retry_policy"] = json.dumps(spec.retry.stored(), separators=(",", ":"))
    return fields


def _terms_change(
    change: CampaignChange,
    expected_spec: str,
    history_head: Mapping[str, Any],
    pace_margin: float,
) -> TermsChange:
    """The stored spec and the meta fields a change writes (as :func:`_policy_fields`
    and submit write them), with its history entry."""
    stored = json.loads(expected_spec)
    before = {name: stored.get(name) for name in change.terms}
    fields: dict[str, str] = {}
    clear: list[str] = []
    pace_interval: int | None = None
    if "name" in change.terms:
        fields["name"] = change.terms["name"]
    pacing = change.terms.get("pacing")
    if pacing is not None:
        fields["max_in_flight"] = str(pacing["max_in_flight"])
        fields["weight"] = repr(float(pacing.get("weight", 1.0)))
        old_rate = (stored.get("pacing") or {}).get("calls_per_second")
        if pacing["calls_per_second"] != old_rate:
            rule = pace_rule(pacing["calls_per_second"], pace_margin)
            pace_interval = rule.interval_us
            fields["pace_interval"] = str(rule.interval_us)
            fields["pace_burst"] = str(rule.burst)
            fields["pace_window"] = str(rule.window_us)
    if "schedule" in change.terms:
        schedule = change.terms["schedule"] or {}
        for name, field in (("start_at", "start_at"), ("end_at", "end_at")):
            if schedule.get(field) is None:
                clear.append(name)
            else:
                fields[name] = str(int(parse_instant(schedule[field]).timestamp() * 1000))
    if change.zone_groups is not None:
        fields["zone_groups"] = json.dumps(
            [list(g) for g in change.zone_groups], separators=(",", ":")
        )
    entry = {**history_head, "before": before, "after": dict(change.terms)}
    return TermsChange(
        spec=json.dumps({**stored, **change.terms}, separators=(",", ":")),
        fields=fields,
        clear=tuple(clear),
        pace_interval=pace_interval,
        entry=json.dumps(entry, separators=(",", ":")),
    )


def _settle_refusal(
    final_status: str, billsec: int, cost_micros: int, currency: str, mismatch: str
) -> str:
    """The first settle argument out of range, as ``invalid:<field>``; '' if all are fine."""

    def count(value: object) -> bool:
        return type(value) is int and 0 <= value <= MAX_MICROS

    if final_status not in FINAL_CALL_STATUSES:
        return "invalid:final_status"
    if not count(billsec):
        return "invalid:billsec"
    if not count(cost_micros):
        return "invalid:cost"
    if not isinstance(currency, str) or not (
        len(currency) == 3 and currency.isascii() and currency.isupper() and currency.isalpha()
    ):
        return "invalid:currency"
    if not isinstance(mismatch, str) or len(mismatch) > 256 or not mismatch.isascii():
        return "invalid:currency_mismatch"
    return ""


def _ms(seconds: float) -> int:
    return int(seconds * 1000)
