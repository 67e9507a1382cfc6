"""Money as integer micros, parsed and formatted exactly.

A binary float never holds an amount, and neither does a rounding context:
decimal strings are read digit by digit with a strict ASCII grammar (an
optional ``-``, digits, optionally ``.`` and more digits) and converted to a
whole number of micros with integer arithmetic, or they are refused. Exponents,
non-ASCII digits, underscores, whitespace and anything above :data:`MAX_MICROS`
are refused, so a value is either exact or an error, never silently rounded.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from decimal import ROUND_CEILING, Decimal

__all__ = [
    "MAX_MICROS",
    "MICROS_PER_UNIT",
    "MoneyError",
    "amount_to_micros",
    "bounded_whole",
    "currency_places",
    "format_micros",
    "format_money",
    "humanize_micros",
    "parse_micros",
    "round_micros",
]

MICROS_PER_UNIT = 1_000_000
MAX_MICROS = 2**53 - 1
"""Redis Lua compares numbers as doubles: above 2**53 micros (about 9 billion
units) integers stop being exact, so nothing larger is accepted."""
_PLACES = 6

_AMOUNT = re.compile(r"(-?)([0-9]+)(?:\.([0-9]+))?", re.ASCII)
"""The whole grammar: ``[0-9]`` (not ``\\d``) so no other script's digits pass."""
_MAX_TEXT = 64
"""Longer than any in-range amount needs (16 digits, a sign, a point, 6 places)
plus generous leading zeros or a provider's extra places; longer is refused
before any work is done on it."""


class MoneyError(ValueError):
    """An amount that cannot be represented exactly in micros."""


def bounded_whole(value: object, field: str, *, minimum: int = 0) -> int:
    """An external whole amount (micros, credits, tokens) within ``minimum..MAX_MICROS``.

    Every amount from outside meets the same exact bounds as a parsed decimal
    amount: a Voxpria balance of 10**30 credits is refused like 10**30 micros.
    Raises MoneyError naming ``field``.
    """
    if isinstance(value, bool) or not isinstance(value, int):
        raise MoneyError(f"{field}: expected a whole number, got {type(value).__name__}")
    if not minimum <= value <= MAX_MICROS:
        shown = (
            str(value) if value.bit_length() <= 128 else f"an integer of {value.bit_length()} bits"
        )
        raise MoneyError(f"{field}: {shown} is out of range ({minimum} to {MAX_MICROS})")
    return value


def _show(text: str) -> str:
    """The offending text for an error message, cut short: input may be huge."""
    return repr(text) if len(text) <= 40 else repr(text[:40]) + f"... ({len(text)} characters)"


def _split(text: str) -> tuple[bool, str, str]:
    """Check the grammar; return (negative, whole digits, fraction digits)."""
    if len(text) > _MAX_TEXT:
        raise MoneyError(f"amount too long: {_show(text)}")
    match = _AMOUNT.fullmatch(text)
    if match is None:
        raise MoneyError(f"not a plain decimal amount: {_show(text)}{_why(text)}")
    sign, whole, fraction = match.groups()
    return sign == "-", whole, fraction or ""


def _why(text: str) -> str:
    """Name the usual reason a near-number was refused, so the error can be acted on."""
    lowered = text.lower()
    if any(ch.isspace() for ch in text):
        return " (no whitespace)"
    if "e" in lowered and lowered.lstrip("+-")[:1].isdigit():
        return " (no exponent notation: write the digits out)"
    if "_" in text:
        return " (no '_' separators)"
    if any(not ch.isascii() for ch in text):
        return " (ASCII digits only)"
    if lowered.lstrip("+-") in ("nan", "snan", "inf", "infinity"):
        return " (not a finite amount)"
    return " (expected digits, optionally '.' and up to 6 decimal places)"


def _checked(micros: int, text: str, *, allow_negative: bool) -> int:
    if abs(micros) > MAX_MICROS:
        raise MoneyError(f"amount out of range (at most {MAX_MICROS} micros): {_show(text)}")
    if micros < 0 and not allow_negative:
        raise MoneyError(f"amount must not be negative: {_show(text)}")
    return micros


