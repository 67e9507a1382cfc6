"""Voxpria calls routes (``/api/v1/calls``), as voxpria.com's Calls API page states them.

``POST /api/v1/calls`` takes ``{"agentId", "toNumber", "variables"?}`` (Bearer,
or the ``X-API-Key`` header) and answers ``{"success": true, "data": {"callId",
"status": "queued", "toNumber", "agentId", "createdAt"}}``; ``GET
/api/v1/calls/:id`` gives the status over time (queued, ringing, in_progress,
then completed / failed / no_answer / busy) with ``duration``, ``startedAt``,
``completedAt`` and ``outcome``; ``GET /api/v1/calls?page=&limit=`` pages the
account's calls newest first. More than ``voxpria_calls_per_minute`` calls
triggered within a minute is a 429 with ``X-RateLimit-Limit``,
``X-RateLimit-Remaining`` and ``X-RateLimit-Reset`` (epoch seconds), as is an
injected rate-limit fault. Ends are posted as ``call.completed`` /
``call.failed`` signed ``X-VoxPria-Signature`` (``webhooks.py``). No
idempotency key is read. What the pages leave open (the error envelope, the
list's answer) is the sandbox's choice, listed in docs/providers.md#voxpria-calls.
"""

from __future__ import annotations

import hmac
import math
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
)
from campaigns.testbed.sandbox.formats import rfc3339
from campaigns.testbed.sandbox.state import SandboxCall, SandboxState

__all__ = ["VOXPRIA", "VoxpriaDialect", "voxpria_call", "voxpria_calls_routes", "voxpria_event"]

_E164 = re.compile(r"\+[1-9][0-9]{1,14}")
_FIELDS = frozenset({"agentId", "toNumber", "variables"})
_WINDOW_SECONDS = 60.0
_LIST_LIMIT = 100
"""The most rows a page gives (not documented; the page's example asks 50)."""


def voxpria_call(call: SandboxCall, now: float, *, variables: bool = False) -> dict[str, Any]:
    """The call object of ``GET /calls/:id`` (and of a listing row) at ``now``.

    A completed call was answered ``duration`` seconds before it ended
    (``startedAt``), so ``completedAt - startedAt`` is exactly its duration, as
    on the Calls API page (127 s from 12:00:00 to 12:02:07).
    """
    status = call.status_at(now)
    body: dict[str, Any] = {
        "callId": call.id,
        "status": status,
        "toNumber": call.to_number,
        "agentId": call.agent_id,
        "createdAt": rfc3339(call.created_at),
    }
    if status == "in_progress":
        body["startedAt"] = rfc3339(call.answer_seen_at)
    if call.is_final(now):
        body["duration"] = call.billsec_seconds
        body["outcome"] = "successful" if status == "completed" else "unsuccessful"
        body["completedAt"] = rfc3339(call.ended_at)
        if status == "completed":
            body["startedAt"] = rfc3339(call.ended_at - call.billsec_seconds)
            body["recording"] = f"https://sandbox.invalid/recordings/{call.id}"
            body["transcript"] = ""
    if variables:
        body["variables"] = call.variables
    return body


def voxpria_event(call: SandboxCall) -> dict[str, Any]:
    """The Webhooks API page's payload for the end of a call."""
    event = "call.completed" if call.final_status == "completed" else "call.failed"
    data = voxpria_call(call, call.ended_at)
    body = {
        name: data[name]
        for name in ("callId", "status", "duration", "toNumber", "recording", "transcript")
        if name in data
    }
    return {"event": event, "timestamp": rfc3339(call.ended_at), "data": body}


