"""Reconciliation: the campaign's settled total beside the provider's usage for its window."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from campaigns.domain.errors import ProviderError
from campaigns.domain.lifecycle import AttemptStatus
from campaigns.domain.money import format_money
from campaigns.providers import Provider, Usage
from campaigns.providers.voxpria import CreditsUsage, VoxpriaCredits
from campaigns.store import Store

__all__ = ["Reconciliation", "reconcile"]


@dataclass(frozen=True, slots=True)
class Reconciliation:
    campaign_id: str
    currency: str
    window_from: str
    window_to: str
    accepted_calls: int
    settled_calls: int
    unsettled_calls: int
    estimated_settlements: int
    settled_micros: int
    reserved_micros: int
    worst_case_total_micros: int
    rated_estimate_micros: int
    provider_calls: int | None
    provider_billsec: int | None
    provider_micros: int | None
    provider_currency: str | None
    variance_micros: int | None
    explanation: list[str] = field(default_factory=list)
    usage_error: str | None = None
    """Why the provider's usage could not be read (the CLI then exits 1)."""
    actual_minus_estimate_micros: int = 0
    """The VoIPBIN billing tutorial's "compare with estimate": settled actual minus the rated estimate."""
    actual_minus_worst_case_micros: int = 0
    """Settled actual minus the worst case reserved (never above 0 unless a cost overran)."""
    credits_used: int | None = None
    """Voxpria (balance source): credits used on the window's days, account-wide."""
    credits_calls: int | None = None
    credits_cost_micros: int | None = None
    """Voxpria's ``cost`` for those days, parsed exactly (USD)."""

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    def lines(self) -> list[str]:
        cur = self.currency

        def money(micros: int | None) -> str:
            return "-" if micros is None else format_money(micros, cur, exact=True)

        if self.provider_micros is not None:
            usage = f"{money(self.provider_micros)} over {self.provider_calls} calls"
        else:
            usage = f"unavailable ({self.usage_error or 'no usage endpoint'})"

        out = [
            f"window            {self.window_from} .. {self.window_to}",
            f"calls             {self.accepted_calls} accepted, {self.settled_calls} settled "
            f"({self.estimated_settlements} by the rate model), {self.unsettled_calls} unsettled",
            f"worst case        {money(self.worst_case_total_micros)} (reserved per call before dialling)",
            f"rated estimate    {money(self.rated_estimate_micros)} (rate model on billed seconds)",
            f"settled actual    {money(self.settled_micros)} "
            f"(vs estimate {_signed(self.actual_minus_estimate_micros, money)}, "
            f"vs worst case {_signed(self.actual_minus_worst_case_micros, money)})",
            f"provider usage    {usage}",
            f"variance          {money(self.variance_micros)} (provider minus settled)",
        ]
        if self.credits_used is not None:
            out.append(
                f"voxpria credits   {self.credits_used} credits over {self.credits_calls} calls "
                f"({format_money(self.credits_cost_micros or 0, 'USD', exact=True)}) "
                "on the window's days, account-wide"
            )
        return out + [f"  - {line}" for line in self.explanation]


def _signed(micros: int, money: Any) -> str:
    return ("+" if micros > 0 else "") + str(money(micros))


def _window(started_ms: int, finished_ms: int | None) -> tuple[datetime, datetime]:
    start = datetime.fromtimestamp(started_ms / 1000, UTC).replace(microsecond=0)
    end_ms = finished_ms if finished_ms is not None else int(datetime.now(UTC).timestamp() * 1000)
    end = datetime.fromtimestamp(end_ms / 1000, UTC).replace(microsecond=0) + timedelta(seconds=1)
    return start, end


async def reconcile(
    store: Store, provider: Provider, campaign_id: str, credits: VoxpriaCredits | None = None
) -> Reconciliation:
    """``credits``: the Voxpria client when it is the balance source; its daily usage
    history for the window's days is shown beside the rest (Voxpria's Credits API page)."""
    campaign = await store.campaign(campaign_id)
    if campaign is None:
        raise LookupError(f"no campaign {campaign_id!r}")
    start, end = _window(campaign.started_at_ms or campaign.created_at_ms, campaign.finished_at_ms)
    worst_total = rated = settled_calls = estimated = 0
    rate = campaign.spec.rate_model()
    accepted = 0
    async for attempt in store.attempts(campaign_id):
        if attempt.status is not AttemptStatus.ACCEPTED:
            continue
        accepted += 1
        worst_total += attempt.reserved_micros
        if attempt.settled:
            settled_calls += 1
            estimated += attempt.cost_estimated
            rated += rate.cost_micros(attempt.billsec or 0)
    usage: Usage | None = None
    explanation: list[str] = []
    usage_error: str | None = None
    try:
        usage = await provider.usage(start, end)
    except ProviderError as exc:
        usage_error = str(exc)
        explanation.append(f"provider usage unavailable: {exc}")
    if usage is None and not explanation:
        explanation.append(f"the {provider.dialect} dialect has no usage endpoint")
    variance: int | None = None
    if usage is not None:
        if usage.currency != campaign.currency:
            explanation.append(
                f"provider reports {usage.currency}, campaign is {campaign.currency}: not compared"
            )
        else:
            variance = usage.cost_micros - campaign.spent_micros
            other = usage.calls - settled_calls
            if other > 0:
                explanation.append(
                    f"{other} calls in the window are not this campaign's settled calls "
                    "(other traffic on the account, or calls the provider settled first)"
                )
            if variance == 0 and other <= 0:
                explanation.append("settled total matches the provider's usage")
    history: CreditsUsage | None = None
    if credits is not None:
        try:
            history = await credits.usage(start.date(), end.date())
        except ProviderError as exc:
            explanation.append(f"voxpria credits usage unavailable: {exc}")
    unsettled = accepted - settled_calls
    if unsettled:
        explanation.append(f"{unsettled} accepted calls are not settled yet")
    if estimated:
        explanation.append(f"{estimated} calls were booked by the rate model (no provider cost)")
    return Reconciliation(
        campaign_id=campaign_id,
        currency=campaign.currency,
        window_from=start.strftime("%Y-%m-%dT%H:%M:%SZ"),
        window_to=end.strftime("%Y-%m-%dT%H:%M:%SZ"),
        accepted_calls=accepted,
        settled_calls=settled_calls,
        unsettled_calls=unsettled,
        estimated_settlements=estimated,
        settled_micros=campaign.spent_micros,
        reserved_micros=campaign.reserved_micros,
        worst_case_total_micros=worst_total,
        rated_estimate_micros=rated,
        provider_calls=usage.calls if usage else None,
        provider_billsec=usage.billsec if usage else None,
        provider_micros=usage.cost_micros if usage else None,
        provider_currency=usage.currency if usage else None,
        variance_micros=variance,
        explanation=explanation,
        usage_error=usage_error,
        actual_minus_estimate_micros=campaign.spent_micros - rated,
        actual_minus_worst_case_micros=campaign.spent_micros - worst_total,
        credits_used=None if history is None else history.credits_used,
        credits_calls=None if history is None else history.calls,
        credits_cost_micros=None if history is None else history.cost_micros,
    )
