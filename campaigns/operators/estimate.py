"""Pre-flight cost estimate of a spec, from the same rate model the dispatcher uses."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

from campaigns.domain.account import (
    DEFAULT_CREDIT_RATES,
    CreditTable,
    batch_charge,
    with_buffer,
)
from campaigns.domain.contacts import Contacts, Tally
from campaigns.domain.money import format_money
from campaigns.domain.policy import ZoneGroups, contact_number, timing_problem
from campaigns.domain.spec import CampaignSpec
from campaigns.domain.window import zone
from campaigns.providers.balance import AccountBalance

__all__ = [
    "AccountEstimate",
    "CreditRates",
    "Estimate",
    "PolicyEstimate",
    "account_estimate",
    "estimate",
    "estimate_contacts",
    "policy_estimate",
    "rate_line",
]


def rate_line(currency: str, per_minute_micros: int, increments: str, fee_micros: int) -> str:
    """``EUR 0.01 per minute, 60/60 increments, connect fee EUR 0.00``: the rate as
    ``submit`` and ``estimate`` show it, every price exact."""
    per_minute = format_money(per_minute_micros, currency, exact=True)
    fee = format_money(fee_micros, currency, exact=True)
    return f"{per_minute} per minute, {increments} increments, connect fee {fee}"


@dataclass(frozen=True, slots=True)
class Estimate:
    campaign_id: str | None
    """The spec's own ID; None when it has none (one is derived only at create)."""
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
    per_minute_micros: int = 0
    """The rate every reservation is computed at (the spec's, never a default)."""
    connect_fee_micros: int = 0
    policy: PolicyEstimate | None = None
    """With a calling window, schedule, retry policy or suppress list: what they change."""
    account: AccountEstimate | None = None
    """With ``--average-seconds`` or ``--account``: expected cost, tokens, the balance."""

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    def lines(self) -> list[str]:
        def money(micros: int) -> str:
            return format_money(micros, self.currency, exact=True)

        return (
            [
                f"contacts              {self.contacts} ({self.duplicates_dropped} duplicates dropped)",
                f"rate                  {rate_line(self.currency, self.per_minute_micros, self.increments, self.connect_fee_micros)}",
                f"rate increments       {self.increments}",
                f"worst case per call   {money(self.worst_case_per_call_micros)} "
                f"({self.max_call_seconds}s billed as {self.billed_seconds_worst_case}s)",
                f"worst case, all calls {money(self.worst_case_total_micros)}",
                f"budget                {money(self.budget_micros)}",
                f"calls within budget   {self.calls_within_budget} of {self.contacts} at worst case"
                + ("" if self.budget_covers_all else "  (budget runs out first)"),
            ]
            + (self.policy.lines(money) if self.policy is not None else [])
            + (self.account.lines(money) if self.account is not None else [])
        )


@dataclass(frozen=True, slots=True)
class PolicyEstimate:
    """The contact policy's share of an estimate (``campaigns/domain/policy.py``).

    Suppressed counts the contacts on the spec's own ``suppress`` list (the
    account's do-not-call list is applied at each claim, when the number's turn
    comes). The worst case with retries assumes every contact gets every
    attempt its retry policy allows.
    """

    suppressed_in_spec: int
    contacts_to_call: int
    max_attempts_per_contact: int
    worst_case_with_retries_micros: int
    zone_groups: int
    next_window_opening: str | None
    """ISO 8601 UTC; None without a calling window (or when none opens within two years)."""
    window_open_now: bool | None
    schedule_start_at: str | None
    schedule_end_at: str | None
    schedule_capacity_calls: int | None = None
    """With ``end_at``: the most calls that fit before it at ``calls_per_second``,
    counting only minutes when some contact's window is open (retries and
    pauses not counted)."""
    expire_at_least: int | None = None
    """Contacts to call beyond that capacity: they expire at ``end_at`` at least."""
    refused: str | None = None
    """Why submit would refuse this spec by the clock (``schedule.end_at: ... has
    already passed``, a calling window that never opens before ``end_at``)."""

    def lines(self, money: Any) -> list[str]:
        out = [
            f"suppressed in spec    {self.suppressed_in_spec} "
            f"({self.contacts_to_call} contacts to call)",
            f"attempts per contact  at most {self.max_attempts_per_contact}; worst case "
            f"with every retry {money(self.worst_case_with_retries_micros)}",
        ]
        if self.window_open_now is not None:
            state = "open now" if self.window_open_now else "closed now"
            out.append(
                f"calling window        {state} for some contacts ({self.zone_groups} zone "
                f"groups); next opening {self.next_window_opening or 'none within two years'}"
            )
        if self.schedule_start_at or self.schedule_end_at:
            out.append(
                f"schedule              from {self.schedule_start_at or 'submit'} "
                f"to {self.schedule_end_at or 'done'}"
            )
        if self.refused is not None:
            out.append(f"refused at submit     {self.refused}")
        if self.schedule_capacity_calls is not None:
            out.append(
                f"before end_at         at most {self.schedule_capacity_calls} calls at the "
                f"configured pace; at least {self.expire_at_least} contacts expire"
            )
        return out


