"""Test control API (``/_sandbox``): no auth, no faults, no latency.

Lets a test steer the provider at runtime and inspect what it received,
without going through the API under test.
"""

from __future__ import annotations

import json

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from campaigns.testbed.sandbox.config import SandboxConfigError
from campaigns.testbed.sandbox.create import get_state

__all__ = ["control_routes"]


def _bad(message: str) -> JSONResponse:
    return JSONResponse({"error": {"code": "invalid_config", "message": message}}, status_code=400)


async def health(request: Request) -> Response:
    return JSONResponse({"ok": True})


async def ledger(request: Request) -> Response:
    return JSONResponse({"requests": get_state(request).ledger_snapshot()})


async def calls(request: Request) -> Response:
    return JSONResponse({"data": get_state(request).calls_snapshot()})


async def account(request: Request) -> Response:
    return JSONResponse(get_state(request).account())


async def webhooks(request: Request) -> Response:
    state = get_state(request)
    with state.lock:
        deliveries = [d.to_dict() for d in state.webhook_deliveries]
    return JSONResponse({"deliveries": deliveries})


async def get_config(request: Request) -> Response:
    return JSONResponse(get_state(request).config.model_dump(mode="json"))


async def patch_config_route(request: Request) -> Response:
    state = get_state(request)
    try:
        patch = json.loads(await request.body())
    except (json.JSONDecodeError, UnicodeDecodeError):
        return _bad("config patch must be JSON")
    try:
        config = state.apply_patch(patch)
    except SandboxConfigError as exc:
        return _bad(str(exc))
    return JSONResponse(config.model_dump(mode="json"))


async def reset(request: Request) -> Response:
    raw = await request.body()
    try:
        options = json.loads(raw) if raw.strip() else {}
    except (json.JSONDecodeError, UnicodeDecodeError):
        return _bad("reset options must be JSON")
    if not isinstance(options, dict) or set(options) - {"config"}:
        return _bad("reset accepts only {'config': bool}")
    state = get_state(request)
    state.reset(config=bool(options.get("config", False)))
    return JSONResponse({"ok": True, "config": state.config.model_dump(mode="json")})


def control_routes() -> list[BaseRoute]:
    return [
        Route("/_sandbox/health", health, methods=["GET"]),
        Route("/_sandbox/ledger", ledger, methods=["GET"]),
        Route("/_sandbox/calls", calls, methods=["GET"]),
        Route("/_sandbox/account", account, methods=["GET"]),
        Route("/_sandbox/webhooks", webhooks, methods=["GET"]),
        Route("/_sandbox/config", get_config, methods=["GET"]),
        Route("/_sandbox/config", patch_config_route, methods=["PATCH"]),
        Route("/_sandbox/reset", reset, methods=["POST"]),
    ]
