"""Settlement: turn final calls into booked cost and released reservations.

Two roads lead here: ``call.completed`` events (``record_call_event``) and
polling ``GET /v1/calls/{id}`` as the fallback for events that never come.
Both end in :meth:`Settler.apply`, and the store's settle script is
idempotent, so an event arriving twice, late or after a poll books once.

Every billing value is checked and bounded here, before the store is asked to
book anything: a billsec or a cost that does not fit, or a currency that is not
a currency, is dead-lettered with the field named and the attempt stays as it
was (reservation held, nothing spent, still polled), so a later good event or
poll settles it.
"""

from __future__ import annotations

import json
from typing import Any

import structlog

from campaigns import metrics
from campaigns.domain.errors import ProviderError
from campaigns.domain.lifecycle import AttemptStatus, HaltCode, Move
from campaigns.domain.rating import Rate, RateOverflowError
from campaigns.engine.alerts import check_budget_alerts
from campaigns.providers import MAX_CALL_ID, CallInfo, EventError, Provider, billing_refusal
from campaigns.queue import JobQueue
from campaigns.settings import Settings
from campaigns.store import Attempt, Store, now_ms

__all__ = ["Settler"]

_COST_GRACE_SECONDS = 10.0
"""How long a final call may go without cost fields before the rate model books it."""


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
        billsec = call.billsec or 0
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
            else:
                first_seen = attempt.final_seen_at_ms or now_ms()
                waited = (now_ms() - first_seen) / 1000
                if waited < _COST_GRACE_SECONDS:
                    # Final but billing not settled yet: normal, look again soon.
                    await self.store.reschedule_poll(
                        attempt.attempt_id, self.settings.poll_interval_seconds, final_seen=True
                    )
                    return "awaiting_cost"
            if call.billsec is None and call.status == "completed":
                # An answered call whose length the provider does not report
                # (VoIPBIN's call object has none): book the worst case we
                # reserved, so spend is never under-counted.
                cost, estimated = attempt.reserved_micros, True
            else:
                cost, estimated = rated, True
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
            await self.store.dead_letter({"reason": "unknown call", "call_id": call.call_id})
            self.log.warning("call_event_unknown_call", call_id=call.call_id, event_name=event)
            return "unknown_call"
        attempt = await self.store.attempt(attempt_id)
        if attempt is None:
            return "unknown_call"
        if attempt.settled:
            self.log.info("call_event_duplicate", call_id=call.call_id, attempt_id=attempt_id)
            return "duplicate"
        if call.billsec is None:
            # Seed 000's event carries no billing fields: read the call for them.
            return await self.poll_one(attempt_id)
        return await self.apply(attempt, call)

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


def _excerpt(payload: Any) -> Any:
    """The start of a refused payload for the dead letter; whatever it is, never raise."""
    try:
        text = payload if isinstance(payload, str) else json.dumps(payload, default=str)
    except (TypeError, ValueError, RecursionError):
        text = f"<{type(payload).__name__} that is not JSON>"
    return text[:2000]
