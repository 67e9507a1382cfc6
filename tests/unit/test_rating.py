"""The rate model: every worked vector of CONTRACT.md, then properties."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from campaigns.domain.money import MAX_MICROS, MoneyError, format_micros, parse_micros
from campaigns.domain.rating import (
    PRESETS,
    SMS_MICROS,
    Charge,
    Increments,
    Rate,
    RateError,
    RateOverflowError,
    ceil_div,
)

PSTN = PRESETS["pstn_outgoing"]
VN = PRESETS["vn"]

# --- CONTRACT.md "Worked vectors from the seeds" -------------------------------


def test_2m15s_per_minute_ceiling_bills_3_minutes() -> None:
    assert Increments().billed_seconds(2 * 60 + 15) == 180
    assert PSTN.billed_seconds(135) == 180
    assert PSTN.cost_micros(135) == 3 * 10_000


def test_pstn_2m30s_at_10000_per_minute_is_30000_micros() -> None:
    assert PSTN.per_minute_micros == 10_000
    assert PSTN.increments == Increments(60, 60)
    assert PSTN.cost_micros(150) == 30_000
    assert format_micros(30_000) == "0.03"


def test_vn_5_minutes_with_tokens_uses_5_tokens_and_no_credit() -> None:
    assert VN.charge(300, tokens_available=100) == Charge(tokens=5, credit_micros=0)
    assert VN.charge(300, tokens_available=5) == Charge(tokens=5, credit_micros=0)


def test_vn_5_minutes_without_tokens_is_5000_micros() -> None:
    assert VN.charge(300, tokens_available=0) == Charge(tokens=0, credit_micros=5_000)
    assert VN.cost_micros(300) == 5_000
    assert format_micros(5_000, 3) == "0.005"


def test_vn_tokens_run_out_mid_call_overflow_to_credit() -> None:
    assert VN.charge(300, tokens_available=3) == Charge(tokens=3, credit_micros=2_000)


def test_pstn_is_credit_only_even_with_tokens() -> None:
    assert PSTN.charge(150, tokens_available=100) == Charge(tokens=0, credit_micros=30_000)


def test_tts_tokens_or_credit() -> None:
    tts = PRESETS["tts"]
    assert tts.charge(120, tokens_available=6) == Charge(tokens=6, credit_micros=0)
    assert tts.charge(120, tokens_available=2) == Charge(tokens=0, credit_micros=60_000)


def test_10_sms_is_100000_micros() -> None:
    assert SMS_MICROS == 10_000
    assert 10 * SMS_MICROS == 100_000
    assert format_micros(10 * SMS_MICROS) == "0.10"


def test_campaign_50_pstn_calls_of_2_minutes_plus_200_sms_is_3000000() -> None:
    calls = 50 * PSTN.cost_micros(120)
    sms = 200 * SMS_MICROS
    assert calls == 1_000_000
    assert sms == 2_000_000
    assert calls + sms == 3_000_000
    assert format_micros(calls + sms) == "3.00"


def test_balance_credit_69772630_displays_as_69_77() -> None:
    assert format_micros(69_772_630) == "69.77"


def test_legacy_per_second_0_020_for_300_seconds_is_6_00() -> None:
    legacy = Rate.from_decimal(0, "1/1", per_second="0.020")
    assert legacy.per_minute_micros == 1_200_000
    assert legacy.cost_micros(300) == 6_000_000
    assert format_micros(legacy.cost_micros(300)) == "6.00"


def test_legacy_numbers_calls_and_sms_total_25_80() -> None:
    legacy = Rate.from_decimal(0, "1/1", per_second="0.020")
    numbers = 3 * parse_micros("5.00")
    calls = legacy.cost_micros(500)
    sms = 100 * parse_micros("0.008")
    assert (numbers, calls, sms) == (15_000_000, 10_000_000, 800_000)
    assert numbers + calls + sms == 25_800_000
    assert format_micros(numbers + calls + sms) == "25.80"


# --- CONTRACT.md increment vectors ---------------------------------------------


@pytest.mark.parametrize(
    ("increments", "seconds", "billed"),
    [
        pytest.param("60/60", 83, 120, id="60/60-83s"),
        pytest.param("60/10", 83, 90, id="60/10-83s"),
        pytest.param("30/6", 10, 30, id="30/6-10s"),
        pytest.param("30/6", 31, 36, id="30/6-31s"),
        pytest.param("30/6", 45, 48, id="30/6-45s"),
        pytest.param("6/6", 5, 6, id="6/6-5s"),
        pytest.param("6/6", 8, 12, id="6/6-8s"),
        pytest.param("1/1", 45, 45, id="1/1-45s"),
    ],
)
def test_increment_vectors(increments: str, seconds: int, billed: int) -> None:
    assert Increments.parse(increments).billed_seconds(seconds) == billed


def test_1_1_at_0_01_per_second_plus_0_10_connect_fee_45s_is_0_55() -> None:
    rate = Rate.from_decimal(0, "1/1", "0.10", per_second="0.01")
    assert rate.billed_seconds(45) == 45
    assert rate.cost_micros(45) == 550_000
    assert format_micros(rate.cost_micros(45)) == "0.55"


def test_30_6_at_0_05_per_minute_45s_bills_48s_and_0_04() -> None:
    rate = Rate.from_decimal("0.05", "30/6")
    assert rate.billed_seconds(45) == 48
    assert rate.cost_micros(45) == 40_000
    assert format_micros(rate.cost_micros(45)) == "0.04"


def test_worst_case_61_seconds_at_60_60_reserves_two_minutes() -> None:
    rate = Rate.from_decimal("0.01", "60/60")
    assert rate.billed_seconds(61) == 120
    assert rate.worst_case_micros(61) == 20_000


def test_worst_case_includes_connect_fee_and_ignores_tokens() -> None:
    rate = Rate(per_minute_micros=1_000, connect_fee_micros=500, tokens_per_minute=1)
    assert rate.worst_case_micros(120) == 2_500


def test_worst_case_of_zero_max_is_one_increment() -> None:
    assert PSTN.worst_case_micros(0) == 10_000


# --- details -----------------------------------------------------------------


def test_zero_seconds_cost_nothing_not_even_connect_fee() -> None:
    rate = Rate.from_decimal("0.01", "60/60", "0.10")
    assert rate.billed_seconds(0) == 0
    assert rate.charge(0) == Charge(0, 0)


def test_sub_micro_cost_rounds_up() -> None:
    # 1 s at 1 micro/min = 1/60 micro -> 1 micro.
    assert Rate(per_minute_micros=1, increments=Increments(1, 1)).cost_micros(1) == 1
    # 61 s at 7 micros/min with 1/1 = 427/60 = 7.1166 -> 8.
    assert Rate(per_minute_micros=7, increments=Increments(1, 1)).cost_micros(61) == 8


def test_from_decimal_defaults_and_refusals() -> None:
    rate = Rate.from_decimal("0.01")
    assert rate == Rate(per_minute_micros=10_000, increments=Increments(60, 60))
    with pytest.raises(MoneyError):
        Rate.from_decimal(0.01)  # type: ignore[arg-type]
    with pytest.raises(RateError):
        Rate.from_decimal("0.01", "60-60")
    with pytest.raises(RateError):
        Rate(per_minute_micros=-1)
    with pytest.raises(RateError):
        Rate(per_minute_micros=1, connect_fee_micros=-1)


@pytest.mark.parametrize("text", ["60-60", "0/60", "60/0", "", "60", "a/b", "-1/60", "60/60/60"])
def test_bad_increments_refused(text: str) -> None:
    with pytest.raises(RateError):
        Increments.parse(text)


def test_increments_parse_and_str() -> None:
    assert Increments.parse(" 30 / 6 ") == Increments(30, 6)
    assert str(Increments(30, 6)) == "30/6"


def test_ceil_div() -> None:
    assert [ceil_div(a, 60) for a in (0, 1, 59, 60, 61, 120, 121)] == [0, 1, 1, 1, 2, 2, 3]


# --- properties --------------------------------------------------------------

increments_st = st.builds(
    Increments, st.integers(min_value=1, max_value=600), st.integers(min_value=1, max_value=600)
)
rates_st = st.builds(
    Rate,
    per_minute_micros=st.integers(min_value=0, max_value=10_000_000),
    increments=increments_st,
    connect_fee_micros=st.integers(min_value=0, max_value=1_000_000),
    tokens_per_minute=st.integers(min_value=0, max_value=5),
)
seconds_st = st.integers(min_value=0, max_value=20_000)


@given(rates_st, seconds_st, seconds_st)
def test_cost_is_monotonic(rate: Rate, a: int, b: int) -> None:
    s1, s2 = sorted((a, b))
    assert rate.cost_micros(s1) <= rate.cost_micros(s2)
    assert rate.billed_seconds(s1) <= rate.billed_seconds(s2)


@given(rates_st, seconds_st, st.data())
def test_worst_case_covers_every_shorter_call(
    rate: Rate, max_seconds: int, data: st.DataObject
) -> None:
    seconds = data.draw(st.integers(min_value=0, max_value=max_seconds))
    assert rate.worst_case_micros(max_seconds) >= rate.cost_micros(seconds)
    tokens = data.draw(st.integers(min_value=0, max_value=100))
    assert rate.worst_case_micros(max_seconds) >= rate.charge(seconds, tokens).credit_micros


@given(increments_st, seconds_st)
def test_billed_seconds_bounds(inc: Increments, seconds: int) -> None:
    billed = inc.billed_seconds(seconds)
    assert billed >= seconds
    assert billed - seconds < max(inc.initial, inc.next)
    if seconds > 0:
        assert billed >= inc.initial
        assert (billed - inc.initial) % inc.next == 0


@given(rates_st, seconds_st, st.integers(min_value=0, max_value=1_000))
def test_tokens_never_cost_more_credit(rate: Rate, seconds: int, tokens: int) -> None:
    with_tokens = rate.charge(seconds, tokens)
    without = rate.charge(seconds, 0)
    assert with_tokens.credit_micros <= without.credit_micros
    assert without.tokens == 0
    assert 0 <= with_tokens.tokens <= tokens
    if rate.tokens_per_minute == 0:
        assert with_tokens == without


@given(rates_st, seconds_st)
def test_cost_formula(rate: Rate, seconds: int) -> None:
    billed = rate.billed_seconds(seconds)
    expected = (
        0
        if billed == 0
        else ceil_div(billed * rate.per_minute_micros, 60) + rate.connect_fee_micros
    )
    assert rate.cost_micros(seconds) == expected


# --- the micros ceiling (issue #12) ---------------------------------------------

MAX = MAX_MICROS


def test_per_second_price_whose_per_minute_passes_the_ceiling_is_refused() -> None:
    """Issue #12: a per-second rate of 9007199254.740991 gave a 7.78e20 worst case."""
    with pytest.raises(RateOverflowError) as caught:
        Rate.from_decimal(0, "1/1", per_second="9007199254.740991")
    assert caught.value.quantity == "per_second"
    assert isinstance(caught.value, MoneyError) and isinstance(caught.value, RateError)
    assert "540431955284459460 micros" in str(caught.value)
    assert "e+" not in str(caught.value)


