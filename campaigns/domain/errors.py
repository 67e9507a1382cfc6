"""Error classification: the one place that decides what a provider answer means.

Every dialect adapter turns its answers into a :class:`ProviderError` and
asks :func:`classify` what to do. Unknown means halt: a dispatcher that
cannot classify an error stops rather than loops.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

__all__ = ["ErrorClass", "ProviderError", "classify"]


class ErrorClass(enum.StrEnum):
    HALT = "halt"
    """Financial, routing, limits, auth, or anything unknown: stop the campaign."""
    CONTACT = "contact"
    """This number only: reject the contact, go on with the campaign."""
    TRANSIENT = "transient"
    """Retry the same attempt, same Idempotency-Key, with backoff."""


_HALT_CODES = frozenset(
    {"spend_control_exceeded", "insufficient_balance", "insufficient_funds", "no_route"}
)
_HALT_PREFIXES = ("rating_", "rate_", "routing_", "route_", "no_route")
_RATE_LIMIT_PREFIXES = ("rate_limit", "rate_limited")
_CONTACT_CODES = frozenset({"invalid_destination", "invalid_number", "blocked_destination"})
_IN_PROGRESS = ("in_progress", "in_use", "concurrent")
_TRANSIENT_STATUSES = frozenset({429, 500, 502, 503, 504})


@dataclass(frozen=True, slots=True)
class ProviderError(Exception):
    """A provider answer that did not create a call.

    ``status`` is None for network failures (connect errors, timeouts), which
    are transient by nature. ``retry_after`` is the provider's hint in seconds.
    """

    status: int | None
    code: str
    message: str = ""
    retry_after: float | None = None

    def __str__(self) -> str:
        where = f"HTTP {self.status}" if self.status is not None else "network"
        return f"{where} {self.code}: {self.message}"

    @property
    def error_class(self) -> ErrorClass:
        return classify(self.status, self.code)

    @property
    def ambiguous(self) -> bool:
        """Could the provider have acted on the request (placed the call)?

        Only an answer that proves otherwise says no: a refused connection, a
        429, a 4xx. A timeout, a reset, a 5xx or an unreadable 2xx may all hide
        a call that exists.
        """
        if self.status is None:
            return self.code != "connect_failed"
        return self.status >= 500 or 200 <= self.status < 300


def classify(status: int | None, code: str | None) -> ErrorClass:
    """Map an HTTP status and error code to what the dispatcher must do.

    Financial and routing codes halt whatever status they come with; a
    contact-only code counts only with 400/422; 429 and 5xx are transient
    unless their code says money or routing.
    """
    normalized = (code or "").strip().lower()
    if normalized in _HALT_CODES:
        return ErrorClass.HALT
    if status == 429 or normalized.startswith(_RATE_LIMIT_PREFIXES):
        # "rate_limited" is throttling, not rating: CONTRACT.md lists both 429
        # (transient) and the prefix "rate_" (halt); a 429 is always throttling.
        return ErrorClass.TRANSIENT if status in (None, *_TRANSIENT_STATUSES) else ErrorClass.HALT
    if normalized.startswith(_HALT_PREFIXES):
        return ErrorClass.HALT
    if status is None or 200 <= status < 300:
        # Network failures, and a 2xx we could not read (the call may exist):
        # re-send under the same key to get the answer again.
        return ErrorClass.TRANSIENT
    if status == 409 and any(word in normalized for word in _IN_PROGRESS):
        # Stripe semantics: the key's first request is still being processed.
        return ErrorClass.TRANSIENT
    if status in (400, 422) and normalized in _CONTACT_CODES:
        return ErrorClass.CONTACT
    if status in _TRANSIENT_STATUSES:
        return ErrorClass.TRANSIENT
    return ErrorClass.HALT
