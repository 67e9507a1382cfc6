"""What every provider dialect offers the dispatcher, in the dispatcher's terms."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

__all__ = ["FINAL_STATUSES", "Balance", "CallInfo", "EventError", "Provider", "Usage"]

FINAL_STATUSES = frozenset({"completed", "failed", "busy", "no_answer", "canceled"})
"""A call in one of these statuses is over: it can be settled."""


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
