"""Billing Insights monthly usage route (seed 003): ``GET /billing-insights/usage``.

A HAL document, paged by ``usage_page_size`` (or the caller's smaller
``per_page``), with ``_links.next`` absent on the last page. Its records are
the configured ``usage_records`` (amounts sent as their exact JSON number text,
so ``0.1`` and ``1e-6`` travel as written) plus one ``CALL`` record per month
and currency for the sandbox's own settled calls. Asking for an account
outside ``usage_accounts`` is a 403, as the seed describes.
"""

from __future__ import annotations

import hmac
import json
import re
from typing import Any
from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from campaigns.domain.money import format_micros
from campaigns.testbed.sandbox.create import apply_latency, get_state
from campaigns.testbed.sandbox.state import SandboxState

__all__ = ["billing_insights_routes"]

_MONTH = re.compile(r"([0-9]{4})-(0[1-9]|1[0-2])", re.ASCII)
_PATH = "/billing-insights/usage"
_MAX_MONTHS = 120


def _error(status: int, code: str, message: str, fields: list[dict[str, str]]) -> JSONResponse:
    body: dict[str, Any] = {"code": code, "message": message}
    if fields:
        body["fields"] = fields
    return JSONResponse(body, status_code=status)


def _months(first: str, last: str) -> list[str] | None:
    a, b = _MONTH.fullmatch(first), _MONTH.fullmatch(last)
    if a is None or b is None:
        return None
    start = int(a.group(1)) * 12 + int(a.group(2)) - 1
    end = int(b.group(1)) * 12 + int(b.group(2)) - 1
    if end < start or end - start >= _MAX_MONTHS:
        return None
    return [f"{m // 12:04d}-{m % 12 + 1:02d}" for m in range(start, end + 1)]


def _decimal(micros: int) -> str:
    text = format_micros(micros, 6).rstrip("0")
    return text.rstrip(".") if text.endswith(".") else text


def _records(state: SandboxState, accounts: list[str], months: list[str]) -> list[dict[str, Any]]:
    """Every record, numbers as raw JSON text (rendered by :func:`_render`)."""
    config = state.config
    rows: list[dict[str, Any]] = []
    for number, extra in enumerate(config.usage_records):
        if extra.account_id in accounts and extra.month in months:
            rows.append(
                {
                    "id": f"usage_cfg_{number}",
                    "account_id": extra.account_id,
                    "product_id": extra.product_id,
                    "aggr_product_id": extra.product_id,
                    "month": extra.month,
                    "type": extra.type,
                    "description": extra.description,
                    "currency": extra.currency,
                    "direction": "OUTBOUND" if extra.type == "CALL" else None,
                    "resolution": None,
                    "unit": extra.unit,
                    "price": _Raw(extra.price),
                    "wallet_name": "sandbox",
                    "number_of_units": _Raw(extra.number_of_units),
                    "total_amount": _Raw(extra.total_amount),
                }
            )
    own = config.usage_accounts[0] if config.usage_accounts else None
    if own in accounts:
        for month in months:
            for currency, (calls, billsec, micros) in sorted(state.month_usage(month).items()):
                rows.append(
                    {
                        "id": f"usage_calls_{month}_{currency}",
                        "account_id": own,
                        "product_id": "TD-USG-TEL-UG-102213",
                        "aggr_product_id": "TD-USG-TEL-UG-102213",
                        "month": month,
                        "type": "CALL",
                        "description": f"Outbound calls ({calls})",
                        "currency": currency,
                        "direction": "OUTBOUND",
                        "resolution": "ANSWERED",
                        "unit": "SECONDS",
                        "price": _Raw(_decimal(config.rate_model().per_minute_micros // 60)),
                        "wallet_name": "sandbox",
                        "number_of_units": _Raw(str(billsec)),
                        "total_amount": _Raw(_decimal(micros)),
                    }
                )
    return rows


class _Raw:
    """A JSON number sent exactly as its text."""

    def __init__(self, text: str) -> None:
        self.text = text


def _render(document: dict[str, Any]) -> str:
    raws: list[str] = []

    def placeholder(value: object) -> object:
        if isinstance(value, _Raw):
            raws.append(value.text)
            return f"\x00raw{len(raws) - 1}\x00"
        raise TypeError(type(value).__name__)

    text = json.dumps(document, default=placeholder)
    for number, raw in enumerate(raws):
        text = text.replace(f'"\\u0000raw{number}\\u0000"', raw)
    return text


def _int_param(request: Request, name: str, default: int) -> int | None:
    value = request.query_params.get(name)
    if value is None:
        return default
    if not value.isascii() or not value.isdigit() or not 1 <= int(value) <= 10_000:
        return None
    return int(value)


async def usage(request: Request) -> Response:
    state = get_state(request)
    await apply_latency(state)
    config = state.config
    given = request.headers.get("authorization", "")
    if not hmac.compare_digest(given.encode(), f"Bearer {config.usage_token}".encode()):
        return _error(401, "UNAUTHORIZED", "missing or invalid token", [])
    accounts = [a for a in request.query_params.get("accounts", "").split(",") if a]
    first = request.query_params.get("month_from", "")
    last = request.query_params.get("month_to", first)
    months = _months(first, last)
    page = _int_param(request, "page", 1)
    per_page = _int_param(request, "per_page", 100)
    problems = []
    if not accounts:
        problems.append({"name": "accounts", "description": "at least one account ID"})
    if months is None:
        problems.append({"name": "month_from", "description": "YYYY-MM, not after month_to"})
    if page is None or per_page is None:
        problems.append({"name": "page", "description": "page and per_page: 1-10000"})
    if problems or months is None or page is None or per_page is None:
        return _error(400, "BAD_REQUEST", "invalid query", problems)
    foreign = [a for a in accounts if a not in config.usage_accounts]
    if foreign:
        return _error(
            403,
            "FORBIDDEN",
            "This caller is not authorized to query the given accounts.",
            [
                {
                    "name": "accounts",
                    "description": f"not under the organization: {','.join(foreign)}",
                }
            ],
        )
    rows = _records(state, accounts, months)
    size = min(per_page, config.usage_page_size)
    last_page = max(1, -(-len(rows) // size))
    page = min(page, last_page)

    def link(number: int) -> dict[str, str]:
        query = {**dict(request.query_params), "page": str(number), "per_page": str(per_page)}
        return {"href": f"{str(request.base_url).rstrip('/')}{_PATH}?{urlencode(query)}"}

    links = {"first": link(1), "last": link(last_page), "self": link(page), "show": link(page)}
    if page < last_page:
        links["next"] = link(page + 1)
    if page > 1:
        links["prev"] = link(page - 1)
    document = {"_links": links, "_embedded": {"usage": rows[(page - 1) * size : page * size]}}
    return Response(_render(document), media_type="application/json")


def billing_insights_routes() -> list[BaseRoute]:
    return [Route(_PATH, usage, methods=["GET"])]
