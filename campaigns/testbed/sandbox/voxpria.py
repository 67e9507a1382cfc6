"""Voxpria credits routes (Voxpria's Credits API page): ``GET /api/v1/credits`` and ``/credits/usage``.

Bearer auth with the sandbox API key. Calls of either dialect pay 3 credits
per started minute at hangup; ``credits_fail`` makes the check fail
(``success: false`` or a 500) so a test can see the dispatcher refuse to
assume the balance is fine.
"""

from __future__ import annotations

import hmac
import re

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from campaigns.domain.money import format_micros, parse_micros
from campaigns.testbed.sandbox.create import apply_latency, get_state
from campaigns.testbed.sandbox.formats import rfc3339

__all__ = ["voxpria_routes"]

_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}", re.ASCII)


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"success": False, "error": message}, status_code=status)


async def _refused(request: Request) -> Response | None:
    state = get_state(request)
    await apply_latency(state)
    given = request.headers.get("authorization", "")
    wanted = f"Bearer {state.config.api_key}"
    if not hmac.compare_digest(given.encode(), wanted.encode()):
        return _error(401, "missing or invalid API key")
    if state.config.credits_fail == "http_500":
        return _error(500, "internal error")
    if state.config.credits_fail == "success_false":
        return JSONResponse({"success": False, "error": "credits unavailable"})
    return None


def _cost(credits: int, price: str) -> str:
    return "$" + format_micros(credits * parse_micros(price), 2)


async def credits(request: Request) -> Response:
    if (refused := await _refused(request)) is not None:
        return refused
    state = get_state(request)
    with state.lock:
        state.debit_hangups()
        balance = state.credits
    return JSONResponse(
        {
            "success": True,
            "data": {
                "balance": balance,
                "currency": "credits",
                "lastUpdated": rfc3339(state.clock()),
            },
        }
    )


async def credits_usage(request: Request) -> Response:
    if (refused := await _refused(request)) is not None:
        return refused
    first = request.query_params.get("startDate", "")
    last = request.query_params.get("endDate", "")
    if not _DATE.fullmatch(first) or not _DATE.fullmatch(last):
        return _error(400, "startDate and endDate must be YYYY-MM-DD")
    state = get_state(request)
    price = state.config.credit_price
    rows = state.credits_usage(first, last)
    usage = [{**row, "cost": _cost(int(row["creditsUsed"]), price)} for row in rows]
    calls = sum(int(row["calls"]) for row in rows)
    used = sum(int(row["creditsUsed"]) for row in rows)
    total = {"calls": calls, "creditsUsed": used, "cost": _cost(used, price)}
    return JSONResponse({"success": True, "data": {"usage": usage, "total": total}})


def voxpria_routes() -> list[BaseRoute]:
    return [
        Route("/api/v1/credits", credits, methods=["GET"]),
        Route("/api/v1/credits/usage", credits_usage, methods=["GET"]),
    ]
