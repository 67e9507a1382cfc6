"""What every provider dialect offers the dispatcher, in the dispatcher's terms."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from campaigns.domain.lifecycle import FINAL_CALL_STATUSES
from campaigns.domain.money import MAX_MICROS

__all__ = [
    "FINAL_STATUSES",
    "MAX_BILLSEC_SECONDS",
    "MAX_CALL_ID",
    "MAX_CLOCK_AHEAD_MS",
    "Balance",
    "CallInfo",
    "Capabilities",
    "CreateRequest",
    "EventError",
    "Provider",
    "SentCreate",
    "Usage",
    "billing_refusal",
    "billsec_refusal",
    "brief",
    "call_id_ok",
    "currency_refusal",
    "future_refusal",
]

FINAL_STATUSES = FINAL_CALL_STATUSES
MAX_BILLSEC_SECONDS = 366 * 86_400
"""No call lasts a year: a longer billsec is a corrupt or hostile value, not a call."""
MAX_CALL_ID = 200
MAX_CLOCK_AHEAD_MS = 5 * 60 * 1000
"""How far ahead of the Redis clock a provider's event may be dated (clock skew).
Later is refused: an ``account_updated`` dated 9999-12-31 would otherwise be
the newest balance for ever, and every genuine one dropped as stale."""
_CURRENCY = re.compile(r"[A-Z]{3}")


class EventError(ValueError):
    """A call event that cannot be applied; it goes to the dead-letter list."""


@dataclass(frozen=True, slots=True)
class Capabilities:
    """What a provider offers toward one call per attempt, as its own documentation
    states it (never more). The engine resolves an ambiguous create (a timeout, a
    5xx, an unreadable answer) with the strongest one available, in this order:

    1. ``idempotency_keys``: re-send under the same ``Idempotency-Key``;
    2. ``lookup``: list or search the provider's calls (:meth:`Provider.find_calls`)
       for the request's source, destination and time; one match is the call,
       none once ``lookup_settle_seconds`` have passed since the request means
       nothing was placed, several mean an operator decides;
    3. ``creation_events``: wait (bounded) for the provider's creation webhook
       for that source and destination (matched by our attempt ID where the
       event echoes it);
    4. otherwise the attempt is in doubt.

    ``DISPATCHER_PROVIDER_HONOURS_IDEMPOTENCY=false`` can only lower
    ``idempotency_keys``, never raise it.
    """

    idempotency_keys: bool
    lookup: bool
    creation_events: bool
    hangup: bool
    """A live call can be ended by the dispatcher (:meth:`Provider.hang_up`), so a
    call never outlives the ``max_call_seconds`` its reservation assumed."""
    lookup_settle_seconds: float = 0.0
    """How long after a create request a call it placed may take to appear in a
    listing; a lookup finding nothing later than this proves nothing was placed."""
    per_call_cost: bool = False
    """The provider reports each call's billed seconds or cost; without it a
    call is booked by the rate model on the best duration the provider gives,
    and marked estimated."""
    reports_cost: bool = True
    """A call read may carry a cost (MiniVoice: "when those values are available"),
    so a final call without one is given a grace to settle. False: no cost ever
    comes (Voxpria bills credits, not money per call): booked at once."""


@dataclass(frozen=True, slots=True)
class CreateRequest:
    """Everything a dialect may put in a create request for one attempt."""

    caller_id: str
    to: str
    max_duration_seconds: int
    campaign_id: str
    attempt_id: str
    contact_ref: str
    variables: Mapping[str, Any]
    """The contact's own variables (strings, numbers, booleans, null)."""
    call: Mapping[str, Any] = field(default_factory=dict)
    """The spec's ``call`` section as given (``record``, ``flow_id``, ``actions``,
    ``agent_id``): what the call does, in the dialect's own terms."""


@dataclass(frozen=True, slots=True)
class SentCreate:
    """A create request whose answer is unknown, as :meth:`Provider.find_calls` needs it."""

    attempt_id: str
    caller_id: str
    to: str
    first_sent_ms: int
    """When the first request for this attempt left (our clock, epoch ms)."""
    last_sent_ms: int


@dataclass(frozen=True, slots=True)
class CallInfo:
    """A call as the provider reports it. Cost fields are None until billing settles.

    Times are epoch milliseconds as the provider states them (None when it does
    not); ``attempt_id`` is our attempt ID where the provider echoes it back
    (metadata, variables), else None.
    """

    call_id: str
    status: str
    direction: str = "outbound"
    to: str = ""
    billsec: int | None = None
    cost_micros: int | None = None
    cost_currency: str | None = None
    variables: dict[str, Any] = field(default_factory=dict)
    caller_id: str = ""
    attempt_id: str | None = None
    created_at_ms: int | None = None
    answered_at_ms: int | None = None
    ended_at_ms: int | None = None

    @property
    def final(self) -> bool:
        return self.status in FINAL_STATUSES


