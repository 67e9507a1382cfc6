"""VoIPBIN dialect, as the platform is (voipbin/monorepo at 2bf22fa4e).

Sources, so each rule here can be checked against them:

- auth: ``bin-api-manager/lib/middleware/authenticate.go``: an access key only as
  ``?accesskey=`` (or its cookie); a login JWT as ``?token=``, its cookie or
  ``Authorization: Bearer``;
- create, list, hang up: ``bin-api-manager/server/calls.go``: ``POST /calls``
  answers ``200 {"calls": [...], "groupcalls": [...]}``; ``GET /calls`` pages
  newest first by ``tm_create`` (``page_size`` at most 100, ``page_token`` the
  last row's ``tm_create``); ``POST /calls/{id}/hangup``;
- the call: ``bin-call-manager/models/call/`` (statuses, hangup reasons, times;
  no duration, no cost, no variables);
- errors: ``bin-api-manager/lib/apierror/``: ``{"error": {"status", "reason",
  "message", "request_id", "details"?}}``;
- the per-call ledger: ``bin-billing-manager/models/billing/`` (``GET /billings``);
- webhooks: ``bin-webhook-manager/pkg/webhookhandler/message.go``: ``{"type",
  "data"}`` signed ``X-VoIPBIN-Signature: sha256=<hex HMAC-SHA256(secret, body)>``.

VoIPBIN ignores ``Idempotency-Key``: an ambiguous create is resolved by listing
the account's calls (:meth:`VoIPBIN.find_calls`), never by sending it again.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import uuid
from collections.abc import Mapping
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any, Literal

import httpx
from pydantic import SecretStr

from campaigns.domain.errors import ProviderError
from campaigns.domain.inputs import SpecError
from campaigns.domain.money import MAX_MICROS
from campaigns.providers._http import provider_client, request
from campaigns.providers.base import (
    Balance,
    CallInfo,
    Capabilities,
    CreateRequest,
    EventError,
    SentCreate,
    Usage,
    brief,
    call_id_ok,
)

__all__ = [
    "ACCOUNT_EVENT",
    "ACTION_TYPES",
    "AUTH_MODES",
    "FINAL_EVENTS",
    "SIGNATURE_HEADER",
    "VoIPBIN",
    "check_call",
    "event_call_id",
    "event_name",
    "final_status",
    "parse_account_event",
    "parse_balance",
    "parse_call",
    "parse_call_event",
    "verify_webhook",
]

ACCOUNT_EVENT = "account_updated"
"""The VoIPBIN billing tutorial's balance webhook (``event_type``). The platform publishes it only on
its internal queue (billing-manager ``PublishEvent``), so it is accepted but not
counted on: the balance is read from ``/billing_account``."""
FINAL_EVENTS = frozenset({"call_hangup"})
"""The call events that carry a final call (call-manager ``EventTypeCallHangup``);
``call_created``, ``call_ringing``, ``call_progressing`` and the rest change nothing
the dispatcher books."""
SIGNATURE_HEADER = "X-VoIPBIN-Signature"

AuthMode = Literal["accesskey", "token", "bearer"]
AUTH_MODES: tuple[AuthMode, ...] = ("accesskey", "token", "bearer")
"""``DISPATCHER_PROVIDER_AUTH`` for VoIPBIN: an access key as ``?accesskey=``
(the default: the only place authenticate.go reads one besides a cookie); a
login JWT as ``?token=`` or as ``Authorization: Bearer`` (kept out of the URL)."""

SETTLE_SECONDS = 10.0
"""How long after a create request its call may take to show in ``GET /calls``.
The call row is written (``tm_create``) by the call manager before the create
request is answered, so a call appears as soon as it exists; 10 s covers the
RPC hops and the database's replica lag."""
CLOCK_SKEW_MS = 10_000
"""How far VoIPBIN's ``tm_create`` may be from our clock (both NTP-synced)."""
PAGE_SIZE = 100
"""``GET /calls`` and ``GET /billings`` return at most 100 rows (calls.go, billings.go)."""
PAGE_ANSWER_BYTES = 1024 * 1024
"""The most a page of ``GET /calls`` or ``GET /billings`` may weigh. A call row is
about 1 KB (more with its action and chained calls), so 100 of them are past the
64 KiB every other answer is held to: with that limit, every lookup failed once
the account had about 90 calls, and each ambiguous create ended in doubt (found by
the VoIPBIN chaos test). Still bounded: 100 rows of up to 10 KB."""
MAX_LOOKUP_PAGES = 50
"""5,000 calls back from now: a window needing more is reported as a failed
lookup (never as "no call"), so the attempt is looked up again or left in doubt."""
MAX_LEDGER_PAGES = 5
"""A call's ledger row is looked for among the 500 newest: beyond, the rate model books it."""
MAX_LEDGER_CACHE = 10_000
CURRENCY = "USD"
"""VoIPBIN's ledger is in micros of US dollars (billing cost_type.go: 1 dollar =
1,000,000 micros)."""

