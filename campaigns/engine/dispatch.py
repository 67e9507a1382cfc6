"""One dispatch run: lease, resolve leftovers, then claim → send → record, paced.

A run holds the campaign's lease and keeps going for up to one job's time
(``job_timeout_seconds`` less a margin), then hands over to the next run with
no delay: the pace is a schedule in Redis (``domain/pacing.py``, taken inside
the claim), so whoever runs next continues it without a gap or a burst. Between
slots it sleeps holding the lease, costing nothing but its lease renewals, so a
worker runs any number of campaigns at once; what bounds a worker is its open
requests and its Redis connections (``engine/capacity.py``). A slot further
away than the run's time left, or a campaign that may not call now (a window,
a schedule), ends the run and queues the next one for then.

Create requests overlap: one is started on every slot of the schedule whether
or not the previous one has answered, at most ``pacing.max_concurrent_requests``
open at once. Claims stay sequential (one claimer per lease), and every
request, first try, retry or re-send, is still preceded by one atomic check
that the campaign is running, still ours, and the attempt still unresolved
(``Store.stamp_send``). After a halt-class answer or a pause no new request
starts; requests already open finish and are recorded as they answer.

An attempt whose earlier send *may* have become a call (a timeout, a 5xx, a
lost answer, a leftover from a dead worker) is never put back to pending on a
later refusal: it is marked in doubt instead, so no contact is dialled twice.
It is re-sent only under the same Idempotency-Key where the provider honours
keys (``engine/resolve.py``); elsewhere it is looked up, left for the
provider's creation event, or marked in doubt, and sent again only once a
lookup has proved that nothing was placed.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
import uuid
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import dataclass
from typing import Any, Literal

import structlog

from campaigns import metrics
from campaigns.domain.errors import ErrorClass, ProviderError
from campaigns.domain.lifecycle import (
    BUDGET_EXHAUSTED_MESSAGE,
    PROVIDER_MISBEHAVING_MESSAGE,
    REVIEW_MESSAGE,
    AttemptStatus,
    HaltCode,
    Move,
    State,
)
from campaigns.domain.pacing import PaceRule, pace_rule
from campaigns.domain.spec import Pacing
from campaigns.engine.account import AccountGate, make_usage_source
from campaigns.engine.alerts import check_budget_alerts
from campaigns.engine.capacity import WorkerCapacity
from campaigns.engine.policy import ContactPolicy
from campaigns.engine.resolve import (
    GARBAGE_BEFORE_HALT,
    IN_BAND_CHECKS,
    choose_lookup,
    event_rerun_seconds,
    keys_effective,
    unusable_answer,
)
from campaigns.providers import CallInfo, CreateRequest, Provider, SentCreate
from campaigns.providers.balance import make_balance_source
from campaigns.queue import JobQueue
from campaigns.settings import Settings
from campaigns.store import Attempt, CampaignRecord, Store, now_ms
from campaigns.store.faults import backoff_seconds, fault_log, is_redis_fault

__all__ = ["BatchResult", "Dispatcher", "backoff_delay"]

_MAX_DEFER_SECONDS = 5.0
_RECORD_TRIES = 20
_LOOKUP_FAILURES_BEFORE_DOUBT = 5
_CAPACITY_POLL_SECONDS = 0.2
_CALM_POLL_SECONDS = 0.05
_MAX_CAPACITY_WAIT_SECONDS = 2.0
"""How long a run waits inside for live calls to end before it hands over."""
_CAPACITY_WAITS = frozenset({"in_flight_full", "budget_wait", "account_live_full"})

SendOutcome = Literal[
    "accepted",  # recorded with its call ID
    "contact",  # refused for this number only; the contact is finished
    "halt",  # refused on money, routing, limits or auth; the campaign halted
    "in_doubt",  # may or may not be a call; an operator decides
    "resolved",  # someone else resolved the attempt meanwhile
    "unresolved",  # retries spent; the campaign paused with provider_unavailable
    "lease_lost",  # another worker took the campaign over
    "stopped",  # paused, halted or cancelled meanwhile; nothing sent
    "skipped",  # could not be resolved now; try again next batch
]
_Resolved = SendOutcome | Literal["not_placed"]
"""What resolving an ambiguous create found; ``not_placed``: a lookup proved no
call exists, so the attempt may be sent again as a first dial."""
_GO_ON: frozenset[str] = frozenset({"accepted", "contact", "in_doubt", "resolved", "skipped"})
_CONTINUE_CHAIN = frozenset(
    {"batch_done", "pace_wait", "empty", "wait", "skipped", "terms_changed", *_CAPACITY_WAITS}
)
"""``terms_changed``: an operator changed the pace, window or schedule; the next
run, with no delay, reads them again (``campaigns/domain/changes.py``)."""


@dataclass(frozen=True, slots=True)
class BatchResult:
    campaign_id: str
    outcome: str
    sent: int
    next_seq: int | None = None
    defer_seconds: float = 0.0


@dataclass(frozen=True, slots=True)
class _Batch:
    """What one batch run knows: the campaign, its lease and its time limit."""

    campaign: CampaignRecord
    token: str
    caller_id: str
    max_seconds: int
    deadline: float
    log: Any
    pace: PaceRule
    account_pace: PaceRule
    stopped: asyncio.Event
    """Set when one of the run's requests stopped the campaign: start no other."""
    changed: asyncio.Event
    """Set by the worker's watch when the campaign stopped running or its terms
    changed: a run sleeping until its next slot claims again at once."""
    backoff: _Backoff

    @property
    def campaign_id(self) -> str:
        return self.campaign.campaign_id


