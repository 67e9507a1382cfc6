"""MiniVoice dialect routes (``/v1``): bearer auth, call objects, usage.

Shapes follow CONTRACT.md and seed 000 exactly; the sandbox is the reference
the MiniVoice adapter is tested against.
"""

from __future__ import annotations

import hmac
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

__all__ = ["MINIVOICE", "MiniVoiceDialect", "minivoice_routes"]


def _nonempty_str(value: object) -> bool:
    return isinstance(value, str) and value.strip() != ""


class MiniVoiceDialect(Dialect):
    name = "minivoice"
    created_status = 201

    def authorized(self, request: Request, config: SandboxConfig) -> bool:
        given = request.headers.get("authorization", "")
        return hmac.compare_digest(given.encode(), f"Bearer {config.api_key}".encode())

    def parse(self, document: object) -> CallRequest | str:
        if not isinstance(document, dict):
            return "request body must be a JSON object"
        for name in ("from", "to"):
            if not _nonempty_str(document.get(name)):
                return f"'{name}' must be a non-empty string"
        max_duration = document.get("max_duration_seconds")
        if isinstance(max_duration, bool) or not isinstance(max_duration, int) or max_duration < 1:
            return "'max_duration_seconds' must be a positive integer"
        variables = document.get("variables", {})
        if not isinstance(variables, dict):
            return "'variables' must be an object"
        return CallRequest(
            from_number=document["from"],
            to_number=document["to"],
            max_duration_seconds=max_duration,
            variables=variables,
        )

    def render_call(self, call: SandboxCall, now: float) -> dict[str, Any]:
        body: dict[str, Any] = {
            "id": call.id,
            "status": call.status_at(now),
            "direction": "outbound",
            "from": call.from_number,
            "to": call.to_number,
            "variables": call.variables,
            "created_at": rfc3339(call.created_at),
        }
        if call.max_duration_seconds is not None:
            body["max_duration_seconds"] = call.max_duration_seconds
        if call.is_final(now):
            body["billsec_seconds"] = call.billsec_seconds
            body["ended_at"] = rfc3339(call.ended_at)
            if call.is_settled(now) and not call.omit_cost:
                body["cost_amount"] = amount_string(call.cost_micros)
                body["cost_currency"] = call.currency
        return body

    def error_code(self, code: str) -> str:
        return code


MINIVOICE = MiniVoiceDialect()


async def create_call(request: Request) -> Response:
    return await handle_create(request, MINIVOICE)


async def get_call(request: Request) -> Response:
    return await handle_get_call(request, MINIVOICE)


async def list_calls(request: Request) -> Response:
    if (refused := await guard(request, MINIVOICE)) is not None:
        return refused
    state = get_state(request)
    now = state.clock()
    calls = state.calls_by_attempt(request.query_params.get("attempt_id"))
    return JSONResponse({"data": [MINIVOICE.render_call(call, now) for call in calls]})


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
        Route("/v1/calls", list_calls, methods=["GET"]),
        Route("/v1/calls/{call_id}", get_call, methods=["GET"]),
        Route("/v1/usage", usage, methods=["GET"]),
    ]
