"""Settlement: turn final calls into booked cost and released reservations.

Two roads lead here: ``call.completed`` events (``record_call_event``) and
polling ``GET /v1/calls/{id}`` as the fallback for events that never come.
Both end in :meth:`Settler.apply`, and the store's settle script is
idempotent, so an event arriving twice, late or after a poll books once.

An event whose call ID is not known yet may be the only trace of an ambiguous
create (a provider without idempotency keys, ``engine/resolve.py``): it is
matched to its unresolved attempt by the attempt ID it echoes, else by caller
ID, number and creation time, and recorded exactly as the create answer would
have been. A call still live past ``max_call_seconds`` (its reservation's
assumption) is hung up where the dialect can; elsewhere it is flagged.

Every billing value is checked and bounded here, before the store is asked to
book anything: a billsec or a cost that does not fit, or a currency that is not
a currency, is dead-lettered with the field named and the attempt stays as it
was (reservation held, nothing spent, still polled), so a later good event or
poll settles it.
"""

from __future__ import annotations

import asyncio
import json
import math
import time
from typing import Any

import structlog

from campaigns import metrics
from campaigns.domain.errors import ProviderError
from campaigns.domain.lifecycle import AttemptStatus, HaltCode, Move
from campaigns.domain.rating import Rate, RateOverflowError
from campaigns.engine.alerts import check_budget_alerts
from campaigns.engine.resolve import in_send_window
from campaigns.providers import MAX_CALL_ID, CallInfo, EventError, Provider, billing_refusal
from campaigns.queue import JobQueue
from campaigns.settings import Settings
from campaigns.store import Attempt, Store, now_ms

__all__ = ["Settler"]

_COST_GRACE_SECONDS = 10.0
"""How long a final call may go without cost fields before the rate model books it."""
HANG_UP_GRACE_SECONDS = 5.0
"""A call is hung up this long after ``max_call_seconds`` from its answer: the
provider's own timers and our poll interval are not exact."""
_MATCHABLE = frozenset({AttemptStatus.SENDING, AttemptStatus.IN_DOUBT})


