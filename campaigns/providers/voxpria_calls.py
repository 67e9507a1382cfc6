"""Voxpria calls dialect, as voxpria.com's Calls API and Webhooks API pages state it.

Bearer API key; ``POST /calls`` with ``{"agentId", "toNumber", "variables"}``
answers ``{"success": true, "data": {"callId", "status": "queued", ...}}``;
``GET /calls/:id`` (``status``, ``duration``, ``startedAt``, ``completedAt``,
``outcome``); ``GET /calls?page=&limit=``; webhooks ``call.started``,
``call.completed``, ``call.failed`` signed ``X-VoxPria-Signature:
sha256=<hex>``; at most 100 calls triggered a minute and 1,000 API requests an
hour, a 429 carrying ``X-RateLimit-*``. Voxpria documents no idempotency key:
an ambiguous create is resolved by listing the account's calls
(:meth:`VoxpriaCalls.find_calls`), never by sending it again. The credits
(the account's balance) are ``voxpria.py``, a balance source for any dialect.
Every fact used here, its page, and what is assumed where the pages are
silent: docs/providers.md#voxpria-calls.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import math
from collections.abc import Mapping
from dataclasses import replace
from datetime import datetime
from typing import Any
from urllib.parse import quote

import httpx
from pydantic import SecretStr

from campaigns.domain.errors import ProviderError
from campaigns.domain.inputs import SpecError
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
)
from campaigns.providers.voxpria import envelope_data
from campaigns.settings import VOXPRIA_CALLS_PER_MINUTE

__all__ = [
    "CALLS_PER_MINUTE",
    "DEFAULT_CALLS_PER_SECOND",
    "FINAL_EVENTS",
    "REQUESTS_PER_HOUR",
    "SIGNATURE_HEADER",
    "WEBHOOK_EVENTS",
    "VoxpriaCalls",
    "check_call",
    "event_call_id",
    "map_status",
    "parse_call",
    "parse_call_event",
    "sign_webhook",
    "verify_webhook",
]

CALLS_PER_MINUTE = VOXPRIA_CALLS_PER_MINUTE
"""Voxpria's limit on calls triggered per minute (its API rate limits)."""
REQUESTS_PER_HOUR = 1000
"""Voxpria's limit on API requests per hour, reads included (its API rate limits)."""
DEFAULT_CALLS_PER_SECOND = CALLS_PER_MINUTE / 60
"""``DISPATCHER_PROVIDER_CALLS_PER_SECOND`` when unset with this dialect."""

FINAL_EVENTS = frozenset({"call.completed", "call.failed"})
"""The Webhooks API page's call events that end a call; ``call.started`` ("call
begins") changes nothing the dispatcher books and is acknowledged and dropped."""
WEBHOOK_EVENTS = FINAL_EVENTS
SIGNATURE_HEADER = "X-VoxPria-Signature"
"""The Webhooks API page: ``sha256=`` + hex HMAC-SHA256(secret, the JSON payload)."""

SETTLE_SECONDS = 10.0
"""How long after a create request its call may take to show in ``GET /calls``
(not documented: the create answer already names the call, so it exists by
then; 10 s covers a replica's lag, as for VoIPBIN)."""
CLOCK_SKEW_MS = 10_000
"""How far Voxpria's ``createdAt`` may be from our clock."""
PAGE_LIMIT = 100
"""Rows asked per page of ``GET /calls`` (the page shows ``limit=50``; no maximum is stated)."""
PAGE_ANSWER_BYTES = 1024 * 1024
"""The most a page of ``GET /calls`` may weigh (a row carries a transcript URL and
more: 100 rows are past the 64 KiB every other answer is held to)."""
MAX_LOOKUP_PAGES = 20
"""2,000 calls back: each page is one of the 1,000 requests an hour, so a window
needing more is a failed lookup (never "no call"): looked up again, or in doubt."""

_STATUS = {
    "queued": "queued",
    "ringing": "ringing",
    "in_progress": "in_progress",
    "completed": "completed",
    "failed": "failed",
    "no_answer": "no_answer",
    "busy": "busy",
}
"""The Calls API page's seven statuses, which are the dispatcher's own words. Any
other is kept as given and never final: the call is read again later."""
_EVENT_STATUS = {"call.completed": "completed", "call.failed": "failed"}
_ANSWERED = frozenset({"in_progress", "completed"})
_MAX_STATUS = 64


def map_status(status: object) -> str:
    """A Voxpria status in the dispatcher's words; '' when there is none."""
    if not isinstance(status, str):
        return ""
    return _STATUS.get(status.strip().lower(), status[:_MAX_STATUS])