# VoIPBIN variables (bin-api-manager/server/variables.go): strings only, at most
# 100 keys, 32 KB per value, 64 KB in all; keys starting with "voipbin." are dropped.
MAX_VARIABLES = 100
MAX_VARIABLE_BYTES = 32 * 1024
MAX_VARIABLES_BYTES = 64 * 1024

ACTION_TYPES = frozenset(
    {
        "ai_talk", "ai_summary", "amd", "answer", "beep", "branch", "call",
        "condition_call_digits", "condition_call_status", "condition_datetime",
        "condition_variable", "confbridge_join", "conference_join", "connect",
        "conversation_send", "digits_receive", "digits_send", "echo", "email_send",
        "external_media_start", "external_media_stop", "fetch", "fetch_flow", "goto",
        "hangup", "message_send", "mute", "play", "queue_join", "recording_start",
        "recording_stop", "sleep", "stop", "stream_echo", "talk", "transcribe_start",
        "transcribe_stop", "transcribe_recording", "variable_set", "webhook_send",
    }
)  # fmt: skip
"""``FlowManagerActionType`` of the published OpenAPI; the flow manager refuses any
other type (``400 INVALID_ACTION_TYPE``) and with it the whole create."""

# Live statuses in the dispatcher's words; a hung-up call's outcome is its hangup reason.
_LIVE = {"dialing": "queued", "ringing": "ringing", "canceling": "ringing"}
_BEFORE_ANSWER = {
    "failed": "failed",
    "busy": "busy",
    "cancel": "canceled",
    "noanswer": "no_answer",
    "dialout": "no_answer",
}
"""Reasons the call model documents as before answer (models/call/call.go):
``cancel`` cancelled by us, ``dialout`` our dialling timeout. Never ``completed``."""
_ANSWERED = frozenset({"normal", "timeout", "amd"})
"""``timeout``: the maximum duration reached after answer; ``amd``: the answering
machine detection action hung up an answered call. Both talked and were billed."""


def final_status(reason: str, answered: bool) -> str:
    """The dispatcher's final status of a hung-up VoIPBIN call.

    ``normal`` before answer (the far end cleared while ringing) is
    ``no_answer``: nothing was said or billed. A reason this module does not
    know is ``completed`` only if the call was answered, else ``failed``.
    """
    if reason in _BEFORE_ANSWER:
        return _BEFORE_ANSWER[reason]
    if reason in _ANSWERED:
        return "completed" if answered else "no_answer"
    return "completed" if answered else "failed"


_FRACTION = re.compile(r"(\.\d{1,6})\d*")


def _time_ms(value: object) -> int | None:
    """A VoIPBIN time (Go ``time.Time``: RFC 3339, up to nanoseconds; older
    answers ``2020-04-18 03:22:17.995000``, UTC) in epoch ms; None when absent,
    unreadable or the legacy "never" (year 9999)."""
    if not isinstance(value, str) or not 0 < len(value) <= 64:
        return None
    text = _FRACTION.sub(r"\1", value.strip().replace(" ", "T", 1))
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return None
    if moment.year >= 9999:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp() * 1000)


def _target(address: object) -> str:
    if isinstance(address, dict) and isinstance(address.get("target"), str):
        return str(address["target"])
    return ""


