"""Talkdesk Billing Insights monthly usage: a usage source, as docs.talkdesk.com documents it.

``GET {base}/express/usage/month`` (reference/getAccountUsageMonth) takes
``filter`` (at most 1,600 characters: ``(month eq 'YYYY-MM' and account_id eq
'…') or …``), ``page`` (>= 1), ``per_page`` (1-250) and ``order_by``; many
accounts are split over several filters, and every page of each is followed
(HAL links read from ``_links`` or from the top level, where the reference
lists them). ``price``, ``number_of_units`` and ``total_amount`` are doubles
on the wire: they are read from the raw text as :class:`~decimal.Decimal`
(``0.1`` is exactly 100,000 micros), never through a binary float. Without
configured accounts, ``GET {base}/express/accounts`` lists them. A 403 names
the accounts refused and is never read as zero usage. Tokens come from the
OAuth2 client-credentials grant (docs/client-credentials, reference/cc-basic):
HTTP Basic client authentication, ``scope`` in the form body, cached until
shortly before ``expires_in`` and fetched again once on a 401.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation, localcontext
from typing import Any
from urllib.parse import urljoin

import httpx
from pydantic import SecretStr

from campaigns.domain.money import MAX_MICROS, MICROS_PER_UNIT, round_micros
from campaigns.logs import scrub
from campaigns.providers._http import network_error, provider_client
from campaigns.providers.base import brief, currency_refusal
from campaigns.settings import Settings

__all__ = [
    "MAX_FILTER",
    "MONTH",
    "BillingInsights",
    "ClientCredentials",
    "MonthlyUsage",
    "UsageError",
    "UsageRecord",
    "UsageRefused",
    "account_filters",
    "decimal_micros",
    "parse_page",
    "usage_client",
]

MONTH = re.compile(r"[0-9]{4}-(0[1-9]|1[0-2])", re.ASCII)
USAGE_PATH = "express/usage/month"
ACCOUNTS_PATH = "express/accounts"
MAX_FILTER = 1600
"""reference/getAccountUsageMonth: ``filter`` is a string of length <= 1600."""
PER_PAGE = 250
"""The largest ``per_page`` the reference allows (1 to 250, default 50)."""
ORDER_BY = "id:desc"
"""The reference's default, sent explicitly so every page reads the same order."""
_MAX_PAGES = 1000
_ACCOUNT = re.compile(r"[A-Za-z0-9_-]{1,64}", re.ASCII)
_LINKS = ("first", "last", "next", "prev", "self", "show")


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
        if isinstance(value, Decimal) and abs(value.adjusted()) > 40:
            raise InvalidOperation  # 1e999999 would take the exponent's time to scale
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
    month: str
    accounts: list[str]
    records: list[UsageRecord] = field(default_factory=list)
    pages: int = 0
    filters: int = 0

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
    total = row.get("total_amount")
    if total is None:
        # The usage page lists price and number_of_units; the total is their exact product.
        if price is None or units is None:
            raise ValueError(f"{where}: neither total_amount nor price and number_of_units")
        with localcontext() as exact:
            exact.prec = 60
            total = Decimal(price) * Decimal(units)
    direction = row.get("direction")
    account = row.get("account_id", row.get("account ID"))
    if not isinstance(account, str):
        raise ValueError(f"{where}.account_id: expected a string, got {brief(account)}")
    return UsageRecord(
        id=_text(row, "id", where),
        account_id=account,
        product_id=_text(row, "product_id", where, optional=True),
        month=month,
        type=_text(row, "type", where),
        description=_text(row, "description", where, optional=True),
        currency=currency,
        unit=_text(row, "unit", where, optional=True),
        price="" if price is None else str(price),
        number_of_units="" if units is None else str(units),
        total_micros=decimal_micros(total, f"{where}.total_amount"),
        direction=direction if isinstance(direction, str) else None,
    )


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"non-standard JSON constant {name}")


def _document(text: str) -> dict[str, Any]:
    try:
        document = json.loads(text, parse_float=Decimal, parse_constant=_refuse_constant)
    except (ValueError, RecursionError):
        raise ValueError("body: not JSON") from None
    if not isinstance(document, dict):
        raise ValueError("body: expected a JSON object")
    return document


def _next_link(document: dict[str, Any]) -> str | None:
    """``next.href`` from ``_links`` or, as the usage reference lists it, the top level."""
    links = document.get("_links")
    if links is not None and not isinstance(links, dict):
        raise ValueError("_links: expected an object")
    for where, holder in (("_links.next", links or {}), ("next", document)):
        following = holder.get("next")
        if following is None:
            continue
        href = following.get("href") if isinstance(following, dict) else None
        if not isinstance(href, str) or not href:
            raise ValueError(f"{where}.href: expected a URL")
        return href
    return None


def _rows(document: dict[str, Any], name: str) -> list[Any]:
    embedded = document.get("_embedded", {})
    rows = embedded.get(name, []) if isinstance(embedded, dict) else None
    if not isinstance(rows, list):
        raise ValueError(f"_embedded.{name}: expected a list")
    return rows