class VoxpriaDialect(Dialect):
    name = "voxpria"
    created_status = 201

    def authorized(self, request: Request, config: SandboxConfig) -> bool:
        """``Authorization: Bearer <key>`` or ``X-API-Key: <key>`` (the Authentication page)."""
        bearer = request.headers.get("authorization", "")
        given = bearer[7:] if bearer.startswith("Bearer ") else request.headers.get("x-api-key", "")
        return hmac.compare_digest(given.encode(), config.api_key.encode())

    def parse(self, document: object) -> CallRequest | str:
        """The documented body only: another field is refused, naming it."""
        if not isinstance(document, dict):
            return "request body must be a JSON object"
        unknown = sorted(set(document) - _FIELDS)
        if unknown:
            return f"unknown field: {', '.join(unknown)}"
        agent = document.get("agentId")
        if not isinstance(agent, str) or not agent.strip():
            return "'agentId' is required"
        to = document.get("toNumber")
        if not isinstance(to, str) or not _E164.fullmatch(to):
            return "'toNumber' must be an E.164 number such as +14155551234"
        variables = document.get("variables", {})
        if not isinstance(variables, dict):
            return "'variables' must be an object"
        return CallRequest("", to, None, dict(variables), agent_id=agent)

    def render_call(self, call: SandboxCall, now: float) -> dict[str, Any]:
        return {"success": True, "data": voxpria_call(call, now)}

    def render_created(self, call: SandboxCall, now: float) -> Any:
        data = {
            "callId": call.id,
            "status": "queued",
            "toNumber": call.to_number,
            "agentId": call.agent_id,
            "createdAt": rfc3339(call.created_at),
        }
        return {"success": True, "data": data}

    def error_code(self, code: str) -> str:
        return "rate_limit_exceeded" if code == "rate_limited" else code

    def error(
        self, status: int, code: str, message: str, headers: dict[str, str] | None = None
    ) -> JSONResponse:
        body = {"success": False, "error": {"code": self.error_code(code), "message": message}}
        return JSONResponse(body, status_code=status, headers=headers)

    def wait_headers(self, retry: int, state: SandboxState) -> dict[str, str]:
        """``X-RateLimit-*`` (Voxpria's rate limits), the reset as epoch seconds."""
        limit = state.config.voxpria_calls_per_minute
        return {
            "X-RateLimit-Limit": str(limit or 0),
            "X-RateLimit-Remaining": "0",
            "X-RateLimit-Reset": str(math.ceil(state.clock() + retry)),
        }

    def throttled(self, state: SandboxState) -> int | None:
        """A sliding minute: the call is refused while ``voxpria_calls_per_minute``
        calls were triggered in the last 60 s, until the oldest leaves it."""
        limit = state.config.voxpria_calls_per_minute
        if limit is None:
            return None
        with state.lock:
            now = state.clock()
            recent = [t for t in state.voxpria_triggered if t > now - _WINDOW_SECONDS]
            state.voxpria_triggered[:] = recent
            if len(recent) >= limit:
                return max(1, math.ceil(recent[0] + _WINDOW_SECONDS - now))
            recent.append(now)
            state.voxpria_triggered[:] = recent
            return None


VOXPRIA = VoxpriaDialect()


async def create_call(request: Request) -> Response:
    """Voxpria reads no ``Idempotency-Key``: every create is a new call."""
    scope = dict(request.scope)
    scope["headers"] = [(k, v) for k, v in scope["headers"] if k.lower() != b"idempotency-key"]
    return await handle_create(Request(scope, request.receive), VOXPRIA)


async def get_call(request: Request) -> Response:
    if (refused := await guard(request, VOXPRIA)) is not None:
        return refused
    state = get_state(request)
    call = state.get_call(request.path_params["call_id"])
    if call is None or call.dialect != "voxpria":
        return VOXPRIA.error(404, "not_found", "call not found")
    variables = state.config.voxpria_echo_variables
    return JSONResponse(
        {"success": True, "data": voxpria_call(call, state.clock(), variables=variables)}
    )


def _positive(text: str, default: int) -> int | None:
    if not text:
        return default
    return int(text) if text.isdigit() and 0 < len(text) <= 6 and int(text) > 0 else None


async def list_calls(request: Request) -> Response:
    """``?page=`` (from 1) and ``?limit=`` (at most 100): the account's calls, newest first."""
    if (refused := await guard(request, VOXPRIA)) is not None:
        return refused
    page = _positive(request.query_params.get("page", ""), 1)
    limit = _positive(request.query_params.get("limit", ""), 50)
    if page is None or limit is None:
        return VOXPRIA.error(400, "invalid_request", "page and limit must be whole numbers >= 1")
    limit = min(limit, _LIST_LIMIT)
    state = get_state(request)
    variables = state.config.voxpria_echo_variables
    with state.lock:
        now = state.clock()
        calls = sorted(
            (c for c in state.calls.values() if c.dialect == "voxpria"),
            key=lambda c: c.created_at,
            reverse=True,
        )
        rows = [voxpria_call(c, now, variables=variables) for c in calls]
    chosen = rows[(page - 1) * limit : page * limit]
    return JSONResponse(
        {
            "success": True,
            "data": chosen,
            "pagination": {"page": page, "limit": limit, "total": len(rows)},
        }
    )


def voxpria_calls_routes() -> list[BaseRoute]:
    return [
        Route("/api/v1/calls", create_call, methods=["POST"]),
        Route("/api/v1/calls", list_calls, methods=["GET"]),
        Route("/api/v1/calls/{call_id}", get_call, methods=["GET"]),
    ]