def _time_ms(value: object) -> int | None:
    """An ISO 8601 time with an offset (``2025-02-09T12:00:00Z``) as epoch ms, else None."""
    if not isinstance(value, str) or not 0 < len(value) <= 64 or "T" not in value.upper():
        return None
    try:
        parsed = datetime.fromisoformat(value.upper().replace("Z", "+00:00"))
    except ValueError:
        return None
    if parsed.tzinfo is None:
        return None
    return int(parsed.timestamp() * 1000)


def _text(value: object) -> str:
    return value if isinstance(value, str) else ""


def _attempt_id(variables: object) -> str | None:
    value = variables.get("attempt_id") if isinstance(variables, dict) else None
    return value if isinstance(value, str) and call_id_ok(value) else None


def _billsec(
    status: str, payload: dict[str, Any], started: int | None, ended: int | None
) -> int | None:
    """Billed seconds of a final call: ``duration`` (whole seconds: 127 for
    12:00:00 to 12:02:07 on the Calls API page), else end minus start rounded up
    for an answered call, else 0 for one that never was."""
    if status not in FINAL_STATUSES:
        return None
    duration = payload.get("duration")
    if not billsec_refusal(duration):
        assert isinstance(duration, int)
        return duration
    if status in _ANSWERED and started is not None and ended is not None and ended >= started:
        return math.ceil((ended - started) / 1000)
    return None if status in _ANSWERED else 0


def parse_call(payload: Any) -> CallInfo:
    """A Voxpria call object (create answer, ``GET /calls/:id``, a listing row or a
    webhook's ``data``) as a CallInfo.

    Only the ID must be usable: ``callId`` (the Calls API page), else ``id``
    (the Webhooks guide's payload); every other field that is missing or
    malformed is left empty, so a placed call's ID is never thrown away for a
    field the dispatcher can do without. Raises ValueError naming the field.
    """
    if not isinstance(payload, dict):
        raise ValueError("call: expected an object")
    call_id = payload.get("callId", payload.get("id"))
    if not isinstance(call_id, str) or not call_id_ok(call_id):
        raise ValueError(
            "callId: missing" if call_id is None else f"callId: not a call ID: {brief(call_id)}"
        )
    status = map_status(payload.get("status"))
    started = _time_ms(payload.get("startedAt"))
    ended = _time_ms(payload.get("completedAt"))
    variables = payload.get("variables")
    return CallInfo(
        call_id=call_id,
        status=status,
        to=_text(payload.get("toNumber")) or _text(payload.get("phoneNumber")),
        billsec=_billsec(status, payload, started, ended),
        variables=variables if isinstance(variables, dict) else {},
        attempt_id=_attempt_id(variables),
        created_at_ms=_time_ms(payload.get("createdAt")),
        # startedAt is the answer only for a call that was answered: the Calls API
        # page's duration (127) is completedAt - startedAt of a completed call.
        answered_at_ms=started if status in _ANSWERED else None,
        ended_at_ms=ended if status in FINAL_STATUSES else None,
    )


# -- webhooks -----------------------------------------------------------------


def sign_webhook(secret: str, body: bytes) -> str:
    """The ``X-VoxPria-Signature`` value of a delivery's body."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def _stringified(body: bytes) -> bytes | None:
    """The body as JavaScript's ``JSON.stringify(JSON.parse(body))`` writes it
    (compact, UTF-8 as is), which the Webhooks API page's example signs."""
    try:
        parsed = json.loads(body)
    except (ValueError, RecursionError):
        return None
    return json.dumps(parsed, separators=(",", ":"), ensure_ascii=False).encode()


def verify_webhook(
    headers: Mapping[str, str], body: bytes, secret: str, *, now: float, tolerance_seconds: int
) -> str | None:
    """Check ``X-VoxPria-Signature: sha256=<hex>``; why it fails, or None.

    The Webhooks API page computes the HMAC over ``JSON.stringify(payload)``:
    the raw body when Voxpria sends that string as it signed it, and the
    compact form of the parsed body otherwise, so both are accepted. The
    signature carries no timestamp, so ``now`` and ``tolerance`` bound
    nothing: a replayed delivery becomes the same job (its ID is the body's
    hash) and a settled call is not settled twice. The Webhooks guide's other
    scheme (``X-Webhook-Signature`` with a timestamp) is not stated whole on any
    page and is not accepted.
    """
    del now, tolerance_seconds
    wanted_name = SIGNATURE_HEADER.lower()
    header = next((v for k, v in headers.items() if k.lower() == wanted_name), None)
    if not header:
        return "missing signature"
    scheme, sep, given = header.strip().partition("=")
    if not sep or scheme.strip().lower() != "sha256" or not given.strip():
        return "garbled signature"
    candidate = given.strip().lower().encode("utf-8", "replace")
    matched = hmac.compare_digest(sign_webhook(secret, body)[7:].encode(), candidate)
    compact = _stringified(body)
    if compact is not None and compact != body:
        matched |= hmac.compare_digest(sign_webhook(secret, compact)[7:].encode(), candidate)
    return None if matched else "signature mismatch"