def parse_page(text: str) -> tuple[list[UsageRecord], str | None]:
    """One usage page from its raw text: the records and the ``next`` link, if any.

    Numbers are parsed as Decimal straight from the text; ValueError names
    the field at fault.
    """
    document = _document(text)
    rows = _rows(document, "usage")
    records = [_record(row, f"_embedded.usage[{i}]") for i, row in enumerate(rows)]
    return records, _next_link(document)


def parse_accounts_page(text: str) -> tuple[list[str], str | None]:
    """One ``/express/accounts`` page: the account IDs and the ``next`` link."""
    document = _document(text)
    found: list[str] = []
    for index, row in enumerate(_rows(document, "accounts")):
        value = row.get("id") if isinstance(row, dict) else None
        if not isinstance(value, str) or not _ACCOUNT.fullmatch(value):
            raise ValueError(f"_embedded.accounts[{index}].id: expected an account ID")
        found.append(value)
    return found, _next_link(document)


def _term(month: str, account: str) -> str:
    return f"(month eq '{month}' and account_id eq '{account}')"


def account_filters(month: str, accounts: list[str], limit: int = MAX_FILTER) -> list[list[str]]:
    """``accounts`` in groups whose filter (see :func:`usage_filter`) fits ``limit``.

    Only the reference's own forms are used: ``(month eq … and account_id eq
    …)`` terms joined by ``or``.
    """
    groups: list[list[str]] = []
    size = 0
    for account in accounts:
        if not _ACCOUNT.fullmatch(account):
            raise ValueError(f"account {brief(account)}: expected letters, digits, '_' or '-'")
        term = len(_term(month, account))
        if groups and size + len(" or ") + term <= limit:
            groups[-1].append(account)
            size += len(" or ") + term
        else:
            groups.append([account])
            size = term
    return groups


def usage_filter(month: str, accounts: list[str]) -> str:
    return " or ".join(_term(month, account) for account in accounts)


@dataclass(slots=True)
class _Token:
    value: str
    refresh_at: float


