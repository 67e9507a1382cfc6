"""Error classification: the one place that decides what a provider answer means.

Every dialect adapter turns its answers into a :class:`ProviderError` and
asks :func:`classify` what to do. Unknown means halt: a dispatcher that
cannot classify an error stops rather than loops.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from campaigns.domain.lifecycle import HaltCode

__all__ = [
    "CONFIGURATION_CODES",
    "INVALID_RESPONSE",
    "NOT_PLACED_CODES",
    "PROVIDER_REDIRECT",
    "RATE_LIMIT_HOLD_SECONDS",
    "UNREADABLE_CODES",
    "ErrorClass",
    "ProviderError",
    "classify",
    "provider_error",
    "unsendable",
]


class ErrorClass(enum.StrEnum):
    HALT = "halt"
    """Financial, routing, limits, auth, or anything unknown: stop the campaign."""
    CONTACT = "contact"
    """This number only: reject the contact, go on with the campaign."""
    TRANSIENT = "transient"
    """Retry the same attempt, same Idempotency-Key, with backoff."""


_HALT_CODES = frozenset(
    {
        "spend_control_exceeded",
        "insufficient_balance",
        "insufficient_funds",
        "no_route",
        "no_active_trunk",  # MiniVoice: no outbound trunk to route the call on
    }
)
_HALT_PREFIXES = ("rating_", "rate_", "routing_", "route_", "no_route", "spend_")
_RATE_LIMIT_PREFIXES = ("rate_limit", "rate_limited")
_CONTACT_CODES = frozenset({"invalid_destination", "invalid_number", "blocked_destination"})
NOT_PLACED_CODES = frozenset({"originate_failed"})
"""Codes whose answer says the provider tried to set the call up and it failed
(MiniVoice's ``502 originate_failed``): a failed attempt for this contact, not
an answer that may hide a live call, whatever its 5xx status."""
RATE_LIMIT_HOLD_SECONDS: dict[str, float] = {
    "cps_limit_reached": 1.0,
    "concurrent_call_limit_reached": 5.0,
}
"""How long the account waits after a 429 with one of these codes and no
``Retry-After`` (MiniVoice promises none): a calls-per-second limit clears
within a second; a concurrent-call limit only when a call ends."""
_IN_PROGRESS = ("in_progress", "in_use", "concurrent")
_TRANSIENT_STATUSES = frozenset({429, 500, 502, 503, 504})
_AUTH_STATUSES = frozenset({401, 403})
CONFIGURATION_CODES = frozenset({HaltCode.PROVIDER_AUTH_FAILED, HaltCode.REQUEST_UNSENDABLE})
"""Our own codes for a provider we are configured wrongly for: they halt, whatever
the status, so a bad key never loops as a provider outage."""
INVALID_RESPONSE = "invalid_response"
"""A 2xx answer we cannot use (with its real status): not JSON, a duplicate key,
larger than its limit, or no usable call ID. The call may exist: ambiguous."""
PROVIDER_REDIRECT = "provider_redirect"
"""A 3xx answer (with its real status), never followed: the configured URL is
wrong. Ambiguous like an unreadable 2xx (a 303 may follow a placed call)."""
UNREADABLE_CODES = frozenset({INVALID_RESPONSE, PROVIDER_REDIRECT})
"""Garbage answers: transient one at a time, a misbehaving provider in a row."""
_CONFIG_HINT = "check DISPATCHER_PROVIDER_API_KEY and DISPATCHER_PROVIDER_URL"

# VoIPBIN (bin-api-manager/server/error_translate.go, lib/middleware): a 403 whose
# reason is about the account, not the key. It halts with the provider's reason
# and these words, never as provider_auth_failed ("check the API key").
_ACCOUNT_REFUSALS = {
    "identity_verification_required": (
        "VoIPBIN places PSTN calls only for customers whose identity is verified: "
        "complete the identity verification in the VoIPBIN console, then resume"
    ),
    "account_frozen": (
        "the VoIPBIN account is frozen (scheduled for deletion): recover it "
        "(DELETE /auth/unregister) or use another account, then resume"
    ),
}


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
        429, a 4xx. A timeout, a reset, a 5xx, an unreadable 2xx or a redirect
        may all hide a call that exists.
        """
        if self.status is None:
            return self.code not in ("connect_failed", HaltCode.REQUEST_UNSENDABLE)
        if self.code.strip().lower() in NOT_PLACED_CODES:
            return False
        return self.status >= 500 or 200 <= self.status < 400


def classify(status: int | None, code: str | None) -> ErrorClass:
    """Map an HTTP status and error code to what the dispatcher must do.

    Financial and routing codes halt whatever status they come with; a
    contact-only code counts only with 400/422; 429 and 5xx are transient
    unless their code says money or routing.
    """
    normalized = (code or "").strip().lower()
    if normalized in _HALT_CODES or normalized in CONFIGURATION_CODES:
        return ErrorClass.HALT
    if normalized in NOT_PLACED_CODES and status is not None:
        return ErrorClass.CONTACT
    if status == 429 or normalized.startswith(_RATE_LIMIT_PREFIXES):
        # "rate_limited" is throttling, not rating: CONTRACT.md lists both 429
        # (transient) and the prefix "rate_" (halt); a 429 is always throttling.
        return ErrorClass.TRANSIENT if status in (None, *_TRANSIENT_STATUSES) else ErrorClass.HALT
    if normalized.startswith(_HALT_PREFIXES):
        return ErrorClass.HALT
    if status is None or 200 <= status < 400:
        # Network failures, a 2xx we could not read and a redirect (the call
        # may exist): re-send under the same key to get the answer again.
        return ErrorClass.TRANSIENT
    if status == 409 and any(word in normalized for word in _IN_PROGRESS):
        # Stripe semantics: the key's first request is still being processed.
        return ErrorClass.TRANSIENT
    if status in (400, 422) and normalized in _CONTACT_CODES:
        return ErrorClass.CONTACT
    if status in _TRANSIENT_STATUSES:
        return ErrorClass.TRANSIENT
    return ErrorClass.HALT


def provider_error(
    status: int | None, code: str, message: str = "", retry_after: float | None = None
) -> ProviderError:
    """A ProviderError for a provider's answer, with our own code where we are at fault.

    An authentication failure (401, or a 403 whose code is not about money or
    routing) is ``provider_auth_failed``: the campaign halts saying which
    setting to check, with the provider's own code and words kept in the message.
    """
    advice = _ACCOUNT_REFUSALS.get(code.strip().lower()) if status == 403 else None
    if advice is not None:
        return ProviderError(status, code.strip().lower(), f"{advice} ({message})", retry_after)
    normalized = code.strip().lower()
    if status == 429 and retry_after is None:
        retry_after = RATE_LIMIT_HOLD_SECONDS.get(normalized)
    financial_or_routing = normalized in _HALT_CODES or normalized.startswith(_HALT_PREFIXES)
    if status in _AUTH_STATUSES and not financial_or_routing:
        return ProviderError(
            status,
            HaltCode.PROVIDER_AUTH_FAILED,
            f"the provider refused our credentials (HTTP {status} {code}: {message}); "
            "check DISPATCHER_PROVIDER_API_KEY",
            retry_after,
        )
    return ProviderError(status, code, message, retry_after)


def unsendable(reason: str) -> ProviderError:
    """The HTTP client refused to send the request: our configuration, not the provider."""
    return ProviderError(
        None,
        HaltCode.REQUEST_UNSENDABLE,
        f"the request could not be sent ({reason}); {_CONFIG_HINT}",
    )