def event_call_id(payload: Any) -> str | None:
    """The call a delivery is about (``data.callId`` or ``data.id``), for its job ID."""
    data = payload.get("data") if isinstance(payload, dict) else None
    call_id = data.get("callId", data.get("id")) if isinstance(data, dict) else None
    return call_id if isinstance(call_id, str) and call_id_ok(call_id) else None


def parse_call_event(payload: Any) -> tuple[str, CallInfo]:
    """A ``call.completed`` / ``call.failed`` delivery (``{"event", "timestamp",
    "data": call}``) as (event, final call); EventError names the field.

    The event decides that the call is over: a final ``data.status`` is kept
    (``call.failed`` with ``no_answer``), a missing or unknown one reads as the
    event's name, a live one is refused (the call is read back instead). The
    event's ``timestamp`` is the end when ``completedAt`` is absent.
    """
    if isinstance(payload, str | bytes):
        try:
            payload = json.loads(payload)
        except (ValueError, RecursionError):
            raise EventError("not JSON") from None
    if not isinstance(payload, dict):
        raise EventError("event must be a JSON object")
    event = payload.get("event")
    if not isinstance(event, str) or event not in FINAL_EVENTS:
        raise EventError(f"event: unsupported {brief(event)}")
    data = payload.get("data")
    if not isinstance(data, dict):
        raise EventError("data: expected the call object")
    given = data.get("status")
    if given is not None and not isinstance(given, str):
        raise EventError(f"data.status: {brief(given)} is not a status")
    mapped = map_status(given)
    if mapped not in FINAL_STATUSES:
        if given is not None and mapped in _STATUS.values():
            raise EventError(f"data.status: {brief(given)} is not final")
        mapped = _EVENT_STATUS[event]
    try:
        call = parse_call({**data, "status": mapped})
    except ValueError as exc:
        raise EventError(f"data.{exc}") from None
    if "duration" in data and billsec_refusal(data["duration"]):
        raise EventError(f"data.duration: {billsec_refusal(data['duration'])}")
    if call.ended_at_ms is None:
        call = replace(call, ended_at_ms=_time_ms(payload.get("timestamp")))
    return event, call


# -- the spec's call section --------------------------------------------------


def check_call(call: Mapping[str, Any]) -> None:
    """A Voxpria call is an agent's (``agentId``, required on the Calls API page):
    ``call.agent_id`` must be given; VoIPBIN's flows and MiniVoice's ``record``
    mean nothing here. Raises SpecError naming the field."""
    if call.get("flow_id") is not None or call.get("actions"):
        field = "call.flow_id" if call.get("flow_id") is not None else "call.actions"
        raise SpecError(field, "Voxpria calls run an agent: use call.agent_id")
    if call.get("record"):
        raise SpecError("call.record", "Voxpria records as the agent is configured")
    agent = call.get("agent_id")
    if not isinstance(agent, str) or not agent.strip():
        raise SpecError(
            "call.agent_id",
            "Voxpria needs the agent that makes the call (agentId): set call.agent_id",
        )


def _variables(request: CreateRequest) -> dict[str, str]:
    """Our IDs, then the contact's variables as strings (the page's example has
    strings only); ours win over a contact variable of the same name; nulls are
    left out."""
    out = {
        "campaign_id": request.campaign_id,
        "attempt_id": request.attempt_id,
        "contact_ref": request.contact_ref,
    }
    for key, value in request.variables.items():
        if key and key not in out and value is not None:
            out[key] = value if isinstance(value, str) else json.dumps(value)
    return out


def _rows(payload: Any) -> list[Any]:
    """The calls of a ``GET /calls`` answer: ``data`` as a list, or ``data.calls``
    (the page shows no answer for the list: both shapes are read)."""
    data = envelope_data(payload, "/calls", failed="lookup_failed")
    if isinstance(data, dict):
        data = data.get("calls", data.get("items"))
    if not isinstance(data, list):
        raise ProviderError(200, "invalid_response", "/calls: no list of calls")
    return data