def parse_call(payload: Any) -> CallInfo:
    """A VoIPBIN call object (``CallManagerCall``) as a CallInfo.

    Only ``id`` must be usable (a printable string): every other field that is
    missing or malformed is left empty, so a placed call's ID is never thrown
    away for a field the dispatcher can do without. Raises ValueError on the ID.
    """
    if not isinstance(payload, dict):
        raise ValueError("call: expected an object")
    call_id = payload.get("id")
    if not isinstance(call_id, str) or not call_id_ok(call_id):
        raise ValueError(f"id: not a call ID: {brief(call_id)}")
    raw_status = payload.get("status")
    status = raw_status if isinstance(raw_status, str) else ""
    answered_ms = _time_ms(payload.get("tm_progressing"))
    ended_ms = _time_ms(payload.get("tm_hangup"))
    billsec: int | None = None
    if status == "hangup":
        reason = payload.get("hangup_reason")
        status = final_status(reason if isinstance(reason, str) else "", answered_ms is not None)
        if answered_ms is None:
            billsec = 0
        elif ended_ms is not None and ended_ms >= answered_ms:
            # As the billing manager counts usage_duration: whole seconds, truncated.
            billsec = (ended_ms - answered_ms) // 1000
    elif status == "progressing" or (status == "terminating" and answered_ms is not None):
        status = "in_progress"
    elif status == "terminating":
        status = "ringing"
    else:
        status = _LIVE.get(status, status)
    direction = payload.get("direction")
    return CallInfo(
        call_id=call_id,
        status=status,
        direction="outbound" if direction in (None, "outgoing") else str(direction)[:32],
        to=_target(payload.get("destination")),
        billsec=billsec,
        caller_id=_target(payload.get("source")),
        created_at_ms=_time_ms(payload.get("tm_create")),
        answered_at_ms=answered_ms,
        ended_at_ms=ended_ms,
    )


def _created(payload: Any, to: str | None) -> CallInfo:
    """The call of a create answer: ``{"calls": [...], "groupcalls": [...]}`` (the
    platform), or a call object or a list of them (seed tutorials).

    One destination is sent per request, so the call to ``to`` is ours (the
    first usable one when none names it).
    """
    calls: Any = payload
    if isinstance(payload, dict) and "calls" in payload:
        calls = payload["calls"]
    if not isinstance(calls, list):
        calls = [calls]
    usable: list[CallInfo] = []
    for item in calls:
        try:
            usable.append(parse_call(item))
        except ValueError:
            continue
    for call in usable:
        if to is not None and call.to == to:
            return call
    if usable:
        return usable[0]
    raise ProviderError(200, "invalid_response", "create answer: no call with a usable id")


def _whole(payload: dict[str, Any], name: str, low: int) -> int:
    value = payload.get(name)
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= MAX_MICROS:
        raise ValueError(f"{name}: expected a whole number {low}..{MAX_MICROS}, got {brief(value)}")
    return value


def parse_balance(payload: Any) -> Balance:
    """``balance_credit`` (int64 micros) and ``balance_token`` (int) of a billing
    account or an ``account_updated`` event's ``data``; never through a float."""
    if not isinstance(payload, dict):
        raise ValueError("expected an object")
    # A credit balance may be overdrawn; a token count may not.
    credit = _whole(payload, "balance_credit", -MAX_MICROS)
    return Balance(credit, _whole(payload, "balance_token", 0))


def _timestamp_ms(value: object) -> int:
    if not isinstance(value, str) or not 0 < len(value) <= 64 or "T" not in value.upper():
        raise EventError("timestamp: expected an RFC 3339 time such as 2024-01-15T10:30:00Z")
    try:
        parsed = datetime.fromisoformat(value.upper().replace("Z", "+00:00"))
    except ValueError:
        parsed = None
    if parsed is None or parsed.tzinfo is None:
        raise EventError("timestamp: expected an RFC 3339 time with an offset")
    return int(parsed.timestamp() * 1000)


def parse_account_event(payload: Any) -> tuple[int, Balance]:
    """An ``account_updated`` delivery (the VoIPBIN billing tutorial) as (its time in ms, the balance it reports).

    Raises :class:`EventError` naming the field.
    """
    if not isinstance(payload, dict):
        raise EventError("payload: expected a JSON object")
    if payload.get("event_type") != ACCOUNT_EVENT:
        raise EventError(f"event_type: expected {ACCOUNT_EVENT!r}")
    at_ms = _timestamp_ms(payload.get("timestamp"))
    data = payload.get("data")
    if not isinstance(data, dict):
        raise EventError("data: expected an object")
    try:
        return at_ms, parse_balance(data)
    except ValueError as exc:
        raise EventError(f"data.{exc}") from None


# -- webhooks -----------------------------------------------------------------


