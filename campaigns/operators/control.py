"""The operator's and other services' API: submit, status, pause, resume, cancel, resolve.

Every state change is one atomic check-and-set in the store, so two
operators, or an operator and a worker, never race into an impossible state.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Awaitable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, cast

from redis.exceptions import AuthenticationError, RedisError, ResponseError

from campaigns.connection import RedisLocation
from campaigns.domain.contacts import Contacts
from campaigns.domain.lifecycle import (
    FINAL_STATES,
    AttemptStatus,
    HaltCode,
    Move,
    State,
    budget_allows,
)
from campaigns.domain.money import format_money
from campaigns.domain.spec import CampaignSpec
from campaigns.logs import scrub
from campaigns.providers import check_call_section
from campaigns.queue import JobQueue, open_queue
from campaigns.settings import Settings
from campaigns.store import CampaignRecord, Store, StoreError, now_ms

__all__ = [
    "WAIT_REASONS",
    "CampaignClient",
    "ControlError",
    "Explanation",
    "NotFound",
    "RedisUnavailable",
    "SubmitResult",
    "Waiting",
    "check_redis",
    "explain",
    "iso_time",
    "status_json",
    "submit_campaign",
]

WAIT_REASONS: dict[str, str] = {
    "queued": "submitted; waiting for a worker to start it",
    "no_worker": "no worker is running for this queue (start: campaigns worker)",
    "stalled": "no dispatcher heartbeat; a worker's sweeper restarts it",
    "provider_rate_limited": (
        "the provider answered 429: no campaign of the account sends until its Retry-After ends"
    ),
    "max_in_flight": "live calls at max_in_flight; waiting for calls to end",
    "budget_held": "the rest of the budget is held by live calls; waiting for them to settle",
    "account_live_full": (
        "live calls of the whole account at DISPATCHER_PROVIDER_MAX_LIVE_CALLS; "
        "waiting for calls to end"
    ),
    "settling": "every contact dialled; waiting for the last calls to end and settle",
    "cooldown": "automatic cool-down: the provider kept failing; resumes by itself",
    "paused_by_operator": "paused by an operator; campaigns resume ID continues it",
    "halted": "halted; an operator decides, then campaigns resume ID",
    "window": "every contact left is outside its calling window; waiting for the next one to open",
    "not_started": "the schedule's start_at has not come yet",
    "retry": "every contact left waits for its retry to come due",
    "capped": "every number left is at DISPATCHER_MAX_CALLS_PER_NUMBER; waiting for its window",
}
"""Why a campaign that is not over is not sending, in the operator's words.
Other parts may add their reasons here (one word each, explained once)."""

_POLICY_WAITS = frozenset({"window", "not_started", "retry", "capped", "provider_rate_limited"})
"""Waits that end at a known time (``waiting.until``): the contact policy's, and
the provider's 429 hold on the whole account."""

RATE_WINDOW_MS = 60_000
"""``status`` reports how many create requests went out in the last minute."""


class ControlError(RuntimeError):
    """An operator request that cannot be carried out (the CLI exits 1)."""


class NotFound(ControlError):
    pass


class RedisUnavailable(ControlError):
    """Redis did not answer a PING in time: say so at once instead of riding it out."""


async def check_redis(where: RedisLocation | str, wait_seconds: float) -> None:
    """One PING on a fresh connection with no retries, bounded by ``wait_seconds``.

    The queue's pool retries for minutes so that a worker rides out a Redis
    restart; an operator at a terminal wants to know now. With sentinels the
    PING goes to the primary they name. The message names where Redis was
    expected, never a credential.
    """
    location = RedisLocation.of(where)
    where = location.describe()
    redis = location.client(retries=False, timeout=wait_seconds)
    try:
        async with asyncio.timeout(wait_seconds):
            await redis.ping()
    except AuthenticationError as exc:
        raise RedisUnavailable(
            f"Redis at {where} refused the credentials: {scrub(str(exc))}"
        ) from None
    except ResponseError as exc:
        raise RedisUnavailable(f"Redis at {where} answered: {scrub(str(exc))}") from None
    except TimeoutError:
        raise RedisUnavailable(
            f"cannot reach Redis at {where}: no answer within {wait_seconds:g}s"
        ) from None
    except (RedisError, OSError) as exc:
        reason = scrub(str(exc)) or type(exc).__name__
        raise RedisUnavailable(f"cannot reach Redis at {where}: {reason}") from None
    finally:
        await redis.aclose()


