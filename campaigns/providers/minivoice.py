"""MiniVoice dialect, as its public documentation states it (doc.minivoice.eu).

Bearer auth, ``POST /v1/calls`` with ``{"from", "to", "metadata", "record"}``,
``GET /v1/calls/{id}``, ``GET /v1/usage``, and signed ``call.*`` webhooks.
MiniVoice documents no idempotency keys, no call listing and no hang-up: an
ambiguous create is resolved by its ``call.created`` webhook (or left in
doubt), never re-sent. Every fact used here, the page that states it, and what
is assumed where the pages are silent: docs/providers.md#minivoice.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import httpx
from pydantic import SecretStr

from campaigns.domain.errors import ProviderError
from campaigns.domain.money import MoneyError, amount_to_micros
from campaigns.providers._http import answer, provider_client
from campaigns.providers.base import (
    FINAL_STATUSES,
    Balance,
    CallInfo,
    Capabilities,
    CreateRequest,
    EventError,
    SentCreate,
    Usage,
    billsec_refusal,
    brief,
    call_id_ok,
    currency_refusal,
)

__all__ = [
    "ANSWER_EVENTS",
    "CREATION_EVENTS",
    "FINAL_EVENTS",
    "SIGNATURE_HEADER",
    "TIMESTAMP_HEADER",
    "WEBHOOK_EVENTS",
    "MiniVoice",
    "event_key",
    "map_status",
    "parse_call",
    "parse_call_event",
    "sign_webhook",
    "verify_webhook",
]

CREATION_EVENTS = frozenset({"call.created"})
"""webhooks/call-created: "sent for outbound call creation, retries, and inbound
call creation paths"."""
ANSWER_EVENTS = frozenset({"call.answered"})
FINAL_EVENTS = frozenset({"call.completed", "call.failed", "call.canceled"})
"""The terminal events of examples/outbound-campaign's webhook flow."""
WEBHOOK_EVENTS = CREATION_EVENTS | ANSWER_EVENTS | FINAL_EVENTS
"""What the ingress queues for a worker; any other event is acknowledged and dropped."""

TIMESTAMP_HEADER = "X-MiniVoice-Timestamp"
SIGNATURE_HEADER = "X-MiniVoice-Signature"
"""webhooks/signatures: ``v1=`` + hex HMAC-SHA256(secret, timestamp + "." + raw body)."""

_STATUS: dict[str, str] = {
    # Seen in the documentation: the create answer, call.created, call.completed.
    "dialing": "queued",
    "in_progress": "in_progress",
    "completed": "completed",
    # Not in the documentation: our own words, read the same way if MiniVoice uses them.
    "queued": "queued",
    "ringing": "ringing",
    "answered": "in_progress",
    "failed": "failed",
    "canceled": "canceled",
    "cancelled": "canceled",
    "busy": "busy",
    "no_answer": "no_answer",
    "no-answer": "no_answer",
}
"""MiniVoice call statuses in the dispatcher's words (docs/providers.md lists the
mapping). A status not listed here is kept as given and is never final: such a
call is read again later rather than settled on a guess."""
_EVENT_STATUS = {
    "call.completed": "completed",
    "call.failed": "failed",
    "call.canceled": "canceled",
}
_MAX_STATUS = 64
_MAX_EVENT_KEY = 256


def map_status(status: object) -> str:
    """A MiniVoice status in the dispatcher's words; '' when there is none."""
    if not isinstance(status, str):
        return ""
    return _STATUS.get(status.strip().lower(), status[:_MAX_STATUS])