class Settler:
    def __init__(
        self,
        store: Store,
        provider: Provider,
        settings: Settings,
        queue: JobQueue | None = None,
    ) -> None:
        self.store = store
        self.queue = queue
        self.provider = provider
        self.settings = settings
        self._rates: dict[str, tuple[Rate, str]] = {}
        self._calls: dict[str, tuple[str, int]] = {}
        """Campaign ID -> (caller ID, max_call_seconds), as submitted (never changes)."""
        self.log = structlog.stdlib.get_logger("campaigns.engine.settlement")

    async def poll_due(self, limit: int = 200) -> int:
        """Read back every accepted call whose poll is due; returns how many were read."""
        hold = self.settings.provider_timeout_seconds * 2
        due = await self.store.take_due_calls(limit, hold)
        for attempt_id in due:
            await self.poll_one(attempt_id)
        return len(due)

    async def poll_one(self, attempt_id: str) -> str:
        attempt = await self.store.attempt(attempt_id)
        if (
            attempt is None
            or attempt.status is not AttemptStatus.ACCEPTED
            or attempt.call_id is None
        ):
            await self.store.settle_forget(attempt_id)
            return "gone"
        if attempt.settled:
            await self.store.settle_forget(attempt_id)
            return "duplicate"
        log = self.log.bind(
            campaign_id=attempt.campaign_id, attempt_id=attempt_id, call_id=attempt.call_id
        )
        try:
            call = await metrics.timed("get_call", self.provider.get_call(attempt.call_id))
        except ProviderError as exc:
            log.warning("poll_failed", error=str(exc))
            await self.store.reschedule_poll(attempt_id, self._backoff(attempt))
            return "retry"
        if not call.final:
            if call.answered_at_ms is not None and attempt.answered_at_ms is None:
                await self.store.note_answered(attempt_id, call.answered_at_ms)
            await self._enforce_max_seconds(attempt, call, log)
        result = await self.apply(attempt, call)
        if result == "dead_letter":
            # The provider's own answer cannot be booked: look again later, not
            # in a tight loop.
            await self.store.reschedule_poll(attempt_id, self._backoff(attempt))
        return result

    async def apply(self, attempt: Attempt, call: CallInfo) -> str:
        """Settle a final call, or schedule the next look at one that is not."""
        log = self.log.bind(
            campaign_id=attempt.campaign_id, attempt_id=attempt.attempt_id, call_id=call.call_id
        )
        if not call.final:
            await self.store.reschedule_poll(attempt.attempt_id, self._backoff(attempt))
            return "pending"
        refusal = billing_refusal(call)
        if refusal:
            return await self._refuse(attempt, call, refusal, log)
        try:
            rate, currency = await self._rate(attempt.campaign_id)
        except (LookupError, ValueError) as exc:
            return await self._refuse(attempt, call, f"campaign rate: {exc}", log)
        billsec, from_times = _billsec(attempt, call)
        try:
            # Even when the provider's cost is booked, the rate model must be
            # able to price this billsec: reconciliation re-rates it later.
            rated = rate.cost_micros(billsec)
        except RateOverflowError as exc:
            return await self._refuse(attempt, call, f"call.billsec_seconds: {exc}", log)
        mismatch = ""
        if call.cost_micros is not None and (call.cost_currency or currency) == currency:
            cost, estimated = call.cost_micros, False
        else:
            if call.cost_micros is not None:
                mismatch = f"{call.cost_currency} (campaign is {currency})"
                log.error(
                    "currency_mismatch", provider_currency=call.cost_currency, currency=currency
                )
            elif self.provider.capabilities.reports_cost and not (
                from_times and not self.provider.capabilities.per_call_cost
            ):
                first_seen = attempt.final_seen_at_ms or now_ms()
                waited = (now_ms() - first_seen) / 1000
                if waited < _COST_GRACE_SECONDS:
                    # Final but billing not settled yet: normal, look again soon.
                    await self.store.reschedule_poll(
                        attempt.attempt_id, self.settings.poll_interval_seconds, final_seen=True
                    )
                    return "awaiting_cost"
            if call.billsec is None and call.status == "completed" and not from_times:
                # An answered call whose length the provider does not report
                # (VoIPBIN's call object has none): book the worst case we
                # reserved, so spend is never under-counted.
                cost, estimated = attempt.reserved_micros, True
            else:
                cost, estimated = rated, True
        # The provider's answer and end times, for the report (first seen wins).
        if call.answered_at_ms is not None and attempt.answered_at_ms is None:
            await self.store.note_answered(attempt.attempt_id, call.answered_at_ms)
        if call.ended_at_ms is not None:
            await self.store.note_ended(attempt.attempt_id, call.ended_at_ms)
        result = await self.store.settle(
            attempt.attempt_id,
            final_status=call.status,
            billsec=billsec,
            cost_micros=cost,
            estimated=estimated,
            currency=currency,
            currency_mismatch=mismatch,
        )
        metrics.settlement(result)
        if result.startswith("invalid:"):
            # Checked above, so only a stored value can be out of range here.
            reason = f"store refused to settle ({result}): billsec {billsec}, cost {cost} micros"
            return await self._refuse(attempt, call, reason, log)
        if result == "duplicate":
            # A replayed settle (a retried script, a second event): the first one
            # may not have got to its follow-ups.
            booked = await self.store.attempt(attempt.attempt_id)
            if booked is not None and booked.over_reservation:
                result = "over_reservation"
                cost = booked.cost_micros or cost
        if result in ("ok", "over_reservation"):
            await check_budget_alerts(self.store, self.queue, attempt.campaign_id)
        if result == "over_reservation":
            await self._halt_on_overrun(attempt, cost, log)
        elif result == "ok":
            log.info(
                "call_settled",
                final_status=call.status,
                billsec=billsec,
                cost_micros=cost,
                estimated=estimated,
            )
        return result

    async def _refuse(
        self, attempt: Attempt, call: CallInfo, reason: str, log: structlog.stdlib.BoundLogger
    ) -> str:
        """Dead-letter a final call whose billing cannot be booked; touch nothing else.

        The attempt keeps its reservation and its place in the poll schedule:
        a later good event or poll settles it.
        """
        await self.store.dead_letter(
            {
                "reason": reason,
                "call_id": call.call_id[:MAX_CALL_ID],
                "attempt_id": attempt.attempt_id,
                "campaign_id": attempt.campaign_id,
            }
        )
        log.error("call_billing_refused", reason=reason)
        return "dead_letter"

    async def _halt_on_overrun(
        self, attempt: Attempt, cost: int, log: structlog.stdlib.BoundLogger
    ) -> None:
        """The provider charged more than the worst case we reserved: our rate is wrong.

        The money is spent and booked as charged; what the dispatcher can still
        do is stop placing calls priced on a rate it now knows to be too low.
        """
        message = (
            f"call {attempt.call_id} cost {cost} micros, above the {attempt.reserved_micros} "
            "micros reserved for it: the campaign's rate is below the provider's"
        )
        halted, previous = await self.store.transition(
            attempt.campaign_id,
            Move.HALT_ON_SETTLEMENT,
            halt_code=HaltCode.RATING_COST_ABOVE_RESERVATION,
            halt_message=message,
        )
        log.error(
            "cost_over_reservation",
            cost_micros=cost,
            reserved=attempt.reserved_micros,
            halted=halted,
            previous_state=previous,
        )
        if halted:
            metrics.halt(HaltCode.RATING_COST_ABOVE_RESERVATION)

    async def record_event(self, payload: Any) -> str:
        """Apply a call event from a webhook; anything unusable is dead-lettered."""
        try:
            event, call = self.provider.parse_event(payload)
        except EventError as exc:
            await self.store.dead_letter({"reason": str(exc), "payload": _excerpt(payload)})
            self.log.warning("call_event_rejected", reason=str(exc))
            return "dead_letter"
        attempt_id = await self.store.attempt_for_call(call.call_id)
        if attempt_id is None:
            attempt_id = await self._match_unknown_call(event, call)
            if attempt_id is None:
                return "unknown_call"
        attempt = await self.store.attempt(attempt_id)
        if attempt is None:
            return "unknown_call"
        if attempt.settled:
            self.log.info("call_event_duplicate", call_id=call.call_id, attempt_id=attempt_id)
            return "duplicate"
        if not call.final:
            # call.created, call.answered: the call is live; keep its answer time
            # for billing from times, and let the polls follow it.
            if call.answered_at_ms is not None and attempt.answered_at_ms is None:
                await self.store.note_answered(attempt_id, call.answered_at_ms)
            return "pending"
        if call.billsec is None and not _billsec(attempt, call)[1]:
            # The MiniVoice spend-controls page's event carries no billing fields: read the call for them.
            return await self.poll_one(attempt_id)
        return await self.apply(attempt, call)

    async def _match_unknown_call(self, event: str, call: CallInfo) -> str | None:
        """The unresolved attempt (sending or in doubt) a call we have no ID for belongs
        to, recorded as its call; None (dead-lettered) unless exactly one matches.

        By the attempt ID the event echoes where it does; else by caller ID, number
        and the call's creation time inside the attempt's send window
        (``resolve.in_send_window``), among the attempts sent to that number.
        While several match, it waits (up to the request timeout) for the others to
        get their own answers; still several, it decides nothing.
        """
        log = self.log.bind(call_id=call.call_id, event_name=event)
        matches = await self._candidates(call)
        deadline = time.monotonic() + self.settings.provider_timeout_seconds + 0.5
        delay = 0.25
        while len(matches) > 1 and time.monotonic() < deadline:
            # Another attempt to this number may still be waiting for its own
            # answer: once it has it, it leaves the index. Never guess meanwhile.
            await asyncio.sleep(delay)
            delay = min(delay * 2, 2.0)
            known = await self.store.attempt_for_call(call.call_id)
            if known is not None:
                return known
            matches = await self._candidates(call)
        if len(matches) != 1:
            which = "no attempt" if not matches else "several attempts"
            reason = f"unknown call: {event} event matches {which}"
            await self.store.dead_letter(
                {
                    "reason": reason,
                    "call_id": call.call_id[:MAX_CALL_ID],
                    "attempts": [a.attempt_id for a in matches],
                }
            )
            log.warning("call_event_unknown_call", reason=reason)
            return None
        attempt = matches[0]
        result = await self.store.record_accepted(
            attempt.attempt_id, call.call_id, self.settings.poll_interval_seconds
        )
        if result not in ("ok", "duplicate"):
            reason = (
                f"unknown call: {event} event matched {attempt.attempt_id}, not recorded ({result})"
            )
            await self.store.dead_letter({"reason": reason, "call_id": call.call_id[:MAX_CALL_ID]})
            log.error("call_event_not_recorded", attempt_id=attempt.attempt_id, result=result)
            return None
        log.info(
            "call_found_by_event",
            attempt_id=attempt.attempt_id,
            campaign_id=attempt.campaign_id,
            was=attempt.status,
        )
        return attempt.attempt_id

    async def _candidates(self, call: CallInfo) -> list[Attempt]:
        """The unresolved attempts a call with an unknown ID may belong to (see above)."""
        matches: list[Attempt] = []
        if call.attempt_id is not None:
            attempt = await self.store.attempt(call.attempt_id)
            if (
                attempt is not None
                and attempt.status in _MATCHABLE
                and (not call.to or call.to == attempt.to)
            ):
                matches.append(attempt)
        elif call.to and call.created_at_ms is not None:
            for candidate_id in await self.store.sent_to(call.to):
                attempt = await self.store.attempt(candidate_id)
                if attempt is None or attempt.status not in _MATCHABLE:
                    continue
                if attempt.first_sent_at_ms is None or attempt.last_sent_at_ms is None:
                    continue
                if call.caller_id:
                    caller, _ = await self._call_spec(attempt.campaign_id)
                    if caller != call.caller_id:
                        continue
                if in_send_window(
                    call.created_at_ms,
                    attempt.first_sent_at_ms,
                    attempt.last_sent_at_ms,
                    self.settings.provider_timeout_seconds,
                ):
                    matches.append(attempt)
        return matches

    async def _enforce_max_seconds(
        self, attempt: Attempt, call: CallInfo, log: structlog.stdlib.BoundLogger
    ) -> None:
        """A live call past ``max_call_seconds`` (from its answer, else its creation)
        is hung up once where the dialect can; elsewhere it is flagged: the
        reservation, priced on that length, may be exceeded."""
        if attempt.hung_up_at_ms is not None or attempt.past_max_at_ms is not None:
            return
        try:
            _, max_seconds = await self._call_spec(attempt.campaign_id)
        except LookupError:
            return
        start = call.answered_at_ms or attempt.answered_at_ms
        start = start or call.created_at_ms or attempt.recorded_at_ms
        if start is None:
            return
        live = (now_ms() - start) / 1000
        if live <= max_seconds + HANG_UP_GRACE_SECONDS:
            return
        if self.provider.capabilities.hangup:
            try:
                await metrics.timed("hang_up", self.provider.hang_up(call.call_id))
            except ProviderError as exc:
                log.warning("hang_up_failed", error=str(exc))
                return  # the next poll tries again
            except NotImplementedError:
                pass
            else:
                await self.store.note_hung_up(attempt.attempt_id)
                log.warning("call_hung_up", live_seconds=round(live, 1), max_seconds=max_seconds)
                return
        if await self.store.note_past_max(attempt.attempt_id):
            log.error("call_past_max_seconds", live_seconds=round(live, 1), max_seconds=max_seconds)

    async def _call_spec(self, campaign_id: str) -> tuple[str, int]:
        cached = self._calls.get(campaign_id)
        if cached is None:
            campaign = await self.store.campaign(campaign_id)
            if campaign is None:
                raise LookupError(f"no campaign {campaign_id!r}")
            cached = (campaign.spec.caller_id, campaign.spec.max_call_seconds)
            self._calls[campaign_id] = cached
        return cached

    async def _rate(self, campaign_id: str) -> tuple[Rate, str]:
        cached = self._rates.get(campaign_id)
        if cached is None:
            campaign = await self.store.campaign(campaign_id)
            if campaign is None:
                raise LookupError(f"no campaign {campaign_id!r}")
            rate = campaign.spec.rate_model()
            cached = self._rates[campaign_id] = (rate, campaign.currency)
        return cached

    def _backoff(self, attempt: Attempt) -> float:
        delay = self.settings.poll_interval_seconds * (2 ** min(attempt.polls, 10))
        return float(min(delay, self.settings.poll_max_interval_seconds))


def _billsec(attempt: Attempt, call: CallInfo) -> tuple[int, bool]:
    """The seconds to book a final call on, and whether they come from its times.

    The provider's billsec when it gives one; else, for an answered call, the
    whole seconds from its answer (this event, or an earlier one) to its end;
    an unanswered final call lasted 0 seconds.
    """
    if call.billsec is not None:
        return call.billsec, False
    answered = call.answered_at_ms or attempt.answered_at_ms
    if answered is not None and call.ended_at_ms is not None and call.ended_at_ms >= answered:
        return math.ceil((call.ended_at_ms - answered) / 1000), True
    if call.status != "completed" and answered is None:
        return 0, True
    return 0, False


def _excerpt(payload: Any) -> Any:
    """The start of a refused payload for the dead letter; whatever it is, never raise."""
    try:
        text = payload if isinstance(payload, str) else json.dumps(payload, default=str)
    except (TypeError, ValueError, RecursionError):
        text = f"<{type(payload).__name__} that is not JSON>"
    return text[:2000]
