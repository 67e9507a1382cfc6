"""Talkdesk Billing Insights as docs.talkdesk.com documents it: the token endpoint
(``POST /oauth/token``, client credentials with HTTP Basic), ``GET
/express/usage/month`` (``filter`` <= 1,600 characters, ``page`` >= 1,
``per_page`` 1-250, ``order_by``) and ``GET /express/accounts``.

Usage pages carry the HAL links ``first, last, next, prev, self, show`` under
``_links`` or at the top level (``usage_links``), with ``next`` absent on the
last page. Records are the configured ``usage_records`` (amounts sent as their
exact JSON number text, so ``0.1`` and ``1e-6`` travel as written) plus one
``CALL`` record per month and currency for the sandbox's own settled calls.
A filter naming an account outside ``usage_accounts`` is a 403 naming it;
errors are ``{code, message, description, fields[{name, description}]}``.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import json
import re
import uuid
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qs, urlencode

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from campaigns.domain.money import format_micros
from campaigns.testbed.sandbox.create import apply_latency, get_state
from campaigns.testbed.sandbox.state import SandboxState

__all__ = ["billing_insights_routes", "parse_filter"]

_USAGE = "/express/usage/month"
_ACCOUNTS = "/express/accounts"
_MAX_FILTER = 1600
_MONTH_TERM = re.compile(r"month\s+eq\s+'([0-9]{4}-[0-9]{2})'", re.ASCII)
_TOKEN = re.compile(r"\s*(\(|\)|'[^']*'|[A-Za-z_]+)", re.ASCII)

Row = dict[str, Any]
Predicate = Callable[[Row], bool]


def _error(
    status: int, code: str, message: str, fields: list[dict[str, str]], description: str = ""
) -> JSONResponse:
    body: dict[str, Any] = {"code": code, "message": message, "fields": fields}
    if description:
        body["description"] = description
    return JSONResponse(body, status_code=status)


def parse_filter(text: str) -> tuple[Predicate, list[str]]:
    """The reference's filter language as far as its examples go: ``account_id`` or
    ``month`` ``eq``/``ne`` a quoted value, ``and``, ``or``, parentheses. Returns the
    predicate and the account IDs it names; ValueError on anything else."""
    tokens: list[str] = []
    position = 0
    while position < len(text):
        if text[position:].strip() == "":
            break
        match = _TOKEN.match(text, position)
        if match is None:
            raise ValueError(f"unexpected character at {position}")
        tokens.append(match.group(1))
        position = match.end()
    named: list[str] = []
    at = 0

    def peek() -> str | None:
        return tokens[at] if at < len(tokens) else None

    def take() -> str:
        nonlocal at
        if at >= len(tokens):
            raise ValueError("unexpected end of filter")
        at += 1
        return tokens[at - 1]

    def atom() -> Predicate:
        if peek() == "(":
            take()
            inner = expression()
            if take() != ")":
                raise ValueError("expected ')'")
            return inner
        name, op, literal = take(), take(), take()
        if name not in ("account_id", "month") or op not in ("eq", "ne"):
            raise ValueError(f"unsupported comparison {name} {op}")
        if not (literal.startswith("'") and literal.endswith("'") and len(literal) >= 2):
            raise ValueError("expected a quoted value")
        value = literal[1:-1]
        if name == "account_id":
            named.append(value)
        if op == "eq":
            return lambda row: row.get(name) == value
        return lambda row: row.get(name) != value

    def conjunction() -> Predicate:
        parts = [atom()]
        while peek() == "and":
            take()
            parts.append(atom())
        return lambda row: all(p(row) for p in parts)

    def expression() -> Predicate:
        parts = [conjunction()]
        while peek() == "or":
            take()
            parts.append(conjunction())
        return lambda row: any(p(row) for p in parts)

    predicate = expression()
    if at != len(tokens):
        raise ValueError(f"unexpected {tokens[at]!r}")
    return predicate, named


def _decimal(micros: int) -> str:
    text = format_micros(micros, 6).rstrip("0")
    return text.rstrip(".") if text.endswith(".") else text


def _records(state: SandboxState, months: list[str]) -> list[dict[str, Any]]:
    """Every record of the organisation, numbers as raw JSON text (see :func:`_render`);
    the sandbox's own calls for ``months``."""
    config = state.config
    rows: list[dict[str, Any]] = []
    for number, extra in enumerate(config.usage_records):
        if extra.account_id in config.usage_accounts:
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
    if own is not None:
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


def _int_param(request: Request, name: str, default: int, top: int) -> int | None:
    value = request.query_params.get(name)
    if value is None:
        return default
    if not value.isascii() or not value.isdigit() or not 1 <= int(value) <= top:
        return None
    return int(value)


def _basic(request: Request) -> tuple[str, str] | None:
    scheme, _, encoded = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        user, sep, password = base64.b64decode(encoded, validate=True).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError):
        return None
    return (user, password) if sep else None