def backoff_delay(
    attempt: int, base: float, cap: float, retry_after: float | None, rng: random.Random
) -> float:
    """Capped exponential backoff with full jitter, never shorter than Retry-After."""
    delay = rng.uniform(0, min(cap, base * (2**attempt)))
    if retry_after is not None:
        delay = max(delay, min(retry_after, 60.0))
    return delay


class Dispatcher:
    """Runs dispatch batches for any campaign, on behalf of one worker process."""

    def __init__(
        self,
        store: Store,
        provider: Provider,
        queue: JobQueue,
        settings: Settings,
        *,
        worker_id: str | None = None,
        rng: random.Random | None = None,
        gate: AccountGate | None = None,
    ) -> None:
        self.store = store
        self.provider = provider
        self.queue = queue
        self.settings = settings
        self.worker_id = worker_id or uuid.uuid4().hex[:12]
        self.rng = rng or random.Random()
        self.gate = gate or AccountGate(
            store,
            make_balance_source(settings, provider),
            settings,
            queue,
            usage=make_usage_source(settings),
        )
        self.pace_margin = settings.pace_margin_percent / 100
        self.account_pace = pace_rule(settings.provider_calls_per_second, self.pace_margin)
        self.draining = False
        """Set by :meth:`drain`: runs stop claiming and hand over."""
        self.policy = ContactPolicy(store, settings)
        self.capacity = WorkerCapacity(store, settings)
        self.before_record: Callable[[Attempt, CallInfo], None] = _nothing
        """Runs between the provider's answer and its record: the seam where the
        chaos suite installs its SIGKILL (``tests/chaos/faults.py``)."""

    def drain(self) -> None:
        """The worker is shutting down: every run stops claiming, its open requests
        finish and are recorded, and the next run is left to another worker."""
        self.draining = True
        self.capacity.wake_all()

    async def run_batch(self, campaign_id: str, seq: int) -> BatchResult:
        log = structlog.stdlib.get_logger("campaigns.engine.dispatch").bind(
            campaign_id=campaign_id, dispatch_seq=seq
        )
        campaign = await self.store.campaign(campaign_id)
        if campaign is None:
            log.error("dispatch_unknown_campaign")
            return BatchResult(campaign_id, "unknown_campaign", 0)
        if campaign.dispatch_seq != seq:
            log.debug("dispatch_superseded", current_seq=campaign.dispatch_seq)
            return BatchResult(campaign_id, "superseded", 0)
        if campaign.state is State.QUEUED:
            await self.store.transition(campaign_id, Move.START)
        elif campaign.state is not State.RUNNING:
            return BatchResult(campaign_id, f"not_running:{campaign.state}", 0)

        token = f"{self.worker_id}:{seq}:{uuid.uuid4().hex[:8]}"
        if not await self.store.acquire_lease(campaign_id, token, self.settings.lease_seconds):
            log.info("dispatch_lease_busy", holder=await self.store.lease_holder(campaign_id))
            return BatchResult(campaign_id, "leased_elsewhere", 0)
        await self.store.heartbeat(campaign_id)
        changed = self.capacity.hold(token, campaign_id, campaign.terms)
        # Renew the lease in the background, so a slow request (up to the
        # provider timeout) never lets it lapse while this worker is alive.
        keeper = asyncio.create_task(self._keep_lease(campaign_id, token))
        # Finish well inside arq's job timeout: a cancelled batch would leave its
        # attempt unresolved without ever reaching the provider_unavailable pause.
        budget = self.settings.job_timeout_seconds - self.settings.provider_timeout_seconds - 5
        batch = _Batch(
            campaign=campaign,
            token=token,
            caller_id=campaign.spec.caller_id,
            max_seconds=campaign.spec.max_call_seconds,
            deadline=time.monotonic() + max(budget, 1.0),
            log=log,
            pace=pace_rule(campaign.spec.pacing.calls_per_second, self.pace_margin),
            account_pace=self.account_pace,
            stopped=asyncio.Event(),
            changed=changed,
            backoff=_Backoff(),
        )
        try:
            # Pause and cancel wait for the lease, so a state read under the
            # lease is final until we let go.
            if await self.store.state(campaign_id) is not State.RUNNING:
                outcome, sent, defer = "stopped", 0, 0.0
            else:
                outcome, sent, defer = await self._batch(batch, campaign.spec.pacing)
        finally:
            self.capacity.let_go(token)
            keeper.cancel()
            await asyncio.gather(keeper, return_exceptions=True)
            await self.store.release_lease(campaign_id, token)
        if sent:
            await check_budget_alerts(self.store, self.queue, campaign_id)

        next_seq: int | None = None
        if outcome in _CONTINUE_CHAIN:
            next_seq = await self.store.next_dispatch_seq(campaign_id, seq)
            if next_seq is not None:
                await self.queue.dispatch(campaign_id, next_seq, defer)
                await self.store.heartbeat(campaign_id, now_ms() + int(defer * 1000))
        elif outcome == "completed":
            log.info("campaign_completed")
            await self.queue.reconcile(
                campaign_id, defer_seconds=self.settings.poll_interval_seconds
            )
        log.debug("dispatch_batch_done", outcome=outcome, sent=sent, next_seq=next_seq)
        return BatchResult(campaign_id, outcome, sent, next_seq, defer)

    async def _batch(self, batch: _Batch, pacing: Pacing) -> tuple[str, int, float]:
        # Leftovers first: attempts sent by a worker that died (or ran out of
        # retries) before recording the answer.
        for attempt in await self.store.unresolved_attempts(batch.campaign_id):
            result = await self._resolve_leftover(batch, attempt)
            if result not in _GO_ON:
                return _batch_outcome(result), 0, 0.0

        if not await self._balance_allows(batch):
            state = await self.store.state(batch.campaign_id)
            return ("paused" if state is State.PAUSED else "halt"), 0, 0.0

        run = _Run(pacing.max_concurrent_requests, self.capacity.requests, batch.stopped)
        try:
            outcome, defer = await self._claim_and_send(batch, pacing, run)
        finally:
            # Requests already open finish and are recorded, whatever ended the run.
            await asyncio.gather(*run.open, return_exceptions=True)
        if run.error is not None:
            raise run.error  # arq logs it and fails the job; the sweeper restarts the campaign
        if run.stop is not None:
            return run.stop, run.sent, 0.0
        return outcome, run.sent, defer

    async def _claim_and_send(self, batch: _Batch, pacing: Pacing, run: _Run) -> tuple[str, float]:
        """Claim on the pace schedule and start each request as its own task."""
        since_check = 0
        waited = 0.0
        noted_wait = batch.campaign.wait_reason is not None
        while time.monotonic() < batch.deadline and not self.draining:
            while not batch.backoff.calm.is_set() and not batch.stopped.is_set():
                await _sleep_unless_set(batch.stopped, _CALM_POLL_SECONDS)
            if since_check >= pacing.batch_size:
                # A checkpoint: the account's money, alerts, liveness.
                since_check = 0
                await self.store.heartbeat(batch.campaign_id)
                await check_budget_alerts(self.store, self.queue, batch.campaign_id)
                if not await self._balance_allows(batch):
                    state = await self.store.state(batch.campaign_id)
                    return ("paused" if state is State.PAUSED else "halt"), 0.0
            await run.take()
            if run.stop is not None:
                run.give_back()
                return "stopped", 0.0
            try:
                claim = await self.policy.claim(
                    batch.campaign,
                    batch.token,
                    review_message=REVIEW_MESSAGE,
                    budget_message=BUDGET_EXHAUSTED_MESSAGE,
                    pace=batch.pace,
                    account_pace=batch.account_pace,
                    max_live=self.settings.provider_max_live_calls,
                    terms=batch.campaign.terms,
                )
            except BaseException:
                run.give_back()  # the worker's permit is shared: never lose one
                raise
            if claim.outcome != "claimed":
                run.give_back()
            if claim.outcome == "wait":
                # Nothing may be called now (window, schedule, retries, cap): say
                # why and until when, and come back then (bounded), holding no
                # lease and no reservation meanwhile.
                now = self.policy.clock()
                why = self.policy.wait_for(batch.campaign, claim, now)
                await self.store.note_waiting(batch.campaign_id, why.reason, why.until_ms)
                batch.log.debug("dispatch_waiting", reason=why.reason, until_ms=why.until_ms)
                return "wait", why.defer_seconds(now, self.settings.wait_recheck_seconds)
            if noted_wait:
                noted_wait = False
                await self.store.note_waiting(batch.campaign_id, None)
            if claim.outcome == "skipped":
                continue  # a long run of suppressed or capped contacts: claim on
            if claim.outcome == "terms_changed":
                return "terms_changed", 0.0
            if claim.outcome == "pace_wait":
                if claim.wait_seconds > batch.deadline - time.monotonic():
                    return "pace_wait", claim.wait_seconds
                await _sleep_until_woken(batch, claim.wait_seconds)
                continue
            if claim.outcome in _CAPACITY_WAITS or (claim.outcome == "empty" and run.open):
                # Live calls ending (or open requests answering) make room; a
                # short wait here keeps the pace, a long one hands over.
                if waited >= _MAX_CAPACITY_WAIT_SECONDS:
                    return claim.outcome, min(
                        self.settings.poll_interval_seconds, _MAX_DEFER_SECONDS
                    )
                waited += _CAPACITY_POLL_SECONDS
                await _sleep_unless_set(batch.stopped, _CAPACITY_POLL_SECONDS)
                continue
            if claim.outcome != "claimed":
                if claim.outcome in ("budget_exhausted", "needs_review"):
                    batch.log.warning("campaign_halted", reason=claim.outcome)
                    metrics.halt(claim.outcome)
                defer = min(self.settings.poll_interval_seconds, _MAX_DEFER_SECONDS)
                return claim.outcome, defer
            assert claim.attempt is not None
            waited = 0.0
            since_check += 1
            run.start(self._send_claimed(batch, claim.attempt))
        return "batch_done", 0.0

    async def _send_claimed(self, batch: _Batch, attempt: Attempt) -> SendOutcome:
        return await self._send(batch, attempt, self._body(batch, attempt), maybe_placed=False)

    def _body(self, batch: _Batch, attempt: Attempt) -> str:
        """The create request: the contact's variables plus the IDs that let a call
        be traced back (and found again) by campaign and attempt."""
        return self.provider.build_create(
            CreateRequest(
                caller_id=batch.caller_id,
                to=attempt.to,
                max_duration_seconds=batch.max_seconds,
                campaign_id=attempt.campaign_id,
                attempt_id=attempt.attempt_id,
                contact_ref=attempt.ref,
                variables=attempt.variables,
                call=batch.campaign.spec.call.model_dump(mode="json", exclude_none=True),
            )
        )

    async def _halt_if_balance_short(self, batch: _Batch, exc: ProviderError, log: Any) -> bool:
        """A 5xx on create may be the provider refusing a call the balance cannot pay
        (VoIPBIN answers ``500`` for it): with a fresh balance read that cannot cover
        the reservations held plus one call, halt ``insufficient_balance`` instead of
        retrying into the same refusal. A source without a balance says nothing."""
        campaign = await self.store.campaign(batch.campaign_id)
        if campaign is None:
            return False
        result = await self.gate.check(campaign, after_refusal=True)
        if result.verdict != "halt" or result.code is None:
            return False
        message = f"{result.message} (the provider answered the create request: {exc})"
        halted, _ = await self.store.transition(
            batch.campaign_id, Move.HALT, halt_code=result.code, halt_message=message
        )
        if halted:
            log.warning("campaign_halted", code=result.code, message=message)
            metrics.halt(result.code)
        return True

    async def _balance_allows(self, batch: _Batch) -> bool:
        """The account gate (``engine/account.py``): halt before sending, or cool down
        when the balance cannot be read (never assume it is fine)."""
        campaign = await self.store.campaign(batch.campaign_id)
        if campaign is None:
            return False
        result = await self.gate.check(campaign)
        if result.verdict == "ok":
            return True
        if result.verdict == "unknown":
            cooldown = self.settings.provider_unavailable_cooldown_seconds
            await self.store.transition(
                batch.campaign_id,
                Move.COOL_DOWN,
                halt_code=HaltCode.PROVIDER_UNAVAILABLE,
                halt_message=f"{result.message}; nothing sent, resuming after {cooldown:g}s",
                cooldown_until_ms=now_ms() + int(cooldown * 1000),
            )
            batch.log.warning("balance_check_failed", error=result.message)
            metrics.halt(HaltCode.PROVIDER_UNAVAILABLE)
            return False
        assert result.code is not None
        await self.store.transition(
            batch.campaign_id, Move.HALT, halt_code=result.code, halt_message=result.message
        )
        batch.log.warning("campaign_halted", code=result.code, message=result.message)
        metrics.halt(result.code)
        return False

    async def _send(
        self, batch: _Batch, attempt: Attempt, body: str, *, maybe_placed: bool, paced: bool = True
    ) -> SendOutcome:
        """Send one attempt, retrying transient failures under the same key, and record it.

        ``maybe_placed``: an earlier send of this attempt may have become a call.
        ``paced``: the first try's slot was taken by its claim; every other
        request (a retry, a re-send) takes its own.
        """
        with batch.backoff.track() as trouble:
            return await self._send_tries(batch, attempt, body, maybe_placed, paced, trouble)

    async def _send_tries(
        self,
        batch: _Batch,
        attempt: Attempt,
        body: str,
        maybe_placed: bool,
        paced: bool,
        trouble: _Trouble,
    ) -> SendOutcome:
        log = batch.log.bind(attempt_id=attempt.attempt_id)
        last: ProviderError | None = None
        for try_no in range(self.settings.retry_attempts + 1):
            if (try_no or not paced) and not await self._wait_for_slot(batch):
                return "stopped"
            stamp = await self.store.stamp_send(
                attempt.attempt_id, body, batch.token, may_be_placed=maybe_placed
            )
            if stamp != "ok":
                if try_no:
                    log.info("retry_abandoned", reason=stamp)
                if stamp == "not_running":
                    return "stopped"
                return "lease_lost" if stamp == "lease_lost" else "resolved"
            try:
                call = await metrics.create(self.provider.create_call(body, attempt.attempt_id))
            except ProviderError as exc:
                cls = exc.error_class
                if exc.status == 429 and exc.retry_after is not None:
                    # The account is over the provider's limit: every campaign waits.
                    await self.store.hold_account(min(exc.retry_after, 60.0))
                garbage = unusable_answer(exc)
                if garbage:
                    streak = await self.store.note_garbage(attempt.campaign_id)
                    if streak >= GARBAGE_BEFORE_HALT:
                        return await self._halt_misbehaving(batch, attempt, exc, streak, log)
                if cls is not ErrorClass.TRANSIENT and not garbage:
                    if maybe_placed and cls is ErrorClass.HALT:
                        return await self._halt_in_doubt(attempt, exc, log)
                    return await self._reject(attempt, exc, log)
                maybe_placed = maybe_placed or exc.ambiguous or garbage
                if (
                    exc.status is not None
                    and exc.status >= 500
                    and not garbage
                    and await self._halt_if_balance_short(batch, exc, log)
                ):
                    # The attempt stays unresolved: on resume the leftover pass
                    # resolves it (same key, lookup or in doubt) before anything new.
                    return "halt"
                if maybe_placed and not keys_effective(self.provider, self.settings):
                    # A second send could be a second call: find it or ask a person.
                    resolved = await self._resolve(
                        batch, attempt, f"send failed: {exc}", log, in_band=True
                    )
                    if resolved == "not_placed":
                        log.info("create_resend_not_placed", error=str(exc), try_no=try_no + 1)
                        maybe_placed = False
                        last = exc
                        if try_no == self.settings.retry_attempts:
                            break
                        continue
                    return await self._count_ambiguous(batch, attempt, resolved, exc, log)
                last = exc
                trouble.backing_off()
                delay = backoff_delay(
                    try_no,
                    self.settings.retry_base_seconds,
                    self.settings.retry_max_seconds,
                    exc.retry_after,
                    self.rng,
                )
                if try_no == self.settings.retry_attempts:
                    break
                timeout = self.settings.provider_timeout_seconds
                if self.draining or time.monotonic() + delay + timeout > batch.deadline:
                    # The run's time is up, not the provider's chances: the attempt
                    # stays unresolved and the next run re-sends it under its key.
                    log.info("retry_next_run", error=str(exc), try_no=try_no + 1)
                    return "skipped"
                log.info(
                    "create_retry", error=str(exc), retry_in=round(delay, 3), try_no=try_no + 1
                )
                await self._sleep_unless_stopped(attempt.campaign_id, delay)
                continue
            batch.backoff.ambiguous_in_row = 0
            await self._record_accepted(attempt, call, log, create_answer=True)
            return "accepted"
        assert last is not None
        await self._provider_unavailable(attempt, last, log)
        return "unresolved"

    async def _record_accepted(
        self, attempt: Attempt, call: CallInfo, log: Any, *, create_answer: bool = False
    ) -> None:
        self.before_record(attempt, call)
        for try_no in range(_RECORD_TRIES):
            try:
                result = await self.store.record_accepted(
                    attempt.attempt_id,
                    call.call_id,
                    self.settings.poll_interval_seconds,
                    create_answer=create_answer,
                )
                break
            except Exception as exc:
                if not is_redis_fault(exc):
                    raise
                # The call exists; keep trying to write its ID (each try is
                # itself retried for ~30 s by the connection layer). If we give
                # up, the attempt stays unresolved and the next holder resolves
                # it as a leftover (same key, lookup, creation event or in doubt).
                fault_log.failed(exc, where="record_accepted")
                if try_no == 0:  # once per call; the fault itself is logged once
                    log.info("record_waiting_for_redis", call_id=call.call_id)
                await asyncio.sleep(backoff_seconds(try_no, base=0.1, cap=2.0))
        else:
            raise RuntimeError(f"could not record call {call.call_id} for {attempt.attempt_id}")
        if result == "call_id_taken":
            # The provider answered with a call ID already recorded for another
            # attempt: never guess which is right; an operator decides.
            reason = f"provider returned call {call.call_id}, already recorded for another attempt"
            await self.store.mark_in_doubt(attempt.attempt_id, reason)
            log.error("record_call_id_taken", call_id=call.call_id)
        elif result in ("late", "late_redialled"):
            level = log.critical if result == "late_redialled" else log.warning
            level("call_accepted_after_rejection", call_id=call.call_id, outcome=result)
        elif result == "conflict":
            # Recorded meanwhile with another call (a creation event or a lookup
            # matched it): keep this one for the operator, never drop an ID.
            await self.store.dead_letter(
                {
                    "reason": "create answer names another call than the one recorded",
                    "attempt_id": attempt.attempt_id,
                    "call_id": call.call_id,
                }
            )
            log.error("record_conflict", call_id=call.call_id)
        else:
            log.info(
                "call_accepted", call_id=call.call_id, to=attempt.to, replay=result == "duplicate"
            )

    async def _reject(self, attempt: Attempt, exc: ProviderError, log: Any) -> SendOutcome:
        kind: Literal["contact", "halt"] = (
            "contact" if exc.error_class is ErrorClass.CONTACT else "halt"
        )
        await self.store.record_rejected(attempt.attempt_id, kind, exc.code, exc.message)
        if kind == "halt":
            log.warning("campaign_halted", code=exc.code, message=exc.message, status=exc.status)
            metrics.halt(exc.code)
            return "halt"
        log.info("contact_rejected", code=exc.code, status=exc.status, to=attempt.to)
        return "contact"

    async def _halt_in_doubt(self, attempt: Attempt, exc: ProviderError, log: Any) -> SendOutcome:
        """A refusal now does not prove an earlier send of this attempt placed nothing:
        halt the campaign, but keep the attempt (and its contact) for an operator."""
        reason = f"{exc.code} after an earlier send that may have placed the call: {exc.message}"
        await self.store.mark_in_doubt(attempt.attempt_id, reason, code=exc.code, halt=True)
        log.warning("campaign_halted", code=exc.code, in_doubt=True, status=exc.status)
        metrics.halt(exc.code)
        return "halt"

    async def _resolve(
        self, batch: _Batch, attempt: Attempt, why: str, log: Any, *, in_band: bool
    ) -> _Resolved:
        """Without idempotency keys, find out what an ambiguous create became.

        The strongest mechanism the dialect declares decides: a lookup of the
        provider's calls, else the creation event (recorded by the settler;
        ``in_band``: right after the failure, look for it a few times over a
        short while), else an operator. Used by the send path and the leftover
        pass alike (``engine/resolve.py`` holds the decisions).
        """
        caps = self.provider.capabilities
        fresh = await self.store.attempt(attempt.attempt_id)
        if fresh is None or fresh.status is not AttemptStatus.SENDING:
            return "resolved"
        if caps.lookup:
            looked = await self._look_up(batch, fresh, why, log)
            if looked is not None:
                return looked
        if caps.creation_events:
            if in_band:
                for delay in _in_band_delays():
                    await _sleep_unless_set(batch.stopped, delay)
                    seen = await self.store.attempt(attempt.attempt_id)
                    if seen is None or seen.status is not AttemptStatus.SENDING:
                        found = seen is not None and seen.status is AttemptStatus.ACCEPTED
                        if found and seen is not None:
                            log.info("call_found_by_creation_event", call_id=seen.call_id)
                        return "accepted" if found else "resolved"
            waited = (now_ms() - (fresh.last_sent_at_ms or now_ms())) / 1000
            wait = self.settings.creation_event_wait_seconds
            if waited < wait:
                log.info("awaiting_creation_event", reason=why, waited=round(waited, 3))
                return "skipped"
            if waited < wait + event_rerun_seconds(self.settings) and (
                await self.queue.events_pending(self.provider.creation_events)
            ):
                # A creation event not yet applied (its worker may have died):
                # it may be this attempt's call.
                log.info(
                    "awaiting_creation_event",
                    reason=f"{why}; a creation event is still queued",
                    waited=round(waited, 3),
                )
                return "skipped"
            why += (
                f"; no creation event matched it within "
                f"{self.settings.creation_event_wait_seconds:g}s of its last send"
            )
        return await self._in_doubt(attempt, why, log)

    async def _look_up(
        self, batch: _Batch, attempt: Attempt, why: str, log: Any
    ) -> _Resolved | None:
        """Look the call up by source, destination and send window; None when the
        dialect turns out to have no lookup after all (the next mechanism decides)."""
        first = attempt.first_sent_at_ms or now_ms()
        last = attempt.last_sent_at_ms or first
        sent = SentCreate(attempt.attempt_id, batch.caller_id, attempt.to, first, last)
        try:
            calls = await metrics.timed("find_calls", self.provider.find_calls(sent))
        except NotImplementedError:
            log.error("lookup_not_implemented", dialect=self.provider.dialect)
            return None
        except ProviderError as exc:
            failures = await self.store.note_lookup_failure(attempt.attempt_id)
            log.warning("lookup_failed", error=str(exc), failures=failures)
            if failures < _LOOKUP_FAILURES_BEFORE_DOUBT:
                return "skipped"
            return await self._in_doubt(
                attempt, f"{why}; looking the call up failed {failures} times ({exc})", log
            )
        owners = await self.store.call_owners([c.call_id for c in calls])
        verdict = choose_lookup(
            attempt.attempt_id,
            calls,
            owners,
            seconds_since_last_send=(now_ms() - last) / 1000,
            settle_seconds=self.provider.capabilities.lookup_settle_seconds,
        )
        if verdict.outcome == "found":
            assert verdict.call is not None
            log.info("call_found_by_lookup", call_id=verdict.call.call_id)
            await self._record_accepted(attempt, verdict.call, log)
            return "accepted"
        if verdict.outcome == "several":
            calls_named = ", ".join(verdict.call_ids)
            return await self._in_doubt(
                attempt, f"{why}; the lookup found several calls: {calls_named}", log
            )
        if verdict.outcome == "not_placed":
            log.warning(
                "lookup_found_no_call",
                settle_seconds=self.provider.capabilities.lookup_settle_seconds,
                reason=why,
            )
            return "not_placed"
        log.info("lookup_found_nothing_yet", reason=why)
        return "skipped"

    async def _in_doubt(self, attempt: Attempt, why: str, log: Any) -> SendOutcome:
        reason = f"{why}; the provider does not honour Idempotency-Key"
        result = await self.store.mark_in_doubt(attempt.attempt_id, reason)
        if result != "ok":
            return "resolved"  # recorded meanwhile (a creation event, an operator)
        log.warning("attempt_in_doubt", reason=reason)
        return "in_doubt"

    async def _count_ambiguous(
        self, batch: _Batch, attempt: Attempt, resolved: _Resolved, exc: ProviderError, log: Any
    ) -> SendOutcome:
        """Ambiguous failures in a row, none re-sent: after as many as one request's
        retries, the provider is in trouble; cool down rather than spend the list."""
        assert resolved != "not_placed"
        if resolved in ("accepted", "resolved"):
            batch.backoff.ambiguous_in_row = 0
            return resolved
        if resolved not in ("skipped", "in_doubt"):
            return resolved
        batch.backoff.ambiguous_in_row += 1
        if batch.backoff.ambiguous_in_row > self.settings.retry_attempts:
            batch.backoff.ambiguous_in_row = 0
            await self._provider_unavailable(attempt, exc, log)
            return "unresolved"
        return resolved

    async def _halt_misbehaving(
        self, batch: _Batch, attempt: Attempt, exc: ProviderError, streak: int, log: Any
    ) -> SendOutcome:
        """Too many create answers without a usable ID in a row: halt. The attempt is
        found (lookup, creation event), proved not placed, or left in doubt."""
        where = f"HTTP {exc.status}" if exc.status is not None else "network"
        message = PROVIDER_MISBEHAVING_MESSAGE.format(
            count=streak, status=where, excerpt=exc.message[:200]
        )
        code = HaltCode.PROVIDER_MISBEHAVING
        resolved: _Resolved = "skipped"
        if not keys_effective(self.provider, self.settings):
            resolved = await self._resolve(
                batch, attempt, f"send failed: {exc}", log, in_band=False
            )
        if resolved == "not_placed":
            await self.store.record_rejected(attempt.attempt_id, "halt", code, message)
        elif resolved == "skipped" and not keys_effective(self.provider, self.settings):
            await self.store.mark_in_doubt(attempt.attempt_id, message, code=code, halt=True)
        else:
            # Found, in doubt, or (with keys) left unresolved: the leftover pass
            # re-sends it under its key once an operator resumes.
            await self.store.transition(
                attempt.campaign_id, Move.HALT, halt_code=code, halt_message=message
            )
        log.warning("campaign_halted", code=code, status=exc.status, error=str(exc))
        metrics.halt(code)
        return "halt"

    async def _provider_unavailable(self, attempt: Attempt, exc: ProviderError, log: Any) -> None:
        """Retries spent: leave the attempt unresolved and pause for a cool-down."""
        cooldown = self.settings.provider_unavailable_cooldown_seconds
        await self.store.transition(
            attempt.campaign_id,
            Move.COOL_DOWN,
            halt_code=HaltCode.PROVIDER_UNAVAILABLE,
            halt_message=f"create request kept failing ({exc}); resuming after {cooldown:g}s",
            cooldown_until_ms=now_ms() + int(cooldown * 1000),
        )
        log.warning("campaign_paused", code=HaltCode.PROVIDER_UNAVAILABLE, error=str(exc))
        metrics.halt(HaltCode.PROVIDER_UNAVAILABLE)

    async def _wait_for_slot(self, batch: _Batch) -> bool:
        """Take a pace slot for a request without a claim; False if the run stopped."""
        while not batch.stopped.is_set():
            wait = await self.store.take_pace_slot(
                batch.campaign_id, batch.pace, batch.account_pace
            )
            if wait <= 0:
                return True
            await _sleep_unless_set(batch.stopped, wait)
        return False

    async def _keep_lease(self, campaign_id: str, token: str) -> None:
        interval = self.settings.lease_seconds / 3
        while True:
            await asyncio.sleep(interval)
            try:
                if not await self.store.renew_lease(
                    campaign_id, token, self.settings.lease_seconds
                ):
                    return  # lapsed or taken over: every stamp refuses us from now on
                await self.store.heartbeat(campaign_id)
            except Exception as exc:
                if not is_redis_fault(exc):
                    raise
                fault_log.failed(exc, where="lease")
                continue

    async def _sleep_unless_stopped(self, campaign_id: str, seconds: float) -> None:
        """Back off, but wake as soon as an operator pauses or cancels: ``pause``
        waits for this worker to let go of the campaign."""
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            await asyncio.sleep(min(left, 0.2))
            if await self.store.state(campaign_id) is not State.RUNNING:
                return

    async def _resolve_leftover(self, batch: _Batch, attempt: Attempt) -> SendOutcome:
        log = batch.log.bind(attempt_id=attempt.attempt_id)
        if attempt.request is None:
            # Never stamped, so never sent: send it now under its own key.
            log.info("leftover_unsent")
            return await self._send(
                batch, attempt, self._body(batch, attempt), maybe_placed=False, paced=False
            )
        if keys_effective(self.provider, self.settings):
            log.info("leftover_resend", reason="answer never recorded; same Idempotency-Key")
            return await self._send(batch, attempt, attempt.request, maybe_placed=True, paced=False)
        resolved = await self._resolve(batch, attempt, "answer never recorded", log, in_band=False)
        if resolved == "not_placed":
            # A lookup proved the earlier send placed nothing: a first dial again,
            # with the do-not-call lists checked again (a fresh stamp).
            log.warning("leftover_resend_not_placed", reason="lookup found no call")
            return await self._send(
                batch, attempt, attempt.request, maybe_placed=False, paced=False
            )
        return resolved


