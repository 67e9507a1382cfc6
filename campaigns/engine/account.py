"""The account gate: before every batch, can the provider account pay for it?

The dispatcher asks :meth:`AccountGate.check` before a batch (and so at
resume, whose first batch runs it). It sums what *every* campaign on the
account has reserved, adds the next batch's worst case (tokens first, as the
rate model bills), puts ``DISPATCHER_BALANCE_BUFFER_PERCENT`` on top and
compares that with the balance; with ``DISPATCHER_MONTHLY_CAP`` it also
checks month-to-date usage. Balance and usage are cached in Redis for a few
seconds, so N workers do not each poll the provider per batch; an
``account_updated`` webhook (:func:`apply_account_event`) refreshes the
balance in between. Below ``DISPATCHER_LOW_BALANCE_MICROS`` one warning and
one alert per crossing (:func:`note_balance`), like the budget alerts.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

import structlog

from campaigns.domain.account import Commitment, CreditTable, Need, credits_need, micros_need
from campaigns.domain.errors import ProviderError
from campaigns.domain.lifecycle import ACTIVE_STATES, HaltCode
from campaigns.domain.policy import contact_number
from campaigns.domain.rating import Rate
from campaigns.providers.balance import AccountBalance, BalanceSource
from campaigns.providers.base import EventError, future_refusal
from campaigns.providers.billing_insights import BillingInsights, UsageError, usage_client
from campaigns.providers.voipbin import parse_account_event
from campaigns.queue import JobQueue
from campaigns.settings import Settings
from campaigns.store import CampaignRecord, Store, now_ms

__all__ = [
    "BALANCE_TTL_SECONDS",
    "USAGE_TTL_SECONDS",
    "AccountGate",
    "GateResult",
    "apply_account_event",
    "make_usage_source",
    "month_to_date",
    "note_balance",
    "redis_clock_ms",
    "refuse_future",
]

BALANCE_TTL_SECONDS = 5.0
"""How long a balance is trusted: short, since other campaigns spend from it."""
USAGE_TTL_SECONDS = 30.0
"""How long month-to-date usage is trusted; spend booked since is added on top."""
_PRICING_CACHE = 10_000
"""Campaigns whose pricing a gate keeps in memory (cleared when full)."""

log = structlog.stdlib.get_logger("campaigns.engine.account")


@dataclass(frozen=True, slots=True)
class GateResult:
    """``ok``; ``halt`` with a code and message; or ``unknown`` (the check itself failed)."""

    verdict: Literal["ok", "halt", "unknown"]
    code: HaltCode | None = None
    message: str = ""


_OK = GateResult("ok")


def make_usage_source(settings: Settings) -> BillingInsights | None:
    """The Billing Insights client, when ``DISPATCHER_USAGE_URL`` is set."""
    return usage_client(settings)


def _month(at: datetime | None = None) -> str:
    return (at or datetime.now(UTC)).strftime("%Y-%m")


async def month_to_date(store: Store, usage: BillingInsights, spent_now: int) -> dict[str, Any]:
    """This month's usage totals (cached), with the dispatcher's booked total when read.

    ``spent_at_fetch`` lets the gate add what was booked after the read:
    usage the source could not have reported yet.
    """
    month = _month()
    cached = await store.account("usage")
    if cached is not None and cached.get("month") == month:
        return cached
    result = await usage.monthly_usage(month)
    document = {
        "month": month,
        "at_ms": now_ms(),
        "records": len(result.records),
        "totals": result.totals(),
        "spent_at_fetch": spent_now,
    }
    await store.put_account("usage", document, USAGE_TTL_SECONDS)
    return document


class AccountGate:
    """The account-wide check the dispatcher runs before a batch."""

    def __init__(
        self,
        store: Store,
        source: BalanceSource,
        settings: Settings,
        queue: JobQueue | None = None,
        usage: BillingInsights | None = None,
    ) -> None:
        self.store = store
        self.source = source
        self.settings = settings
        self.queue = queue
        self.usage = usage
        self._pricing: dict[tuple[str, str], tuple[int, int, Rate, int]] = {}
        """(campaign, spec fingerprint) -> (worst case, max_call_seconds, rate, Voxpria
        credits per call): fixed by the spec and its contacts, so read once per process."""
        self._rates: dict[str, int] = {}
        """campaign -> the highest Voxpria credit rate of its contacts (fixed at submit)."""
        self.credit_table: CreditTable | None = (
            settings.credit_table if settings.balance_source == "voxpria" else None
        )

    async def aclose(self) -> None:
        await self.source.aclose()
        if self.usage is not None:
            await self.usage.aclose()

    async def cached_balance(self) -> AccountBalance | None:
        """The cached balance if it is this source's (a VoIPBIN webhook's is not Voxpria's)."""
        document = await self.store.account("balance")
        if document is None:
            return None
        balance = AccountBalance.from_json(document)
        if balance is None or balance.source != self.source.source:
            return None
        return balance

    async def fresh_balance(self) -> AccountBalance | None:
        """Read the source now; cache it and note a low balance."""
        fresh = await self.source.fetch()
        if fresh is None:
            return None
        await self.store.put_account("balance", fresh.to_json(), BALANCE_TTL_SECONDS)
        await note_balance(self.store, self.queue, self.settings, fresh)
        return fresh

    async def check(self, campaign: CampaignRecord, *, after_refusal: bool = False) -> GateResult:
        """May the next batch of ``campaign`` be sent? Nothing is sent on anything but ok.

        The batch's worst case is ``min(batch_size, pending)`` calls; every
        campaign's reservations (this one's included: its calls in flight are
        not paid yet) are outstanding.

        ``after_refusal``: the provider just refused a create with a 5xx (VoIPBIN's
        call manager answers ``500`` for a call the balance cannot pay): read the
        balance now, and judge the reservations already held plus one more call.
        """
        calls = 1 if after_refusal else min(campaign.spec.pacing.batch_size, campaign.pending)
        if calls <= 0:
            return _OK
        money: dict[str, tuple[int, int, str]] | None = None
        commitments: list[Commitment] = []
        try:
            if self.settings.monthly_cap_micros is not None and self.usage is not None:
                money = await self.store.account_commitments()
                commitments = await self._commitments(money)
                cap = await self._cap(campaign, calls, money, commitments)
                if cap is not None:
                    return cap
            cached = None if after_refusal else await self.cached_balance()
            balance = cached if cached is not None else await self.fresh_balance()
            if balance is None:
                return _OK  # no balance at this source (MiniVoice): nothing to compare
            if money is None:
                commitments = await self._commitments(await self.store.account_commitments())
            per_call = await self._credits_per_call(
                campaign.campaign_id, campaign.spec.max_call_seconds
            )
            result = self._judge(campaign, calls, commitments, balance, per_call)
            if result.verdict != "ok" and cached is not None:
                # Trust a cached balance to let a batch go, not to stop one: an
                # operator may have topped up and resumed since it was read.
                fresh = await self.fresh_balance()
                if fresh is None:
                    return _OK
                result = self._judge(campaign, calls, commitments, fresh, per_call)
        except (ProviderError, UsageError, ValueError, OSError) as exc:
            return GateResult("unknown", message=f"account check failed: {exc}")
        return result

    def _judge(
        self,
        campaign: CampaignRecord,
        calls: int,
        commitments: list[Commitment],
        balance: AccountBalance,
        per_call: int,
    ) -> GateResult:
        spec = campaign.spec
        buffer = self.settings.balance_buffer_percent
        if balance.unit == "credits":
            need = credits_need(
                per_call=per_call,
                calls=calls,
                commitments=commitments,
                buffer_percent=buffer,
            )
        else:
            need = micros_need(
                rate=spec.rate_model(),
                max_call_seconds=spec.max_call_seconds,
                calls=calls,
                tokens=balance.tokens,
                commitments=commitments,
                buffer_percent=buffer,
            )
        if balance.amount >= need.total:
            return _OK
        return GateResult("halt", HaltCode.INSUFFICIENT_BALANCE, _shortfall(balance, need, calls))

    async def _commitments(self, money: dict[str, tuple[int, int, str]]) -> list[Commitment]:
        found: list[Commitment] = []
        for campaign_id, (reserved, _spent, fingerprint) in money.items():
            if reserved <= 0:
                continue
            pricing = self._pricing.get((campaign_id, fingerprint))
            if pricing is None:
                record = await self.store.campaign(campaign_id)
                if record is None:
                    continue
                if len(self._pricing) >= _PRICING_CACHE:
                    self._pricing.clear()
                pricing = (
                    record.worst_case_micros,
                    record.spec.max_call_seconds,
                    record.spec.rate_model(),
                    await self._credits_per_call(campaign_id, record.spec.max_call_seconds),
                )
                self._pricing[(campaign_id, fingerprint)] = pricing
            found.append(Commitment(reserved, *pricing))
        return found

    async def _credits_per_call(self, campaign_id: str, max_call_seconds: int) -> int:
        """Voxpria: the most credits one call of the campaign can take, at the highest
        rate any of its contacts can be billed at (0 without the credits source).

        Which contacts the next batch holds is the claim's business, so every
        call is reserved as if to the campaign's dearest destination. The
        contacts are read once per process (one HSCAN pass; they never change).
        """
        table = self.credit_table
        if table is None:
            return 0
        rate = self._rates.get(campaign_id)
        if rate is None:
            key = self.store.keys.campaign(campaign_id, "contacts")
            found: set[int] = set()
            async for _index, document in self.store.redis.hscan_iter(key, count=1000):
                text = document.decode() if isinstance(document, bytes) else str(document)
                found.add(table.rate_for(contact_number(text)))
            rate = max(found) if found else table.top_rate
            if len(self._rates) >= _PRICING_CACHE:
                self._rates.clear()
            self._rates[campaign_id] = rate
        return table.call_credits(rate, max(max_call_seconds, 1))

    async def _cap(
        self,
        campaign: CampaignRecord,
        calls: int,
        money: dict[str, tuple[int, int, str]],
        commitments: list[Commitment],
    ) -> GateResult | None:
        cap = self.settings.monthly_cap_micros
        if cap is None or self.usage is None:
            return None
        spent_now = sum(spent for _reserved, spent, _spec in money.values())
        document = await month_to_date(self.store, self.usage, spent_now)
        totals = document.get("totals") or {}
        used = int(totals.get(campaign.currency, 0))
        booked_since = max(spent_now - int(document.get("spent_at_fetch", spent_now)), 0)
        reserved = sum(c.reserved_micros for c in commitments)
        batch = calls * campaign.worst_case_micros
        total = used + booked_since + reserved + batch
        if total <= cap:
            return None
        cur = campaign.currency
        return GateResult(
            "halt",
            HaltCode.MONTHLY_CAP_REACHED,
            f"month {document.get('month')}: usage {_money(used)} + booked since "
            f"{_money(booked_since)} + reserved {_money(reserved)} + this batch's "
            f"worst case {_money(batch)} ({calls} calls) = {_money(total)} "
            f"passes the monthly cap {_money(cap)} (DISPATCHER_MONTHLY_CAP, {cur})",
        )


