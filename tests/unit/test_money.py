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
        ("1e-6", 1),  # scientific notation is exact in Decimal: accepted
        ("1.5E2", 150_000_000),
        (" 0.01 ", 10_000),
        ("69.77263", 69_772_630),
        ("0.000000000", 0),  # trailing zeros beyond micros are still exact
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


@pytest.mark.parametrize("text", ["0.0000001", "1.0000001", "0.0000005", "1e-7"])
def test_more_than_six_places_refused(text: str) -> None:
    with pytest.raises(MoneyError, match="precision"):
        parse_micros(text)


@pytest.mark.parametrize("text", ["NaN", "nan", "sNaN", "Infinity", "-Infinity", "inf"])
def test_non_finite_refused(text: str) -> None:
    with pytest.raises(MoneyError):
        parse_micros(text)


@pytest.mark.parametrize("text", ["", " ", "abc", "1,00", "$1", "1.2.3", "0x10"])
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


def test_huge_exponent_is_a_money_error() -> None:
    with pytest.raises(MoneyError):
        parse_micros("1e999999")


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
        (" 1 ", 1_000_000),
        ("0", 0),
    ],
)
def test_amount_to_micros_rounds_sub_micro_up(text: str, micros: int) -> None:
    assert amount_to_micros(text) == micros


@pytest.mark.parametrize("value", [0.03, 3, None, b"0.03", True])
def test_amount_to_micros_refuses_non_strings(value: object) -> None:
    with pytest.raises(MoneyError):
        amount_to_micros(value)  # type: ignore[arg-type]


@pytest.mark.parametrize("text", ["NaN", "Infinity", "abc", ""])
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
        parse_micros("1e500")
    with pytest.raises(MoneyError, match="out of range"):
        amount_to_micros("1e30")