@dataclass(frozen=True, slots=True)
class Usage:
    """Account-wide settled totals for a UTC window (the MiniVoice spend-controls page)."""

    start: str
    end: str
    calls: int
    billsec: int
    cost_micros: int
    currency: str


@dataclass(frozen=True, slots=True)
class Balance:
    credit_micros: int
    tokens: int


class Provider(Protocol):
    """A dialect adapter. Errors are raised as :class:`campaigns.domain.errors.ProviderError`."""

    dialect: str
    capabilities: Capabilities
    final_events: frozenset[str]
    """Webhook event names that carry a final call."""
    creation_events: frozenset[str]
    """Webhook event names that announce a new call (empty without ``creation_events``)."""

    def parse_event(self, payload: Any) -> tuple[str, CallInfo]:
        """A webhook payload (JSON text or decoded) as (event name, call); EventError names the field."""
        ...

    def build_create(self, request: CreateRequest) -> str:
        """The exact JSON body to send; it is stored before sending and re-sent unchanged."""
        ...

    async def create_call(self, body: str, idempotency_key: str) -> CallInfo:
        """Place a call. The key is sent only where ``capabilities.idempotency_keys``."""
        ...

    async def get_call(self, call_id: str) -> CallInfo: ...

    async def find_calls(self, sent: SentCreate) -> list[CallInfo]:
        """Every call the provider lists from ``sent.caller_id`` to ``sent.to`` created
        around the request's time (only if ``capabilities.lookup``)."""
        ...

    async def hang_up(self, call_id: str) -> None:
        """End a live call (only if ``capabilities.hangup``)."""
        ...

    async def usage(self, start: datetime, end: datetime) -> Usage | None: ...

    async def balance(self) -> Balance | None:
        """The account balance where the dialect has one, else None."""
        ...

    async def aclose(self) -> None: ...


# Whether a call as a provider reported it can be booked: the same rules for
# every dialect and for both roads (a webhook event, a call read back).


def brief(value: object) -> str:
    """A value for an error message: short, and safe for any size of input."""
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > 128:
        return f"an integer of {value.bit_length()} bits"
    if isinstance(value, str | bytes | list | dict | tuple) and len(value) > 40:
        return f"{type(value).__name__} of length {len(value)}"
    return repr(value)


def call_id_ok(call_id: str) -> bool:
    return 0 < len(call_id) <= MAX_CALL_ID and call_id.isprintable()


def billsec_refusal(billsec: object) -> str:
    """Why a billsec cannot be booked, or '' when it can."""
    if not isinstance(billsec, int) or isinstance(billsec, bool):
        return f"must be a whole number of seconds, got {type(billsec).__name__}"
    if not 0 <= billsec <= MAX_BILLSEC_SECONDS:
        return f"{brief(billsec)} is out of range (0 to {MAX_BILLSEC_SECONDS} s)"
    return ""


def currency_refusal(currency: object) -> str:
    if not isinstance(currency, str) or not _CURRENCY.fullmatch(currency):
        return f"must be an ISO 4217 code such as 'EUR', got {brief(currency)}"
    return ""


def future_refusal(at_ms: int | None, now_ms: int, field: str = "timestamp") -> str:
    """Why an event time cannot be stored (naming ``field``), or '' when it can.

    ``now_ms`` is the Redis clock (``TIME``), the one every stored time is
    compared with; None (no time given) passes.
    """
    if at_ms is None or at_ms - now_ms <= MAX_CLOCK_AHEAD_MS:
        return ""
    ahead = (at_ms - now_ms) / 1000
    shown = f"{ahead:.0f}s" if ahead < 86_400 else f"{ahead / 86_400:.0f} days"
    return (
        f"{field}: {shown} ahead of the dispatcher's clock "
        f"(at most {MAX_CLOCK_AHEAD_MS // 1000}s of skew is accepted)"
    )


def billing_refusal(call: CallInfo) -> str:
    """Why a final call's billing cannot be booked, naming the field; '' when it can.

    Both roads pass here: a webhook event and a call read back from the
    provider, whose answer is trusted no more than a webhook.
    """
    if not call_id_ok(call.call_id):
        return f"call.id: not a call ID: {brief(call.call_id)}"
    if call.billsec is not None and billsec_refusal(call.billsec):
        return f"call.billsec_seconds: {billsec_refusal(call.billsec)}"
    if call.cost_micros is not None and not 0 <= call.cost_micros <= MAX_MICROS:
        return f"call.cost_amount: out of range (0 to {MAX_MICROS} micros)"
    if call.cost_currency is not None and currency_refusal(call.cost_currency):
        return f"call.cost_currency: {currency_refusal(call.cost_currency)}"
    return ""
