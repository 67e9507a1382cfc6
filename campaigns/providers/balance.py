"""Where the account balance comes from: the dialect's own, or Voxpria credits.

Selected by ``DISPATCHER_BALANCE_SOURCE``, independently of the dialect that
creates the calls. Every source answers one :class:`AccountBalance` (or None
when it has no balance at all, as MiniVoice) and raises
:class:`~campaigns.domain.errors.ProviderError` when the check fails.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import Any, Literal, Protocol

from campaigns.domain.errors import INVALID_RESPONSE, ProviderError
from campaigns.domain.money import MoneyError, bounded_whole
from campaigns.providers.base import Provider
from campaigns.providers.voxpria import VoxpriaCredits
from campaigns.settings import Settings

__all__ = [
    "AccountBalance",
    "BalanceSource",
    "ProviderBalance",
    "VoxpriaBalance",
    "make_balance_source",
    "voxpria_client",
]

Unit = Literal["micros", "credits"]


@dataclass(frozen=True, slots=True)
class AccountBalance:
    """A balance as of ``at_ms``: credit micros and tokens, or whole Voxpria credits."""

    source: str
    unit: Unit
    amount: int
    tokens: int
    at_ms: int

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, document: dict[str, Any]) -> AccountBalance | None:
        """A cached document back; None if it is not one of ours."""
        try:
            unit = document["unit"]
            if unit not in ("micros", "credits"):
                return None
            values = [document[k] for k in ("amount", "tokens", "at_ms")]
            if not all(isinstance(v, int) and not isinstance(v, bool) for v in values):
                return None
            return cls(str(document["source"]), unit, *values)
        except (KeyError, TypeError):
            return None


class BalanceSource(Protocol):
    source: str

    async def fetch(self) -> AccountBalance | None: ...

    async def aclose(self) -> None: ...


def _now_ms() -> int:
    return int(time.time() * 1000)


class ProviderBalance:
    """The dialect's own balance (VoIPBIN ``/billing_account``); None for MiniVoice."""

    source = "provider"

    def __init__(self, provider: Provider) -> None:
        self._provider = provider

    async def fetch(self) -> AccountBalance | None:
        balance = await self._provider.balance()
        if balance is None:
            return None
        return AccountBalance(
            self.source, "micros", balance.credit_micros, balance.tokens, _now_ms()
        )

    async def aclose(self) -> None:
        """The provider is the worker's; it closes it."""


class VoxpriaBalance:
    """Voxpria whole credits."""

    source = "voxpria"

    def __init__(self, client: VoxpriaCredits) -> None:
        self.client = client

    async def fetch(self) -> AccountBalance:
        credits = await self.client.credits()
        try:
            bounded_whole(credits, "data.balance")
        except MoneyError as exc:
            raise ProviderError(200, INVALID_RESPONSE, f"/credits: {exc}") from None
        return AccountBalance(self.source, "credits", credits, 0, _now_ms())

    async def aclose(self) -> None:
        await self.client.aclose()


def voxpria_client(settings: Settings) -> VoxpriaCredits | None:
    """The Voxpria credits client when it is the balance source, else None."""
    if settings.balance_source != "voxpria":
        return None
    assert settings.balance_url is not None and settings.balance_api_key is not None
    return VoxpriaCredits(
        settings.balance_url, settings.balance_api_key, timeout=settings.provider_timeout_seconds
    )


def make_balance_source(settings: Settings, provider: Provider) -> BalanceSource:
    client = voxpria_client(settings)
    return ProviderBalance(provider) if client is None else VoxpriaBalance(client)