@dataclass(frozen=True, slots=True)
class SubmitResult:
    campaign_id: str
    created: bool
    contacts: int
    duplicates_dropped: int


def iso_time(ms: int | None) -> str | None:
    """A stored millisecond time as ISO 8601 UTC (``2026-05-01T12:00:00Z``)."""
    if ms is None:
        return None
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True, slots=True)
class Waiting:
    """Why a campaign that is not over is not sending, since when, and until when."""

    reason: str
    since_ms: int | None = None
    until_ms: int | None = None

    @property
    def message(self) -> str:
        return WAIT_REASONS.get(self.reason, self.reason)

    def to_json(self) -> dict[str, Any]:
        return {
            "reason": self.reason,
            "message": self.message,
            "since": iso_time(self.since_ms),
            "until": iso_time(self.until_ms),
        }


@dataclass(frozen=True, slots=True)
class Explanation:
    """What ``status`` adds to the stored record: why, how far, how fast, how long."""

    now_ms: int
    waiting: Waiting | None
    done: int
    percent_done: float
    calls_last_minute: int
    calls_per_second: float
    eta_ms: int | None
    times: dict[str, int | None] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "waiting": None if self.waiting is None else self.waiting.to_json(),
            "progress": {
                "done": self.done,
                "percent": self.percent_done,
                "calls_last_minute": self.calls_last_minute,
                "configured_calls_per_second": self.calls_per_second,
            },
            "eta": iso_time(self.eta_ms),
            "times": {name: iso_time(ms) for name, ms in self.times.items()},
        }


async def explain(
    store: Store, campaign: CampaignRecord, settings: Settings, *, now: int | None = None
) -> Explanation:
    """Read what the stored record leaves out and say why the campaign is not sending.

    A worker is alive when its arq health-check key exists (it expires a few
    seconds after the worker stops); a campaign's dispatcher is stalled when
    its heartbeat is older than the sweeper waits before restarting it.
    """
    now = now_ms() if now is None else now
    clock = await store.campaign_clock(campaign.campaign_id)
    claims = await store.recent_claims(campaign.campaign_id, now - RATE_WINDOW_MS)
    queue = re.sub(r"([*?\[\]\\])", r"\\\1", settings.queue_name)  # literal in a glob
    worker_alive = await store.any_key(f"{queue}:health-check*")
    pace = campaign.spec.pacing.calls_per_second
    account_live = (
        await store.account_live_calls() if settings.provider_max_live_calls is not None else None
    )
    hold = await account_hold_until_ms(store)
    waiting = _waiting(
        campaign,
        clock,
        worker_alive,
        claims[0] if claims else None,
        now,
        settings,
        account_live,
        hold if hold is not None and hold > now else None,
    )
    done = campaign.contacts - campaign.pending
    eta: int | None = None
    if campaign.state in (State.QUEUED, State.RUNNING) and (
        waiting is None
        or waiting.reason
        in ("max_in_flight", "budget_held", "account_live_full", "queued", "stalled")
    ):
        eta = now + int(campaign.pending / pace * 1000)
    elif waiting is not None and waiting.reason in _POLICY_WAITS and waiting.until_ms is not None:
        eta = max(now, waiting.until_ms) + int(campaign.pending / pace * 1000)
    return Explanation(
        now_ms=now,
        waiting=waiting,
        done=done,
        percent_done=round(100 * done / campaign.contacts, 1) if campaign.contacts else 100.0,
        calls_last_minute=len(claims),
        calls_per_second=pace,
        eta_ms=eta,
        times={
            "created_at": campaign.created_at_ms or None,
            "started_at": campaign.started_at_ms,
            "updated_at": clock["updated_at"],
            "heartbeat_at": clock["heartbeat_at"],
            "finished_at": campaign.finished_at_ms,
        },
    )