def _money(micros: int) -> str:
    """Exact and language-neutral, as halt messages are stored; ``status`` and
    ``report`` show ``N micros`` as money (``humanize_micros``)."""
    return f"{micros} micros"


def _shortfall(balance: AccountBalance, need: Need, calls: int) -> str:
    """The halt message: the balance, the tokens, the amount needed and the buffer."""
    if balance.unit == "credits":
        return (
            f"{balance.source} balance {balance.amount} credits is below {need.total} credits: "
            f"this batch's worst case {need.batch} credits ({calls} calls at the dearest "
            f"destination's rate, DISPATCHER_VOXPRIA_CREDIT_RATES) + outstanding "
            f"{need.committed} credits + {need.buffer_percent}% buffer"
        )
    return (
        f"{balance.source} balance {_money(balance.amount)} and {balance.tokens} tokens "
        f"({need.tokens_free} free of outstanding calls) is below {_money(need.total)}: "
        f"this batch's worst case {_money(need.batch)} after {need.batch_tokens} tokens "
        f"({calls} calls) + outstanding reservations {_money(need.committed)} "
        f"+ {need.buffer_percent}% buffer"
    )


async def note_balance(
    store: Store, queue: JobQueue | None, settings: Settings, balance: AccountBalance
) -> bool:
    """Warn and alert once when the balance crosses below the low-balance mark
    (``DISPATCHER_LOW_BALANCE_MICROS``, or ``DISPATCHER_LOW_BALANCE_CREDITS`` for
    Voxpria credits).

    Back at or above the mark re-arms it. The alert goes to the alert webhook
    of every campaign that is not finished (deduplicated), as a
    ``deliver_alert`` job. True when this call fired it.
    """
    unit = balance.unit
    mark = settings.low_balance_micros if unit == "micros" else settings.low_balance_credits
    if mark is None:
        return False
    if balance.amount >= mark:
        await store.clear_low_balance()
        return False
    if not await store.mark_low_balance(balance.at_ms):
        return False
    payload: dict[str, Any] = {
        "event": "account.low_balance",
        "source": balance.source,
        f"balance_{unit}": balance.amount,
        "tokens": balance.tokens,
        f"threshold_{unit}": mark,
        "at": datetime.fromtimestamp(balance.at_ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }
    log.warning("account_low_balance", **{k: v for k, v in payload.items() if k != "event"})
    if queue is not None:
        for url in await _alert_urls(store):
            digest = hashlib.sha256(url.encode()).hexdigest()[:12]
            await queue.alert(url, payload, job_id=f"alert:account:{balance.at_ms}:{digest}")
    return True


async def _alert_urls(store: Store) -> list[str]:
    urls: dict[str, None] = {}
    for campaign_id in await store.campaign_ids():
        record = await store.campaign(campaign_id)
        if record is None or record.state not in ACTIVE_STATES:
            continue
        url = record.spec.alerts.webhook_url
        if url:
            urls[str(url)] = None
    return list(urls)


async def apply_account_event(
    store: Store, queue: JobQueue | None, settings: Settings, payload: Any
) -> str:
    """Refresh the cached balance from a webhook; ``updated`` or ``stale`` (older than cached).

    Raises :class:`~campaigns.providers.EventError` naming the field; nothing is written then
    (a ``timestamp`` more than MAX_CLOCK_AHEAD_MS ahead of the Redis clock included).
    """
    at_ms, parsed = parse_account_event(payload)
    await refuse_future(store, at_ms)
    balance = AccountBalance("provider", "micros", parsed.credit_micros, parsed.tokens, at_ms)
    if not await store.put_account("balance", balance.to_json(), BALANCE_TTL_SECONDS):
        log.info("account_event_stale", at_ms=balance.at_ms)
        return "stale"
    log.info("account_balance_updated", balance_micros=balance.amount, tokens=balance.tokens)
    await note_balance(store, queue, settings, balance)
    return "updated"


async def redis_clock_ms(store: Store) -> int:
    """The Redis server's clock (``TIME``) in epoch ms: the one stored times share."""
    seconds, micros = await store.redis.time()
    return int(seconds) * 1000 + int(micros) // 1000


async def refuse_future(store: Store, *times: tuple[str, int | None] | int | None) -> None:
    """Raise EventError naming the field if an event time is too far ahead of Redis's clock.

    ``times`` are ``(field, ms)`` pairs, or a bare ms for ``timestamp``. The
    call-event path calls it with a CallInfo's ``created_at_ms``,
    ``answered_at_ms`` and ``ended_at_ms`` before anything is stored.
    """
    named = [t if isinstance(t, tuple) else ("timestamp", t) for t in times]
    if all(ms is None for _, ms in named):
        return
    now = await redis_clock_ms(store)
    for field, ms in named:
        problem = future_refusal(ms, now, field)
        if problem:
            raise EventError(problem)
