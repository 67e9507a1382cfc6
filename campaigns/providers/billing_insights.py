"""Billing Insights monthly usage (seed 003, CONTRACT.md): a usage source.

``GET /billing-insights/usage?accounts=&month_from=&month_to=&page=&per_page=``
answers a HAL document; the client follows ``_links.next.href`` until it is
absent. ``total_amount``, ``price`` and ``number_of_units`` are JSON numbers:
they are read from the raw text as :class:`~decimal.Decimal` (``0.1`` is
exactly 100,000 micros, ``1e-6`` exactly 1), never through a binary float. A
403 names the accounts refused and is never read as zero usage.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any
from urllib.parse import urljoin

import httpx
from pydantic import SecretStr

from campaigns.domain.money import MAX_MICROS, MICROS_PER_UNIT, round_micros
from campaigns.logs import scrub
from campaigns.providers._http import network_error, provider_client
from campaigns.providers.base import brief, currency_refusal

__all__ = [
    "MONTH",
    "BillingInsights",
    "MonthlyUsage",
    "UsageError",
    "UsageRecord",
    "UsageRefused",
    "decimal_micros",
    "parse_page",
]

MONTH = re.compile(r"[0-9]{4}-(0[1-9]|1[0-2])", re.ASCII)
PATH = "/billing-insights/usage"
_MAX_PAGES = 1000
_PER_PAGE = 100


class UsageError(Exception):
    """The usage source answered something other than usage (400, 401, bad JSON, ...)."""

    def __init__(self, status: int | None, code: str, message: str) -> None:
        super().__init__(status, code, message)
        self.status, self.code, self.message = status, code, message

    def __str__(self) -> str:
        where = f"HTTP {self.status}" if self.status is not None else "no answer"
        return f"{where} {self.code}: {self.message}"


class UsageRefused(UsageError):
    """403: the accounts are not under the caller's organisation."""

    def __init__(self, accounts: list[str], code: str, message: str) -> None:
        names = ", ".join(accounts) or "(none given)"
        super().__init__(403, code, f"accounts refused: {names}: {message}")
        self.accounts = accounts


def decimal_micros(value: object, field_name: str) -> int:
    """A JSON number (parsed as Decimal or int) in micros; a sub-micro rest rounds up.

    Negative amounts are allowed (a recharge or a credit); beyond the micros
    ceiling, or anything but a number, is refused naming the field.
    """
    if isinstance(value, bool) or not isinstance(value, int | Decimal):
        raise ValueError(f"{field_name}: expected a JSON number, got {brief(value)}")
    try:
        amount = Decimal(value) * MICROS_PER_UNIT
        if not amount.is_finite():
            raise InvalidOperation
        micros = round_micros(amount)
    except (InvalidOperation, OverflowError):
        raise ValueError(f"{field_name}: not a finite amount") from None
    if abs(micros) > MAX_MICROS:
        raise ValueError(f"{field_name}: out of range (at most {MAX_MICROS} micros)")
    return micros


@dataclass(frozen=True, slots=True)
class UsageRecord:
    """One monthly aggregate; money in micros, the unit price kept as its exact text."""

    id: str
    account_id: str
    product_id: str
    month: str
    type: str
    description: str
    currency: str
    unit: str
    price: str
    number_of_units: str
    total_micros: int
    direction: str | None = None


@dataclass(slots=True)
class MonthlyUsage:
    month_from: str
    month_to: str
    accounts: list[str]
    records: list[UsageRecord] = field(default_factory=list)
    pages: int = 0

    def totals(self) -> dict[str, int]:
        """``{currency: micros}`` over every record."""
        totals: dict[str, int] = {}
        for record in self.records:
            totals[record.currency] = totals.get(record.currency, 0) + record.total_micros
        return totals


def _text(row: dict[str, Any], name: str, where: str, *, optional: bool = False) -> str:
    value = row.get(name)
    if value is None and optional:
        return ""
    if not isinstance(value, str):
        raise ValueError(f"{where}.{name}: expected a string, got {brief(value)}")
    return value


def _record(row: Any, where: str) -> UsageRecord:
    if not isinstance(row, dict):
        raise ValueError(f"{where}: expected an object")
    currency = _text(row, "currency", where)
    if currency_refusal(currency):
        raise ValueError(f"{where}.currency: {currency_refusal(currency)}")
    month = _text(row, "month", where)
    if not MONTH.fullmatch(month):
        raise ValueError(f"{where}.month: expected YYYY-MM, got {brief(month)}")
    units = row.get("number_of_units")
    price = row.get("price")
    for name, value in (("price", price), ("number_of_units", units)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int | Decimal)):
            raise ValueError(f"{where}.{name}: expected a JSON number, got {brief(value)}")
    direction = row.get("direction")
    return UsageRecord(
        id=_text(row, "id", where),
        account_id=_text(row, "account_id", where),
        product_id=_text(row, "product_id", where, optional=True),
        month=month,
        type=_text(row, "type", where),
        description=_text(row, "description", where, optional=True),
        currency=currency,
        unit=_text(row, "unit", where, optional=True),
        price="" if price is None else str(price),
        number_of_units="" if units is None else str(units),
        total_micros=decimal_micros(row.get("total_amount"), f"{where}.total_amount"),
        direction=direction if isinstance(direction, str) else None,
    )


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"non-standard JSON constant {name}")