class VoxpriaCalls:
    dialect = "voxpria"
    capabilities = Capabilities(
        idempotency_keys=False,
        lookup=True,
        creation_events=False,
        hangup=False,
        lookup_settle_seconds=SETTLE_SECONDS,
        per_call_cost=False,
        reports_cost=False,
    )
    final_events: frozenset[str] = FINAL_EVENTS
    creation_events: frozenset[str] = frozenset()
    """``call.started`` carries no request of ours: listing resolves an ambiguous create."""
    check_call = staticmethod(check_call)

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
        self._timeout = timeout
        self._client = provider_client(
            base_url=base_url.rstrip("/"),
            headers={"Authorization": f"Bearer {api_key.get_secret_value()}"},
            timeout=timeout,
            transport=transport,
        )

    def build_create(self, request: CreateRequest) -> str:
        """``{"agentId", "toNumber", "variables"}`` (the Calls API page). Voxpria
        takes no caller ID: the agent's number calls."""
        body = {
            "agentId": request.call.get("agent_id"),
            "toNumber": request.to,
            "variables": _variables(request),
        }
        return json.dumps(body, separators=(",", ":"))

    async def create_call(self, body: str, idempotency_key: str) -> CallInfo:
        # No Idempotency-Key: Voxpria documents none (capabilities.idempotency_keys).
        status, payload = await answer(
            self._client,
            "POST",
            "/calls",
            content=body.encode(),
            headers={"Content-Type": "application/json"},
        )
        data = envelope_data(payload, "/calls", status=status, failed="invalid_response")
        try:
            call = parse_call(data)
        except ValueError as exc:
            raise ProviderError(status, "invalid_response", f"create answer: data.{exc}") from None
        if not call.to:
            call = replace(call, to=json.loads(body)["toNumber"])
        return call

    async def get_call(self, call_id: str) -> CallInfo:
        path = f"/calls/{quote(call_id, safe='')}"
        status, payload = await answer(self._client, "GET", path)
        data = envelope_data(payload, "/calls/:id", status=status, failed="invalid_response")
        try:
            return parse_call(data)
        except ValueError as exc:
            raise ProviderError(status, "invalid_response", f"call object: data.{exc}") from None

    async def find_calls(self, sent: SentCreate) -> list[CallInfo]:
        """Calls to ``sent.to`` created in [first send - skew, last send + timeout +
        settle], matched by our attempt ID where a row echoes ``variables``.

        Paged ``GET /calls?page=&limit=`` until a short page. Its order is not
        documented: newest first is assumed only while the rows' ``createdAt``
        bear it out (then paging stops past the window); otherwise every page is
        read. A row to the number with neither a creation time nor our
        variables cannot be placed in or out of the window: the lookup fails
        (looked up again later, or in doubt), never "no call".
        """
        low = sent.first_sent_ms - CLOCK_SKEW_MS
        high = sent.last_sent_ms + int((self._timeout + SETTLE_SECONDS) * 1000) + CLOCK_SKEW_MS
        found: list[CallInfo] = []
        newest_first = True
        previous: int | None = None
        for page in range(1, MAX_LOOKUP_PAGES + 1):
            params = {"page": str(page), "limit": str(PAGE_LIMIT)}
            _, payload = await answer(
                self._client, "GET", "/calls", params=params, limit=PAGE_ANSWER_BYTES
            )
            rows = _rows(payload)
            oldest: int | None = None
            for row in rows:
                try:
                    call = parse_call(row)
                except ValueError:
                    continue
                created = call.created_at_ms
                if created is not None:
                    if previous is not None and created > previous:
                        newest_first = False
                    previous = created
                    oldest = created if oldest is None else min(oldest, created)
                if call.to != sent.to:
                    continue
                if call.attempt_id is not None:
                    if call.attempt_id == sent.attempt_id:
                        found.append(call)
                    continue
                if created is None:
                    raise ProviderError(
                        None,
                        "lookup_incomplete",
                        f"call {call.call_id} to {sent.to} has no createdAt to place it in time",
                    )
                if low <= created <= high:
                    found.append(call)
            if len(rows) < PAGE_LIMIT:
                return found
            if newest_first and oldest is not None and oldest < low:
                return found
        raise ProviderError(
            None, "lookup_incomplete", f"more than {MAX_LOOKUP_PAGES} pages of calls to search"
        )

    async def hang_up(self, call_id: str) -> None:
        raise NotImplementedError(
            "Voxpria documents no hang-up endpoint (capabilities.hangup is False)"
        )

    async def usage(self, start: datetime, end: datetime) -> Usage | None:
        return None

    async def balance(self) -> Balance | None:
        """Credits are not money: the account gate reads them with
        ``DISPATCHER_BALANCE_SOURCE=voxpria`` (``voxpria.py``)."""
        return None

    async def aclose(self) -> None:
        await self._client.aclose()
