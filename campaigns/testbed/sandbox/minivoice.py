"""MiniVoice dialect routes (``/v1``), as MiniVoice's public documentation states them.

``POST /v1/calls`` takes ``{"from", "to", "metadata"?, "record"?}`` and answers
the documented call object (``status: "dialing"``); errors are the documented
envelope ``{"error": {"code", "message"}}``; ``GET /v1/calls/{id}`` reads a
call (its schema is not documented: the create answer's fields, the status
over time, and billed seconds and cost under ``/v1/usage``'s names once
settled); ``GET /v1/usage`` is the MiniVoice spend-controls page. No idempotency keys unless the
``idempotency_keys`` knob is on. docs/providers.md#minivoice lists the pages.
"""

from __future__ import annotations

import hmac
import re
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
    handle_get_call,
)
from campaigns.testbed.sandbox.formats import amount_string, parse_rfc3339, rfc3339
from campaigns.testbed.sandbox.state import SandboxCall

__all__ = ["MINIVOICE", "MiniVoiceDialect", "minivoice_routes", "minivoice_status"]

_E164 = re.compile(r"\+[1-9][0-9]{1,14}")
_FIELDS = frozenset({"from", "to", "metadata", "record"})
ANSWER_URL = "https://sandbox.invalid/answer"
"""The application's answer_url as the sandbox reports it (it never requests it)."""
_CODES = {"rate_limited": "cps_limit_reached"}
_LIVE = {"queued": "dialing", "ringing": "dialing", "in_progress": "in_progress"}


def minivoice_status(call: SandboxCall, now: float) -> str:
    """``dialing`` until answered, ``in_progress``, then the final status."""
    status = call.status_at(now)
    return _LIVE.get(status, status)


class MiniVoiceDialect(Dialect):
    name = "minivoice"
    created_status = 201

    def authorized(self, request: Request, config: SandboxConfig) -> bool:
        given = request.headers.get("authorization", "")
        return hmac.compare_digest(given.encode(), f"Bearer {config.api_key}".encode())

    def parse(self, document: object) -> CallRequest | str:
        """The documented body only: a field MiniVoice does not document is refused
        (naming it), so an adapter that sends one fails here, not in production."""
        if not isinstance(document, dict):
            return "request body must be a JSON object"
        unknown = sorted(set(document) - _FIELDS)
        if unknown:
            return f"unknown field: {', '.join(unknown)}"
        for name in ("from", "to"):
            value = document.get(name)
            if not isinstance(value, str) or not _E164.fullmatch(value):
                return f"'{name}' must be an E.164 number such as +15551230001"
        metadata = document.get("metadata", {})
        if not isinstance(metadata, dict):
            return "'metadata' must be an object"
        record = document.get("record", False)
        if not isinstance(record, bool):
            return "'record' must be a boolean"
        if record:
            metadata = {**metadata, "record": True}  # "record=true stores metadata.record=true"
        # The sandbox keeps a call's metadata where every dialect keeps its tags.
        return CallRequest(
            from_number=document["from"],
            to_number=document["to"],
            max_duration_seconds=None,
            variables=metadata,
        )

    def request_tags(self, document: object) -> dict[str, Any] | None:
        metadata = document.get("metadata") if isinstance(document, dict) else None
        return metadata if isinstance(metadata, dict) else None

    def render_call(self, call: SandboxCall, now: float) -> dict[str, Any]:
        body: dict[str, Any] = {
            "id": call.id,
            "status": minivoice_status(call, now),
            "direction": "outbound",
            "from": call.from_number,
            "to": call.to_number,
            "application_id": call.application_id,
            "customer_id": call.customer_id,
            "provider_call_id": call.provider_call_id,
            "answer_url": ANSWER_URL,
            "metadata": call.variables,
            "created_at": rfc3339(call.created_at),
            "route_mode": "webhook",
            "routing_target": call.application_id,
            "dialing_at": rfc3339(call.created_at),
        }
        if call.is_final(now):
            body["ended_at"] = rfc3339(call.ended_at)
            body["billsec_seconds"] = call.billsec_seconds
            if call.is_settled(now) and not call.omit_cost:
                body["cost_amount"] = amount_string(call.cost_micros)
                body["cost_currency"] = call.currency
        return body

    def render_created(self, call: SandboxCall, now: float) -> Any:
        """The documented create answer: always ``dialing``."""
        body = self.render_call(call, now)
        body["status"] = "dialing"
        for name in ("ended_at", "billsec_seconds", "cost_amount", "cost_currency"):
            body.pop(name, None)
        return body

    def error_code(self, code: str) -> str:
        # A 429 is one of the two documented limit codes; the rest as the sandbox names them.
        return _CODES.get(code, code)


MINIVOICE = MiniVoiceDialect()


async def create_call(request: Request) -> Response:
    return await handle_create(request, MINIVOICE)


async def get_call(request: Request) -> Response:
    return await handle_get_call(request, MINIVOICE)


async def usage(request: Request) -> Response:
    if (refused := await guard(request, MINIVOICE)) is not None:
        return refused
    state = get_state(request)
    start_text = request.query_params.get("from")
    end_text = request.query_params.get("to")
    if start_text is None or end_text is None:
        return MINIVOICE.error(400, "invalid_request", "'from' and 'to' are required")
    try:
        start, end = parse_rfc3339(start_text), parse_rfc3339(end_text)
    except ValueError as exc:
        return MINIVOICE.error(400, "invalid_request", str(exc))
    calls, billsec, cost = state.usage(start, end)
    config = state.config
    return JSONResponse(
        {
            "application_id": config.application_id,
            "from": start_text.replace(" ", "+"),
            "to": end_text.replace(" ", "+"),
            "summary": {
                "calls": calls,
                "billsec_seconds": billsec,
                "cost_amount": amount_string(cost),
                "cost_currency": config.currency,
            },
        }
    )


def minivoice_routes() -> list[BaseRoute]:
    return [
        Route("/v1/calls", create_call, methods=["POST"]),
        Route("/v1/calls/{call_id}", get_call, methods=["GET"]),
        Route("/v1/usage", usage, methods=["GET"]),
    ]