def parse_page(text: str) -> tuple[list[UsageRecord], str | None]:
    """One HAL page from its raw text: the records and the ``next`` link, if any.

    Numbers are parsed as Decimal straight from the text; ValueError names
    the field at fault.
    """
    try:
        document = json.loads(text, parse_float=Decimal, parse_constant=_refuse_constant)
    except (ValueError, RecursionError):
        raise ValueError("body: not JSON") from None
    if not isinstance(document, dict):
        raise ValueError("body: expected a JSON object")
    embedded = document.get("_embedded", {})
    rows = embedded.get("usage", []) if isinstance(embedded, dict) else None
    if not isinstance(rows, list):
        raise ValueError("_embedded.usage: expected a list")
    records = [_record(row, f"_embedded.usage[{i}]") for i, row in enumerate(rows)]
    links = document.get("_links", {})
    if not isinstance(links, dict):
        raise ValueError("_links: expected an object")
    following = links.get("next")
    if following is None:
        return records, None
    href = following.get("href") if isinstance(following, dict) else None
    if not isinstance(href, str) or not href:
        raise ValueError("_links.next.href: expected a URL")
    return records, href


class BillingInsights:
    """OAuth2-bearer client of the monthly usage endpoint, for a fixed set of accounts."""

    source = "billing_insights"

    def __init__(
        self,
        base_url: str,
        token: SecretStr,
        accounts: list[str],
        *,
        timeout: float = 10.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.accounts = list(accounts)
        self._base = httpx.URL(base_url.rstrip("/") + "/")
        self._client = provider_client(
            headers={"Authorization": f"Bearer {token.get_secret_value()}"},
            timeout=timeout,
            transport=transport,
        )

    async def monthly_usage(self, month_from: str, month_to: str | None = None) -> MonthlyUsage:
        """Every record from ``month_from`` to ``month_to`` (YYYY-MM), over all pages."""
        month_to = month_to or month_from
        for name, month in (("month_from", month_from), ("month_to", month_to)):
            if not MONTH.fullmatch(month):
                raise ValueError(f"{name}: expected YYYY-MM, got {brief(month)}")
        usage = MonthlyUsage(month_from, month_to, self.accounts)
        url: str | None = str(self._base.join(PATH.lstrip("/")))
        params: dict[str, str] | None = {
            "accounts": ",".join(self.accounts),
            "month_from": month_from,
            "month_to": month_to,
            "page": "1",
            "per_page": str(_PER_PAGE),
        }
        seen: set[str] = set()
        while url is not None:
            if usage.pages >= _MAX_PAGES or url in seen:
                raise UsageError(
                    200, "invalid_response", f"paging did not end after {usage.pages} pages"
                )
            seen.add(url)
            text = await self._get(url, params)
            try:
                records, following = parse_page(text)
            except ValueError as exc:
                raise UsageError(
                    200, "invalid_response", f"page {usage.pages + 1}: {exc}"
                ) from None
            usage.records.extend(records)
            usage.pages += 1
            url = None if following is None else self._follow(following)
            params = None  # the next link carries its own query
        return usage

    def _follow(self, href: str) -> str:
        """The next page's URL; only on the usage source's own host (the token goes with it)."""
        target = httpx.URL(urljoin(str(self._base), href))
        if (target.scheme, target.host, target.port) != (
            self._base.scheme,
            self._base.host,
            self._base.port,
        ):
            raise UsageError(200, "invalid_response", "_links.next.href points at another host")
        return str(target)

    async def _get(self, url: str, params: dict[str, str] | None) -> str:
        try:
            response = await self._client.get(url, params=params)
        except httpx.HTTPError as exc:
            failed = network_error(exc)
            raise UsageError(None, failed.code, failed.message) from None
        if response.status_code == 403:
            code, message = _error(response)
            raise UsageRefused(self.accounts, code, message)
        if response.status_code >= 400:
            code, message = _error(response)
            raise UsageError(response.status_code, code, message)
        return response.text

    async def aclose(self) -> None:
        await self._client.aclose()


def _error(response: httpx.Response) -> tuple[str, str]:
    """``code`` and ``message`` (and any ``fields``) of the seed's error body."""
    code, message = f"http_{response.status_code}", response.reason_phrase
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict):
        code = str(body.get("code") or code)[:100]
        message = str(body.get("message") or message)[:300]
        fields = body.get("fields")
        if isinstance(fields, list):
            named = [
                f"{f.get('name')}: {f.get('description')}"
                for f in fields[:5]
                if isinstance(f, dict)
            ]
            if named:
                message += " (" + "; ".join(named)[:300] + ")"
    return scrub(code), scrub(message)