def verify_webhook(
    headers: Mapping[str, str], body: bytes, secret: str, *, now: float, tolerance_seconds: int
) -> str | None:
    """Check ``X-VoIPBIN-Signature: sha256=<hex>`` against the raw body; why it
    fails, or None.

    VoIPBIN signs the body alone (message.go ``computeSignature``): there is no
    timestamp, so ``now`` and ``tolerance`` cannot bound a replay. A replayed
    delivery is harmless here: its job ID is the body's hash, and a settled
    call is not settled twice.
    """
    del now, tolerance_seconds
    header = next((v for k, v in headers.items() if k.lower() == SIGNATURE_HEADER.lower()), None)
    if not header:
        return "missing signature"
    scheme, sep, given = header.strip().partition("=")
    if not sep or scheme.strip().lower() != "sha256" or not given.strip():
        return "garbled signature"
    wanted = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest().encode()
    if hmac.compare_digest(wanted, given.strip().lower().encode("utf-8", "replace")):
        return None
    return "signature mismatch"


def event_name(payload: Any) -> str | None:
    """The event a delivery carries: ``type`` (the platform), or ``event_type``
    (the VoIPBIN billing tutorial's ``account_updated``)."""
    if not isinstance(payload, dict):
        return None
    name = payload.get("type", payload.get("event_type"))
    return name if isinstance(name, str) and name else None


def event_call_id(payload: Any) -> str | None:
    """The call a ``call_*`` delivery is about (``data.id``), for its job ID."""
    data = payload.get("data") if isinstance(payload, dict) else None
    call_id = data.get("id") if isinstance(data, dict) else None
    return call_id if isinstance(call_id, str) and call_id_ok(call_id) else None


def parse_call_event(payload: Any) -> tuple[str, CallInfo]:
    """A ``call_hangup`` webhook (``{"type", "data": call}``) as (event, final call).

    Raises :class:`EventError` naming the field.
    """
    if isinstance(payload, str | bytes):
        try:
            payload = json.loads(payload)
        except (ValueError, RecursionError):
            raise EventError("not JSON") from None
    if not isinstance(payload, dict):
        raise EventError("event must be a JSON object")
    event = payload.get("type")
    if not isinstance(event, str) or event not in FINAL_EVENTS:
        raise EventError(f"type: unsupported {brief(event)}")
    data = payload.get("data")
    if not isinstance(data, dict):
        raise EventError("data: expected the call object")
    try:
        call = parse_call(data)
    except ValueError as exc:
        raise EventError(f"data.{exc}") from None
    if data.get("status") != "hangup":
        raise EventError(f"data.status: {brief(data.get('status'))} is not final")
    return event, call


# -- the spec's call section --------------------------------------------------


def check_call(call: Mapping[str, Any]) -> None:
    """What a VoIPBIN call does once answered: ``call.flow_id`` (a flow's UUID) or
    ``call.actions`` (an inline flow), exactly one. Without either VoIPBIN builds
    an empty flow and hangs up every answered call; with both it ignores
    ``actions``. Raises SpecError naming the field.
    """
    flow_id, actions = call.get("flow_id"), call.get("actions")
    if call.get("record"):
        raise SpecError("call.record", "VoIPBIN records with a recording_start action")
    if call.get("agent_id") is not None:
        raise SpecError("call.agent_id", "VoIPBIN has no agent_id; use call.flow_id")
    if flow_id is None and not actions:
        raise SpecError(
            "call.flow_id",
            "VoIPBIN needs call.flow_id (a flow's UUID) or call.actions: without them "
            "VoIPBIN hangs up every call the moment it is answered",
        )
    if flow_id is not None and actions:
        raise SpecError("call.actions", "give call.flow_id or call.actions, not both")
    if flow_id is not None:
        try:
            uuid.UUID(str(flow_id))
        except ValueError:
            # VoIPBIN reads a malformed flow_id as none at all (uuid.FromStringOrNil).
            raise SpecError("call.flow_id", "must be a flow's UUID") from None
    for number, action in enumerate(actions or []):
        field = f"call.actions[{number}]"
        if not isinstance(action, dict):
            raise SpecError(field, "must be an object")
        kind = action.get("type")
        if not isinstance(kind, str) or kind not in ACTION_TYPES:
            raise SpecError(f"{field}.type", f"not a VoIPBIN action type: {brief(kind)}")
        if "option" in action and not isinstance(action["option"], dict):
            raise SpecError(f"{field}.option", "must be an object")
        for name in ("id", "next_id"):
            if name in action:
                try:
                    uuid.UUID(str(action[name]))
                except ValueError:
                    raise SpecError(f"{field}.{name}", "must be a UUID") from None


