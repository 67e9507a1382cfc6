"""In-memory provider state: account, calls, request ledger, idempotency keys.

All mutation happens under one lock and without awaiting, so a burst of
concurrent requests sees spend and idempotency checks that are consistent
with their commits. The lock also lets a test thread read the state while
the server runs in another thread.
"""

from __future__ import annotations

import random
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from campaigns.domain.account import CreditTable
from campaigns.testbed.sandbox.config import FinalStatus, SandboxConfig, patch_config
from campaigns.testbed.sandbox.formats import amount_string, rfc3339

__all__ = [
    "Admission",
    "DialectName",
    "Fault",
    "IdempotencyRecord",
    "LedgerEntry",
    "Lifecycle",
    "Rejection",
    "SandboxCall",
    "SandboxState",
    "WebhookDelivery",
]


DialectName = Literal["minivoice", "voipbin", "voxpria"]


def credits_for(config: SandboxConfig, to_number: str, billsec: int) -> int:
    """Voxpria: the destination's credits per minute, at least the minimum per attempt."""
    table = CreditTable.parse(
        config.voxpria_credit_rates, config.voxpria_minimum_credits, config.voxpria_rounding
    )
    return table.call_credits(table.rate_for(to_number), billsec)


FaultKind = Literal["respond", "accept_then_fail", "accept_then_hang"]
LiveStatus = Literal["queued", "ringing", "in_progress"]
Lifecycle = Literal["created", "answered", "final"]


@dataclass(slots=True)
class SandboxCall:
    """One accepted call. Its future (status, billsec, cost) is fixed at acceptance.

    Freezing the outcome at acceptance means a later config change never
    rewrites history, and the committed cost is exactly what gets billed.
    """

    id: str
    dialect: DialectName
    from_number: str
    to_number: str
    variables: dict[str, Any]
    max_duration_seconds: int | None
    idempotency_key: str | None
    created_at: float
    duration_real_seconds: float
    settle_delay_seconds: float
    final_status: FinalStatus
    billsec_seconds: int
    cost_micros: int
    currency: str
    omit_cost: bool
    notified: bool = False
    hung_up_at: float | None = None
    """Set when the client ended the call (VoIPBIN ``POST /calls/{id}/hangup``)."""
    progressing_at_hangup: float | None = None
    """When a call the client hung up had been answered (None: before answer)."""
    hold_tokens: int = 0
    """VoIPBIN: tokens this call takes at hangup (tokens first, whole minutes)."""
    hold_micros: int = 0
    """VoIPBIN: credit this call takes at hangup (the overflow)."""
    hold_credits: int = 0
    """Voxpria: the destination's credits (the minimum if unanswered), taken at hangup."""
    debited: bool = False
    application_id: str = ""
    customer_id: str = ""
    created_notified: bool = False
    """MiniVoice: its ``call.created`` webhook has been scheduled."""
    answered_notified: bool = False
    """MiniVoice: its ``call.answered`` webhook has been scheduled."""
    agent_id: str = ""
    """Voxpria: the ``agentId`` the call was triggered with."""

    @property
    def answered(self) -> bool:
        """Only a completed call was ever answered."""
        return self.final_status == "completed"

    @property
    def answer_seen_at(self) -> float:
        """When the call is answered in real time: the start of ``in_progress``."""
        return self.created_at + 2 * self.duration_real_seconds / 3

    @property
    def answered_at(self) -> float:
        """The answer time the webhooks state: the billed seconds before the end.

        The sandbox compresses a call into ``duration_real_seconds``; stating the
        answer ``billsec_seconds`` before the end keeps answer-to-end equal to
        what the call is billed, as on a real provider.
        """
        return self.ended_at - self.billsec_seconds

    @property
    def provider_call_id(self) -> str:
        """MiniVoice's ``provider_call_id``: the carrier leg's UUID (stable per call)."""
        return str(uuid.uuid5(uuid.NAMESPACE_URL, self.id))

    @property
    def attempt_id(self) -> str | None:
        value = self.variables.get("attempt_id")
        return value if isinstance(value, str) else None

    @property
    def ended_at(self) -> float:
        return self.created_at + self.duration_real_seconds

    @property
    def settled_at(self) -> float:
        return self.ended_at + self.settle_delay_seconds

    def is_final(self, now: float) -> bool:
        return now >= self.ended_at

    def is_settled(self, now: float) -> bool:
        return now >= self.settled_at

    def status_at(self, now: float) -> LiveStatus | FinalStatus:
        """Lifecycle from elapsed time: thirds of the duration, then final."""
        if self.is_final(now):
            return self.final_status
        elapsed = now - self.created_at
        third = self.duration_real_seconds / 3
        if elapsed < third:
            return "queued"
        if elapsed < 2 * third:
            return "ringing"
        return "in_progress"

    @property
    def progressing_at(self) -> float | None:
        """When the far end answered in real time (VoIPBIN ``tm_progressing``: the
        start of ``in_progress``), or None for a call never answered."""
        if self.hung_up_at is not None:
            return self.progressing_at_hangup
        if self.final_status != "completed":
            return None
        return self.created_at + 2 * self.duration_real_seconds / 3

    def internal(self, now: float) -> dict[str, Any]:
        """Everything the sandbox knows, for ``GET /_sandbox/calls``."""
        return {
            "id": self.id,
            "dialect": self.dialect,
            "status": self.status_at(now),
            "from": self.from_number,
            "to": self.to_number,
            "variables": self.variables,
            "attempt_id": self.attempt_id,
            "idempotency_key": self.idempotency_key,
            "max_duration_seconds": self.max_duration_seconds,
            "created_at": rfc3339(self.created_at),
            "ended_at": rfc3339(self.ended_at),
            "settled_at": rfc3339(self.settled_at),
            "final": self.is_final(now),
            "settled": self.is_settled(now),
            "final_status": self.final_status,
            "billsec_seconds": self.billsec_seconds,
            "committed_cost_micros": self.cost_micros,
            "cost_amount": amount_string(self.cost_micros),
            "currency": self.currency,
            "omit_cost": self.omit_cost,
            "webhook_notified": self.notified,
            "hung_up_at": None if self.hung_up_at is None else rfc3339(self.hung_up_at),
        }