class _Trouble:
    """One request's part in :class:`_Backoff`."""

    def __init__(self, owner: _Backoff) -> None:
        self._owner = owner
        self.counted = False

    def backing_off(self) -> None:
        if not self.counted:
            self.counted = True
            self._owner.enter()


class _Backoff:
    """While any request of a run backs off after a transient failure, no new one
    starts: a provider in trouble gets one request's retries, not one per slot."""

    def __init__(self) -> None:
        self.calm = asyncio.Event()
        self.calm.set()
        self._count = 0
        self.ambiguous_in_row = 0
        """Ambiguous failures left unresolved (no keys) since the last accepted call."""

    def enter(self) -> None:
        self._count += 1
        self.calm.clear()

    def leave(self) -> None:
        self._count -= 1
        if self._count == 0:
            self.calm.set()

    @contextlib.contextmanager
    def track(self) -> Iterator[_Trouble]:
        trouble = _Trouble(self)
        try:
            yield trouble
        finally:
            if trouble.counted:
                self.leave()


class _Run:
    """The requests one run has open, and the first outcome that stopped it."""

    def __init__(self, max_open: int, worker: asyncio.Semaphore, stopped: asyncio.Event) -> None:
        self.slots = asyncio.Semaphore(max_open)
        self.worker = worker
        """The worker's open requests, over all its campaigns (``engine/capacity.py``)."""
        self.open: set[asyncio.Task[SendOutcome]] = set()
        self.sent = 0
        self.stop: str | None = None
        self.error: BaseException | None = None
        """The first request that failed with an exception (not an answer)."""
        self._stopped = stopped

    async def take(self) -> None:
        """Room for one more request: one of the run's, then one of the worker's."""
        await self.slots.acquire()
        if self.worker.locked():
            metrics.worker_capacity_wait()
        await self.worker.acquire()

    def give_back(self) -> None:
        self.worker.release()
        self.slots.release()

    def start(self, send: Coroutine[Any, Any, SendOutcome]) -> None:
        """Start one request (after :meth:`take`); its room is given back when it
        has been recorded."""
        task = asyncio.create_task(send)
        self.open.add(task)
        self.sent += 1
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[SendOutcome]) -> None:
        self.open.discard(task)
        self.give_back()
        if task.cancelled():
            self._halt("stopped")
            return
        error = task.exception()
        if error is not None:
            self.error = self.error or error
            self._halt("stopped")
            return
        result = task.result()
        if result not in _GO_ON:
            self._halt(_batch_outcome(result))

    def _halt(self, outcome: str) -> None:
        if self.stop is None:
            self.stop = outcome
        self._stopped.set()


async def _sleep_unless_set(event: asyncio.Event, seconds: float) -> None:
    """Sleep, but wake as soon as the run is stopped."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(event.wait(), timeout=max(seconds, 0.0))


async def _sleep_until_woken(batch: _Batch, seconds: float) -> None:
    """Sleep until the next slot, but wake as soon as the run is stopped or its
    campaign changed (paused, cancelled, new terms)."""
    if batch.changed.is_set():
        batch.changed.clear()  # claim again now; the watch sets it again if it must
        return
    wakers = [asyncio.ensure_future(e.wait()) for e in (batch.stopped, batch.changed)]
    try:
        await asyncio.wait(wakers, timeout=max(seconds, 0.0), return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waker in wakers:
            waker.cancel()
    batch.changed.clear()


def _in_band_delays() -> list[float]:
    """The pauses between the in-band checks for a creation event."""
    previous = 0.0
    delays = []
    for at in IN_BAND_CHECKS:
        delays.append(at - previous)
        previous = at
    return delays


def _nothing(attempt: Attempt, call: CallInfo) -> None:
    return None


def _batch_outcome(result: SendOutcome) -> str:
    """How a batch ends when one send stops it."""
    return "paused" if result == "unresolved" else result