def _variables(request: CreateRequest) -> dict[str, str]:
    """Our IDs, then the contact's variables, as the strings VoIPBIN takes, within
    its limits (a create beyond them is a ``400 INVALID_VARIABLES`` for the whole call).

    Our IDs come first and win over a contact variable of the same name; a
    contact variable that would pass a limit is left out (the call still goes,
    with our IDs), as are ``voipbin.*`` keys, which VoIPBIN drops anyway.
    """
    out = {
        "campaign_id": request.campaign_id,
        "attempt_id": request.attempt_id,
        "contact_ref": request.contact_ref,
    }
    total = sum(len(k.encode()) + len(v.encode()) for k, v in out.items())
    for key, value in request.variables.items():
        if not key or key in out or key.startswith("voipbin.") or value is None:
            continue
        text = value if isinstance(value, str) else json.dumps(value)
        size = len(key.encode()) + len(text.encode())
        if len(out) >= MAX_VARIABLES or len(text.encode()) > MAX_VARIABLE_BYTES:
            continue
        if total + size > MAX_VARIABLES_BYTES:
            continue
        out[key] = text
        total += size
    return out


# -- the ledger ---------------------------------------------------------------


def _ledger_cost(row: dict[str, Any]) -> tuple[int, int] | None:
    """(cost micros, billed seconds) of a settled ``reference_type: call`` record,
    or None while it is open (``status: progressing``) or unreadable.

    ``amount_credit`` is the signed ledger delta (usage is negative) in micros;
    tokens spent (``amount_token``) cost no money.
    """
    if row.get("status") not in ("end", "finished"):
        return None
    amount, seconds = row.get("amount_credit"), row.get("usage_duration")
    if isinstance(amount, bool) or not isinstance(amount, int) or not -MAX_MICROS <= amount <= 0:
        return None
    if isinstance(seconds, bool) or not isinstance(seconds, int) or seconds < 0:
        return None
    return -amount, seconds


