"""Money as integer micros, parsed and formatted exactly.

A binary float never holds an amount: decimal strings go through ``Decimal``
and must convert to a whole number of micros, or they are refused.
"""

from __future__ import annotations

from decimal import ROUND_CEILING, ROUND_HALF_EVEN, Decimal, InvalidOperation

__all__ = [
    "MICROS_PER_UNIT",
    "MoneyError",
    "amount_to_micros",
    "format_micros",
    "parse_micros",
    "round_micros",
]

MICROS_PER_UNIT = 1_000_000
MAX_MICROS = 2**53 - 1
"""Redis Lua compares numbers as doubles: above 2**53 micros (about 9 billion
units) integers stop being exact, so nothing larger is accepted."""
_MICRO = Decimal("0.000001")
_MAX_AMOUNT = Decimal(MAX_MICROS) / MICROS_PER_UNIT


def _decimal(text: str) -> Decimal:
    """Parse a finite decimal within range; a huge exponent is an error, not an overflow."""
    try:
        amount = Decimal(text.strip())
    except (InvalidOperation, ArithmeticError):
        raise MoneyError(f"not a decimal amount: {text!r}") from None
    if not amount.is_finite():
        raise MoneyError(f"not a finite amount: {text!r}")
    if amount.adjusted() > 16 or abs(amount) > _MAX_AMOUNT:
        raise MoneyError(f"amount out of range: {text!r}")
    return amount


class MoneyError(ValueError):
    """An amount that cannot be represented exactly in micros."""


def parse_micros(value: object, *, allow_negative: bool = False) -> int:
    """Parse a decimal string (units of currency) or an int (micros) into micros.

    Floats are refused outright: by the time a float reaches us its exact
    value is already lost. ``bool`` is refused too, since it is an ``int``.
    """
    if isinstance(value, bool | float):
        raise MoneyError("money must be a decimal string or integer micros, not a float")
    if isinstance(value, int):
        micros = value
    elif isinstance(value, str):
        text = value.strip()
        amount = _decimal(text)
        scaled = amount * MICROS_PER_UNIT
        if scaled != scaled.to_integral_value():
            raise MoneyError(f"more precision than one micro: {value!r}")
        micros = int(scaled)
    else:
        raise MoneyError(
            f"money must be a decimal string or integer micros, not {type(value).__name__}"
        )
    if abs(micros) > MAX_MICROS:
        raise MoneyError(f"amount out of range: {value!r}")
    if micros < 0 and not allow_negative:
        raise MoneyError(f"amount must not be negative: {value!r}")
    return micros


def round_micros(amount: Decimal) -> int:
    """Round a fractional micro amount up: a provider never bills a part-micro down."""
    return int(amount.to_integral_value(rounding=ROUND_CEILING))


def format_micros(micros: int, places: int = 2) -> str:
    """Format micros as a decimal string, rounding (half-even) only for display.

    ``places=6`` is exact; fewer places is for people, never for sums.
    """
    amount = Decimal(micros) / MICROS_PER_UNIT
    if places >= 6:
        return str(amount.quantize(_MICRO))
    return str(amount.quantize(Decimal(1).scaleb(-places), rounding=ROUND_HALF_EVEN))


def amount_to_micros(text: str) -> int:
    """A provider's decimal amount in micros, any sub-micro remainder rounded up.

    Providers may quote more places than a micro; rounding up keeps the
    budget on the safe side. Floats are refused as in :func:`parse_micros`.
    """
    if not isinstance(text, str):
        raise MoneyError(f"provider amount must be a decimal string, not {type(text).__name__}")
    micros = round_micros(_decimal(text) * MICROS_PER_UNIT)
    if micros < 0:
        raise MoneyError(f"a provider charge cannot be negative: {text!r}")
    return micros