@dataclass(slots=True)
class LedgerEntry:
    """One create request as received and as answered, for test assertions."""

    seq: int
    received_at: float
    path: str
    idempotency_key: str | None
    body: str
    status: int | None = None
    call_id: str | None = None
    error_code: str | None = None
    replayed: bool = False
    fault: str | None = None
    variables: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "seq": self.seq,
            "received_at": rfc3339(self.received_at),
            "path": self.path,
            "idempotency_key": self.idempotency_key,
            "body": self.body,
            "status": self.status,
            "call_id": self.call_id,
            "error_code": self.error_code,
            "replayed": self.replayed,
            "fault": self.fault,
            "variables": self.variables,
        }


@dataclass(frozen=True, slots=True)
class IdempotencyRecord:
    """The original answer to a key: replayed byte-for-byte on a retry."""

    fingerprint: str
    status: int
    body: Any
    call_id: str


@dataclass(frozen=True, slots=True)
class Rejection:
    """A create request refused before any call exists (dialect-neutral code)."""

    status: int
    code: str
    message: str


@dataclass(frozen=True, slots=True)
class Fault:
    """An injected fault for one create request."""

    name: str
    kind: FaultKind
    status: int = 500
    code: str = "provider_error"
    message: str = "injected fault"
    retry_after: int | None = None
    hang_seconds: float = 0.0


@dataclass(slots=True)
class WebhookDelivery:
    """One webhook POST attempt and what came of it."""

    call_id: str
    url: str
    sent_at: float
    signature: str | None
    status_code: int | None = None
    error: str | None = None
    event: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "call_id": self.call_id,
            "event": self.event,
            "url": self.url,
            "sent_at": rfc3339(self.sent_at),
            "signature": self.signature,
            "status_code": self.status_code,
            "error": self.error,
        }


