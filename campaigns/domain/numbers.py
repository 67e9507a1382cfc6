"""Phone numbers: the E.164 form of a possible number, ``phonenumbers`` being the authority.

A contact list of a million numbers is mostly numbers already written in
canonical E.164 (``+`` and ASCII digits). For those, ``phonenumbers`` answers
from the country calling code and the length of the national number alone,
unless the national number starts with the region's national prefix (which
``parse`` may strip or transform):

- ``parse`` takes the shortest leading 1-3 digits that are a known calling
  code; the rest is the national number, unchanged unless it matches the
  region's ``national_prefix_for_parsing`` at its start; its leading zeros are
  kept, so formatting it as E.164 gives the input back;
- ``is_possible_number`` compares only the national number's *length* with
  the region's possible lengths (``_test_number_length``).

The commonest shape of all, ``+1`` and ten digits the first of which is 2-9
(every NANP area code, assigned or not), has one such key, ``("1", 10)``, and
the NANP's national prefix (``1``) cannot start it: :data:`nanp_possible`
answers it with one regular expression, its verdict checked against
``phonenumbers`` when this module is imported.

So :func:`normalize_number` asks ``phonenumbers`` once per (calling code,
national length) and reuses that answer for every plain number with the same
key; anything else (spaces, a national prefix, strict validity, an error to
explain) goes to ``phonenumbers`` itself. ``tests/unit/test_numbers.py`` checks
the two agree over every calling code and length.
"""

from __future__ import annotations

import re
from collections.abc import Callable

import phonenumbers
from phonenumbers.phonemetadata import PhoneMetadata
from phonenumbers.phonenumberutil import COUNTRY_CODE_TO_REGION_CODE

__all__ = ["is_region", "nanp_possible", "normalize_number"]

_PLAIN = re.compile(r"\+[1-9][0-9]{2,19}", re.ASCII)
"""Canonical-looking E.164 (used with ``fullmatch``); longer ones take the slow path."""


def _national_prefix(code: int) -> re.Pattern[str] | None:
    """The pattern ``parse`` strips a national prefix with, for this calling code's
    main region (the metadata ``parse`` and ``is_possible_number`` both use)."""
    region = phonenumbers.region_code_for_country_code(code)
    metadata = PhoneMetadata.metadata_for_region_or_calling_code(code, region)
    pattern = None if metadata is None else metadata.national_prefix_for_parsing
    return re.compile(pattern) if pattern else None


_CODES: dict[str, re.Pattern[str] | None] = {
    str(code): _national_prefix(code) for code in COUNTRY_CODE_TO_REGION_CODE
}
"""Every known calling code (as digits) -> its national-prefix pattern, if any."""

_POSSIBLE: dict[tuple[str, int], bool] = {}
"""(calling code, national length) -> whether such a plain number is possible."""


def _nanp_matcher() -> Callable[[str], object]:
    """``re.fullmatch`` of ``+1[2-9]`` and nine digits when ``phonenumbers`` leaves every
    such number as written and possible (its metadata: national prefix ``1``, national
    length 10 possible); else a matcher of nothing, and every number takes the path above."""
    prefix = _CODES.get("1")
    sample = "+12015550123"
    try:
        possible = _slow(sample, False) == sample
    except ValueError:
        possible = False
    if prefix is None or prefix.pattern != "1" or not possible:
        return lambda value: None
    return re.compile(r"\+1[2-9][0-9]{9}", re.ASCII).fullmatch


def is_region(value: object) -> bool:
    """A region ``phonenumbers`` knows (``US``, ``GB``): a spec's ``default_region``."""
    return isinstance(value, str) and value in phonenumbers.SUPPORTED_REGIONS


def _slow(value: str, strict: bool, region: str | None = None) -> str:
    """``phonenumbers`` itself: the E.164 form of a possible number, or ValueError.

    With ``region``, a national number (no ``+``) is read as that region's."""
    if not isinstance(value, str):
        raise ValueError("must be an E.164 number starting with '+'")
    international = value.strip().startswith("+")
    if not international and region is None:
        raise ValueError(
            "must be an E.164 number starting with '+' (or set the spec's default_region "
            "to read national numbers)"
        )
    try:
        parsed = phonenumbers.parse(value.strip(), None if international else region)
    except phonenumbers.NumberParseException as exc:
        raise ValueError(f"not a phone number: {exc}") from None
    if not phonenumbers.is_possible_number(parsed):
        raise ValueError(f"{value!r} is not a possible phone number")
    if strict and not phonenumbers.is_valid_number(parsed):
        raise ValueError(f"{value!r} is not a valid phone number")
    return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)


def _plain_key(value: str) -> tuple[str, int] | None:
    """(calling code, national length) of a number ``parse`` leaves as written, else None."""
    digits = value[1:]
    for size in (1, 2, 3):
        code = digits[:size]
        if code in _CODES:
            prefix = _CODES[code]
            national = digits[size:]
            if prefix is not None and prefix.match(national):
                return None
            return code, len(national)
    return None


nanp_possible: Callable[[str], object] = _nanp_matcher()
"""Truthy when ``value`` is ``+1`` and ten digits (the first 2-9): a possible number
whose E.164 form is ``value`` itself, exactly as :func:`normalize_number` (not strict)
would say; falsy says nothing (ask :func:`normalize_number`)."""


def normalize_number(value: str, *, strict: bool = False, region: str | None = None) -> str:
    """Return the E.164 form of a possible number, or raise ValueError.

    ``region`` (``US``, ``GB``): a number without ``+`` is a national number of
    that region (``(555) 123-0002``, ``020 7946 0958``); without it, refused.
    """
    if strict or not isinstance(value, str):
        return _slow(value, strict, region)
    if nanp_possible(value):
        return value
    if _PLAIN.fullmatch(value) is None:
        return _slow(value, strict, region)
    key = _plain_key(value)
    if key is None:
        return _slow(value, strict)
    possible = _POSSIBLE.get(key)
    if possible is None:
        try:
            possible = _slow(value, False) == value
        except ValueError:
            possible = False
        _POSSIBLE[key] = possible
    return value if possible else _slow(value, False)
