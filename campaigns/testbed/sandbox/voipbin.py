"""VoIPBIN dialect routes (``/v1.0``), shaped after VoIPBIN's published OpenAPI
(voipbin/monorepo ``bin-openapi-manager/openapi``, 2bf22fa4e; the shapes relied on
are copied in ``tests/fixtures/voipbin/``).

What the real platform does and this mode does too: access keys as
``?accesskey=`` (login JWTs as ``?token=`` or Bearer); ``200 {"calls": [...],
"groupcalls": []}`` on create; no idempotency (an ``Idempotency-Key`` is never
sent by the adapter, and nothing here replays one); a per-destination failure
(balance, whitelist, route) is a ``500 INTERNAL``, as the call manager skips the
destination and then has no call to return; the error envelope ``{"error":
{"status", "reason", "message", "request_id"}}``; statuses, hangup reasons and
times instead of durations; ``GET /calls`` paged newest first by ``tm_create``;
``POST /calls/{id}/hangup``; the per-call ledger ``GET /billings``;
``call_hangup`` webhooks signed ``X-VoIPBIN-Signature``.

Shares state, faults and ledger with MiniVoice, so the same scenario can be
replayed against either adapter.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from campaigns.testbed.sandbox.config import SandboxConfig
from campaigns.testbed.sandbox.create import (
    CallRequest,
    Dialect,
    get_state,
    guard,
    handle_create,
)
from campaigns.testbed.sandbox.state import SandboxCall

__all__ = [
    "VOIPBIN",
    "VoipbinDialect",
    "billing_row",
    "hangup_webhook",
    "render_call",
    "sign_voipbin",
    "vb_time",
    "voipbin_routes",
]

NIL = "00000000-0000-0000-0000-000000000000"
"""Go's ``uuid.Nil``: a UUID field is never omitted (``omitempty`` keeps arrays)."""
_NAMESPACE = uuid.UUID("6f1c4e0a-5b1d-4c52-9d59-0b5e1f9a7c11")
_STATUS_NAMES = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    402: "PAYMENT_REQUIRED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    409: "FAILED_PRECONDITION",
    429: "RESOURCE_EXHAUSTED",
    503: "UNAVAILABLE",
}
_PER_DESTINATION = frozenset(
    {
        "insufficient_balance",
        "no_route",
        "blocked_destination",
        "invalid_destination",
        "spend_control_exceeded",
    }
)
"""Refused by the call manager for one destination (outgoing_call.go): logged and
skipped; with no call left, ``all destinations failed``, a 500 INTERNAL."""
_REASONS = {
    "provider_error": "internal",
    "rate_limited": "rate_limit_exceeded",
    "unauthorized": "invalid_credentials",
    "not_found": "resource_not_found",
    "invalid_json": "invalid_json_body",
}
_REASON_PREFIX = re.compile(r"([A-Z][A-Z_]+): (.*)", re.DOTALL)
_ACTION_TYPES = frozenset(
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
_HANGUP_REASON = {
    "completed": "normal",
    "failed": "failed",
    "busy": "busy",
    "no_answer": "noanswer",
    "canceled": "cancel",
}


def vb_time(ts: float) -> str:
    """A Go ``time.Time`` as VoIPBIN writes it: RFC 3339, microseconds, ``Z``
    (also the ``page_token`` format of calls.go)."""
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _uuid(*parts: str) -> str:
    return str(uuid.uuid5(_NAMESPACE, ":".join(parts)))


def _tel(value: object) -> str | None:
    if not isinstance(value, dict) or value.get("type") != "tel":
        return None
    target = value.get("target")
    return target if isinstance(target, str) and target.strip() else None


def _uuid_ok(value: object) -> bool:
    try:
        uuid.UUID(str(value))
    except ValueError:
        return False
    return True


def _check_body(document: dict[str, Any]) -> str | None:
    """What api-manager and flow-manager refuse before any call exists."""
    variables = document.get("variables") or {}
    if not isinstance(variables, dict) or not all(isinstance(v, str) for v in variables.values()):
        # Go binds variables into map[string]string: anything else fails the bind.
        return "INVALID_JSON_BODY: The request body is not valid JSON."
    if len(variables) > 100:
        return "INVALID_VARIABLES: too many variables (max 100)"
    if any(len(v.encode()) > 32 * 1024 for v in variables.values()):
        return "INVALID_VARIABLES: variable value exceeds 32KB"
    if sum(len(k.encode()) + len(v.encode()) for k, v in variables.items()) > 64 * 1024:
        return "INVALID_VARIABLES: variables total size exceeds 64KB"
    actions = document.get("actions")
    if actions is not None and not isinstance(actions, list):
        return "INVALID_JSON_BODY: The request body is not valid JSON."
    for action in actions or []:
        kind = action.get("type") if isinstance(action, dict) else None
        if kind not in _ACTION_TYPES:
            return f"INVALID_ACTION_TYPE: not supported action type: {kind}"
    return None


class VoipbinDialect(Dialect):
    name = "voipbin"
    created_status = 200

    def authorized(self, request: Request, config: SandboxConfig) -> bool:
        """As authenticate.go reads credentials: a JWT (``token`` cookie, ``?token=``,
        ``Authorization: Bearer``) first, then an access key (cookie, ``?accesskey=``).
        The sandbox has one credential for every form."""
        bearer = request.headers.get("authorization", "")
        given = (
            request.cookies.get("token")
            or request.query_params.get("token")
            or (bearer.split("Bearer ", 1)[1] if "Bearer " in bearer else "")
            or request.cookies.get("accesskey")
            or request.query_params.get("accesskey")
            or ""
        )
        return hmac.compare_digest(given.encode(), config.api_key.encode())

    def parse(self, document: object) -> CallRequest | str:
        if not isinstance(document, dict):
            return "INVALID_JSON_BODY: The request body is not valid JSON."
        problem = _check_body(document)
        if problem is not None:
            return problem
        source = _tel(document.get("source"))
        destinations = document.get("destinations")
        if source is None or not isinstance(destinations, list) or len(destinations) != 1:
            return (
                "INVALID_ARGUMENT: the sandbox takes a tel source and exactly one tel destination"
            )
        target = _tel(destinations[0])
        if target is None:
            return "INVALID_ARGUMENT: destination must be {'type': 'tel', 'target': <number>}"
        return CallRequest(source, target, None, dict(document.get("variables") or {}))

    def refusal(self, status: int, code: str, message: str) -> tuple[int, str, str]:
        if code in _PER_DESTINATION:
            return 500, "internal", "An internal error occurred."
        if code == "invalid_request" and (found := _REASON_PREFIX.fullmatch(message)):
            return status, found.group(1).lower(), found.group(2)
        return status, code, message

    def render_call(self, call: SandboxCall, now: float) -> dict[str, Any]:
        return render_call(call, now)

    def render_created(self, call: SandboxCall, now: float) -> Any:
        return {"calls": [render_call(call, now)], "groupcalls": []}

    def error_code(self, code: str) -> str:
        return _REASONS.get(code, code).upper()

    def error(
        self, status: int, code: str, message: str, headers: dict[str, str] | None = None
    ) -> JSONResponse:
        body = {
            "error": {
                "status": _STATUS_NAMES.get(status, "INTERNAL"),
                "reason": self.error_code(code),
                "message": message,
                "request_id": f"req_{uuid.uuid4().hex[:16].upper()}",
            }
        }
        return JSONResponse(body, status_code=status, headers=headers)


VOIPBIN = VoipbinDialect()


def render_call(call: SandboxCall, now: float) -> dict[str, Any]:
    """A ``CallManagerCall`` as call-manager's WebhookMessage serialises it: UUIDs
    always present (Nil when unset), empty strings and unset times left out.

    Answered time is real; hangup is ``tm_progressing`` + the call's billed
    seconds, so ``tm_hangup - tm_progressing`` is exactly what the ledger bills.
    """
    final = call.is_final(now)
    status = call.status_at(now)
    answered = call.progressing_at
    third = call.duration_real_seconds / 3
    body: dict[str, Any] = {
        "id": call.id,
        "customer_id": _uuid("customer"),
        "owner_type": "",
        "owner_id": NIL,
        "flow_id": _uuid("flow", call.id),
        "activeflow_id": _uuid("activeflow", call.id),
        "type": "flow",
        "master_call_id": NIL,
        "recording_id": NIL,
        "groupcall_id": NIL,
        "source": {"type": "tel", "target": call.from_number, "target_name": call.from_number},
        "destination": {"type": "tel", "target": call.to_number},
        "direction": "outgoing",
        "tm_create": vb_time(call.created_at),
    }
    if final:
        body["status"] = "hangup"
        body["hangup_by"] = "local" if call.hung_up_at is not None else "remote"
        body["hangup_reason"] = _HANGUP_REASON[call.final_status]
        if call.final_status == "completed" and answered is not None:
            ended = answered + call.billsec_seconds
        else:
            ended = call.ended_at
        body["tm_hangup"] = vb_time(ended)
        body["tm_update"] = vb_time(ended)
    else:
        up = answered is not None and now >= answered
        body["status"] = "progressing" if up else "dialing" if status == "queued" else "ringing"
        body["tm_update"] = vb_time(now)
    if now >= call.created_at + third or final:
        body["tm_ringing"] = vb_time(call.created_at + min(third, call.duration_real_seconds))
    if answered is not None and now >= answered:
        body["tm_progressing"] = vb_time(answered)
    return body


def billing_row(call: SandboxCall, now: float) -> dict[str, Any] | None:
    """The call's ``BillingManagerBilling`` ledger row: written at answer
    (``status: progressing``), closed at hangup plus the settle delay (``end``),
    with the tokens and credit the call took; None for a call never answered."""
    answered = call.progressing_at
    if answered is None or now < answered:
        return None
    settled = call.is_settled(now)
    units = -(-call.billsec_seconds // 60) if settled else 0
    return {
        "id": _uuid("billing", call.id),
        "customer_id": _uuid("customer"),
        "account_id": _uuid("account"),
        "transaction_type": "usage",
        "status": "end" if settled else "progressing",
        "reference_type": "call",
        "reference_id": call.id,
        "cost_type": "call_pstn_outgoing",
        "usage_duration": call.billsec_seconds if settled else 0,
        "billable_units": units,
        "rate_token_per_unit": 0,
        "rate_credit_per_unit": 0,
        "amount_token": -call.hold_tokens if settled else 0,
        "amount_credit": -call.hold_micros if settled else 0,
        "balance_token_snapshot": 0,
        "balance_credit_snapshot": 0,
        "idempotency_key": _uuid("billing-key", call.id),
        "tm_billing_start": vb_time(answered),
        "tm_billing_end": vb_time(answered + call.billsec_seconds) if settled else None,
        "tm_create": vb_time(answered),
        "tm_update": vb_time(now),
        "tm_delete": None,
    }


def sign_voipbin(secret: str, body: bytes) -> str:
    """``X-VoIPBIN-Signature`` (message.go ``computeSignature``): the body alone."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def hangup_webhook(
    call: SandboxCall, now: float, secret: str | None
) -> tuple[bytes, dict[str, str]]:
    """The ``call_hangup`` delivery of a call: body and headers (signed with a secret)."""
    payload = {"type": "call_hangup", "data": render_call(call, max(now, call.ended_at))}
    body = json.dumps(payload, separators=(",", ":")).encode()
    headers = {"Content-Type": "application/json"}
    if secret:
        headers["X-VoIPBIN-Signature"] = sign_voipbin(secret, body)
    return body, headers


# -- routes -------------------------------------------------------------------


async def create_call(request: Request) -> Response:
    """VoIPBIN reads no ``Idempotency-Key``: it never reaches the shared pipeline,
    so a re-sent create is a second call, whatever the sandbox's key settings."""
    scope = dict(request.scope)
    scope["headers"] = [(k, v) for k, v in scope["headers"] if k.lower() != b"idempotency-key"]
    return await handle_create(Request(scope, request.receive), VOIPBIN)


def _page_size(request: Request) -> int:
    """calls.go: missing, 0, negative or above 100 is 100."""
    raw = request.query_params.get("page_size", "")
    size = int(raw) if raw.isdigit() and len(raw) <= 6 else 100
    return size if 0 < size <= 100 else 100


def _page(request: Request, rows: list[tuple[float, dict[str, Any]]]) -> Response:
    """Newest first, those created strictly before ``page_token``; the token of the
    next page is the last row's ``tm_create`` (GenerateListResponse)."""
    token = request.query_params.get("page_token") or vb_time(get_state(request).clock() + 1)
    chosen = sorted(
        (row for row in rows if row[1]["tm_create"] < token), key=lambda r: r[0], reverse=True
    )[: _page_size(request)]
    result = [row for _, row in chosen]
    following = result[-1]["tm_create"] if result else ""
    return JSONResponse({"result": result, "next_page_token": following})


async def list_calls(request: Request) -> Response:
    if (refused := await guard(request, VOIPBIN)) is not None:
        return refused
    state = get_state(request)
    with state.lock:
        now = state.clock()
        rows = [
            (c.created_at, render_call(c, now))
            for c in state.calls.values()
            if c.dialect == "voipbin"
        ]
    return _page(request, rows)


def _one_call(request: Request, act: Callable[[str], SandboxCall | None]) -> Response:
    call_id = request.path_params["call_id"]
    if not _uuid_ok(call_id):
        return VOIPBIN.error(400, "invalid_id", "The provided id is not a valid UUID.")
    state = get_state(request)
    call = act(call_id)
    if call is None or call.dialect != "voipbin":
        return VOIPBIN.error(404, "not_found", "The requested resource was not found.")
    return JSONResponse(render_call(call, state.clock()))


async def get_call(request: Request) -> Response:
    if (refused := await guard(request, VOIPBIN)) is not None:
        return refused
    return _one_call(request, get_state(request).get_call)


async def hangup_call(request: Request) -> Response:
    if (refused := await guard(request, VOIPBIN)) is not None:
        return refused
    return _one_call(request, get_state(request).hang_up)


async def list_billings(request: Request) -> Response:
    if (refused := await guard(request, VOIPBIN)) is not None:
        return refused
    state = get_state(request)
    with state.lock:
        now = state.clock()
        rows = [
            (c.progressing_at or c.created_at, row)
            for c in state.calls.values()
            if c.dialect == "voipbin" and (row := billing_row(c, now)) is not None
        ]
    return _page(request, rows)


async def billing_account(request: Request) -> Response:
    """The caller's own account, after every hung-up call has paid (tokens first);
    an unlimited sandbox balance reads as 0 micros."""
    if (refused := await guard(request, VOIPBIN)) is not None:
        return refused
    state = get_state(request)
    with state.lock:
        state.debit_hangups()
        balance = state.balance_micros
        return JSONResponse(
            {
                "id": _uuid("account"),
                "customer_id": _uuid("customer"),
                "name": "Sandbox Account",
                "detail": "sandbox billing account",
                "plan_type": "free",
                "plan_status": "active",
                "balance_credit": 0 if balance is None else balance,
                "balance_token": state.balance_tokens,
                "payment_type": "",
                "payment_method": "",
                "tm_last_topup": None,
                "tm_next_topup": None,
                "tm_create": vb_time(0),
                "tm_update": vb_time(state.clock()),
                "tm_delete": None,
            }
        )


def voipbin_routes() -> list[BaseRoute]:
    return [
        Route("/v1.0/calls", create_call, methods=["POST"]),
        Route("/v1.0/calls", list_calls, methods=["GET"]),
        Route("/v1.0/calls/{call_id}", get_call, methods=["GET"]),
        Route("/v1.0/calls/{call_id}/hangup", hangup_call, methods=["POST"]),
        Route("/v1.0/billings", list_billings, methods=["GET"]),
        Route("/v1.0/billing_account", billing_account, methods=["GET"]),
    ]
