"""Voxpria credits (Voxpria's Credits API page, CONTRACT.md): a balance source.

The calls dialect is ``voxpria_calls.py``: it shares only the answer envelope
(:func:`envelope_data`), and a balance source serves every dialect.

``GET /api/v1/credits`` gives whole credits; ``GET /api/v1/credits/usage``
the per-day history whose ``cost`` is a display string (``"$13.50"``) that is
parsed exactly into micros or refused. Any non-2xx, or ``"success": false``,
is a failed check (:class:`ProviderError`): the caller never assumes the
balance is fine.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date

import httpx
from pydantic import SecretStr

from campaigns.domain.errors import ProviderError
from campaigns.domain.money import MoneyError, parse_micros
from campaigns.providers._http import provider_client, request
from campaigns.providers.base import brief

__all__ = [
    "MAX_CREDITS",
    "CreditsDay",
    "CreditsUsage",
    "VoxpriaCredits",
    "envelope_data",
    "parse_cost",
]

_COST = re.compile(r"\$([0-9]+(?:\.[0-9]+)?)", re.ASCII)
_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}", re.ASCII)


def parse_cost(value: object) -> int:
    """``"$13.50"`` as 13,500,000 micros; anything but ``$`` and a plain decimal is refused."""
    if not isinstance(value, str):
        raise ValueError(f"expected a string such as '$13.50', got {brief(value)}")
    match = _COST.fullmatch(value)
    if match is None:
        raise ValueError(f"expected '$' and a decimal amount such as '$13.50', got {brief(value)}")
    try:
        return parse_micros(match.group(1))
    except MoneyError as exc:
        raise ValueError(str(exc)) from None


MAX_CREDITS = 2**53 - 1
"""Credits are bounded like every other external amount (2^53 - 1: exact in any JSON reader)."""


def _count(value: object, field: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{field}: expected a whole number >= 0, got {brief(value)}")
    if value > MAX_CREDITS:
        raise ValueError(f"{field}: out of range (at most {MAX_CREDITS})")
    return value


@dataclass(frozen=True, slots=True)
class CreditsDay:
    date: str
    calls: int
    credits_used: int
    cost_micros: int


@dataclass(frozen=True, slots=True)
class CreditsUsage:
    """The usage history of a date range; ``cost_micros`` is in USD (the ``$`` of the seed)."""

    days: list[CreditsDay]
    calls: int
    credits_used: int
    cost_micros: int
    currency: str = "USD"


def envelope_data(payload: object, path: str, *, status: int = 200, failed: str) -> object:
    """``data`` of Voxpria's answer envelope ``{"success": true, "data": ...}``
    (the Credits and Calls API pages); ``failed`` is the code when ``success``
    is not true, ``invalid_response`` when there is no ``data``."""
    if not isinstance(payload, dict) or payload.get("success") is not True:
        raise ProviderError(status, failed, f"{path}: success is not true")
    if "data" not in payload:
        raise ProviderError(status, "invalid_response", f"{path}: no data")
    return payload["data"]


class VoxpriaCredits:
    """Bearer-authenticated client of the credits endpoints."""

    source = "voxpria"
    unit = "credits"

    def __init__(
        self,
        base_url: str,
        api_key: SecretStr,
        *,
        timeout: float = 10.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self._client = provider_client(
            base_url=base_url.rstrip("/"),
            headers={"Authorization": f"Bearer {api_key.get_secret_value()}"},
            timeout=timeout,
            transport=transport,
        )

    async def _data(self, path: str, params: dict[str, str] | None = None) -> dict[str, object]:
        payload = await request(self._client, "GET", path, params=params)
        data = envelope_data(payload, path, failed="credits_check_failed")
        if not isinstance(data, dict):
            raise ProviderError(200, "invalid_response", f"{path}: data: expected an object")
        return data

    async def credits(self) -> int:
        """The balance in whole credits."""
        data = await self._data("/credits")
        try:
            if data.get("currency", "credits") != "credits":
                raise ValueError(f"currency: expected 'credits', got {brief(data.get('currency'))}")
            return _count(data.get("balance"), "balance")
        except ValueError as exc:
            raise ProviderError(200, "invalid_response", f"/credits: data.{exc}") from None

    async def usage(self, start: date, end: date) -> CreditsUsage:
        """Per-day usage from ``start`` to ``end`` (inclusive, as the seed's example)."""
        params = {"startDate": start.isoformat(), "endDate": end.isoformat()}
        data = await self._data("/credits/usage", params)
        try:
            return _usage(data)
        except ValueError as exc:
            raise ProviderError(200, "invalid_response", f"/credits/usage: data.{exc}") from None

    async def aclose(self) -> None:
        await self._client.aclose()


def _usage(data: dict[str, object]) -> CreditsUsage:
    rows = data.get("usage")
    if not isinstance(rows, list):
        raise ValueError("usage: expected a list")
    days: list[CreditsDay] = []
    for index, row in enumerate(rows):
        where = f"usage[{index}]"
        if not isinstance(row, dict):
            raise ValueError(f"{where}: expected an object")
        day = row.get("date")
        if not isinstance(day, str) or not _DATE.fullmatch(day):
            raise ValueError(f"{where}.date: expected YYYY-MM-DD, got {brief(day)}")
        try:
            cost = parse_cost(row.get("cost"))
        except ValueError as exc:
            raise ValueError(f"{where}.cost: {exc}") from None
        days.append(
            CreditsDay(
                day,
                _count(row.get("calls"), f"{where}.calls"),
                _count(row.get("creditsUsed"), f"{where}.creditsUsed"),
                cost,
            )
        )
    total = data.get("total")
    if not isinstance(total, dict):
        raise ValueError("total: expected an object")
    try:
        total_cost = parse_cost(total.get("cost"))
    except ValueError as exc:
        raise ValueError(f"total.cost: {exc}") from None
    return CreditsUsage(
        days,
        _count(total.get("calls"), "total.calls"),
        _count(total.get("creditsUsed"), "total.creditsUsed"),
        total_cost,
    )
