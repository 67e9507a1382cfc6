"""One dispatch batch: lease, resolve leftovers, then claim → send → record, paced.

Create requests for one campaign are strictly sequential (one lease holder,
one request at a time). That is what makes "nothing after a halt" exact: the
halt is recorded before the next claim, and the claim refuses once the state
is not ``running``.
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import time
import uuid
from dataclasses import dataclass
from typing import Literal

import structlog
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from campaigns.alerts import check_budget_alerts
from campaigns.errors import ErrorClass, ProviderError
from campaigns.providers import CallInfo, Provider
from campaigns.queue import JobQueue
from campaigns.settings import Settings
from campaigns.store import Attempt, Store, now_ms

__all__ = ["BatchResult", "Dispatcher", "backoff_delay"]

_MAX_DEFER_SECONDS = 5.0

SendOutcome = Literal["accepted", "contact", "halt", "unresolved", "lease_lost", "stopped"]


@dataclass(frozen=True, slots=True)
class BatchResult:
    campaign_id: str
    outcome: str
    sent: int
    next_seq: int | None = None
    defer_seconds: float = 0.0


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
    ) -> None:
        self.store = store
        self.provider = provider
        self.queue = queue
        self.settings = settings
        self.worker_id = worker_id or uuid.uuid4().hex[:12]
        self.rng = rng or random.Random()

    async def run_batch(self, campaign_id: str, seq: int) -> BatchResult:
        log = structlog.stdlib.get_logger("campaigns.dispatch").bind(
            campaign_id=campaign_id, dispatch_seq=seq
        )
        campaign = await self.store.campaign(campaign_id)
        if campaign is None:
            log.error("dispatch_unknown_campaign")
            return BatchResult(campaign_id, "unknown_campaign", 0)
        if campaign.dispatch_seq != seq:
            log.debug("dispatch_superseded", current_seq=campaign.dispatch_seq)
            return BatchResult(campaign_id, "superseded", 0)
        if campaign.state == "queued":
            await self.store.transition(campaign_id, ["queued"], "running")
        elif campaign.state != "running":
            return BatchResult(campaign_id, f"not_running:{campaign.state}", 0)

        token = f"{self.worker_id}:{seq}:{uuid.uuid4().hex[:8]}"
        if not await self.store.acquire_lease(campaign_id, token, self.settings.lease_seconds):
            log.info("dispatch_lease_busy", holder=await self.store.lease_holder(campaign_id))
            return BatchResult(campaign_id, "leased_elsewhere", 0)
        await self.store.heartbeat(campaign_id)
        spec = campaign.spec
        # Renew the lease in the background, so a slow request (up to the
        # provider timeout) never lets it lapse while this worker is alive.
        keeper = asyncio.create_task(self._keep_lease(campaign_id, token))
        try:
            outcome, sent, defer = await self._batch(campaign_id, spec, token, log)
        finally:
            keeper.cancel()
            await asyncio.gather(keeper, return_exceptions=True)
            await self.store.release_lease(campaign_id, token)
        if sent:
            await check_budget_alerts(self.store, self.queue, campaign_id)

        next_seq: int | None = None
        if outcome in ("batch_done", "in_flight_full", "budget_wait", "empty", "unresolved_left"):
            next_seq = await self.store.next_dispatch_seq(campaign_id, seq)
            if next_seq is not None:
                await self.queue.dispatch(campaign_id, next_seq, defer)
        elif outcome == "completed":
            log.info("campaign_completed")
            await self.queue.reconcile(
                campaign_id, defer_seconds=self.settings.poll_interval_seconds
            )
        log.debug("dispatch_batch_done", outcome=outcome, sent=sent, next_seq=next_seq)
        return BatchResult(campaign_id, outcome, sent, next_seq, defer)

    async def _batch(
        self,
        campaign_id: str,
        spec: dict[str, object],
        token: str,
        log: structlog.stdlib.BoundLogger,
    ) -> tuple[str, int, float]:
        caller_id = str(spec["caller_id"])
        max_seconds = int(str(spec["max_call_seconds"]))
        pacing = spec["pacing"]
        assert isinstance(pacing, dict)
        interval = 1.0 / float(pacing["calls_per_second"])
        batch_size = int(pacing["batch_size"])

        # Leftovers first: an attempt sent by a worker that died (or timed out)
        # before recording the answer. We hold the lease, so nobody else is
        # sending for this campaign now.
        for attempt in await self.store.unresolved_attempts(campaign_id):
            result = await self._resolve_leftover(attempt, caller_id, max_seconds, token, log)
            if result in ("halt", "lease_lost", "stopped"):
                return result, 0, 0.0
            if result == "unresolved":
                return "paused", 0, 0.0

        if not await self._balance_allows(campaign_id, log):
            return "halt", 0, 0.0

        sent = 0
        last_send = 0.0
        while sent < batch_size:
            wait = last_send + interval - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            claim = await self.store.claim(campaign_id, token)
            if claim.outcome != "claimed":
                if claim.outcome == "budget_exhausted":
                    log.warning("campaign_halted", code="budget_exhausted")
                elif claim.outcome == "needs_review":
                    log.warning("campaign_halted", code="in_doubt_review")
                defer = self.settings.poll_interval_seconds
                return claim.outcome, sent, min(defer, _MAX_DEFER_SECONDS)
            assert claim.attempt is not None
            attempt = claim.attempt
            body = self._body(attempt, caller_id, max_seconds)
            await self.store.save_request(attempt.attempt_id, body)
            last_send = time.monotonic()
            result = await self._send(attempt, body, token, log)
            sent += 1
            if result in ("halt", "lease_lost", "stopped"):
                return result, sent, 0.0
            if result == "unresolved":
                return "paused", sent, 0.0
        return "batch_done", sent, max(0.0, last_send + interval - time.monotonic())

    def _body(self, attempt: Attempt, caller_id: str, max_seconds: int) -> str:
        """The create request: the contact's variables plus the IDs that let a call
        be traced back (and found again) by campaign and attempt."""
        return self.provider.build_create(
            caller_id=caller_id,
            to=attempt.to,
            max_duration_seconds=max_seconds,
            variables={
                **attempt.variables,
                "campaign_id": attempt.campaign_id,
                "attempt_id": attempt.attempt_id,
                "contact_ref": attempt.ref,
            },
        )

    async def _balance_allows(self, campaign_id: str, log: structlog.stdlib.BoundLogger) -> bool:
        """Re-check the provider balance where the dialect has one."""
        try:
            balance = await self.provider.balance()
        except ProviderError as exc:
            log.warning("balance_check_failed", error=str(exc))
            return True
        if balance is None:
            return True
        campaign = await self.store.campaign(campaign_id)
        worst = campaign.worst_case_micros if campaign else 0
        if balance.credit_micros >= worst:
            return True
        message = f"provider balance {balance.credit_micros} micros is below one call's worst case {worst}"
        await self.store.transition(
            campaign_id,
            ["running"],
            "halted",
            halt_code="insufficient_balance",
            halt_message=message,
        )
        log.warning("campaign_halted", code="insufficient_balance", balance=balance.credit_micros)
        return False

    async def _send(
        self, attempt: Attempt, body: str, token: str, log: structlog.stdlib.BoundLogger
    ) -> SendOutcome:
        """Send one attempt (retrying transient failures with the same key) and record it."""
        alog = log.bind(attempt_id=attempt.attempt_id)
        last: ProviderError | None = None
        for try_no in range(self.settings.retry_attempts + 1):
            if try_no and (stop := await self._may_go_on(attempt.campaign_id, token)):
                # The attempt stays unresolved; it is re-sent with its key later.
                alog.info("retry_abandoned", reason=stop)
                return stop
            try:
                call = await self.provider.create_call(body, attempt.attempt_id)
            except ProviderError as exc:
                if exc.error_class is not ErrorClass.TRANSIENT:
                    return await self._reject(attempt, exc, alog)
                last = exc
                if try_no == self.settings.retry_attempts:
                    break
                delay = backoff_delay(
                    try_no,
                    self.settings.retry_base_seconds,
                    self.settings.retry_max_seconds,
                    exc.retry_after,
                    self.rng,
                )
                alog.info(
                    "create_retry", error=str(exc), retry_in=round(delay, 3), try_no=try_no + 1
                )
                await self._sleep_unless_stopped(attempt.campaign_id, delay)
                continue
            await self._record_accepted(attempt, call, alog)
            return "accepted"
        assert last is not None
        await self._provider_unavailable(attempt, last, alog)
        return "unresolved"

    async def _record_accepted(
        self, attempt: Attempt, call: CallInfo, log: structlog.stdlib.BoundLogger
    ) -> None:
        if (
            self.settings.fault_kill_after_send
            and self.rng.random() < self.settings.fault_kill_after_send
        ):
            log.warning("fault_injection_kill", call_id=call.call_id)
            os.kill(os.getpid(), signal.SIGKILL)
        for try_no in range(20):
            try:
                result = await self.store.record_accepted(
                    attempt.attempt_id, call.call_id, self.settings.poll_interval_seconds
                )
                break
            except (RedisConnectionError, RedisTimeoutError) as exc:
                # The call exists; keep trying to write its ID. If we give up,
                # the attempt stays unresolved and the next holder re-sends it
                # with the same Idempotency-Key, which replays this call.
                log.warning("record_retry", call_id=call.call_id, error=str(exc), try_no=try_no)
                await asyncio.sleep(min(0.1 * 2**try_no, 2.0))
        else:
            raise RuntimeError(f"could not record call {call.call_id} for {attempt.attempt_id}")
        if result == "call_id_taken":
            # The provider answered with a call ID already recorded for another
            # attempt: never guess which is right; an operator decides.
            reason = f"provider returned call {call.call_id}, already recorded for another attempt"
            await self.store.mark_in_doubt(attempt.attempt_id, reason)
            log.error("record_call_id_taken", call_id=call.call_id)
        elif result == "conflict":
            log.error("record_conflict", call_id=call.call_id)
        else:
            log.info(
                "call_accepted", call_id=call.call_id, to=attempt.to, replay=result == "duplicate"
            )

    async def _reject(
        self, attempt: Attempt, exc: ProviderError, log: structlog.stdlib.BoundLogger
    ) -> SendOutcome:
        kind: Literal["contact", "halt"] = (
            "contact" if exc.error_class is ErrorClass.CONTACT else "halt"
        )
        await self.store.record_rejected(attempt.attempt_id, kind, exc.code, exc.message)
        if kind == "halt":
            log.warning("campaign_halted", code=exc.code, message=exc.message, status=exc.status)
            return "halt"
        log.info("contact_rejected", code=exc.code, status=exc.status, to=attempt.to)
        return "contact"

    async def _provider_unavailable(
        self, attempt: Attempt, exc: ProviderError, log: structlog.stdlib.BoundLogger
    ) -> None:
        """Retries spent: leave the attempt unresolved and pause for a cool-down."""
        cooldown = self.settings.provider_unavailable_cooldown_seconds
        await self.store.transition(
            attempt.campaign_id,
            ["running"],
            "paused",
            halt_code="provider_unavailable",
            halt_message=f"create request kept failing ({exc}); resuming after {cooldown:g}s",
            cooldown_until_ms=now_ms() + int(cooldown * 1000),
        )
        log.warning("campaign_paused", code="provider_unavailable", error=str(exc))

    async def _keep_lease(self, campaign_id: str, token: str) -> None:
        interval = self.settings.lease_seconds / 3
        while True:
            await asyncio.sleep(interval)
            try:
                if not await self.store.acquire_lease(
                    campaign_id, token, self.settings.lease_seconds
                ):
                    return  # taken over: the claim script will refuse us from now on
            except (RedisConnectionError, RedisTimeoutError):
                continue

    async def _sleep_unless_stopped(self, campaign_id: str, seconds: float) -> None:
        """Back off, but wake as soon as an operator pauses or cancels: ``pause``
        waits for this worker to let go of the campaign."""
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            await asyncio.sleep(min(left, 0.2))
            if await self.store.state(campaign_id) != "running":
                return

    async def _may_go_on(self, campaign_id: str, token: str) -> SendOutcome | None:
        """Before a retry: still ours, and still running? A retry is a create request
        too, so none may start after a pause or halt."""
        if not await self.store.acquire_lease(campaign_id, token, self.settings.lease_seconds):
            return "lease_lost"
        if await self.store.state(campaign_id) != "running":
            return "stopped"
        return None

    async def _resolve_leftover(
        self,
        attempt: Attempt,
        caller_id: str,
        max_seconds: int,
        token: str,
        log: structlog.stdlib.BoundLogger,
    ) -> SendOutcome | Literal["in_doubt", "skipped"]:
        alog = log.bind(attempt_id=attempt.attempt_id)
        if attempt.request is None:
            # Never saved, so never sent: send it now under its own key.
            body = self._body(attempt, caller_id, max_seconds)
            await self.store.save_request(attempt.attempt_id, body)
            alog.info("leftover_unsent")
            return await self._send(attempt, body, token, alog)
        if self.settings.provider_honours_idempotency:
            alog.info("leftover_resend", reason="answer never recorded; same Idempotency-Key")
            return await self._send(attempt, attempt.request, token, alog)
        if self.provider.can_list_calls:
            try:
                found = await self.provider.find_call(attempt.attempt_id)
            except ProviderError as exc:
                alog.warning("leftover_lookup_failed", error=str(exc))
                return "skipped"
            if found is not None:
                await self._record_accepted(attempt, found, alog)
                return "accepted"
        reason = "answer lost and the provider does not honour Idempotency-Key"
        if self.provider.can_list_calls:
            reason += "; no call found by attempt ID (it may still appear)"
        await self.store.mark_in_doubt(attempt.attempt_id, reason)
        alog.warning("attempt_in_doubt", reason=reason)
        return "in_doubt"