def parse_micros(value: object, *, allow_negative: bool = False) -> int:
    """Parse a decimal string (units of currency) or an int (micros) into micros.

    Floats are refused outright: by the time a float reaches us its exact
    value is already lost. ``bool`` is refused too, since it is an ``int``.
    More than 6 decimal places is refused even when the extra digits are
    zeros: the input says more than a micro and we do not guess what it meant.
    """
    if isinstance(value, bool | float):
        raise MoneyError("money must be a decimal string or integer micros, not a float")
    if isinstance(value, int):
        return _checked(value, str(value), allow_negative=allow_negative)
    if not isinstance(value, str):
        raise MoneyError(
            f"money must be a decimal string or integer micros, not {type(value).__name__}"
        )
    negative, whole, fraction = _split(value)
    if len(fraction) > _PLACES:
        raise MoneyError(
            f"more precision than one micro (at most {_PLACES} decimal places): {_show(value)}"
        )
    micros = int(whole) * MICROS_PER_UNIT + int(fraction.ljust(_PLACES, "0"))
    return _checked(-micros if negative else micros, value, allow_negative=allow_negative)


def round_micros(amount: Decimal) -> int:
    """Round a fractional micro amount up: a provider never bills a part-micro down."""
    return int(amount.to_integral_value(rounding=ROUND_CEILING))


def format_micros(micros: int, places: int = 2) -> str:
    """Format micros as a decimal string, rounding (half-even) only for display.

    ``places=6`` is exact; fewer places is for people, never for sums. Integer
    arithmetic throughout, so even an amount beyond any decimal context (a
    total of many worst cases) is shown exactly, never in exponent form.
    """
    places = max(0, min(places, _PLACES))
    step = 10 ** (_PLACES - places)
    quotient, remainder = divmod(abs(micros), step)
    if 2 * remainder > step or (2 * remainder == step and quotient % 2 == 1):
        quotient += 1
    whole, fraction = divmod(quotient, 10**places)
    sign = "-" if micros < 0 else ""
    if places == 0:
        return f"{sign}{whole}"
    return f"{sign}{whole}.{fraction:0{places}d}"


def amount_to_micros(text: str) -> int:
    """A provider's decimal amount in micros, any sub-micro remainder rounded up.

    Providers may quote more places than a micro; rounding up keeps the
    budget on the safe side, and it is the only rounding money ever gets. The
    grammar and the range are as strict as :func:`parse_micros`; floats are
    refused, and so is any negative charge.
    """
    if not isinstance(text, str):
        raise MoneyError(f"provider amount must be a decimal string, not {type(text).__name__}")
    negative, whole, fraction = _split(text)
    if negative:
        raise MoneyError(f"a provider charge cannot be negative: {_show(text)}")
    micros = int(whole) * MICROS_PER_UNIT + int(fraction[:_PLACES].ljust(_PLACES, "0"))
    if fraction[_PLACES:].strip("0"):
        micros += 1
    return _checked(micros, text, allow_negative=False)


_MINOR_UNITS: Mapping[str, int] = {
    **dict.fromkeys(
        [
            "BIF",
            "CLP",
            "DJF",
            "GNF",
            "ISK",
            "JPY",
            "KMF",
            "KRW",
            "PYG",
            "RWF",
            "UGX",
            "UYI",
            "VND",
            "VUV",
            "XAF",
            "XOF",
            "XPF",
        ],
        0,
    ),
    **dict.fromkeys(["BHD", "IQD", "JOD", "KWD", "LYD", "OMR", "TND"], 3),
    **dict.fromkeys(["CLF", "UYW"], 4),
}
"""ISO 4217 minor units that are not 2 (the usual number of decimals)."""

_MICROS_PHRASE = re.compile(r"(?<![\w.])(-?[0-9]{1,16}) micros\b", re.ASCII)


def currency_places(currency: str) -> int:
    """The decimals a currency is usually written with (ISO 4217; 2 if not listed)."""
    return _MINOR_UNITS.get(currency.upper(), 2)


def format_money(micros: int, currency: str, *, exact: bool = False) -> str:
    """Money for people: ``EUR 1,234.57`` (the currency's usual decimals, thousands
    separated, rounded half-even for display only).

    ``exact`` adds decimals, up to 6, until nothing is rounded away: a call
    costing ``0.0036`` reads ``EUR 0.0036``, never ``EUR 0.00``.
    """
    places = currency_places(currency)
    if exact:
        while places < _PLACES and micros % 10 ** (_PLACES - places):
            places += 1
    text = format_micros(micros, places)
    sign = "-" if text.startswith("-") else ""
    whole, _, fraction = text.lstrip("-").partition(".")
    grouped = f"{int(whole):,}"
    return f"{currency} {sign}{grouped}{'.' + fraction if fraction else ''}"


def humanize_micros(text: str, currency: str) -> str:
    """Rewrite ``N micros`` in a stored message (written for exactness) as money for people.

    Halt messages are stored with integer micros, exact and language-neutral;
    this is where an operator's screen turns them into ``EUR 0.60``.
    """
    return _MICROS_PHRASE.sub(lambda m: format_money(int(m.group(1)), currency, exact=True), text)