def _rfc3339(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _time_ms(value: object) -> int | None:
    """An RFC 3339 time as epoch ms; None for anything else (every time is optional)."""
    if not isinstance(value, str) or not 0 < len(value) <= 64 or "T" not in value.upper():
        return None
    try:
        parsed = datetime.fromisoformat(value.upper().replace("Z", "+00:00"))
    except ValueError:
        return None
    if parsed.tzinfo is None:
        return None
    return int(parsed.timestamp() * 1000)


def _attempt_id(*holders: object) -> str | None:
    """Our attempt ID from the first ``metadata`` that carries a usable one."""
    for holder in holders:
        metadata = holder.get("metadata") if isinstance(holder, dict) else None
        value = metadata.get("attempt_id") if isinstance(metadata, dict) else None
        if isinstance(value, str) and call_id_ok(value):
            return value
    return None


def _text(value: object) -> str:
    return value if isinstance(value, str) else ""


def parse_call(payload: Any, *, billing: bool = True) -> CallInfo:
    """A MiniVoice call object (API answer or webhook ``call``) as a CallInfo.

    Only ``id`` is required. With ``billing``, billed seconds and cost are read
    under the names ``/v1/usage`` uses (the call object's are not documented),
    and a cost that is not an exact decimal string is refused. Raises
    ValueError naming the field; callers turn it into their own error.
    """
    call_id = payload.get("id") if isinstance(payload, dict) else None
    if not isinstance(call_id, str) or not call_id_ok(call_id):
        raise ValueError(
            "id: missing" if call_id is None else f"id: not a call ID: {brief(call_id)}"
        )
    assert isinstance(payload, dict)
    cost: int | None = None
    billsec: int | None = None
    currency: str | None = None
    if billing:
        if payload.get("cost_amount") is not None:
            try:
                cost = amount_to_micros(payload["cost_amount"])
            except MoneyError as exc:
                raise ValueError(f"cost_amount: {exc}") from None
        value = payload.get("billsec_seconds")
        billsec = value if isinstance(value, int) and not isinstance(value, bool) else None
        currency = payload.get("cost_currency")
    variables = payload.get("variables")
    return CallInfo(
        call_id=call_id,
        status=map_status(payload.get("status")),
        direction=_text(payload.get("direction")) or "outbound",
        to=_text(payload.get("to")),
        billsec=billsec,
        cost_micros=cost,
        cost_currency=currency,
        variables=variables if isinstance(variables, dict) else {},
        caller_id=_text(payload.get("from")),
        attempt_id=_attempt_id(payload),
        created_at_ms=_time_ms(payload.get("created_at")),
        answered_at_ms=_time_ms(payload.get("answered_at")),
        ended_at_ms=_time_ms(payload.get("ended_at")),
    )


def _decode(payload: Any) -> dict[str, Any]:
    if isinstance(payload, str | bytes):
        try:
            payload = json.loads(payload)
        except json.JSONDecodeError as exc:
            raise EventError(f"not JSON: {exc.msg}") from None
        except (ValueError, RecursionError):
            # UnicodeDecodeError, or an integer too long to convert.
            raise EventError("not JSON: undecodable body") from None
    if not isinstance(payload, dict):
        raise EventError("event must be a JSON object")
    return payload


def _event_status(event: str, given: object) -> str:
    """The status a call event stands for; EventError where the event contradicts it."""
    if given is not None and not isinstance(given, str):
        raise EventError(f"call.status: {brief(given)} is not a status")
    mapped = map_status(given)
    implied = _EVENT_STATUS.get(event)
    if implied is None:
        # call.created / call.answered: the call exists and is not over, whatever
        # its status says (a final status comes with a final event or a read).
        return mapped if mapped and mapped not in FINAL_STATUSES else "in_progress"
    if mapped in FINAL_STATUSES:
        return mapped
    if given is None or mapped not in _STATUS.values():
        return implied  # no status, or a word we do not know: the event name says
    raise EventError(f"call.status: {brief(given)} is not final")


def parse_call_event(payload: Any) -> tuple[str, CallInfo]:
    """A documented MiniVoice webhook as (event name, call); EventError names the field.

    ``call.created`` and ``call.answered`` give a live call with its creation or
    answer time; the final events a final call with its end time. The event's
    own ``created_at`` is the time of what it reports.
    """
    payload = _decode(payload)
    event = payload.get("event")
    if not isinstance(event, str) or event not in WEBHOOK_EVENTS:
        raise EventError(f"event: unsupported {brief(event)}")
    call = payload.get("call")
    if not isinstance(call, dict):
        raise EventError("call.id: missing")
    status = _event_status(event, call.get("status"))
    final = event in FINAL_EVENTS
    try:
        info = parse_call({**call, "variables": payload.get("variables")}, billing=final)
    except ValueError as exc:
        raise EventError(f"call.{exc}") from None
    # A billsec of another type is ignored (the call is read back for it); a
    # whole number that no call can have is refused.
    if info.billsec is not None and billsec_refusal(info.billsec):
        raise EventError(f"call.billsec_seconds: {billsec_refusal(info.billsec)}")
    currency = call.get("cost_currency")
    if final and currency is not None and currency_refusal(currency):
        raise EventError(f"call.cost_currency: {currency_refusal(currency)}")
    at_ms = _time_ms(payload.get("created_at"))
    times: dict[str, int | None] = {}
    if event in CREATION_EVENTS:
        times["created_at_ms"] = at_ms if at_ms is not None else info.created_at_ms
    elif event in ANSWER_EVENTS:
        times["answered_at_ms"] = at_ms if at_ms is not None else info.answered_at_ms
    else:
        times["ended_at_ms"] = at_ms if at_ms is not None else info.ended_at_ms
    return event, CallInfo(
        call_id=info.call_id,
        status=status,
        direction=info.direction,
        to=info.to,
        billsec=info.billsec,
        cost_micros=info.cost_micros,
        cost_currency=info.cost_currency,
        variables=info.variables,
        caller_id=info.caller_id,
        attempt_id=_attempt_id(call, payload),
        created_at_ms=times.get("created_at_ms", info.created_at_ms),
        answered_at_ms=times.get("answered_at_ms", info.answered_at_ms),
        ended_at_ms=times.get("ended_at_ms", info.ended_at_ms),
    )


def event_key(payload: Any) -> str | None:
    """The delivery's ``data.event_key`` (``call_123:call.created``): one key per
    event, the same on every retry of it; None where the event carries none."""
    data = payload.get("data") if isinstance(payload, dict) else None
    key = data.get("event_key") if isinstance(data, dict) else None
    if isinstance(key, str) and 0 < len(key) <= _MAX_EVENT_KEY and key.isprintable():
        return key
    return None


# --- webhook signatures (webhooks/signatures) -------------------------------------


def sign_webhook(secret: str, timestamp: str, body: bytes) -> str:
    """The ``X-MiniVoice-Signature`` value for a timestamp header and a raw body."""
    mac = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return f"v1={mac.hexdigest()}"


def _header(headers: Mapping[str, str], name: str) -> str | None:
    value = headers.get(name)
    if value is None:
        wanted = name.lower()
        value = next((v for k, v in headers.items() if k.lower() == wanted), None)
    return value


def _timestamp_seconds(text: str) -> float | None:
    """The documentation does not say the timestamp's format: Unix seconds (or
    milliseconds, 13 digits and more) or RFC 3339 are read; anything else fails."""
    if text.isascii() and text.isdigit() and len(text) <= 16:
        value = int(text)
        return value / 1000 if len(text) >= 13 else float(value)
    at_ms = _time_ms(text)
    return None if at_ms is None else at_ms / 1000


def verify_webhook(
    headers: Mapping[str, str], body: bytes, secret: str, *, now: float, tolerance_seconds: int
) -> str | None:
    """Why a delivery's signature fails, or None when it holds.

    The MAC covers the timestamp header's text as sent, so checking its age
    stops a captured delivery from being replayed later. Several ``v1=``
    values (comma or space separated) are allowed for secret rotation.
    """
    stamp = _header(headers, TIMESTAMP_HEADER)
    given = _header(headers, SIGNATURE_HEADER)
    if not stamp or not given:
        return "missing signature"
    stamp = stamp.strip()
    if len(stamp) > 64:
        return "garbled signature"
    seconds = _timestamp_seconds(stamp)
    candidates = [
        part[3:].strip().lower().encode("utf-8", "replace")
        for part in given.replace(",", " ").split()
        if part.startswith("v1=")
    ]
    if seconds is None or not candidates:
        return "garbled signature"
    if abs(now - seconds) > tolerance_seconds:
        return "timestamp outside tolerance"
    wanted = sign_webhook(secret, stamp, body)[3:].encode()
    # Compare against every candidate, so timing says nothing about which one matched.
    matched = False
    for candidate in candidates:
        matched |= hmac.compare_digest(wanted, candidate)
    return None if matched else "signature mismatch"


# --- the adapter --------------------------------------------------------------------


def _created(status: int, payload: Any) -> CallInfo:
    """A create answer: its ``id`` is all that must be usable (issue 18: a call ID
    is never thrown away because another field does not parse). A create answer
    carries no billing; nothing else in it is refused."""
    try:
        return parse_call(payload, billing=False)
    except ValueError as exc:
        raise ProviderError(status, "invalid_response", f"call object: {exc}") from None


class MiniVoice:
    dialect = "minivoice"
    capabilities = Capabilities(
        idempotency_keys=False,
        lookup=False,
        creation_events=True,
        hangup=False,
        per_call_cost=False,
    )
    final_events = FINAL_EVENTS
    creation_events = CREATION_EVENTS

    @staticmethod
    def parse_event(payload: Any) -> tuple[str, CallInfo]:
        return parse_call_event(payload)

    def __init__(
        self,
        base_url: str,
        api_key: SecretStr,
        *,
        timeout: float = 10.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self._client = provider_client(
            base_url=base_url.rstrip("/"),
            headers={"Authorization": f"Bearer {api_key.get_secret_value()}"},
            timeout=timeout,
            transport=transport,
        )

    def build_create(self, request: CreateRequest) -> str:
        """``{"from", "to", "metadata", "record"}`` (calls/outbound-calls).

        ``metadata`` carries our campaign, attempt and contact reference, kept
        small (examples/outbound-campaign). The contact's own variables are not
        sent: MiniVoice call variables are set by answer_url actions, not at
        creation (calls/call-variables). ``record`` only when the spec asks.
        """
        body: dict[str, Any] = {
            "from": request.caller_id,
            "to": request.to,
            "metadata": {
                "campaign_id": request.campaign_id,
                "attempt_id": request.attempt_id,
                "contact_ref": request.contact_ref,
            },
        }
        if request.call.get("record") is True:
            body["record"] = True
        return json.dumps(body, separators=(",", ":"))

    async def create_call(self, body: str, idempotency_key: str) -> CallInfo:
        # MiniVoice documents no Idempotency-Key. The header is sent anyway as a
        # label (our attempt ID in the provider's and any proxy's request logs);
        # the engine never re-sends on its strength (capabilities.idempotency_keys).
        headers = {"Content-Type": "application/json", "Idempotency-Key": idempotency_key}
        status, payload = await answer(
            self._client, "POST", "/v1/calls", content=body.encode(), headers=headers
        )
        return _created(status, payload)

    async def get_call(self, call_id: str) -> CallInfo:
        status, payload = await answer(self._client, "GET", f"/v1/calls/{call_id}")
        try:
            return parse_call(payload)
        except ValueError as exc:
            raise ProviderError(status, "invalid_response", f"call object: {exc}") from None

    async def find_calls(self, sent: SentCreate) -> list[CallInfo]:
        raise NotImplementedError(
            "MiniVoice documents no call listing or search (capabilities.lookup is False)"
        )

    async def hang_up(self, call_id: str) -> None:
        raise NotImplementedError(
            "MiniVoice documents no hang-up endpoint (capabilities.hangup is False)"
        )

    async def usage(self, start: datetime, end: datetime) -> Usage:
        params = {"from": _rfc3339(start), "to": _rfc3339(end)}
        status, payload = await answer(self._client, "GET", "/v1/usage", params=params)
        try:
            summary = payload["summary"]
            return Usage(
                start=str(payload.get("from", params["from"])),
                end=str(payload.get("to", params["to"])),
                calls=int(summary["calls"]),
                billsec=int(summary["billsec_seconds"]),
                cost_micros=amount_to_micros(summary["cost_amount"]),
                currency=str(summary["cost_currency"]),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ProviderError(status, "invalid_response", f"usage: {exc}") from None

    async def balance(self) -> Balance | None:
        return None

    async def aclose(self) -> None:
        await self._client.aclose()
