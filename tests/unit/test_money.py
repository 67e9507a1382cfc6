"""Money: integer micros, parsed exactly, formatted for display only at the end."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from campaigns.domain.money import (
    MAX_MICROS,
    MICROS_PER_UNIT,
    MoneyError,
    amount_to_micros,
    format_micros,
    parse_micros,
    round_micros,
)


@pytest.mark.parametrize(
    ("text", "micros"),
    [
        ("0.01", 10_000),
        ("50.00", 50_000_000),
        ("50", 50_000_000),
        ("0", 0),
        ("0.000001", 1),
        ("69.77263", 69_772_630),
        ("0.000000", 0),
        ("007.50", 7_500_000),
        ("-0", 0),
        ("1234567890.123456", 1_234_567_890_123_456),
    ],
)
def test_parse_decimal_strings_exactly(text: str, micros: int) -> None:
    assert parse_micros(text) == micros


def test_micros_per_unit() -> None:
    assert MICROS_PER_UNIT == 1_000_000


def test_parse_int_is_micros() -> None:
    assert parse_micros(10_000) == 10_000
    assert parse_micros(0) == 0


@pytest.mark.parametrize("value", [0.01, 1.0, 0.0, float("nan"), float("inf")])
def test_floats_refused(value: float) -> None:
    with pytest.raises(MoneyError, match="float"):
        parse_micros(value)


@pytest.mark.parametrize("value", [True, False])
def test_bool_refused(value: bool) -> None:
    with pytest.raises(MoneyError):
        parse_micros(value)


@pytest.mark.parametrize("value", [None, b"0.01", Decimal("0.01"), [1], {"a": 1}])
def test_other_types_refused(value: object) -> None:
    with pytest.raises(MoneyError):
        parse_micros(value)


@pytest.mark.parametrize(
    "text",
    [
        "0.0000001",
        "1.0000001",
        "0.0000005",
        "0.0000000",  # exact, but says more than a micro: refused, not guessed at
        "5.9999999999999999999999999999999",  # issue #12: was stored as 6,000,000
    ],
)
def test_more_than_six_places_refused(text: str) -> None:
    with pytest.raises(MoneyError, match="precision"):
        parse_micros(text)


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("1e-999999999", "exponent"),  # issue #12: was 0
        ("1e-6", "exponent"),
        ("1E3", "exponent"),
        ("1.5E2", "exponent"),
        ("1e999999", "exponent"),
        ("\u0665", "ASCII"),  # ARABIC-INDIC DIGIT FIVE; issue #12: was accepted as 5
        ("\uff11", "ASCII"),  # FULLWIDTH DIGIT ONE
        ("1\u0660", "ASCII"),
        ("1_000", "_"),  # issue #12: was accepted as 1000
        ("0.000_001", "_"),
        (" 0.01", "whitespace"),
        ("0.01 ", "whitespace"),
        ("0.01\n", "whitespace"),
        ("\u20030.01", "whitespace"),
        ("0. 01", "whitespace"),
    ],
)
def test_not_plain_decimal_refused_with_the_reason(text: str, why: str) -> None:
    with pytest.raises(MoneyError, match=why):
        parse_micros(text)


@pytest.mark.parametrize("text", ["NaN", "nan", "sNaN", "Infinity", "-Infinity", "inf"])
def test_non_finite_refused(text: str) -> None:
    with pytest.raises(MoneyError):
        parse_micros(text)


@pytest.mark.parametrize(
    "text", ["", " ", "abc", "1,00", "$1", "1.2.3", "0x10", "+1", ".5", "1.", "--1", "-", "."]
)
def test_garbage_refused(text: str) -> None:
    with pytest.raises(MoneyError):
        parse_micros(text)


def test_negative_refused_unless_allowed() -> None:
    with pytest.raises(MoneyError, match="negative"):
        parse_micros("-0.01")
    with pytest.raises(MoneyError, match="negative"):
        parse_micros(-1)
    assert parse_micros("-0.01", allow_negative=True) == -10_000
    assert parse_micros(-5, allow_negative=True) == -5


def test_huge_input_is_refused_before_any_work() -> None:
    with pytest.raises(MoneyError, match="too long"):
        parse_micros("1" * 10_000_000)
    with pytest.raises(MoneyError, match="too long"):
        amount_to_micros("0." + "0" * 10_000)


def test_error_messages_quote_a_short_excerpt() -> None:
    with pytest.raises(MoneyError) as caught:
        parse_micros("x" * 60)
    assert len(str(caught.value)) < 200


@pytest.mark.parametrize(
    ("micros", "places", "text"),
    [
        (69_772_630, 2, "69.77"),
        (69_772_630, 6, "69.772630"),
        (0, 2, "0.00"),
        (0, 6, "0.000000"),
        (1, 6, "0.000001"),
        (30_000, 2, "0.03"),
        (5_000, 3, "0.005"),
        # half-even, display only
        (5_000, 2, "0.00"),
        (15_000, 2, "0.02"),
        (25_000, 2, "0.02"),
        (35_000, 2, "0.04"),
        (25_001, 2, "0.03"),
        (1_500_000, 0, "2"),
        (2_500_000, 0, "2"),
        (-1_234_567, 2, "-1.23"),
        (123_456_789_012_345, 6, "123456789.012345"),
    ],
)
def test_format(micros: int, places: int, text: str) -> None:
    assert format_micros(micros, places) == text


def test_format_default_is_two_places() -> None:
    assert format_micros(1_005_000) == "1.00"


def test_format_does_not_change_the_amount() -> None:
    micros = 15_000
    assert format_micros(micros) == "0.02"
    assert parse_micros(format_micros(micros, 6)) == 15_000


@pytest.mark.parametrize(
    ("text", "micros"),
    [
        ("0.03", 30_000),
        ("12.50", 12_500_000),
        ("0.0000001", 1),
        ("0.0300001", 30_001),
        ("0.030000000001", 30_001),
        ("0.030000", 30_000),
        ("0.030000000000", 30_000),
        ("9007199254.7409905", MAX_MICROS),
        ("0", 0),
    ],
)
def test_amount_to_micros_rounds_sub_micro_up(text: str, micros: int) -> None:
    assert amount_to_micros(text) == micros


@pytest.mark.parametrize("value", [0.03, 3, None, b"0.03", True])
def test_amount_to_micros_refuses_non_strings(value: object) -> None:
    with pytest.raises(MoneyError):
        amount_to_micros(value)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "text",
    ["NaN", "Infinity", "abc", "", " 1 ", "1e-7", "3E2", "\u0665", "1_000", "-0.01", "-0.0000001"],
)
def test_amount_to_micros_refuses_garbage(text: str) -> None:
    with pytest.raises(MoneyError):
        amount_to_micros(text)


def test_round_micros_is_ceiling() -> None:
    assert round_micros(Decimal("1.0001")) == 2
    assert round_micros(Decimal("1")) == 1
    assert round_micros(Decimal("0.5")) == 1
    assert round_micros(Decimal("-1.5")) == -1


@given(st.integers(min_value=0, max_value=MAX_MICROS))
def test_format_six_places_round_trips(micros: int) -> None:
    assert parse_micros(format_micros(micros, 6)) == micros


@given(st.integers(min_value=-MAX_MICROS, max_value=MAX_MICROS))
def test_format_six_places_round_trips_negative(micros: int) -> None:
    assert parse_micros(format_micros(micros, 6), allow_negative=True) == micros


@given(st.integers(min_value=0, max_value=MAX_MICROS))
def test_amount_to_micros_agrees_with_parse_for_exact_amounts(micros: int) -> None:
    assert amount_to_micros(format_micros(micros, 6)) == micros


def test_amounts_beyond_exact_doubles_are_refused() -> None:
    """Redis Lua compares as doubles: above 2**53 micros integers stop being exact."""
    assert parse_micros("9007199254.740991") == MAX_MICROS == 2**53 - 1
    with pytest.raises(MoneyError, match="out of range"):
        parse_micros("9007199254.740992")
    with pytest.raises(MoneyError, match="out of range"):
        parse_micros("1" + "0" * 30)
    with pytest.raises(MoneyError, match="out of range"):
        parse_micros(MAX_MICROS + 1)
    with pytest.raises(MoneyError, match="out of range"):
        parse_micros(-MAX_MICROS - 1, allow_negative=True)
    assert parse_micros(-MAX_MICROS, allow_negative=True) == -MAX_MICROS
    with pytest.raises(MoneyError, match="out of range"):
        amount_to_micros("9007199254.7409911")
    with pytest.raises(MoneyError, match="out of range"):
        amount_to_micros("1" + "0" * 30)


def test_format_is_exact_beyond_any_decimal_context() -> None:
    """A total of many worst cases can pass 28 digits; it is shown exactly, not rounded."""
    huge = 10**40 + 1
    assert format_micros(huge, 6) == "1" + "0" * 34 + ".000001"
    assert "E" not in format_micros(huge, 2)
    assert format_micros(MAX_MICROS * 1_000_001, 6) == "9007208261940245.740991"


@given(st.integers(min_value=-(10**30), max_value=10**30), st.integers(min_value=0, max_value=6))
def test_format_agrees_with_decimal_half_even(micros: int, places: int) -> None:
    from decimal import ROUND_HALF_EVEN, localcontext

    with localcontext() as ctx:
        ctx.prec = 100
        expected = (Decimal(micros) / MICROS_PER_UNIT).quantize(
            Decimal(1).scaleb(-places), rounding=ROUND_HALF_EVEN
        )
    assert format_micros(micros, places) == str(expected)