def _waiting(
    campaign: CampaignRecord,
    clock: dict[str, int | None],
    worker_alive: bool | None,
    last_claim: int | None,
    now: int,
    settings: Settings,
    account_live: int | None = None,
    account_hold_until: int | None = None,
) -> Waiting | None:
    state, updated, heartbeat = campaign.state, clock["updated_at"], clock["heartbeat_at"]
    if state in FINAL_STATES:
        return None
    if state is State.PAUSED:
        if campaign.halt_code == HaltCode.PROVIDER_UNAVAILABLE:
            return Waiting("cooldown", updated, clock["cooldown_until"])
        return Waiting("paused_by_operator", updated)
    if state is State.HALTED:
        return Waiting("halted", updated)
    if worker_alive is False:  # None: too many keys to be sure; the heartbeat decides
        return Waiting("no_worker", heartbeat or updated or campaign.created_at_ms)
    if account_hold_until is not None:
        # The provider's 429 holds every campaign of the account, queued or
        # running; one sleeping out the hold inside a backoff is not stalled.
        return Waiting("provider_rate_limited", None, account_hold_until)
    if state is State.QUEUED:
        return Waiting("queued", campaign.created_at_ms)
    if campaign.wait_reason is not None:
        # The dispatcher found nothing it may call and deferred its next look
        # (at most a minute): not a stall, even though no heartbeat comes meanwhile.
        return Waiting(campaign.wait_reason, campaign.wait_since_ms, campaign.wait_until_ms)
    stall_ms = int((settings.lease_seconds + 5 + settings.sweep_interval_seconds) * 1000)
    if heartbeat is None or now - heartbeat > stall_ms:
        return Waiting("stalled", heartbeat or updated)
    since = last_claim or campaign.started_at_ms
    if campaign.pending == 0 and campaign.live > 0:
        return Waiting("settling", since)
    if campaign.live >= campaign.spec.pacing.max_in_flight:
        return Waiting("max_in_flight", since)
    ceiling = settings.provider_max_live_calls
    if ceiling is not None and account_live is not None and account_live >= ceiling:
        return Waiting("account_live_full", since)
    fits = budget_allows(
        budget=campaign.budget_micros,
        spent=campaign.spent_micros,
        reserved=campaign.reserved_micros,
        worst_case=campaign.worst_case_micros,
    )
    if not fits and campaign.reserved_micros > 0:
        return Waiting("budget_held", since)
    return None


async def account_hold_until_ms(store: Store) -> int | None:
    """Until when (epoch ms) the provider's 429 holds the account, or None.

    ``P:account:pace_hold`` is written by the dispatcher (``hold_account``, a
    429's Retry-After) in Redis-clock microseconds and read here only.
    """
    raw = await cast(
        Awaitable[bytes | str | None], store.redis.get(store.keys.account("pace_hold"))
    )
    try:
        return None if raw is None else int(float(raw)) // 1000
    except ValueError:
        return None


def status_json(campaign: CampaignRecord, explanation: Explanation | None = None) -> dict[str, Any]:
    """The ``campaigns status --json`` shape: the stored record, plus (with an
    explanation) ``waiting``, ``progress``, ``eta`` and ``times``."""
    shape = {
        "campaign_id": campaign.campaign_id,
        "state": campaign.state,
        "halt": campaign.halt,
        "counts": {
            "contacts": campaign.contacts,
            "pending": campaign.pending,
            "accepted": campaign.accepted,
            "rejected": campaign.rejected,
            "in_doubt": campaign.in_doubt,
            "settled": campaign.settled,
            "suppressed": campaign.suppressed,
            "expired": campaign.expired,
            "capped": campaign.capped,
            "retries": campaign.retries,
        },
        "money": {
            "currency": campaign.currency,
            "budget_micros": campaign.budget_micros,
            "reserved_micros": campaign.reserved_micros,
            "spent_micros": campaign.spent_micros,
        },
        "schedule": {
            "start_at": iso_time(campaign.start_at_ms),
            "end_at": iso_time(campaign.end_at_ms),
        },
        # Calls seen live past max_call_seconds that the dialect could not hang up.
        "reservation_may_be_exceeded": campaign.past_max_calls > 0,
    }
    if explanation is not None:
        shape.update(explanation.to_json())
    return shape