@pytest.mark.parametrize(
    ("per_minute", "fee", "quantity"),
    [(MAX + 1, 0, "per_minute"), (0, MAX + 1, "connect_fee"), (10**40, 0, "per_minute")],
)
def test_prices_above_the_ceiling_are_refused(per_minute: int, fee: int, quantity: str) -> None:
    with pytest.raises(RateOverflowError) as caught:
        Rate(per_minute_micros=per_minute, connect_fee_micros=fee)
    assert caught.value.quantity == quantity


@pytest.mark.parametrize(
    ("rate", "seconds"),
    [
        (Rate(per_minute_micros=MAX), 120),  # rate x max call length
        (Rate(per_minute_micros=1_000_000, connect_fee_micros=MAX), 60),  # + connect fee
        (Rate(per_minute_micros=MAX // 2 + 1, increments=Increments(1, 1)), 120),
        (Rate(per_minute_micros=10**12), 86_400 * 1000),
    ],
)
def test_worst_case_above_the_ceiling_is_refused_with_exact_integers(
    rate: Rate, seconds: int
) -> None:
    with pytest.raises(RateOverflowError) as caught:
        rate.worst_case_micros(seconds)
    message = str(caught.value)
    assert caught.value.quantity == "worst_case"
    assert message.startswith("worst_case: ")
    assert f"{MAX} micros" in message
    assert "e+" not in message and "E+" not in message, "never float-formatted"


def test_worst_case_exactly_at_the_ceiling_is_accepted() -> None:
    assert Rate(per_minute_micros=MAX).worst_case_micros(60) == MAX
    assert Rate(per_minute_micros=MAX - 7, connect_fee_micros=7).worst_case_micros(1) == MAX
    assert Rate.from_decimal("9007199254.740991").worst_case_micros(59) == MAX


def test_cost_of_an_absurd_billsec_is_refused_not_a_huge_int() -> None:
    with pytest.raises(RateOverflowError) as caught:
        PSTN.cost_micros(10**25)
    assert caught.value.quantity == "cost"
    with pytest.raises(RateOverflowError):
        VN.charge(10**25, tokens_available=1)  # tokens cover part, credit still overflows
    assert VN.charge(10**25, tokens_available=10**30).credit_micros == 0


@given(
    st.integers(min_value=0, max_value=MAX),
    st.sampled_from(["60/60", "1/1", "30/6", "600/600"]),
    st.integers(min_value=0, max_value=MAX),
    st.integers(min_value=0, max_value=10**12),
)
def test_worst_case_is_an_int_within_the_ceiling_or_refused(
    per_minute: int, increments: str, fee: int, seconds: int
) -> None:
    rate = Rate(per_minute, Increments.parse(increments), fee)
    try:
        worst = rate.worst_case_micros(seconds)
    except RateOverflowError as exc:
        exact = ceil_div(rate.billed_seconds(max(seconds, 1)) * per_minute, 60) + fee
        assert exact > MAX
        assert exc.quantity == "worst_case"
        return
    assert type(worst) is int
    assert 0 <= worst <= MAX
    assert worst == ceil_div(rate.billed_seconds(max(seconds, 1)) * per_minute, 60) + fee