Admission = SandboxCall | Rejection


@dataclass
class SandboxState:
    """The whole fake provider. Routes call these methods; tests may read them."""

    config: SandboxConfig = field(default_factory=SandboxConfig)
    clock: Callable[[], float] = time.time
    calls: dict[str, SandboxCall] = field(default_factory=dict)
    ledger: list[LedgerEntry] = field(default_factory=list)
    idempotency: dict[str, IdempotencyRecord] = field(default_factory=dict)
    webhook_deliveries: list[WebhookDelivery] = field(default_factory=list)
    committed_spend_micros: int = 0
    balance_debit_micros: int = 0
    token_debit: int = 0
    credits_debit: int = 0
    usage_tokens: dict[str, float] = field(default_factory=dict)
    """Billing Insights: access token -> when it stops being accepted (``clock``)."""
    usage_tokens_issued: int = 0
    voxpria_triggered: list[float] = field(default_factory=list)
    """Voxpria: when the calls of the last minute were triggered (its per-minute limit)."""
    generation: int = 0
    """One more at each reset: a create that arrived before a reset (held by the
    configured latency) is answered, but places no call in the new world, so one
    test's slow requests never land in the next test's ledger."""
    lock: threading.RLock = field(default_factory=threading.RLock, repr=False)
    rng: random.Random = field(default_factory=random.Random, repr=False)

    def __post_init__(self) -> None:
        self.rng.seed(self.config.seed)

    # -- account ---------------------------------------------------------

    @property
    def balance_micros(self) -> int | None:
        """Current balance: the configured one minus what calls took since it was set."""
        configured = self.config.balance_micros
        return None if configured is None else configured - self.balance_debit_micros

    @property
    def balance_tokens(self) -> int:
        return self.config.balance_token - self.token_debit

    @property
    def credits(self) -> int:
        """Voxpria credits left: the configured balance minus what hung-up calls took."""
        return self.config.credits_balance - self.credits_debit

    def debit_hangups(self) -> None:
        """Take what every call that has hung up since the last look owes, in hangup order.

        MiniVoice calls paid at acceptance; VoIPBIN calls pay their tokens and
        credit now, and every call pays its Voxpria credits now.
        """
        with self.lock:
            now = self.clock()
            ended = sorted(
                (c for c in self.calls.values() if not c.debited and c.is_final(now)),
                key=lambda c: c.ended_at,
            )
            for call in ended:
                call.debited = True
                self.token_debit += call.hold_tokens
                if self.config.balance_micros is not None:
                    self.balance_debit_micros += call.hold_micros
                self.credits_debit += call.hold_credits

    def account(self) -> dict[str, Any]:
        with self.lock:
            self.debit_hangups()
            return {
                "balance_micros": self.balance_micros,
                "balance_token": self.balance_tokens,
                "credits": self.credits,
                "spend_limit_micros": self.config.spend_limit_micros,
                "committed_spend_micros": self.committed_spend_micros,
                "calls": len(self.calls),
                "requests": len(self.ledger),
                "usage_tokens_issued": self.usage_tokens_issued,
            }

    # -- config and reset ------------------------------------------------

    def set_config(self, config: SandboxConfig) -> None:
        """Swap the config; a new balance or seed takes effect from now on."""
        with self.lock:
            old = self.config
            self.config = config
            if config.balance_micros != old.balance_micros:
                self.balance_debit_micros = 0
            if config.balance_token != old.balance_token:
                self.token_debit = 0
            if config.credits_balance != old.credits_balance:
                self.credits_debit = 0
            if config.seed != old.seed:
                self.rng.seed(config.seed)

    def apply_patch(self, patch: object) -> SandboxConfig:
        """Validate a partial config update and apply it atomically."""
        with self.lock:
            config = patch_config(self.config, patch)
            self.set_config(config)
            return config

    def reset(self, *, config: bool = False) -> None:
        """Forget calls, ledger, keys and spend; optionally the config too."""
        with self.lock:
            if config:
                self.config = SandboxConfig()
            self.calls.clear()
            self.ledger.clear()
            self.idempotency.clear()
            self.webhook_deliveries.clear()
            self.committed_spend_micros = 0
            self.balance_debit_micros = 0
            self.token_debit = 0
            self.credits_debit = 0
            self.usage_tokens.clear()
            self.usage_tokens_issued = 0
            self.voxpria_triggered.clear()
            self.generation += 1
            self.rng.seed(self.config.seed)

    # -- ledger ------------------------------------------------------------

    def record_request(self, path: str, idempotency_key: str | None, body: bytes) -> LedgerEntry:
        """Log a create request the moment it arrives; routes fill in the answer."""
        with self.lock:
            entry = LedgerEntry(
                seq=len(self.ledger) + 1,
                received_at=self.clock(),
                path=path,
                idempotency_key=idempotency_key,
                body=body.decode("utf-8", errors="replace"),
            )
            self.ledger.append(entry)
            return entry

    def ledger_snapshot(self) -> list[dict[str, Any]]:
        with self.lock:
            return [entry.to_dict() for entry in self.ledger]

    def calls_snapshot(self) -> list[dict[str, Any]]:
        with self.lock:
            now = self.clock()
            return [call.internal(now) for call in self.calls.values()]

    # -- faults ------------------------------------------------------------

    def draw_fault(self) -> Fault | None:
        """The fault for the next create request: the script first, then the dice."""
        with self.lock:
            cfg = self.config
            if cfg.script:
                step = cfg.script.pop(0)
                if step.action == "pass":
                    return None
                if step.action == "respond":
                    status = step.status if step.status is not None else 500
                    code = step.code or ("rate_limited" if status == 429 else "provider_error")
                    return Fault(
                        name=f"script:{status}",
                        kind="respond",
                        status=status,
                        code=code,
                        message=step.message or "scripted response",
                        retry_after=step.retry_after,
                    )
                hang = step.hang_seconds if step.hang_seconds is not None else cfg.hang_seconds
                return Fault(name=f"script:{step.action}", kind=step.action, hang_seconds=hang)
            roll = self.rng.random()
            threshold = cfg.error_rate
            if roll < threshold:
                status = self.rng.choice(cfg.error_statuses)
                return Fault(
                    name="error", kind="respond", status=status, message="injected provider error"
                )
            threshold += cfg.rate_limit_rate
            if roll < threshold:
                return Fault(
                    name="rate_limit",
                    kind="respond",
                    status=429,
                    code="rate_limited",
                    message="too many requests",
                    retry_after=cfg.retry_after_seconds,
                )
            threshold += cfg.accept_then_hang_rate
            if roll < threshold:
                return Fault(
                    name="accept_then_hang", kind="accept_then_hang", hang_seconds=cfg.hang_seconds
                )
            threshold += cfg.accept_then_fail_rate
            if roll < threshold:
                return Fault(name="accept_then_fail", kind="accept_then_fail")
            return None

    # -- idempotency -------------------------------------------------------

    def lookup_key(self, key: str | None) -> IdempotencyRecord | None:
        with self.lock:
            if key is None or not self.config.idempotency_keys:
                return None
            return self.idempotency.get(key)

    def remember_key(self, key: str | None, record: IdempotencyRecord) -> None:
        with self.lock:
            if key is not None and self.config.idempotency_keys:
                self.idempotency[key] = record

    # -- placing calls -----------------------------------------------------

    def admit(
        self,
        *,
        dialect: DialectName,
        from_number: str,
        to_number: str,
        max_duration_seconds: int | None,
        variables: dict[str, Any],
        idempotency_key: str | None,
        agent_id: str = "",
    ) -> Admission:
        """Check destination, spend limit and balance, then commit the call's cost.

        Check and commit happen under the lock with no await in between, so
        two concurrent requests can never both squeeze under the limit.
        """
        with self.lock:
            cfg = self.config
            if to_number in cfg.invalid_numbers:
                return Rejection(422, "invalid_destination", f"invalid destination {to_number}")
            if to_number in cfg.blocked_numbers:
                return Rejection(422, "blocked_destination", f"destination {to_number} is blocked")
            if to_number in cfg.unroutable_numbers:
                return Rejection(403, "no_route", f"no route to {to_number}")
            override = cfg.per_number.get(to_number)
            final_status: FinalStatus = cfg.final_status
            if override is not None and override.final_status is not None:
                final_status = override.final_status
            billsec = cfg.call_seconds if final_status == "completed" else 0
            if override is not None and override.billsec_seconds is not None:
                billsec = override.billsec_seconds
            if max_duration_seconds is not None:
                billsec = min(billsec, max_duration_seconds)
            rate = cfg.rate_model()
            cost = rate.cost_micros(billsec)
            limit = cfg.spend_limit_micros
            if limit is not None and self.committed_spend_micros + cost > limit:
                return Rejection(403, "spend_control_exceeded", "outbound spend limit exceeded")
            self.debit_hangups()
            balance = self.balance_micros
            hold_tokens = hold_micros = 0
            if dialect == "voipbin":
                # Tokens first, then credit, as the VoIPBIN billing tutorial bills; what calls still
                # up will take at their hangup is not available to this one.
                live = [c for c in self.calls.values() if not c.debited]
                free_tokens = max(self.balance_tokens - sum(c.hold_tokens for c in live), 0)
                charge = rate.charge(billsec, free_tokens)
                hold_tokens, hold_micros = charge.tokens, charge.credit_micros
                if balance is not None and (
                    balance - sum(c.hold_micros for c in live) < hold_micros
                ):
                    return Rejection(
                        402, "insufficient_balance", "insufficient credit balance for this call"
                    )
            elif balance is not None and balance < cost:
                return Rejection(402, "insufficient_balance", "insufficient balance for this call")
            call_id = f"call_{uuid.uuid4().hex}" if dialect != "voipbin" else str(uuid.uuid4())
            call = SandboxCall(
                id=call_id,
                dialect=dialect,
                from_number=from_number,
                to_number=to_number,
                variables=variables,
                max_duration_seconds=max_duration_seconds,
                idempotency_key=idempotency_key,
                created_at=self.clock(),
                duration_real_seconds=cfg.call_duration_real_seconds,
                settle_delay_seconds=cfg.settle_delay_seconds,
                final_status=final_status,
                billsec_seconds=billsec,
                cost_micros=cost,
                currency=cfg.currency,
                omit_cost=cfg.omit_cost,
                hold_tokens=hold_tokens,
                hold_micros=hold_micros,
                hold_credits=credits_for(cfg, to_number, billsec),
                application_id=cfg.application_id,
                customer_id=cfg.customer_id,
                agent_id=agent_id,
            )
            self.calls[call.id] = call
            self.committed_spend_micros += cost
            if balance is not None and dialect != "voipbin":
                self.balance_debit_micros += cost
            return call

    def get_call(self, call_id: str) -> SandboxCall | None:
        with self.lock:
            return self.calls.get(call_id)

    def hang_up(self, call_id: str) -> SandboxCall | None:
        """End a live call now, as the client asked; its bill shrinks to what it used.

        Answered: billed up to now (never more than it would have been), and
        ``completed``. Not yet answered: ``canceled``, nothing billed. A call
        already over is left as it is.
        """
        with self.lock:
            call = self.calls.get(call_id)
            now = self.clock()
            if call is None or call.is_final(now):
                return call
            answered = call.progressing_at if call.status_at(now) == "in_progress" else None
            billsec = 0 if answered is None else min(call.billsec_seconds, int(now - answered))
            rate = self.config.rate_model()
            cost = rate.cost_micros(billsec)
            self.committed_spend_micros -= call.cost_micros - cost
            if call.dialect != "voipbin" and self.config.balance_micros is not None:
                self.balance_debit_micros -= call.cost_micros - cost
            charge = rate.charge(billsec, call.hold_tokens)
            call.hold_tokens, call.hold_micros = charge.tokens, charge.credit_micros
            call.hold_credits = credits_for(self.config, call.to_number, billsec)
            call.cost_micros, call.billsec_seconds = cost, billsec
            call.final_status = "completed" if answered is not None else "canceled"
            call.progressing_at_hangup, call.hung_up_at = answered, now
            call.duration_real_seconds = now - call.created_at
            return call

    def calls_by_attempt(self, attempt_id: str | None) -> list[SandboxCall]:
        with self.lock:
            if attempt_id is None:
                return list(self.calls.values())
            return [call for call in self.calls.values() if call.attempt_id == attempt_id]

    # -- reporting ---------------------------------------------------------

    def usage(self, start: float, end: float) -> tuple[int, int, int]:
        """(calls, billsec, cost micros) of settled calls created in [start, end)."""
        with self.lock:
            now = self.clock()
            settled = [
                call
                for call in self.calls.values()
                if start <= call.created_at < end and call.is_settled(now)
            ]
            return (
                len(settled),
                sum(call.billsec_seconds for call in settled),
                sum(call.cost_micros for call in settled),
            )

    def credits_usage(self, first: str, last: str) -> list[dict[str, Any]]:
        """Voxpria's per-day history of hung-up calls, newest day first (Voxpria's Credits API page)."""
        with self.lock:
            self.debit_hangups()
            days: dict[str, list[int]] = {}
            for call in self.calls.values():
                day = rfc3339(call.created_at)[:10]
                if call.debited and first <= day <= last:
                    row = days.setdefault(day, [0, 0])
                    row[0] += 1
                    row[1] += call.hold_credits
            return [
                {"date": day, "calls": calls, "creditsUsed": used}
                for day, (calls, used) in sorted(days.items(), reverse=True)
            ]

    def month_usage(self, month: str) -> dict[str, tuple[int, int, int]]:
        """Settled calls created in ``month`` (YYYY-MM): currency -> (calls, billsec, micros)."""
        with self.lock:
            now = self.clock()
            totals: dict[str, tuple[int, int, int]] = {}
            for call in self.calls.values():
                if rfc3339(call.created_at)[:7] == month and call.is_settled(now):
                    calls, billsec, micros = totals.get(call.currency, (0, 0, 0))
                    totals[call.currency] = (
                        calls + 1,
                        billsec + call.billsec_seconds,
                        micros + call.cost_micros,
                    )
            return totals

    def take_newly_final(self) -> list[SandboxCall]:
        """Calls that turned final since the last look; each is returned once."""
        with self.lock:
            now = self.clock()
            fresh = [c for c in self.calls.values() if not c.notified and c.is_final(now)]
            for call in fresh:
                call.notified = True
            return fresh

    def take_webhook_events(self) -> list[tuple[Lifecycle, SandboxCall]]:
        """Lifecycle events due since the last look, each returned once, in order:
        ``created`` and ``answered`` (MiniVoice calls), ``final`` (every call)."""
        with self.lock:
            now = self.clock()
            due: list[tuple[Lifecycle, SandboxCall]] = []
            for call in self.calls.values():
                if call.dialect == "minivoice":
                    if not call.created_notified:
                        call.created_notified = True
                        due.append(("created", call))
                    if call.answered and not call.answered_notified and now >= call.answer_seen_at:
                        call.answered_notified = True
                        due.append(("answered", call))
                if not call.notified and call.is_final(now):
                    call.notified = True
                    due.append(("final", call))
            return due

    def record_delivery(self, delivery: WebhookDelivery) -> None:
        with self.lock:
            self.webhook_deliveries.append(delivery)
