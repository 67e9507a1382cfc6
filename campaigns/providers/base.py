"""What every provider dialect offers the dispatcher, in the dispatcher's terms."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from campaigns.domain.lifecycle import FINAL_CALL_STATUSES
from campaigns.domain.money import MAX_MICROS

__all__ = [
    "FINAL_STATUSES",
    "MAX_BILLSEC_SECONDS",
    "MAX_CALL_ID",
    "Balance",
    "CallInfo",
    "EventError",
    "Provider",
    "Usage",
    "billing_refusal",
    "billsec_refusal",
    "brief",
    "call_id_ok",
    "currency_refusal",
]

FINAL_STATUSES = FINAL_CALL_STATUSES
MAX_BILLSEC_SECONDS = 366 * 86_400
"""No call lasts a year: a longer billsec is a corrupt or hostile value, not a call."""
MAX_CALL_ID = 200
_CURRENCY = re.compile(r"[A-Z]{3}")


class EventError(ValueError):
    """A call event that cannot be applied; it goes to the dead-letter list."""


@dataclass(frozen=True, slots=True)
class CallInfo:
    """A call as the provider reports it. Cost fields are None until billing settles."""

    call_id: str
    status: str
    direction: str = "outbound"
    to: str = ""
    billsec: int | None = None
    cost_micros: int | None = None
    cost_currency: str | None = None
    variables: dict[str, Any] = field(default_factory=dict)

    @property
    def final(self) -> bool:
        return self.status in FINAL_STATUSES


@dataclass(frozen=True, slots=True)
class Usage:
    """Account-wide settled totals for a UTC window (seed 000)."""

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
    can_list_calls: bool
    final_events: frozenset[str]
    """Webhook event names that carry a final call (the only ones worth settling)."""

    def parse_event(self, payload: Any) -> tuple[str, CallInfo]:
        """A webhook payload (JSON text or decoded) as (event name, call); EventError names the field."""
        ...

    def build_create(
        self, *, caller_id: str, to: str, max_duration_seconds: int, variables: dict[str, Any]
    ) -> str:
        """The exact JSON body to send; it is stored before sending and re-sent unchanged."""
        ...

    async def create_call(self, body: str, idempotency_key: str) -> CallInfo: ...

    async def get_call(self, call_id: str) -> CallInfo: ...

    async def find_call(self, attempt_id: str) -> CallInfo | None:
        """Find a call by the attempt ID in its variables (only if ``can_list_calls``)."""
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
