"""Money for people (issue #13, point 3): the currency, its usual decimals,
thousands separators; exact when asked; stored micros in messages rewritten."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from campaigns.domain.money import (
    MAX_MICROS,
    currency_places,
    format_money,
    humanize_micros,
    parse_micros,
)


@pytest.mark.parametrize(
    ("micros", "currency", "shown"),
    [
        (1_234_567_800, "EUR", "EUR 1,234.57"),
        (0, "EUR", "EUR 0.00"),
        (600_000, "EUR", "EUR 0.60"),
        (-1_234_567_890_123, "USD", "USD -1,234,567.89"),
        (999_995, "EUR", "EUR 1.00"),  # half-even, display only
        (1_234_567_000_000, "JPY", "JPY 1,234,567"),
        (1_234_567, "KWD", "KWD 1.235"),
        (MAX_MICROS, "EUR", "EUR 9,007,199,254.74"),
    ],
)
def test_usual_decimals_and_thousands(micros: int, currency: str, shown: str) -> None:
    assert format_money(micros, currency) == shown


@pytest.mark.parametrize(
    ("micros", "shown"),
    [(3600, "EUR 0.0036"), (20_000, "EUR 0.02"), (1_000_000_001, "EUR 1,000.000001")],
)
def test_exact_keeps_every_micro_and_at_least_the_usual_decimals(micros: int, shown: str) -> None:
    assert format_money(micros, "EUR", exact=True) == shown


@given(st.integers(min_value=-MAX_MICROS, max_value=MAX_MICROS))
def test_exact_reads_back_to_the_same_micros(micros: int) -> None:
    currency, number = format_money(micros, "EUR", exact=True).split(" ")
    assert currency == "EUR"
    assert parse_micros(number.replace(",", ""), allow_negative=True) == micros


def test_currency_places_follow_iso_4217() -> None:
    assert [currency_places(c) for c in ("EUR", "usd", "JPY", "BHD", "CLF")] == [2, 2, 0, 3, 4]


def test_stored_micros_in_a_message_become_money() -> None:
    stored = "remaining budget 10000 micros is below one call's worst case (600000 micros)"
    assert humanize_micros(stored, "EUR") == (
        "remaining budget EUR 0.01 is below one call's worst case (EUR 0.60)"
    )
    # Other numbers are left alone, and so is a word that merely contains "micros".
    assert humanize_micros("3 calls, 12 microseconds, v1.5 micros", "EUR") == (
        "3 calls, 12 microseconds, v1.5 micros"
    )