def policy_estimate(
    spec: CampaignSpec, *, numbers: Iterable[str] | None = None, now: datetime | None = None
) -> PolicyEstimate | None:
    """What the spec's contact policy changes, or None when it sets none.

    ``numbers``: every contact's number (a stream, see :func:`estimate_contacts`);
    by default the spec's inline contacts.
    """
    if not (spec.calling_window or spec.schedule or spec.retry or spec.suppress):
        return None
    now = now or datetime.now(UTC)
    suppress = set(spec.suppress)
    groups = ZoneGroups(spec.calling_window)
    contacts = suppressed = 0
    for number in (c.to for c in spec.contacts) if numbers is None else numbers:
        contacts += 1
        suppressed += number in suppress
        groups.group_of(number)
    to_call = contacts - suppressed
    attempts = spec.retry.max_attempts if spec.retry is not None else 1
    opening: str | None = None
    open_now: bool | None = None
    if spec.calling_window is not None:
        window = spec.calling_window.window()
        openings = [window.next_open([zone(z) for z in g], now) for g in groups.zones]
        found = [o for o in openings if o is not None]
        open_now = any(o == now for o in found)
        first = min(found) if found else None
        opening = None if first is None else first.strftime("%Y-%m-%dT%H:%M:%SZ")
    schedule = spec.schedule
    capacity = _schedule_capacity(spec, groups, now)
    problem = timing_problem(schedule, spec.calling_window, groups, now)
    return PolicyEstimate(
        suppressed_in_spec=suppressed,
        contacts_to_call=to_call,
        max_attempts_per_contact=attempts,
        worst_case_with_retries_micros=spec.worst_case_call_micros() * to_call * attempts,
        zone_groups=len(groups.zones),
        next_window_opening=opening,
        window_open_now=open_now,
        schedule_start_at=None if schedule is None else schedule.start_at,
        schedule_end_at=None if schedule is None else schedule.end_at,
        schedule_capacity_calls=capacity,
        expire_at_least=None if capacity is None else max(0, to_call - capacity),
        refused=None if problem is None else str(problem),
    )


_CAPACITY_MINUTES = 200_000
"""About four and a half months of minutes: a longer schedule is not sized."""