class VoIPBIN:
    dialect = "voipbin"
    capabilities = Capabilities(
        idempotency_keys=False,
        lookup=True,
        creation_events=False,
        hangup=True,
        lookup_settle_seconds=SETTLE_SECONDS,
        per_call_cost=True,
    )
    final_events: frozenset[str] = FINAL_EVENTS
    creation_events: frozenset[str] = frozenset()
    """``call_created`` exists but is sent to the customer's one webhook URI
    without our IDs; listing resolves an ambiguous create instead."""
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
        auth: AuthMode = "accesskey",
    ) -> None:
        key = api_key.get_secret_value()
        options: dict[str, Any] = (
            {"headers": {"Authorization": f"Bearer {key}"}}
            if auth == "bearer"
            else {"params": {auth: key}}
        )
        self._timeout = timeout
        self._client = provider_client(
            base_url=base_url.rstrip("/"), timeout=timeout, transport=transport, **options
        )
        self._ledger: dict[str, tuple[int, int]] = {}
        self._ledger_refused = False
        """Settled ledger rows seen while paging, by call ID (a call settles once)."""

    def build_create(self, request: CreateRequest) -> str:
        body: dict[str, Any] = {
            "source": {"type": "tel", "target": request.caller_id},
            "destinations": [{"type": "tel", "target": request.to}],
        }
        if request.call.get("flow_id") is not None:
            body["flow_id"] = request.call["flow_id"]
        elif request.call.get("actions"):
            body["actions"] = request.call["actions"]
        body["variables"] = _variables(request)
        return json.dumps(body, separators=(",", ":"))

    async def create_call(self, body: str, idempotency_key: str) -> CallInfo:
        # No Idempotency-Key: VoIPBIN ignores it (capabilities.idempotency_keys).
        payload = await request(
            self._client,
            "POST",
            "/calls",
            content=body.encode(),
            headers={"Content-Type": "application/json"},
        )
        to = json.loads(body)["destinations"][0]["target"]
        return _created(payload, to)

    async def get_call(self, call_id: str) -> CallInfo:
        """The call; once it is final and was answered, with VoIPBIN's own charge
        from the ledger (cost and billed seconds) when the ledger has settled it."""
        payload = await request(self._client, "GET", f"/calls/{call_id}")
        try:
            call = parse_call(payload)
        except ValueError as exc:
            raise ProviderError(200, "invalid_response", f"call object: {exc}") from None
        if not call.final:
            return call
        if call.answered_at_ms is None:
            # Billing starts at answer (billing-manager EventCMCallProgressing): none.
            return _with_cost(call, 0, 0)
        if self._ledger_refused:
            return call
        try:
            charged = await self._charge(call)
        except ProviderError as exc:
            # The ledger is a refinement: the call is still final. Without it the
            # rate model books the billsec (after settlement's grace for a cost).
            if exc.status in (401, 403):
                # Reading /billings needs the customer-admin permission: ask no more.
                self._ledger_refused = True
            return call
        return call if charged is None else _with_cost(call, *charged)

    async def _charge(self, call: CallInfo) -> tuple[int, int] | None:
        """The ledger's settled row for this call, paging back to its answer time."""
        if call.call_id in self._ledger:
            return self._ledger[call.call_id]
        floor = (call.answered_at_ms or 0) - CLOCK_SKEW_MS
        token: str | None = None
        for _ in range(MAX_LEDGER_PAGES):
            rows, token, oldest = await self._page("/billings", token)
            if len(self._ledger) > MAX_LEDGER_CACHE:
                self._ledger.clear()  # a cache: what is dropped is read again when needed
            for row in rows:
                if row.get("reference_type") == "call" and isinstance(row.get("reference_id"), str):
                    cost = _ledger_cost(row)
                    if cost is not None:
                        self._ledger[row["reference_id"]] = cost
            if call.call_id in self._ledger:
                return self._ledger[call.call_id]
            if not token or not rows or (oldest is not None and oldest < floor):
                break
        return None

    async def _page(
        self, path: str, token: str | None
    ) -> tuple[list[dict[str, Any]], str | None, int | None]:
        """One page of a VoIPBIN list: its rows, the next token, the oldest ``tm_create``."""
        params: dict[str, Any] = {"page_size": PAGE_SIZE}
        if token:
            params["page_token"] = token
        payload = await request(self._client, "GET", path, params=params, limit=PAGE_ANSWER_BYTES)
        rows = payload.get("result") if isinstance(payload, dict) else None
        if not isinstance(rows, list):
            raise ProviderError(200, "invalid_response", f"{path}: no result list")
        following = payload.get("next_page_token")
        times = [t for row in rows if (t := _time_ms(_get(row, "tm_create"))) is not None]
        return (
            [row for row in rows if isinstance(row, dict)],
            following if isinstance(following, str) and following else None,
            min(times) if times else None,
        )

    async def find_calls(self, sent: SentCreate) -> list[CallInfo]:
        """Outgoing calls to ``sent.to`` created in [first send - skew, last send +
        timeout + settle], newest first.

        Matched on the destination, not the source: VoIPBIN replaces a source the
        customer does not own with its default outgoing number, and a lookup that
        missed a placed call would let it be dialled again; a second call to the
        same number in the window makes the answer "several" (an operator
        decides). Raises ProviderError when the window could not be read whole.
        """
        low = sent.first_sent_ms - CLOCK_SKEW_MS
        high = sent.last_sent_ms + int((self._timeout + SETTLE_SECONDS) * 1000) + CLOCK_SKEW_MS
        found: list[CallInfo] = []
        token: str | None = None
        for _ in range(MAX_LOOKUP_PAGES):
            rows, token, oldest = await self._page("/calls", token)
            for row in rows:
                try:
                    call = parse_call(row)
                except ValueError:
                    continue
                created = call.created_at_ms
                if created is None or not low <= created <= high:
                    continue
                if call.to == sent.to and call.direction == "outbound":
                    found.append(call)
            if not token or not rows or (oldest is not None and oldest < low):
                return found
        raise ProviderError(
            None, "lookup_incomplete", f"more than {MAX_LOOKUP_PAGES} pages of calls to search"
        )

    async def hang_up(self, call_id: str) -> None:
        """``POST /calls/{id}/hangup``; a call that has already ended is no error."""
        try:
            await request(self._client, "POST", f"/calls/{call_id}/hangup")
        except ProviderError as exc:
            if exc.status not in (404, 409):
                raise

    async def usage(self, start: datetime, end: datetime) -> Usage | None:
        return None

    async def balance(self) -> Balance | None:
        payload = await request(self._client, "GET", "/billing_account")
        try:
            return parse_balance(payload)
        except ValueError as exc:
            raise ProviderError(200, "invalid_response", f"billing_account: {exc}") from None

    async def aclose(self) -> None:
        await self._client.aclose()


def _get(row: Any, name: str) -> Any:
    return row.get(name) if isinstance(row, dict) else None


def _with_cost(call: CallInfo, cost_micros: int, billsec: int) -> CallInfo:
    return replace(call, billsec=billsec, cost_micros=cost_micros, cost_currency=CURRENCY)
