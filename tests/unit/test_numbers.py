"""The E.164 fast path gives exactly the answer ``phonenumbers`` gives.

``normalize_number`` answers plain ``+digits`` numbers from a cache per
(calling code, national length); ``_slow`` is ``phonenumbers`` itself. Every
number here goes through both, with the cache in whatever state earlier
examples left it (so a wrong cached answer for one number shows on the next
with the same key): the same E.164 result, or a ValueError with the same message.
"""

from __future__ import annotations

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from phonenumbers.phonenumberutil import COUNTRY_CODE_TO_REGION_CODE

from campaigns.domain import numbers
from campaigns.domain.numbers import normalize_number

CODES = sorted(str(code) for code in COUNTRY_CODE_TO_REGION_CODE)


def answer(fn: object, value: str, strict: bool = False) -> str:
    try:
        result: str = fn(value, strict=strict)  # type: ignore[operator]
    except ValueError as exc:
        return f"error: {exc}"
    return result


def slow(value: str, *, strict: bool = False) -> str:
    return numbers._slow(value, strict)


def agree(value: str, strict: bool = False) -> None:
    assert answer(normalize_number, value, strict) == answer(slow, value, strict), value


national = st.one_of(
    st.text("0123456789", max_size=19),
    st.builds(lambda z, d: "0" * z + d, st.integers(1, 4), st.text("0123456789", max_size=14)),
    st.integers(0, 17).flatmap(lambda n: st.text("0123456789", min_size=n, max_size=n)),
)


@settings(max_examples=1500, deadline=None)
@given(st.sampled_from(CODES), national)
@example("1", "2125550123")
@example("1", "1125550123")  # NANP national prefix 1: parse strips it
@example("39", "0612345678")  # Italian leading zero kept
@example("39", "000")
@example("44", "07911123456")  # UK national prefix 0
@example("54", "91123456789")  # Argentina's mobile 9: a transform rule
@example("7", "9123456789")
@example("800", "12345678")  # non-geographic
@example("979", "123456789")
@example("882", "0000")
@example("1", "")
@example("1", "12")
def test_fast_path_agrees_with_phonenumbers(code: str, digits: str) -> None:
    value = f"+{code}{digits}"
    agree(value)
    agree(value, strict=True)


@settings(max_examples=500, deadline=None)
@given(st.text("+0123456789 -()", max_size=22))
def test_any_digits_agree(value: str) -> None:
    agree(value)


@pytest.mark.parametrize("code", CODES)
def test_every_calling_code_and_length_agrees(code: str) -> None:
    """Each (calling code, national length) key, filled from a cold cache by one
    number and then asked about others: the cached answer holds for all of them."""
    numbers._POSSIBLE.clear()
    for length in range(0, 19):
        for lead in "123456789":
            agree(f"+{code}{(lead * length)[:length]}")
            agree(f"+{code}{(lead + '0' * length)[:length]}")


def test_a_canonical_number_is_returned_as_is() -> None:
    assert normalize_number("+15551230002") == "+15551230002"
    assert normalize_number(" +1 (555) 123-0002 ") == "+15551230002"
    with pytest.raises(ValueError, match="not a possible phone number"):
        normalize_number("+1555")


def nanp_agrees(value: str) -> None:
    """When the NANP shortcut says yes, ``phonenumbers`` finds the number possible
    and its E.164 form is the value itself (strict or not, nothing else is claimed)."""
    if numbers.nanp_possible(value):
        assert slow(value) == value, value


@settings(max_examples=2000, deadline=None)
@given(
    st.one_of(
        st.text("0123456789", min_size=10, max_size=10).map(lambda d: f"+1{d}"),
        st.text("+0123456789", max_size=14),
        st.text(max_size=14).map(lambda t: f"+1{t}"),
    )
)
@example("+12015550123")
@example("+11015550123")  # national prefix 1: not the shortcut's
@example("+10015550123")
@example("+1201555012")  # nine digits
@example("+120155501234")  # eleven
@example("+1" + "\uff12" * 10)  # fullwidth digits: not ASCII
def test_nanp_shortcut_agrees_with_phonenumbers(value: str) -> None:
    nanp_agrees(value)
    assert bool(numbers.nanp_possible(value)) == (
        len(value) == 12 and value[:2] == "+1" and value[2] in "23456789" and value[2:].isascii()
        and value[2:].isdigit()
    ), value  # fmt: skip


def test_every_nanp_area_code_agrees() -> None:
    """Every area code 000-999, valid, unassigned and impossible alike, with exchanges
    of each shape: the shortcut, the cache and ``phonenumbers`` all agree."""
    for area in range(1000):
        for exchange in ("000", "101", "211", "555", "999"):
            for line in ("0000", "9999"):
                value = f"+1{area:03d}{exchange}{line}"
                nanp_agrees(value)
                agree(value)
                agree(value, strict=True)