def _schedule_capacity(spec: CampaignSpec, groups: ZoneGroups, now: datetime) -> int | None:
    """The most calls that fit before ``end_at`` at the configured pace, counting the
    minutes in which some zone group's window is open (an upper bound)."""
    schedule = spec.schedule
    if schedule is None or schedule.end_ms is None:
        return None
    start = max(int(now.timestamp() * 1000), schedule.start_ms or 0)
    minutes = max(0, (schedule.end_ms - start) // 60_000)
    if minutes > _CAPACITY_MINUTES:
        return None
    if spec.calling_window is not None:
        window = spec.calling_window.window()
        zones = [[zone(z) for z in g] for g in groups.zones]
        minutes = sum(
            1
            for m in range(minutes)
            if any(
                window.open_everywhere(g, datetime.fromtimestamp(start / 1000 + m * 60, UTC))
                for g in zones
            )
        )
    return int(minutes * 60 * spec.pacing.calls_per_second)


@dataclass(slots=True)
class CreditRates:
    """Voxpria: how many contacts fall at each credit rate (credits per minute).

    Each contact is reserved at the highest rate that can apply to its
    destination (``DISPATCHER_VOXPRIA_CREDIT_RATES``), so the worst case is a
    sum over contacts, never one flat rate for all.
    """

    table: CreditTable
    contacts_by_rate: Counter[int] = field(default_factory=Counter)

    def add(self, number: str) -> None:
        self.contacts_by_rate[self.table.rate_for(number)] += 1

    def feed(self, numbers: Iterable[str]) -> Iterator[str]:
        """``numbers`` passed through, each counted on the way."""
        for number in numbers:
            self.add(number)
            yield number

    def credits(self, seconds: int, attempts: int = 1) -> int:
        """Every contact's attempts at ``seconds``, each at its own rate (and the minimum)."""
        table = self.table
        return attempts * sum(
            count * table.call_credits(rate, seconds)
            for rate, count in self.contacts_by_rate.items()
        )


def estimate_contacts(contacts: Contacts, **options: Any) -> Estimate:
    """:func:`estimate` of a spec and its streamed contacts, read once: the tally
    and, with a contact policy, every number for it (suppressed, zone groups);
    with a Voxpria credit balance, every number's credit rate."""
    spec = contacts.spec
    reader = contacts.read()
    balance: AccountBalance | None = options.get("balance")
    rates: CreditRates | None = None
    if balance is not None and balance.unit == "credits":
        table = options.pop("credit_table", None) or CreditTable.parse(DEFAULT_CREDIT_RATES)
        rates = CreditRates(table)
    numbers: Iterable[str] = (contact_number(doc) for chunk in reader for doc in chunk)
    if rates is not None:
        numbers = rates.feed(numbers)
    if not (spec.calling_window or spec.suppress or spec.schedule):
        for _ in numbers:
            pass
        return estimate(spec, tally=reader.tally, credit_rates=rates, **options)
    policy = policy_estimate(spec, numbers=numbers)  # reads them all
    return estimate(spec, tally=reader.tally, policy=policy, credit_rates=rates, **options)


@dataclass(frozen=True, slots=True)
class AccountEstimate:
    """Expected cost at an average call length, what tokens cover, and the account's answer.

    Tokens are spent first, call after call, exactly as the gate and the
    provider bill them (``campaigns/domain/account.py``); the account covers a
    figure when its balance reaches it plus ``buffer_percent``.
    """

    average_seconds: int | None
    expected_total_micros: int | None
    """At the average length with no tokens."""
    expected_credit_micros: int | None
    """At the average length, tokens first."""
    tokens_used: int | None
    tokens_cover_micros: int | None
    worst_case_credit_micros: int
    """Every call at ``max_call_seconds``, tokens first."""
    buffer_percent: int
    balance_source: str | None = None
    contacts_by_credit_rate: dict[str, int] | None = None
    """Voxpria: credits per minute -> contacts at that rate (the highest that applies)."""
    balance_unit: str | None = None
    balance: int | None = None
    balance_tokens: int | None = None
    need_worst_case: int | None = None
    need_expected: int | None = None
    covers_worst_case: bool | None = None
    covers_expected: bool | None = None

    def lines(self, money: Any) -> list[str]:
        out: list[str] = []
        if self.average_seconds is not None:
            out += [
                f"expected at {self.average_seconds}s    {money(self.expected_total_micros)} "
                f"({money(self.expected_credit_micros)} after {self.tokens_used} tokens; "
                f"tokens cover {money(self.tokens_cover_micros)})",
            ]
        if self.balance is None:
            return out
        show = (lambda v: f"{v} credits") if self.balance_unit == "credits" else money
        covers = "covers" if self.covers_worst_case else "does NOT cover"
        if self.contacts_by_credit_rate:
            by_rate = ", ".join(
                f"{n} at {r} credits/min"
                for r, n in sorted(self.contacts_by_credit_rate.items(), key=lambda i: -int(i[0]))
            )
            out.append(f"credit rates          {by_rate}")
        out.append(
            f"account balance       {show(self.balance)}, {self.balance_tokens} tokens "
            f"({self.balance_source}): {covers} the worst case {show(self.need_worst_case)} "
            f"with the {self.buffer_percent}% buffer"
        )
        if self.covers_expected is not None:
            expected = "covers" if self.covers_expected else "does NOT cover"
            out.append(
                f"                      {expected} the expected {show(self.need_expected)} "
                f"with the buffer"
            )
        return out


def account_estimate(
    spec: CampaignSpec,
    *,
    calls: int | None = None,
    average_seconds: int | None,
    balance: AccountBalance | None,
    buffer_percent: int,
    credit_rates: CreditRates | None = None,
) -> AccountEstimate:
    """The account side of an estimate (the VoIPBIN billing tutorial: estimate, add a buffer, check the balance).

    Against Voxpria credits each contact counts at the highest rate that can
    apply to its destination, at least the minimum per attempt
    (``credit_rates``; by default the spec's inline contacts and the
    documented table)."""
    rate = spec.rate_model()
    calls = len(spec.contacts) if calls is None else calls
    tokens = balance.tokens if balance is not None and balance.unit == "micros" else 0
    worst = batch_charge(rate, spec.max_call_seconds, calls, tokens)
    expected_total = expected_credit = used = covered = None
    if average_seconds is not None:
        expected_total = rate.cost_micros(average_seconds) * calls
        charge = batch_charge(rate, average_seconds, calls, tokens)
        expected_credit, used = charge.credit_micros, charge.tokens
        covered = expected_total - expected_credit
    result = AccountEstimate(
        average_seconds=average_seconds,
        expected_total_micros=expected_total,
        expected_credit_micros=expected_credit,
        tokens_used=used,
        tokens_cover_micros=covered,
        worst_case_credit_micros=worst.credit_micros,
        buffer_percent=buffer_percent,
    )
    if balance is None:
        return result
    by_rate: dict[str, int] | None = None
    if balance.unit == "credits":
        if credit_rates is None:
            credit_rates = CreditRates(CreditTable.parse(DEFAULT_CREDIT_RATES))
            for contact in spec.contacts:
                credit_rates.add(contact.to)
        need_worst = with_buffer(credit_rates.credits(spec.max_call_seconds), buffer_percent)
        need_expected = (
            None
            if average_seconds is None
            else with_buffer(credit_rates.credits(average_seconds), buffer_percent)
        )
        by_rate = {str(r): n for r, n in sorted(credit_rates.contacts_by_rate.items())}
    else:
        need_worst = with_buffer(worst.credit_micros, buffer_percent)
        need_expected = (
            None if expected_credit is None else with_buffer(expected_credit, buffer_percent)
        )
    return replace(
        result,
        balance_source=balance.source,
        contacts_by_credit_rate=by_rate,
        balance_unit=balance.unit,
        balance=balance.amount,
        balance_tokens=balance.tokens,
        need_worst_case=need_worst,
        need_expected=need_expected,
        covers_worst_case=balance.amount >= need_worst,
        covers_expected=None if need_expected is None else balance.amount >= need_expected,
    )


def estimate(
    spec: CampaignSpec,
    *,
    tally: Tally | None = None,
    average_seconds: int | None = None,
    balance: AccountBalance | None = None,
    buffer_percent: int = 10,
    policy: PolicyEstimate | None = None,
    credit_table: CreditTable | None = None,
    credit_rates: CreditRates | None = None,
) -> Estimate:
    """The estimate of a spec; ``tally``: its contacts as counted from a stream
    (:meth:`Contacts.tally`), else the spec's inline contacts; ``policy``: the
    contact policy's part when computed from a stream (:func:`estimate_contacts`)."""
    rate = spec.rate_model()
    worst = rate.worst_case_micros(spec.max_call_seconds)
    budget = spec.budget_in_micros
    contacts = len(spec.contacts) if tally is None else tally.contacts
    dropped = spec.duplicates_dropped if tally is None else tally.duplicates_dropped
    affordable = contacts if worst == 0 else min(contacts, budget // worst)
    return Estimate(
        campaign_id=spec.campaign_id or None,
        currency=spec.currency,
        contacts=contacts,
        duplicates_dropped=dropped,
        increments=str(rate.increments),
        per_minute_micros=rate.per_minute_micros,
        connect_fee_micros=rate.connect_fee_micros,
        max_call_seconds=spec.max_call_seconds,
        billed_seconds_worst_case=rate.billed_seconds(spec.max_call_seconds),
        worst_case_per_call_micros=worst,
        worst_case_total_micros=worst * contacts,
        budget_micros=budget,
        calls_within_budget=affordable,
        budget_covers_all=affordable == contacts,
        policy=policy if policy is not None else policy_estimate(spec),
        account=None
        if average_seconds is None and balance is None
        else account_estimate(
            spec,
            calls=contacts,
            average_seconds=average_seconds,
            balance=balance,
            buffer_percent=buffer_percent,
            credit_rates=credit_rates
            if credit_rates is not None or credit_table is None
            else _inline_rates(spec, credit_table),
        ),
    )


def _inline_rates(spec: CampaignSpec, table: CreditTable) -> CreditRates:
    rates = CreditRates(table)
    for contact in spec.contacts:
        rates.add(contact.to)
    return rates
