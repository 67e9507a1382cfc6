"""Pre-flight cost estimate of a spec, from the same rate model the dispatcher uses."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from campaigns.domain.money import format_money
from campaigns.domain.spec import CampaignSpec

__all__ = ["Estimate", "estimate"]


@dataclass(frozen=True, slots=True)
class Estimate:
    campaign_id: str
    currency: str
    contacts: int
    duplicates_dropped: int
    increments: str
    max_call_seconds: int
    billed_seconds_worst_case: int
    worst_case_per_call_micros: int
    worst_case_total_micros: int
    budget_micros: int
    calls_within_budget: int
    budget_covers_all: bool

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    def lines(self) -> list[str]:
        def money(micros: int) -> str:
            return format_money(micros, self.currency, exact=True)

        return [
            f"contacts              {self.contacts} ({self.duplicates_dropped} duplicates dropped)",
            f"rate increments       {self.increments}",
            f"worst case per call   {money(self.worst_case_per_call_micros)} "
            f"({self.max_call_seconds}s billed as {self.billed_seconds_worst_case}s)",
            f"worst case, all calls {money(self.worst_case_total_micros)}",
            f"budget                {money(self.budget_micros)}",
            f"calls within budget   {self.calls_within_budget} of {self.contacts} at worst case"
            + ("" if self.budget_covers_all else "  (budget runs out first)"),
        ]


def estimate(spec: CampaignSpec) -> Estimate:
    rate = spec.rate_model()
    worst = rate.worst_case_micros(spec.max_call_seconds)
    budget = spec.budget_in_micros
    contacts = len(spec.contacts)
    affordable = contacts if worst == 0 else min(contacts, budget // worst)
    return Estimate(
        campaign_id=spec.campaign_id,
        currency=spec.currency,
        contacts=contacts,
        duplicates_dropped=spec.duplicates_dropped,
        increments=str(rate.increments),
        max_call_seconds=spec.max_call_seconds,
        billed_seconds_worst_case=rate.billed_seconds(spec.max_call_seconds),
        worst_case_per_call_micros=worst,
        worst_case_total_micros=worst * contacts,
        budget_micros=budget,
        calls_within_budget=affordable,
        budget_covers_all=affordable == contacts,
    )
