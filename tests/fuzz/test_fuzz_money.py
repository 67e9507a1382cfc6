"""Fuzzing money parsing: a value is either exact or refused, never rounded.

The oracle is ``Decimal`` in a context wide enough that nothing we feed it can
round (and ``Inexact``/``Rounded`` trapped to prove it), applied only to strings
the strict grammar admits; everything else must be a ``MoneyError``. The same
holds one level up: a rate's worst case, and a campaign spec's money fields,
are an exact integer within the micros ceiling or an error naming the field.
"""

from __future__ import annotations

import re
from decimal import ROUND_CEILING, Context, Decimal, Inexact, Rounded

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from campaigns.domain.money import (
    MAX_MICROS,
    MICROS_PER_UNIT,
    MoneyError,
    amount_to_micros,
    format_micros,
    parse_micros,
)
from campaigns.domain.rating import Increments, Rate, RateOverflowError, ceil_div
from campaigns.domain.spec import SpecError, parse_spec
from tests.conftest import spec_dict
from tests.fuzz.conftest import FUZZ_PROFILE

PROFILE = settings.get_profile(FUZZ_PROFILE)

_EXACT = Context(prec=200, Emin=-999, Emax=999, traps=[Inexact, Rounded])
"""Wide enough for every string the grammar admits (at most 64 characters);
trapping Inexact and Rounded makes the oracle itself refuse to round."""
_PLAIN = re.compile(r"-?[0-9]+(\.[0-9]+)?")


_FLOAT = re.compile(r"[0-9](\.[0-9]+)?[eE][+-]?[0-9]|\b(inf|nan)\b", re.IGNORECASE)


def assert_no_float(message: str, *inputs: str) -> None:
    """No number the code computed is float-formatted; quoted input (whole or cut
    short) is the user's own text and may look like anything."""
    for text in inputs:
        message = message.replace(repr(text), "").replace(text, "")
    message = re.sub(r"'[^']*'|\"[^\"]*\"", "", message)
    assert not _FLOAT.search(message), f"float-formatted number in {message!r}"


def exact_micros(text: str) -> Decimal:
    """The exact amount in micros, by an independent road (Decimal, traps on)."""
    return _EXACT.multiply(_EXACT.create_decimal(text), Decimal(MICROS_PER_UNIT))


# --- strategies ----------------------------------------------------------------

near_money_alphabet = st.sampled_from(
    [
        *"0123456789.-+eE_ \t\n,$xX",
        "\u0665",
        "\uff11",
        "\u0660",
        "\u00a0",
        "\u2003",
        "\u200b",
        "\ud800",
        "\x00",
        "\u0bef",
    ]
)
near_money = st.text(near_money_alphabet, max_size=30)


@st.composite
def plain_amounts(draw: st.DrawFn) -> str:
    """Decimal strings in the accepted grammar: 0-9 places, leading zeros, a sign."""
    whole = draw(st.integers(min_value=0, max_value=10**17))
    zeros = "0" * draw(st.integers(min_value=0, max_value=3))
    places = draw(st.integers(min_value=0, max_value=9))
    fraction = "".join(draw(st.lists(st.sampled_from("0123456789"), min_size=places)))
    sign = draw(st.sampled_from(["", "", "-"]))
    text = f"{sign}{zeros}{whole}"
    return f"{text}.{fraction}" if fraction else text


@st.composite
def exponent_forms(draw: st.DrawFn) -> str:
    mantissa = draw(plain_amounts())
    e = draw(st.sampled_from(["e", "E"]))
    exponent = draw(st.integers(min_value=-(10**9), max_value=10**9))
    return f"{mantissa}{e}{exponent}"


money_text = st.one_of(
    st.text(max_size=40),
    near_money,
    plain_amounts(),
    exponent_forms(),
    st.integers(min_value=0, max_value=MAX_MICROS).map(lambda m: format_micros(m, 6)),
)


# --- parse_micros ----------------------------------------------------------------


@settings(PROFILE)
@given(money_text, st.booleans())
@example("5.9999999999999999999999999999999", False)
@example("1e-999999999", False)
@example("\u0665", False)
@example("1_000", False)
@example("9007199254.740991", False)
@example("9007199254.740992", False)
@example("-9007199254.740991", True)
@example(" 1", False)
def test_parse_micros_is_exact_or_refused(text: str, allow_negative: bool) -> None:
    try:
        micros = parse_micros(text, allow_negative=allow_negative)
    except MoneyError as exc:
        assert str(exc), "a refusal says why"
        assert len(str(exc)) < 300, "a refusal quotes an excerpt, not the whole input"
        if _PLAIN.fullmatch(text) and len(text) <= 64:
            # A grammatical amount is refused only for places, range or sign.
            exact = exact_micros(text)
            places = len(text.partition(".")[2])
            assert (
                places > 6
                or abs(exact) > MAX_MICROS
                or (exact < 0 and not allow_negative)
                or exact != exact.to_integral_value()
            ), f"refused an exact, in-range amount: {text!r}: {exc}"
        return
    assert type(micros) is int
    assert _PLAIN.fullmatch(text), f"accepted outside the grammar: {text!r}"
    assert len(text.partition(".")[2]) <= 6
    assert Decimal(micros) == exact_micros(text), f"{text!r} rounded to {micros}"
    assert -MAX_MICROS <= micros <= MAX_MICROS
    assert allow_negative or micros >= 0


