"""VoIPBIN dialect routes (``/v1.0``): ``?token=`` auth, list-shaped create.

Shares state, spend control, faults and ledger with MiniVoice, so the same
scenario can be replayed against either adapter.
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
from campaigns.testbed.sandbox.formats import rfc3339
from campaigns.testbed.sandbox.state import SandboxCall

__all__ = ["VOIPBIN", "VoipbinDialect", "voipbin_routes"]

_LIVE = {"queued": "dialing", "ringing": "ringing", "in_progress": "progressing"}
_HANGUP_REASON = {
    "completed": "normal",
    "failed": "failed",
    "busy": "busy",
    "no_answer": "noanswer",
    "canceled": "canceled",
}
_NEVER = "9999-01-01T00:00:00Z"


def _tel(value: object) -> str | None:
    if not isinstance(value, dict) or value.get("type") != "tel":
        return None
    target = value.get("target")
    return target if isinstance(target, str) and target.strip() else None


class VoipbinDialect(Dialect):
    name = "voipbin"
    created_status = 200

    def authorized(self, request: Request, config: SandboxConfig) -> bool:
        given = request.query_params.get("token", "")
        return hmac.compare_digest(given.encode(), config.api_key.encode())

    def parse(self, document: object) -> CallRequest | str:
        if not isinstance(document, dict):
            return "request body must be a JSON object"
        source = _tel(document.get("source"))
        if source is None:
            return "'source' must be {'type': 'tel', 'target': <number>}"
        destinations = document.get("destinations")
        if not isinstance(destinations, list) or len(destinations) != 1:
            return "'destinations' must hold exactly one destination"
        target = _tel(destinations[0])
        if target is None:
            return "destination must be {'type': 'tel', 'target': <number>}"
        variables = document.get("variables", {})
        if not isinstance(variables, dict):
            return "'variables' must be an object"
        max_duration = document.get("max_duration_seconds")
        if max_duration is not None and (
            isinstance(max_duration, bool) or not isinstance(max_duration, int) or max_duration < 1
        ):
            return "'max_duration_seconds' must be a positive integer"
        return CallRequest(source, target, max_duration, variables)

    def render_call(self, call: SandboxCall, now: float) -> dict[str, Any]:
        status = call.status_at(now)
        final = call.is_final(now)
        return {
            "id": call.id,
            "type": "flow",
            "source": {"type": "tel", "target": call.from_number},
            "destination": {"type": "tel", "target": call.to_number},
            "status": "hangup" if final else _LIVE[status],
            "direction": "outgoing",
            "hangup_by": "remote" if final else "",
            "hangup_reason": _HANGUP_REASON[call.final_status] if final else "",
            "variables": call.variables,
            "tm_create": rfc3339(call.created_at),
            "tm_hangup": rfc3339(call.ended_at) if final else _NEVER,
        }

    def render_created(self, call: SandboxCall, now: float) -> Any:
        return [self.render_call(call, now)]

    def error_code(self, code: str) -> str:
        return code.upper()


VOIPBIN = VoipbinDialect()


async def create_call(request: Request) -> Response:
    return await handle_create(request, VOIPBIN)


async def get_call(request: Request) -> Response:
    return await handle_get_call(request, VOIPBIN)


async def billing_account(request: Request) -> Response:
    """The caller's own account, after every hung-up call has paid (tokens first);
    an unlimited sandbox balance reads as 0 micros."""
    if (refused := await guard(request, VOIPBIN)) is not None:
        return refused
    state = get_state(request)
    with state.lock:
        state.debit_hangups()
        config = state.config
        balance = state.balance_micros
        return JSONResponse(
            {
                "id": f"ba_{config.application_id}",
                "customer_id": config.customer_id,
                "name": "Sandbox Account",
                "detail": "sandbox billing account",
                "plan_type": "free",
                "plan_status": "active",
                "balance_credit": 0 if balance is None else balance,
                "balance_token": state.balance_tokens,
                "payment_type": "",
                "payment_method": "",
                "tm_delete": _NEVER,
            }
        )


def voipbin_routes() -> list[BaseRoute]:
    return [
        Route("/v1.0/calls", create_call, methods=["POST"]),
        Route("/v1.0/calls/{call_id}", get_call, methods=["GET"]),
        Route("/v1.0/billing_account", billing_account, methods=["GET"]),
    ]