async def token(request: Request) -> Response:
    """``POST /oauth/token``: client credentials, HTTP Basic client authentication."""
    state = get_state(request)
    await apply_latency(state)
    config = state.config
    given = _basic(request)
    wanted = (config.usage_client_id, config.usage_client_secret)
    if given is None or not all(
        hmac.compare_digest(a.encode(), b.encode()) for a, b in zip(given, wanted, strict=True)
    ):
        return JSONResponse(
            {"error": "invalid_client", "error_description": "client authentication failed"},
            status_code=401,
        )
    form = {k: v[-1] for k, v in parse_qs((await request.body()).decode("latin-1")).items()}
    if form.get("grant_type") != "client_credentials":
        return JSONResponse(
            {"error": "unsupported_grant_type", "error_description": "client_credentials only"},
            status_code=400,
        )
    scope = form.get("scope")  # application/x-www-form-urlencoded, as OAuth2 sends it
    value = f"bi_{uuid.uuid4().hex}"
    valid = config.usage_token_valid_seconds
    with state.lock:
        now = state.clock()
        state.usage_tokens = {t: end for t, end in state.usage_tokens.items() if end > now}
        state.usage_tokens[value] = now + (
            config.usage_token_expires_in if valid is None else valid
        )
        state.usage_tokens_issued += 1
    return JSONResponse(
        {
            "access_token": value,
            "token_type": "Bearer",
            "expires_in": config.usage_token_expires_in,
            "scope": scope if isinstance(scope, str) else "express-accounts-usage:read",
        }
    )


def _unauthorized(request: Request) -> JSONResponse | None:
    state = get_state(request)
    scheme, _, value = request.headers.get("authorization", "").partition(" ")
    with state.lock:
        until = state.usage_tokens.get(value) if scheme == "Bearer" else None
        if until is not None and until > state.clock():
            return None
    return _error(401, "1001", "Unauthorized", [], "missing, invalid or expired access token")


def _page_links(
    request: Request, path: str, page: int, last_page: int, per_page: int
) -> dict[str, dict[str, str]]:
    def link(number: int) -> dict[str, str]:
        query = {**dict(request.query_params), "page": str(number), "per_page": str(per_page)}
        return {"href": f"{str(request.base_url).rstrip('/')}{path}?{urlencode(query)}"}

    links = {"first": link(1), "last": link(last_page), "self": link(page), "show": link(page)}
    if page < last_page:
        links["next"] = link(page + 1)
    if page > 1:
        links["prev"] = link(page - 1)
    return links


def _paging(request: Request) -> tuple[int, int] | JSONResponse:
    page = _int_param(request, "page", 1, 1_000_000)
    per_page = _int_param(request, "per_page", 50, 250)
    problems = []
    if page is None:
        problems.append({"name": "page", "description": "an integer >= 1"})
    if per_page is None:
        problems.append({"name": "per_page", "description": "an integer from 1 to 250"})
    if problems or page is None or per_page is None:
        return _error(400, "1002", "Bad request", problems, "invalid query parameters")
    return page, per_page


async def usage(request: Request) -> Response:
    state = get_state(request)
    await apply_latency(state)
    config = state.config
    if (refused := _unauthorized(request)) is not None:
        return refused
    paging = _paging(request)
    if isinstance(paging, JSONResponse):
        return paging
    page, per_page = paging
    text = request.query_params.get("filter", "")
    order = request.query_params.get("order_by", "id:desc")
    problems = []
    if len(text) > _MAX_FILTER:
        problems.append({"name": "filter", "description": f"length must be <= {_MAX_FILTER}"})
    if len(order) > 40 or order not in ("id:desc", "id:asc"):
        problems.append({"name": "order_by", "description": "id:desc or id:asc"})
    predicate: Predicate = lambda row: True  # noqa: E731
    named: list[str] = []
    if text and not problems:
        try:
            predicate, named = parse_filter(text)
        except ValueError as exc:
            problems.append({"name": "filter", "description": str(exc)})
    if problems:
        return _error(400, "1002", "Bad request", problems, "invalid query parameters")
    foreign = [a for a in dict.fromkeys(named) if a not in config.usage_accounts]
    if foreign:
        return _error(
            403,
            "1003",
            "Forbidden",
            [{"name": "filter", "description": f"not under the organization: {','.join(foreign)}"}],
            "This caller is not authorized to query the given accounts.",
        )
    months = sorted(set(_MONTH_TERM.findall(text)))
    rows = [row for row in _records(state, months) if predicate(row)]
    rows.sort(key=lambda row: str(row["id"]), reverse=order == "id:desc")
    size = min(per_page, config.usage_page_size)
    last_page = max(1, -(-len(rows) // size))
    page = min(page, last_page)
    links = _page_links(request, _USAGE, page, last_page, per_page)
    chunk = rows[(page - 1) * size : page * size]
    document: dict[str, Any] = {"_embedded": {"usage": chunk}}
    if config.usage_links == "top":
        document = {**links, **document}
    else:
        document["_links"] = links
    return Response(_render(document), media_type="application/json")


async def accounts(request: Request) -> Response:
    state = get_state(request)
    await apply_latency(state)
    if (refused := _unauthorized(request)) is not None:
        return refused
    paging = _paging(request)
    if isinstance(paging, JSONResponse):
        return paging
    page, per_page = paging
    found = state.config.usage_accounts
    last_page = max(1, -(-len(found) // per_page))
    page = min(page, last_page)
    chunk = found[(page - 1) * per_page : page * per_page]
    return JSONResponse(
        {
            "count": len(chunk),
            "page": page,
            "per_page": per_page,
            "total": len(found),
            "total_pages": last_page,
            "_embedded": {
                "accounts": [
                    {"id": a, "name": a, "company_name": "Sandbox", "status": "ACTIVE"}
                    for a in chunk
                ]
            },
            "_links": _page_links(request, _ACCOUNTS, page, last_page, per_page),
        }
    )


def billing_insights_routes() -> list[BaseRoute]:
    return [
        Route("/oauth/token", token, methods=["POST"]),
        Route(_USAGE, usage, methods=["GET"]),
        Route(_ACCOUNTS, accounts, methods=["GET"]),
    ]
