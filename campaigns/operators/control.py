"""The operator's and other services' API: submit, status, pause, resume, cancel, resolve.

Every state change is one atomic check-and-set in the store, so two
operators, or an operator and a worker, never race into an impossible state.
"""

from __future__ import annotations

import asyncio
import getpass
import time
from collections.abc import Awaitable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, cast

from redis.exceptions import AuthenticationError, RedisError, ResponseError

from campaigns.connection import RedisLocation
from campaigns.domain.changes import CampaignChange, parse_change
from campaigns.domain.contacts import Contacts, contact_json
from campaigns.domain.inputs import SpecError
from campaigns.domain.lifecycle import (
    FINAL_STATES,
    AttemptStatus,
    HaltCode,
    Move,
    OperatorAction,
    State,
    budget_allows,
)
from campaigns.domain.money import format_money
from campaigns.domain.policy import ZoneGroups, timing_problem
from campaigns.domain.spec import CampaignSpec, Contact
from campaigns.domain.window import drain_time, zone
from campaigns.logs import scrub
from campaigns.providers import check_call_section
from campaigns.queue import JobQueue, open_queue
from campaigns.settings import Settings
from campaigns.store import (
    BudgetBelowFloor,
    BudgetChange,
    CampaignRecord,
    StaleTerms,
    Store,
    StoreError,
    campaign_of,
    entry_head,
    now_ms,
)