@settings(PROFILE)
@given(st.integers(min_value=0, max_value=MAX_MICROS), st.integers(min_value=0, max_value=6))
def test_every_in_range_micro_amount_is_accepted_exactly(micros: int, places: int) -> None:
    """The other direction: no exact amount is refused, whatever its number of places."""
    whole, fraction = divmod(micros, MICROS_PER_UNIT)
    digits = f"{fraction:06d}"
    if digits[places:].strip("0"):
        text = f"{whole}.{digits}"
    else:
        text = f"{whole}.{digits[:places]}" if places else str(whole)
    assert parse_micros(text) == micros
    assert amount_to_micros(text) == micros


@settings(PROFILE)
@given(money_text)
@example("0.0300001")
@example("9007199254.7409905")
@example("9007199254.7409911")
@example("-0.0000001")
def test_amount_to_micros_rounds_up_only_and_exactly(text: str) -> None:
    """Provider amounts: the one rounding allowed is up to a whole micro, exactly once."""
    try:
        micros = amount_to_micros(text)
    except MoneyError:
        if _PLAIN.fullmatch(text) and len(text) <= 64:
            exact = exact_micros(text)
            ceiling = exact.to_integral_value(rounding=ROUND_CEILING)
            assert text.startswith("-") or ceiling > MAX_MICROS, text
        return
    assert type(micros) is int
    assert _PLAIN.fullmatch(text) and not text.startswith("-")
    exact = exact_micros(text)
    assert micros - 1 < exact <= micros, f"{text!r} -> {micros}"
    assert 0 <= micros <= MAX_MICROS


@settings(PROFILE)
@given(st.one_of(st.none(), st.floats(), st.booleans(), st.binary(), st.lists(st.integers())))
def test_non_strings_are_refused(value: object) -> None:
    with pytest.raises(MoneyError):
        parse_micros(value)
    with pytest.raises(MoneyError):
        amount_to_micros(value)  # type: ignore[arg-type]


# --- the rate model's worst case -------------------------------------------------

price_text = st.one_of(
    st.integers(min_value=0, max_value=MAX_MICROS).map(lambda m: format_micros(m, 6)),
    st.sampled_from(["9007199254.740991", "150119987.579016", "150119987.579017", "0", "0.01"]),
    money_text,
)


@settings(PROFILE)
@given(
    price_text,
    price_text,
    st.booleans(),
    st.sampled_from(["60/60", "1/1", "30/6", "6/6", "600/1"]),
    st.integers(min_value=1, max_value=86_400),
)
def test_worst_case_is_exact_or_refused(
    price: str, fee: str, per_second: bool, increments: str, max_call_seconds: int
) -> None:
    """rate x max call length + connect fee: an int within the ceiling, or a MoneyError."""
    try:
        if per_second:
            rate = Rate.from_decimal(0, increments, fee, per_second=price)
        else:
            rate = Rate.from_decimal(price, increments, fee)
        worst = rate.worst_case_micros(max_call_seconds)
    except MoneyError as exc:
        assert_no_float(str(exc), price, fee)
        if isinstance(exc, RateOverflowError):
            assert exc.quantity in ("per_second", "per_minute", "connect_fee", "worst_case")
        return
    assert type(worst) is int
    assert 0 <= worst <= MAX_MICROS
    per_minute = parse_micros(price) * (60 if per_second else 1)
    billed = Increments.parse(increments).billed_seconds(max_call_seconds)
    assert worst == ceil_div(billed * per_minute, 60) + parse_micros(fee)


# --- the same through a campaign spec: the field is named -----------------------


@settings(PROFILE)
@given(
    st.sampled_from(["budget", "rate.per_minute", "rate.per_second", "rate.connect_fee"]),
    price_text,
    st.integers(min_value=1, max_value=86_400),
)
def test_spec_money_is_exact_or_refused_naming_the_field(
    field: str, text: str, max_call_seconds: int
) -> None:
    data = spec_dict("fuzz", contacts=1, max_call_seconds=max_call_seconds)
    data["budget"] = "9007199254.740991"
    data["rate"] = {"per_minute": "0.01", "increments": "1/1"}
    if field == "budget":
        data["budget"] = text
    else:
        name = field.split(".")[1]
        if name == "per_second":
            del data["rate"]["per_minute"]
        data["rate"][name] = text
    try:
        spec = parse_spec(data)
        budget = spec.budget_in_micros
        worst = spec.worst_case_call_micros()
    except SpecError as exc:
        assert exc.field.startswith(field.split(".")[0]), f"{exc.field!r} for {field}: {exc}"
        assert_no_float(str(exc), text)
        return
    assert type(budget) is int and 0 <= budget <= MAX_MICROS
    assert type(worst) is int and 0 <= worst <= MAX_MICROS
    value = budget if field == "budget" else parse_micros(text)
    assert Decimal(value) == exact_micros(text), f"{field}={text!r} became {value}"