class ClientCredentials:
    """OAuth2 client-credentials tokens (docs.talkdesk.com reference/cc-basic).

    ``POST token_url`` with HTTP Basic ``client_id:client_secret`` and the form
    ``grant_type=client_credentials&scope=…``; the answer's ``access_token`` is
    reused until shortly before its ``expires_in`` (a tenth of it, at most 60 s),
    and :meth:`invalidate` drops it (a 401 from the API).
    """

    def __init__(
        self,
        token_url: str,
        client_id: str,
        client_secret: SecretStr,
        scope: str,
        *,
        timeout: float = 10.0,
        transport: httpx.AsyncBaseTransport | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.token_url = token_url
        self._auth = httpx.BasicAuth(client_id, client_secret.get_secret_value())
        self._scope = scope
        self._clock = clock
        self._token: _Token | None = None
        self.fetched = 0
        self._client = provider_client(timeout=timeout, transport=transport)

    def invalidate(self) -> None:
        self._token = None

    async def token(self) -> str:
        if self._token is not None and self._clock() < self._token.refresh_at:
            return self._token.value
        form = {"grant_type": "client_credentials", "scope": self._scope}
        try:
            response = await self._client.post(self.token_url, data=form, auth=self._auth)
        except httpx.HTTPError as exc:
            failed = network_error(exc)
            raise UsageError(None, failed.code, f"token endpoint: {failed.message}") from None
        if response.status_code != 200:
            code, message = _token_error(response)
            raise UsageError(response.status_code, code, f"token endpoint: {message}")
        try:
            body = response.json()
        except ValueError:
            body = None
        value = body.get("access_token") if isinstance(body, dict) else None
        expires = body.get("expires_in") if isinstance(body, dict) else None
        if not isinstance(value, str) or not value or not value.isascii():
            raise UsageError(200, "invalid_response", "token endpoint: access_token: missing")
        if isinstance(expires, bool) or not isinstance(expires, int) or expires <= 0:
            raise UsageError(
                200, "invalid_response", "token endpoint: expires_in: expected seconds"
            )
        self.fetched += 1
        margin = min(60.0, expires / 10)
        self._token = _Token(value, self._clock() + expires - margin)
        return value

    async def aclose(self) -> None:
        await self._client.aclose()


class BillingInsights:
    """Client of the monthly usage endpoint for a set of accounts (or every account listed)."""

    source = "billing_insights"

    def __init__(
        self,
        base_url: str,
        tokens: ClientCredentials,
        accounts: list[str] | None = None,
        *,
        timeout: float = 10.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.accounts = list(accounts) if accounts else None
        self.tokens = tokens
        self._base = httpx.URL(base_url.rstrip("/") + "/")
        self._client = provider_client(timeout=timeout, transport=transport)

    async def list_accounts(self) -> list[str]:
        """Every account under the organisation (reference/billing-insights-get-accounts)."""
        url: str | None = str(self._base.join(ACCOUNTS_PATH))
        params: dict[str, str] | None = {"page": "1", "per_page": str(PER_PAGE)}
        found: list[str] = []
        pages = 0
        seen: set[str] = set()
        while url is not None:
            if pages >= _MAX_PAGES or url in seen:
                raise UsageError(
                    200, "invalid_response", f"accounts: paging did not end after {pages} pages"
                )
            seen.add(url)
            text = await self._get(url, params, [])
            try:
                accounts, following = parse_accounts_page(text)
            except ValueError as exc:
                raise UsageError(
                    200, "invalid_response", f"accounts page {pages + 1}: {exc}"
                ) from None
            found.extend(a for a in accounts if a not in found)
            pages += 1
            url = None if following is None else self._follow(following)
            params = None
        return found

    async def monthly_usage(self, month: str) -> MonthlyUsage:
        """Every record of ``month`` (YYYY-MM) for the accounts, over all filters and pages."""
        if not MONTH.fullmatch(month):
            raise ValueError(f"month: expected YYYY-MM, got {brief(month)}")
        accounts = self.accounts if self.accounts is not None else await self.list_accounts()
        usage = MonthlyUsage(month, accounts)
        seen_ids: set[str] = set()
        for group in account_filters(month, accounts):
            usage.filters += 1
            url: str | None = str(self._base.join(USAGE_PATH))
            params: dict[str, str] | None = {
                "filter": usage_filter(month, group),
                "page": "1",
                "per_page": str(PER_PAGE),
                "order_by": ORDER_BY,
            }
            seen: set[str] = set()
            while url is not None:
                if usage.pages >= _MAX_PAGES or url in seen:
                    raise UsageError(
                        200, "invalid_response", f"paging did not end after {usage.pages} pages"
                    )
                seen.add(url)
                text = await self._get(url, params, group)
                try:
                    records, following = parse_page(text)
                except ValueError as exc:
                    raise UsageError(
                        200, "invalid_response", f"page {usage.pages + 1}: {exc}"
                    ) from None
                for record in records:
                    if record.id not in seen_ids:  # a record that moved across a page edge
                        seen_ids.add(record.id)
                        usage.records.append(record)
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
            raise UsageError(200, "invalid_response", "next.href points at another host")
        return str(target)

    async def _get(self, url: str, params: dict[str, str] | None, accounts: list[str]) -> str:
        """GET with the bearer token; a 401 fetches a new token and tries once more."""
        for attempt in (1, 2):
            headers = {"Authorization": f"Bearer {await self.tokens.token()}"}
            try:
                response = await self._client.get(url, params=params, headers=headers)
            except httpx.HTTPError as exc:
                failed = network_error(exc)
                raise UsageError(None, failed.code, failed.message) from None
            if response.status_code == 401 and attempt == 1:
                self.tokens.invalidate()
                continue
            if response.status_code == 403:
                code, message = _error(response)
                named = [a for a in accounts if a in response.text]
                raise UsageRefused(named or accounts, code, message)
            if response.status_code >= 400:
                code, message = _error(response)
                raise UsageError(response.status_code, code, message)
            return response.text
        raise AssertionError("unreachable")  # pragma: no cover

    async def aclose(self) -> None:
        await self._client.aclose()
        await self.tokens.aclose()


def _error(response: httpx.Response) -> tuple[str, str]:
    """Talkdesk's error body: ``code``, ``message``, ``description`` and each ``fields[]``."""
    code, message = f"http_{response.status_code}", response.reason_phrase
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict):
        code = str(body.get("code") or code)[:100]
        message = str(body.get("message") or message)[:300]
        description = body.get("description")
        if isinstance(description, str) and description:
            message += f": {description[:300]}"
        fields = body.get("fields")
        if isinstance(fields, list):
            named = [
                f"{f.get('name')}: {f.get('description')}"
                for f in fields[:10]
                if isinstance(f, dict)
            ]
            if named:
                message += " (" + "; ".join(named)[:600] + ")"
    return scrub(code), scrub(message)


def _token_error(response: httpx.Response) -> tuple[str, str]:
    """The token endpoint's ``{error, error_description}`` (or Talkdesk's usual body)."""
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict) and isinstance(body.get("error"), str):
        text = str(body.get("error_description") or "")[:300]
        return scrub(body["error"][:100]), scrub(text or response.reason_phrase)
    return _error(response)


def usage_client(settings: Settings) -> BillingInsights | None:
    """The Billing Insights client the settings describe, or None without ``DISPATCHER_USAGE_URL``."""
    endpoint = settings.usage_token_endpoint
    if (
        settings.usage_url is None
        or endpoint is None
        or settings.usage_client_id is None
        or settings.usage_client_secret is None
    ):
        return None
    timeout = settings.provider_timeout_seconds
    tokens = ClientCredentials(
        endpoint,
        settings.usage_client_id,
        settings.usage_client_secret,
        settings.usage_scope,
        timeout=timeout,
    )
    accounts = settings.usage_account_list or None
    return BillingInsights(settings.usage_url, tokens, accounts, timeout=timeout)