__all__ = [
    "WAIT_REASONS",
    "CampaignClient",
    "ContactsAdded",
    "ControlError",
    "Explanation",
    "InvalidRequest",
    "NotFound",
    "RedisUnavailable",
    "SubmitResult",
    "Waiting",
    "check_redis",
    "default_actor",
    "explain",
    "explain_many",
    "iso_time",
    "not_dialled",
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


@dataclass(frozen=True, slots=True)
class ContactsAdded:
    """What an add did: contacts added, dropped as numbers the campaign has (or
    repeats), and how many it has now."""

    campaign_id: str
    added: int
    duplicates_dropped: int
    contacts: int

    def to_json(self) -> dict[str, Any]:
        return {
            "campaign_id": self.campaign_id,
            "added": self.added,
            "duplicates_dropped": self.duplicates_dropped,
            "contacts": self.contacts,
        }


_CHANGE_TRIES = 5
"""A change merged over terms another change replaced meanwhile is made again this often."""
_POLICY_WAITS = frozenset({"window", "not_started", "retry", "capped", "provider_rate_limited"})
"""Waits that end at a known time (``waiting.until``): the contact policy's, and
the provider's 429 hold on the whole account."""

RATE_WINDOW_MS = 60_000
"""``status`` reports how many create requests went out in the last minute."""


class ControlError(RuntimeError):
    """An operator request that cannot be carried out (the CLI exits 1)."""


class NotFound(ControlError):
    pass


class InvalidRequest(ControlError):
    """A request whose values cannot be accepted (a budget below what is spent and
    held): nothing changed; the CLI exits 2, the API answers 422."""

    def __init__(self, message: str, field: str) -> None:
        super().__init__(message)
        self.field = field


def default_actor() -> str:
    """Who the history names for this process's actions: ``cli:<login name>``."""
    try:
        user = getpass.getuser()
    except Exception:  # no login name at all (a container without a passwd entry)
        user = "unknown"
    return f"cli:{user}"


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
    """Contacts dialled or dialling (never-sent ones are not done: ``not_dialled``)."""
    percent_done: float
    calls_last_minute: int
    calls_per_second: float
    eta_ms: int | None
    times: dict[str, int | None] = field(default_factory=dict)
    not_dialled: int = 0

    def to_json(self) -> dict[str, Any]:
        return {
            "waiting": None if self.waiting is None else self.waiting.to_json(),
            "progress": {
                "done": self.done,
                "not_dialled": self.not_dialled,
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

    A worker is alive when its beat (``Store.worker_alive``, written every few
    seconds by each worker) has not run out; a campaign's dispatcher is stalled when
    its heartbeat is older than the sweeper waits before restarting it.
    """
    return (await explain_many(store, [campaign], settings, now=now))[0]


async def explain_many(
    store: Store, campaigns: Sequence[CampaignRecord], settings: Settings, *, now: int | None = None
) -> list[Explanation]:
    """:func:`explain` for a page of campaigns: what all share is read once, the
    clocks in one round trip, and a campaign final for over a minute has made no
    claim in the last one (nothing to read)."""
    now = now_ms() if now is None else now
    clocks = await store.campaign_clocks(*(c.campaign_id for c in campaigns))
    worker_alive = await store.worker_alive(settings.queue_name, now)
    account_live = (
        await store.account_live_calls() if settings.provider_max_live_calls is not None else None
    )
    hold = await account_hold_until_ms(store)
    explained: list[Explanation] = []
    for campaign, clock in zip(campaigns, clocks, strict=True):
        finished = campaign.finished_at_ms
        if finished is not None and finished < now - RATE_WINDOW_MS:
            claims: list[int] = []
        else:
            claims = await store.recent_claims(campaign.campaign_id, now - RATE_WINDOW_MS)
        explained.append(
            _explanation(campaign, clock, claims, worker_alive, account_live, hold, now, settings)
        )
    return explained


def _explanation(
    campaign: CampaignRecord,
    clock: dict[str, int | None],
    claims: list[int],
    worker_alive: bool,
    account_live: int | None,
    hold: int | None,
    now: int,
    settings: Settings,
) -> Explanation:
    pace = campaign.spec.pacing.calls_per_second
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
    never = sum(not_dialled(campaign).values())
    left = 0 if campaign.state in FINAL_STATES else campaign.pending
    done = campaign.contacts - left - never
    eta = _eta(campaign, waiting, now)
    return Explanation(
        now_ms=now,
        waiting=waiting,
        done=done,
        not_dialled=never,
        percent_done=(
            round(100 * (campaign.contacts - left) / campaign.contacts, 1)
            if campaign.contacts
            else 100.0
        ),
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


_PACE_WAITS = frozenset({"max_in_flight", "budget_held", "account_live_full", "queued", "stalled"})
"""Waits the pace outlasts: the ETA is still the pace's (and the windows')."""


def _eta(campaign: CampaignRecord, waiting: Waiting | None, now: int) -> int | None:
    """When the last contact should be dialled: at the configured pace, only while
    each zone group's calling window is open, from ``start_at`` (or the end of a
    known wait), and never after ``end_at`` (the rest expires then).

    Retries and parked contacts are counted with the first zone group.
    """
    if campaign.state not in (State.QUEUED, State.RUNNING):
        return None
    start = now
    if waiting is not None and waiting.reason not in _PACE_WAITS:
        if waiting.reason not in _POLICY_WAITS or waiting.until_ms is None:
            return None
        if waiting.reason not in ("window", "retry", "capped"):
            start = max(now, waiting.until_ms)  # not started, a 429 hold: nothing before
    if campaign.start_at_ms is not None:
        start = max(start, campaign.start_at_ms)
    pace = campaign.spec.pacing.calls_per_second
    spec_window = campaign.spec.calling_window
    end = campaign.end_at_ms
    if spec_window is None:
        done = start + int(campaign.pending / pace * 1000)
        return done if end is None else min(done, end)
    groups = [[zone(name) for name in names] for names in campaign.zone_groups]
    pending = list(campaign.pending_by_group) + [0] * len(groups)
    pending = pending[: len(groups)]
    pending[0] += campaign.retry_waiting + campaign.parked
    drained = drain_time(
        spec_window.window(),
        groups,
        pending,
        pace,
        datetime.fromtimestamp(start / 1000, UTC),
        None if end is None else datetime.fromtimestamp(end / 1000, UTC),
    )
    return None if drained is None else int(drained.timestamp() * 1000)


def _waiting(
    campaign: CampaignRecord,
    clock: dict[str, int | None],
    worker_alive: bool,
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
    if not worker_alive:
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


def not_dialled(campaign: CampaignRecord) -> dict[str, int]:
    """Contacts that will not be dialled, by why (only the reasons that apply).

    ``cancelled`` (or ``halted``, when the campaign was halted when an operator
    cancelled it): the contacts still pending when it ended; ``expired``,
    ``capped``, ``suppressed``: the contact policy's never-sent outcomes.
    """
    why: dict[str, int] = {}
    if campaign.state in FINAL_STATES and campaign.pending:
        stopped_by = "halted" if campaign.cancelled_while == State.HALTED else "cancelled"
        why[stopped_by] = campaign.pending
    for reason, count in (
        ("expired", campaign.expired),
        ("capped", campaign.capped),
        ("suppressed", campaign.suppressed),
    ):
        if count:
            why[reason] = count
    return why


def status_json(campaign: CampaignRecord, explanation: Explanation | None = None) -> dict[str, Any]:
    """The ``campaigns status --json`` shape: the stored record, plus (with an
    explanation) ``waiting``, ``progress``, ``eta`` and ``times``. A campaign that
    is over has ``pending`` 0: what it left is ``not_dialled``, with why."""
    never = not_dialled(campaign)
    shape = {
        "campaign_id": campaign.campaign_id,
        "name": campaign.spec.name,
        "state": campaign.state,
        "halt": campaign.halt,
        "counts": {
            "contacts": campaign.contacts,
            "pending": 0 if campaign.state in FINAL_STATES else campaign.pending,
            "not_dialled": sum(never.values()),
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
        "not_dialled": never,
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

    def __init__(
        self, store: Store, queue: JobQueue, settings: Settings, actor: str | None = None
    ) -> None:
        self.store = store
        self.queue = queue
        self.settings = settings
        self.actor = actor or default_actor()
        """Who the history names when an action is not given its own ``actor``."""

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

    async def submit(
        self,
        spec: CampaignSpec | Contacts,
        *,
        actor: str | None = None,
        idempotency_key: str | None = None,
    ) -> SubmitResult:
        """Store a validated spec and start it. Same ID and spec again: a no-op.

        A spec without ``campaign_id`` takes the one derived from
        ``idempotency_key``; with neither it is refused (SpecError naming both).

        ``Contacts`` (a spec and a CSV file) are validated as they are written,
        a chunk at a time; a bad row is a SpecError with nothing written. A
        spec without contacts is refused (SpecError, nothing written): it
        would complete at once and look like a campaign that ran.
        """
        contacts = (spec if isinstance(spec, Contacts) else Contacts(spec)).identified(
            idempotency_key
        )
        if contacts.none_given:
            raise Contacts.no_contacts()
        valid = contacts.spec
        # What each call does is the dialect's to judge: refused here, nothing written.
        check_call_section(
            self.settings.provider_dialect, valid.call.model_dump(mode="json", exclude_none=True)
        )
        rate = valid.rate_model()
        started = datetime.now(UTC)

        def reachable(groups: ZoneGroups) -> None:
            problem = timing_problem(valid.schedule, valid.calling_window, groups, started)
            if problem is not None:
                raise SpecError(problem.field, problem.message)

        outcome, tally = await self.store.submit(
            contacts,
            worst_case_micros=valid.worst_case_call_micros(),
            estimated_micros_per_contact=rate.cost_micros(valid.max_call_seconds),
            before_commit=reachable,
        )
        if outcome == "created":
            await self._record(
                valid.campaign_id,
                OperatorAction.SUBMIT,
                actor,
                None,
                {
                    "state": str(State.QUEUED),
                    "budget_micros": valid.budget_in_micros,
                    "currency": valid.currency,
                    "contacts": tally.contacts,
                    "fingerprint": tally.fingerprint,
                },
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
        """Every campaign, oldest first, read 500 to a round trip."""
        ids = await self.store.campaign_ids()
        found: list[CampaignRecord | None] = []
        for first in range(0, len(ids), 500):
            found += await self.store.campaigns(*ids[first : first + 500])
        return [c for c in found if c is not None]

    async def pause(self, campaign_id: str, *, actor: str | None = None) -> str:
        """Pause; returns once no create request can start (the dispatcher let go)."""
        await self._transition(campaign_id, Move.PAUSE, actor)
        await self._wait_for_dispatcher(campaign_id)
        return State.PAUSED

    async def cancel(self, campaign_id: str, *, actor: str | None = None) -> str:
        """Cancel; cancelling a cancelled campaign is a no-op, as pausing a paused one."""
        before = await self.get(campaign_id)
        if before.state is State.CANCELLED:
            return State.CANCELLED
        await self._transition(campaign_id, Move.CANCEL, actor)
        if before.state is State.HALTED:
            await self.store.note_cancelled_while(campaign_id, State.HALTED)
        await self._wait_for_dispatcher(campaign_id)
        return State.CANCELLED

    async def budget(
        self, campaign_id: str, budget_micros: int, *, actor: str | None = None
    ) -> BudgetChange:
        """Set a new budget, atomically against what is spent and reserved.

        Refused (:class:`InvalidRequest`, nothing changed) below ``spent +
        reserved``. A campaign halted ``budget_exhausted`` stays halted, now
        resumable when the new budget covers one more call's worst case.
        """
        done, _ = await self.change(campaign_id, {"budget_micros": budget_micros}, actor=actor)
        return done

    async def change(
        self, campaign_id: str, body: Any, *, actor: str | None = None
    ) -> tuple[BudgetChange, CampaignChange]:
        """Change a campaign's budget, pacing, schedule, calling window or name
        (``campaigns/domain/changes.py``), in one script against what the
        dispatcher claims with: a lower rate holds from the next request on.

        Validated as submit validates (:class:`SpecError` naming every invalid
        field, nothing written); a budget below ``spent + reserved`` is
        :class:`InvalidRequest` naming both. Recorded in the history.
        """
        head = entry_head(now_ms(), actor or self.actor, OperatorAction.CHANGE)
        for _ in range(_CHANGE_TRIES):
            campaign = await self.get(campaign_id)
            stored = await self.store.stored_spec(campaign_id) or ""
            change = parse_change(body, campaign.spec, campaign.zone_groups, datetime.now(UTC))
            try:
                done = await self.store.change_terms(
                    campaign_id,
                    head,
                    change,
                    expected_spec=stored,
                    pace_margin=self.settings.pace_margin_percent / 100,
                )
            except StaleTerms:
                continue  # changed meanwhile: merge over the new terms
            except BudgetBelowFloor as exc:
                currency = campaign.currency

                def money(micros: int, currency: str = currency) -> str:
                    return format_money(micros, currency, exact=True)

                raise InvalidRequest(
                    f"budget {money(exc.budget)} for campaign {campaign_id!r} is below what "
                    f"it spent plus what it holds: {money(exc.spent)} spent + "
                    f"{money(exc.reserved)} reserved = {money(exc.spent + exc.reserved)}",
                    "budget",
                ) from None
            except StoreError as exc:
                if str(exc).startswith("no campaign"):
                    raise NotFound(str(exc)) from None
                raise ControlError(str(exc)) from None
            return done, change
        raise ControlError(f"campaign {campaign_id!r} kept changing meanwhile; try again")

    async def add_contacts(
        self, campaign_id: str, given: Sequence[Contact], *, actor: str | None = None
    ) -> ContactsAdded:
        """Add contacts (checked: :func:`added_contacts`) to a campaign that is not
        over, in one script; numbers it already has, and repeats, are dropped and
        counted, so the same add again adds nothing. The do-not-call and suppress
        lists apply when each one's turn comes, as for submitted contacts."""
        for _ in range(_CHANGE_TRIES):
            campaign = await self.get(campaign_id)
            if campaign.state in FINAL_STATES:
                raise ControlError(
                    f"cannot add contacts to campaign {campaign_id!r}: it is {campaign.state}"
                )
            count, numbers = await self.store.contact_numbers(campaign_id)
            new: list[str] = []
            for contact in given:
                if contact.to not in numbers:
                    numbers.add(contact.to)
                    new.append(contact_json(contact))
            dropped = len(given) - len(new)
            if not new:
                return ContactsAdded(campaign_id, 0, dropped, count)
            spec = campaign.spec
            per_contact = spec.rate_model().cost_micros(spec.max_call_seconds)
            entry = {
                **entry_head(now_ms(), actor or self.actor, OperatorAction.ADD_CONTACTS),
                "before": {"contacts": count},
                "after": {"contacts": count + len(new), "duplicates_dropped": dropped},
            }
            try:
                total = await self.store.add_contacts(
                    campaign_id,
                    new,
                    expected=count,
                    zones=ZoneGroups.seeded(spec.calling_window, campaign.zone_groups),
                    estimated_micros=per_contact * len(new),
                    entry=entry,
                )
            except StaleTerms:
                continue
            except StoreError as exc:
                if str(exc).startswith("no campaign"):
                    raise NotFound(str(exc)) from None
                raise ControlError(str(exc)) from None
            return ContactsAdded(campaign_id, len(new), dropped, total)
        raise ControlError(f"campaign {campaign_id!r} kept taking contacts meanwhile; try again")

    async def history(self, campaign_id: str, limit: int = 1000) -> list[dict[str, Any]]:
        """The campaign's operator actions, oldest first (the newest ``limit``)."""
        await self.get(campaign_id)
        return await self.store.history.read(campaign_id, limit)

    async def record_account_action(
        self,
        action: OperatorAction,
        before: dict[str, Any] | None,
        after: dict[str, Any] | None,
        *,
        actor: str | None = None,
    ) -> None:
        """Record an account-wide action (a do-not-call change) in the account history."""
        await self._record(None, action, actor, before, after)

    async def resume(self, campaign_id: str, *, actor: str | None = None) -> str:
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
        await self._transition(campaign_id, Move.RESUME, actor)
        await self._kick(campaign_id)
        return State.RUNNING

    async def delete(self, campaign_id: str) -> int:
        """Delete a completed or cancelled campaign whose calls are all final: every
        key of it goes (export its report first). Returns the keys deleted."""
        from campaigns.engine.retention import delete_campaign, why_not_deletable

        campaign = await self.get(campaign_id)
        why = await why_not_deletable(self.store, campaign, self.settings.callback_url)
        if why is not None:
            raise ControlError(f"cannot delete campaign {campaign_id!r}: {why}")
        return await delete_campaign(self.store, campaign)

    async def resolve(
        self, attempt_id: str, *, call_id: str | None, actor: str | None = None
    ) -> str:
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
        outcome = "accepted" if call_id else "requeued"
        if result == "ok":
            await self._record(
                campaign_of(attempt_id),
                OperatorAction.RESOLVE,
                actor,
                {"attempt_id": attempt_id, "status": str(AttemptStatus.IN_DOUBT)},
                {"attempt_id": attempt_id, "outcome": outcome, "call_id": call_id},
            )
        return outcome

    async def _transition(self, campaign_id: str, move: Move, actor: str | None) -> None:
        before = await self.store.campaign(campaign_id)
        try:
            done, previous = await self.store.transition(campaign_id, move)
        except StoreError as exc:
            raise NotFound(str(exc)) from None
        if not done:
            raise ControlError(f"cannot {move.verb} campaign {campaign_id!r}: it is {previous}")
        was: dict[str, Any] = {"state": str(previous)}
        if before is not None and before.halt_code:
            was["halt_code"] = before.halt_code
        await self._record(
            campaign_id, OperatorAction(move.verb), actor, was, {"state": str(move.to)}
        )

    async def _record(
        self,
        campaign_id: str | None,
        action: OperatorAction,
        actor: str | None,
        before: dict[str, Any] | None,
        after: dict[str, Any] | None,
    ) -> None:
        head = entry_head(now_ms(), actor or self.actor, action)
        await self.store.history.append(campaign_id, head, before, after)

    async def _kick(self, campaign_id: str) -> None:
        seq = await self.store.bump_dispatch_seq(campaign_id)
        await self.queue.dispatch(campaign_id, seq)
        await self.store.expect_dispatch(campaign_id)

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
    spec: CampaignSpec | Contacts | dict[str, Any] | str,
    settings: Settings | None = None,
    *,
    idempotency_key: str | None = None,
) -> SubmitResult:
    """Validate and submit a campaign in one call (for other Python services).

    ``Contacts.load(spec_path, contacts_csv)`` submits a large CSV a chunk at a
    time. Without a ``campaign_id`` the ID is derived from ``idempotency_key``,
    so a retried call makes no second campaign; with neither it is refused.
    Raises :class:`campaigns.domain.spec.SpecError` naming the field, with
    nothing written, when the spec or a contact is invalid.
    """
    from campaigns.domain.spec import identify, parse_spec

    valid = spec if isinstance(spec, CampaignSpec | Contacts) else parse_spec(spec)
    if isinstance(valid, CampaignSpec):
        valid = identify(valid, idempotency_key)  # refused before Redis is opened
    client = await CampaignClient.connect(settings)
    async with client:
        return await client.submit(valid, idempotency_key=idempotency_key)
