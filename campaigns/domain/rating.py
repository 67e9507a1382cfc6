"""The rate model: what a call of a given length costs, and the most it can cost.

Billing increments are written ``initial/next`` (telecom convention): a call
of ``s > 0`` seconds is billed ``initial`` seconds if ``s <= initial``, else
``initial + ceil((s - initial) / next) * next``. A connect fee is added once;
the result is rounded up to a whole micro. Token-eligible services spend
whole-minute tokens first and overflow to credit (the VoIPBIN billing tutorial).

Every price and every cost stays within :data:`~campaigns.domain.money.MAX_MICROS`
(the most Redis' Lua holds exactly); a rate whose worst case would pass it is
refused with :class:`RateOverflowError`, never carried as a float or a huge int.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from campaigns.domain.money import MAX_MICROS, MoneyError, parse_micros

__all__ = [
    "PRESETS",
    "SMS_MICROS",
    "Charge",
    "Increments",
    "Rate",
    "RateError",
    "RateOverflowError",
    "ceil_div",
]

_INCREMENTS = re.compile(r"^\s*(\d+)\s*/\s*(\d+)\s*$")


class RateError(ValueError):
    """A rate or increment that makes no sense."""


class RateOverflowError(RateError, MoneyError):
    """A price or a cost above the micros ceiling; ``quantity`` names which.

    Both a :class:`RateError` and a :class:`~campaigns.domain.money.MoneyError`, so a
    caller that guards either one catches it.
    """

    def __init__(self, quantity: str, message: str) -> None:
        super().__init__(f"{quantity}: {message}")
        self.quantity = quantity


def _micros_text(value: int) -> str:
    """An integer for a message, exact; a number too long to be useful is summarised."""
    if value.bit_length() <= 128:
        return f"{value} micros"
    return f"a {value.bit_length()}-bit number of micros"


def _ceiling(quantity: str, value: int, what: str) -> int:
    if value > MAX_MICROS:
        raise RateOverflowError(
            quantity,
            f"{what} is {_micros_text(value)}, above the ceiling of {MAX_MICROS} micros",
        )
    return value


def ceil_div(a: int, b: int) -> int:
    """Integer ceiling division for non-negative ``a`` and positive ``b``."""
    return -(-a // b)


@dataclass(frozen=True, slots=True)
class Increments:
    initial: int = 60
    next: int = 60

    def __post_init__(self) -> None:
        if self.initial < 1 or self.next < 1:
            raise RateError("billing increments must be whole seconds >= 1")

    @classmethod
    def parse(cls, text: str) -> Increments:
        match = _INCREMENTS.match(text)
        if match is None:
            raise RateError(f"increments must look like '60/60', got {text!r}")
        return cls(int(match.group(1)), int(match.group(2)))

    def billed_seconds(self, seconds: int) -> int:
        if seconds <= 0:
            return 0
        if seconds <= self.initial:
            return self.initial
        return self.initial + ceil_div(seconds - self.initial, self.next) * self.next

    def __str__(self) -> str:
        return f"{self.initial}/{self.next}"


@dataclass(frozen=True, slots=True)
class Charge:
    """What one call consumes: whole tokens and credit micros."""

    tokens: int
    credit_micros: int


@dataclass(frozen=True, slots=True)
class Rate:
    """A per-minute price in micros, billed in increments, with a connect fee.

    ``tokens_per_minute`` > 0 makes the service token-eligible (VN calls,
    TTS); 0 means credit-only (PSTN, SMS).
    """

    per_minute_micros: int
    increments: Increments = field(default_factory=Increments)
    connect_fee_micros: int = 0
    tokens_per_minute: int = 0

    def __post_init__(self) -> None:
        if self.per_minute_micros < 0 or self.connect_fee_micros < 0:
            raise RateError("prices must not be negative")
        if self.tokens_per_minute < 0:
            raise RateError("tokens_per_minute must not be negative")
        _ceiling("per_minute", self.per_minute_micros, "the per-minute price")
        _ceiling("connect_fee", self.connect_fee_micros, "the connect fee")

    @classmethod
    def from_decimal(
        cls,
        per_minute: str | int,
        increments: str = "60/60",
        connect_fee: str | int = 0,
        *,
        per_second: str | int | None = None,
    ) -> Rate:
        """Build a rate from decimal strings, as written in specs and seeds."""
        if per_second is not None:
            per_minute_micros = _ceiling(
                "per_second", parse_micros(per_second) * 60, "the per-second price times 60"
            )
        else:
            per_minute_micros = parse_micros(per_minute)
        return cls(
            per_minute_micros=per_minute_micros,
            increments=Increments.parse(increments),
            connect_fee_micros=parse_micros(connect_fee),
        )

    def billed_seconds(self, seconds: int) -> int:
        return self.increments.billed_seconds(seconds)

    def cost_micros(self, seconds: int) -> int:
        """Credit cost of a call of ``seconds``, with no tokens to spend."""
        return self.charge(seconds).credit_micros

    def charge(self, seconds: int, tokens_available: int = 0) -> Charge:
        """Tokens first (whole minutes), then credit for the overflow.

        Raises :class:`RateOverflowError` when the credit would pass the micros
        ceiling: such a cost cannot be booked exactly.
        """
        billed = self.billed_seconds(seconds)
        if billed == 0:
            return Charge(0, 0)
        fee = self.connect_fee_micros
        if self.tokens_per_minute == 0 or tokens_available < self.tokens_per_minute:
            credit = ceil_div(billed * self.per_minute_micros, 60) + fee
            return Charge(0, self._bounded(credit, billed))
        minutes = ceil_div(billed, 60)
        covered = min(minutes, tokens_available // self.tokens_per_minute)
        overflow = minutes - covered
        credit = overflow * self.per_minute_micros + fee
        return Charge(covered * self.tokens_per_minute, self._bounded(credit, billed))

    def _bounded(self, credit: int, billed: int) -> int:
        what = f"the cost of {billed} billed seconds" if billed.bit_length() <= 64 else "the cost"
        return _ceiling("cost", credit, what)

    def worst_case_micros(self, max_call_seconds: int) -> int:
        """The most one call can cost: full duration, ceiling-rounded, no tokens.

        This is what the dispatcher reserves against the budget before it
        places a call. Above the micros ceiling (rate x max call length +
        connect fee) it raises :class:`RateOverflowError` naming ``worst_case``.
        """
        seconds = max(max_call_seconds, 1)
        try:
            return self.cost_micros(seconds)
        except RateOverflowError:
            worst = ceil_div(self.billed_seconds(seconds) * self.per_minute_micros, 60)
            raise RateOverflowError(
                "worst_case",
                f"one call of {seconds} s at {self.per_minute_micros} micros per minute "
                f"({self.increments} increments) plus a {self.connect_fee_micros} micro connect "
                f"fee costs {_micros_text(worst + self.connect_fee_micros)}, above the ceiling "
                f"of {MAX_MICROS} micros",
            ) from None


# The VoIPBIN billing tutorial (current): PSTN and SMS are credit-only; VN and TTS are
# token-eligible. Per-minute ceiling rounding throughout.
PRESETS: dict[str, Rate] = {
    "pstn_outgoing": Rate(per_minute_micros=10_000),
    "vn": Rate(per_minute_micros=1_000, tokens_per_minute=1),
    "tts": Rate(per_minute_micros=30_000, tokens_per_minute=3),
}
SMS_MICROS = 10_000