class CampaignClient:
    """Async client for services that feed and steer the dispatcher.

    >>> async with await CampaignClient.connect(Settings()) as client:
    ...     await client.submit(spec)
    """

    def __init__(self, store: Store, queue: JobQueue, settings: Settings) -> None:
        self.store = store
        self.queue = queue
        self.settings = settings

    @classmethod
    async def connect(
        cls, settings: Settings | None = None, *, check_timeout: float | None = None
    ) -> CampaignClient:
        """Open the queue's pool, which rides out Redis restarts (retrying for minutes).

        With ``check_timeout``, first check Redis answers within that many
        seconds and raise :class:`RedisUnavailable` if not (the CLI does).
        """
        settings = settings or Settings()
        location = RedisLocation.from_settings(settings)
        if check_timeout is not None:
            await check_redis(location, check_timeout)
        queue = await open_queue(location, settings.queue_name)
        return cls(Store(queue.redis, replicas=settings.replica_ack), queue, settings)

    async def __aenter__(self) -> CampaignClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self.queue.aclose()

    async def submit(self, spec: CampaignSpec | Contacts) -> SubmitResult:
        """Store a validated spec and start it. Same ID and spec again: a no-op.

        ``Contacts`` (a spec and a CSV file) are validated as they are written,
        a chunk at a time; a bad row is a SpecError with nothing written. A
        spec without contacts is refused (SpecError, nothing written): it
        would complete at once and look like a campaign that ran.
        """
        contacts = spec if isinstance(spec, Contacts) else Contacts(spec)
        if contacts.none_given:
            raise Contacts.no_contacts()
        valid = contacts.spec
        # What each call does is the dialect's to judge: refused here, nothing written.
        check_call_section(
            self.settings.provider_dialect, valid.call.model_dump(mode="json", exclude_none=True)
        )
        rate = valid.rate_model()
        outcome, tally = await self.store.submit(
            contacts,
            worst_case_micros=valid.worst_case_call_micros(),
            estimated_micros_per_contact=rate.cost_micros(valid.max_call_seconds),
        )
        campaign = await self.store.campaign(valid.campaign_id)
        if campaign is not None and campaign.state is State.QUEUED:
            # Also after "exists": a submit that died before enqueueing is finished here.
            await self._kick(valid.campaign_id)
        return SubmitResult(
            valid.campaign_id, outcome == "created", tally.contacts, tally.duplicates_dropped
        )

    async def get(self, campaign_id: str) -> CampaignRecord:
        campaign = await self.store.campaign(campaign_id)
        if campaign is None:
            raise NotFound(f"no campaign {campaign_id!r}")
        return campaign

    async def status(self, campaign_id: str) -> dict[str, Any]:
        campaign = await self.get(campaign_id)
        return status_json(campaign, await self.explain(campaign))

    async def explain(self, campaign: CampaignRecord) -> Explanation:
        """Why it is (not) sending, how far along, how fast, and when it should end."""
        return await explain(self.store, campaign, self.settings)

    async def campaigns(self) -> list[CampaignRecord]:
        found = [await self.store.campaign(cid) for cid in await self.store.campaign_ids()]
        return [c for c in found if c is not None]

    async def pause(self, campaign_id: str) -> str:
        """Pause; returns once no create request can start (the dispatcher let go)."""
        await self._transition(campaign_id, Move.PAUSE)
        await self._wait_for_dispatcher(campaign_id)
        return State.PAUSED

    async def cancel(self, campaign_id: str) -> str:
        """Cancel; cancelling a cancelled campaign is a no-op, as pausing a paused one."""
        if (await self.get(campaign_id)).state is State.CANCELLED:
            return State.CANCELLED
        await self._transition(campaign_id, Move.CANCEL)
        await self._wait_for_dispatcher(campaign_id)
        return State.CANCELLED

    async def resume(self, campaign_id: str) -> str:
        """Re-check the budget, then set running and start a fresh dispatch chain."""
        campaign = await self.get(campaign_id)
        if campaign.state not in Move.RESUME.from_states:
            raise ControlError(f"cannot resume campaign {campaign_id!r}: it is {campaign.state}")
        fits = budget_allows(
            budget=campaign.budget_micros,
            spent=campaign.spent_micros,
            reserved=campaign.reserved_micros,
            worst_case=campaign.worst_case_micros,
        )
        remaining = campaign.budget_micros - campaign.spent_micros - campaign.reserved_micros
        if not fits and campaign.reserved_micros == 0:
            cur = campaign.currency
            raise ControlError(
                f"cannot resume campaign {campaign_id!r}: remaining budget "
                f"{format_money(remaining, cur, exact=True)} is below one call's worst case "
                f"({format_money(campaign.worst_case_micros, cur, exact=True)})"
            )
        await self._transition(campaign_id, Move.RESUME)
        await self._kick(campaign_id)
        return State.RUNNING

    async def resolve(self, attempt_id: str, *, call_id: str | None) -> str:
        """Settle an in-doubt attempt: the call the operator found, or no call at all."""
        attempt = await self.store.attempt(attempt_id)
        if attempt is None:
            raise NotFound(f"no attempt {attempt_id!r}")
        if attempt.status is not AttemptStatus.IN_DOUBT:
            raise ControlError(f"attempt {attempt_id!r} is {attempt.status}, not in_doubt")
        if call_id:
            result = await self.store.record_accepted(
                attempt_id, call_id, self.settings.poll_interval_seconds
            )
        else:
            result = await self.store.record_rejected(
                attempt_id, "not_placed", "not_placed", "operator confirmed no call was placed"
            )
        if result not in ("ok", "duplicate"):
            raise ControlError(f"attempt {attempt_id!r} could not be resolved: {result}")
        return "accepted" if call_id else "requeued"

    async def _transition(self, campaign_id: str, move: Move) -> None:
        try:
            done, previous = await self.store.transition(campaign_id, move)
        except StoreError as exc:
            raise NotFound(str(exc)) from None
        if not done:
            raise ControlError(f"cannot {move.verb} campaign {campaign_id!r}: it is {previous}")

    async def _kick(self, campaign_id: str) -> None:
        seq = await self.store.bump_dispatch_seq(campaign_id)
        await self.queue.dispatch(campaign_id, seq)

    async def _wait_for_dispatcher(self, campaign_id: str) -> None:
        """Wait until no worker holds the campaign's lease.

        The claim script refuses once the state changed, so the only request
        that can still start is one already claimed by the lease holder. When
        the lease is free, none can. A dead holder's lease lapses by itself.
        """
        # The holder lets go once its open requests end: each within the provider
        # deadline (connect to last byte), whatever the provider does.
        bound = max(self.settings.lease_seconds, self.settings.provider_timeout_seconds) + 1
        deadline = time.monotonic() + bound
        while await self.store.lease_holder(campaign_id) is not None:
            if time.monotonic() > deadline:
                raise ControlError(
                    f"campaign {campaign_id!r} changed state, but its dispatcher did not let go "
                    f"within {bound:g}s"
                )
            await asyncio.sleep(0.02)


async def submit_campaign(
    spec: CampaignSpec | Contacts | dict[str, Any] | str, settings: Settings | None = None
) -> SubmitResult:
    """Validate and submit a campaign in one call (for other Python services).

    ``Contacts.load(spec_path, contacts_csv)`` submits a large CSV a chunk at a
    time. Raises :class:`campaigns.domain.spec.SpecError` naming the field, with
    nothing written, when the spec or a contact is invalid.
    """
    from campaigns.domain.spec import parse_spec

    valid = spec if isinstance(spec, CampaignSpec | Contacts) else parse_spec(spec)
    client = await CampaignClient.connect(settings)
    async with client:
        return await client.submit(valid)
