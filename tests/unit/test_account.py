"""The account rule and the account sources' parsing (issue 10): exact or refused."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import httpx
import pytest
from pydantic import SecretStr, ValidationError

from campaigns.domain.account import (
    Commitment,
    batch_charge,
    credits_need,
    credits_per_call,
    micros_need,
    with_buffer,
)
from campaigns.domain.errors import ProviderError
from campaigns.domain.rating import PRESETS, Rate
from campaigns.providers.base import EventError
from campaigns.providers.billing_insights import (
    BillingInsights,
    UsageError,
    UsageRefused,
    decimal_micros,
    parse_page,
)
from campaigns.providers.voipbin import parse_account_event, parse_balance
from campaigns.providers.voxpria import VoxpriaCredits, parse_cost
from campaigns.settings import Settings

PSTN = PRESETS["pstn_outgoing"]
VN = PRESETS["vn"]
TTS = PRESETS["tts"]


# -- the rule ------------------------------------------------------------------------


def test_buffer_rounds_up() -> None:
    assert with_buffer(30_000, 10) == 33_000
    assert with_buffer(1, 10) == 2
    assert with_buffer(0, 20) == 0
    assert with_buffer(3_000, 0) == 3_000


def test_seed_vectors_vn_with_and_without_tokens() -> None:
    """Seed 001: a 5-minute VN call is 5 tokens with tokens, 5,000 micros without."""
    assert batch_charge(VN, 300, 1, 70) == VN.charge(300, 70)
    assert (batch_charge(VN, 300, 1, 70).tokens, batch_charge(VN, 300, 1, 70).credit_micros) == (
        5,
        0,
    )
    assert batch_charge(VN, 300, 1, 0).credit_micros == 5_000


def test_tokens_first_across_a_batch_then_overflow() -> None:
    # 4 calls of 2 minutes, 5 tokens: 2 + 2 tokens, 1 token + 1,000, then 2,000.
    charge = batch_charge(VN, 120, 4, 5)
    assert (charge.tokens, charge.credit_micros) == (5, 3_000)
    # TTS: 3 tokens a minute; 7 tokens cover two minutes of the first call only.
    tts = batch_charge(TTS, 120, 2, 7)
    assert (tts.tokens, tts.credit_micros) == (6, 2 * 30_000)


def test_credit_only_rates_never_touch_tokens() -> None:
    charge = batch_charge(PSTN, 150, 3, 1_000)
    assert (charge.tokens, charge.credit_micros) == (0, 3 * 30_000)


def test_outstanding_calls_count_in_credit_and_hold_their_tokens() -> None:
    """Another campaign's 2 outstanding VN calls (4,000 reserved) could take 4 tokens:
    this batch is offered what is left (1), and their credit counts in full."""
    others = [Commitment(4_000, 2_000, 120, VN)]
    need = micros_need(
        rate=VN, max_call_seconds=120, calls=1, tokens=5, commitments=others, buffer_percent=10
    )
    assert (need.tokens_free, need.batch_tokens, need.batch, need.committed) == (1, 1, 1_000, 4_000)
    assert need.total == with_buffer(5_000, 10) == 5_500


def test_credit_only_commitments_leave_tokens_alone() -> None:
    others = [Commitment(20_000, 10_000, 60, PSTN)]
    assert others[0].calls == 2 and others[0].tokens == 0
    need = micros_need(
        rate=VN, max_call_seconds=60, calls=3, tokens=3, commitments=others, buffer_percent=0
    )
    assert (need.batch, need.total) == (0, 20_000)


def test_a_partly_settled_reservation_still_counts_whole_calls() -> None:
    assert Commitment(15_000, 10_000, 60, PSTN).calls == 2


def test_voxpria_credits_three_per_started_minute() -> None:
    assert [credits_per_call(s) for s in (1, 60, 61, 120, 121)] == [3, 3, 6, 6, 9]
    need = credits_need(
        max_call_seconds=120,
        calls=3,
        commitments=[Commitment(10_000, 10_000, 60, PSTN)],
        buffer_percent=10,
    )
    assert (need.batch, need.committed, need.total) == (18, 3, with_buffer(21, 10))


# -- VoIPBIN balance and account_updated -----------------------------------------------


def test_voipbin_balance_is_whole_micros_and_tokens() -> None:
    assert parse_balance({"balance_credit": 69_772_630, "balance_token": 70}).credit_micros == (
        69_772_630
    )
    for bad in (
        {"balance_credit": 69.77, "balance_token": 70},
        {"balance_credit": "69772630", "balance_token": 70},
        {"balance_credit": True, "balance_token": 70},
        {"balance_credit": 1},
        {"balance_credit": 1, "balance_token": -1},
    ):
        with pytest.raises(ValueError, match="balance_"):
            parse_balance(bad)


def test_account_updated_seed_payload() -> None:
    payload = {
        "event_type": "account_updated",
        "timestamp": "2024-01-15T10:30:00Z",
        "data": {
            "id": "62918cd8-0cd7-11ee-8571-b738bed3a5c4",
            "customer_id": "5e4a0680-804e-11ec-8477-2fea5968d85b",
            "name": "Primary Account",
            "plan_type": "free",
            "plan_status": "active",
            "balance_credit": 15_500_000,
            "balance_token": 20,
        },
    }
    at_ms, balance = parse_account_event(payload)
    assert at_ms == 1_705_314_600_000
    assert (balance.credit_micros, balance.tokens) == (15_500_000, 20)
    for field, value in (
        ("timestamp", "2024-01-15"),
        ("timestamp", "2024-01-15T10:30:00"),
        ("event_type", "billing_account.updated"),
        ("data", []),
    ):
        with pytest.raises(EventError, match=field):
            parse_account_event({**payload, field: value})


# -- Voxpria ---------------------------------------------------------------------------


def test_cost_strings_parse_exactly_or_are_refused() -> None:
    assert parse_cost("$13.50") == 13_500_000
    assert parse_cost("$0.000001") == 1
    for bad in ("13.50", "$13,50", "$-1", "$1e3", "€13.50", "$ 13.50", 13.5, "$0.0000001"):
        with pytest.raises(ValueError):
            parse_cost(bad)


def _voxpria(handler: object) -> VoxpriaCredits:
    return VoxpriaCredits(
        "https://app.voxpria.test/api/v1",
        SecretStr("vx-key"),
        transport=httpx.MockTransport(handler),  # type: ignore[arg-type]
    )


async def test_voxpria_seed_documents() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if request.url.path.endswith("/usage"):
            return httpx.Response(
                200,
                json={
                    "success": True,
                    "data": {
                        "usage": [
                            {
                                "date": "2025-02-09",
                                "calls": 45,
                                "creditsUsed": 135,
                                "cost": "$13.50",
                            },
                            {
                                "date": "2025-02-08",
                                "calls": 38,
                                "creditsUsed": 114,
                                "cost": "$11.40",
                            },
                        ],
                        "total": {"calls": 83, "creditsUsed": 249, "cost": "$24.90"},
                    },
                },
            )
        return httpx.Response(
            200,
            json={
                "success": True,
                "data": {
                    "balance": 1500,
                    "currency": "credits",
                    "lastUpdated": "2025-02-09T12:00:00Z",
                },
            },
        )

    client = _voxpria(handler)
    assert await client.credits() == 1500
    from datetime import date

    usage = await client.usage(date(2025, 2, 1), date(2025, 2, 9))
    assert [d.cost_micros for d in usage.days] == [13_500_000, 11_400_000]
    assert (usage.calls, usage.credits_used, usage.cost_micros) == (83, 249, 24_900_000)
    assert seen[0].headers["authorization"] == "Bearer vx-key"
    assert seen[1].url.params["startDate"] == "2025-02-01"
    await client.aclose()


@pytest.mark.parametrize(
    "answer",
    [
        httpx.Response(200, json={"success": False, "data": {"balance": 10}}),
        httpx.Response(500, json={"error": "down"}),
        httpx.Response(200, json={"success": True, "data": {"balance": 1.5}}),
        httpx.Response(200, json={"success": True, "data": {"balance": 5, "currency": "USD"}}),
        httpx.Response(200, text="not json"),
    ],
)
async def test_voxpria_anything_else_is_a_failed_check(answer: httpx.Response) -> None:
    client = _voxpria(lambda request: answer)
    with pytest.raises(ProviderError):
        await client.credits()
    await client.aclose()


# -- Billing Insights ------------------------------------------------------------------


def _page(amounts: list[str], next_href: str | None) -> str:
    """A HAL page as raw text: the amounts go in verbatim, as JSON number text."""
    rows = ",".join(
        f'{{"id": "r{i}", "account_id": "a1", "product_id": "P", "aggr_product_id": "P", '
        f'"month": "2023-08", "type": "CALL", "description": "d", "currency": "USD", '
        f'"direction": null, "resolution": null, "unit": "MINUTES", "price": {a}, '
        f'"wallet_name": "w", "number_of_units": 5, "total_amount": {a}}}'
        for i, a in enumerate(amounts)
    )
    links = '"self": {"href": "x"}'
    if next_href is not None:
        links += f', "next": {{"href": "{next_href}"}}'
    return f'{{"_links": {{{links}}}, "_embedded": {{"usage": [{rows}]}}}}'


def test_numbers_are_read_from_the_text_exactly() -> None:
    records, following = parse_page(_page(["0.1", "1e-6", "12345678.123456", "-2.5"], None))
    assert [r.total_micros for r in records] == [100_000, 1, 12_345_678_123_456, -2_500_000]
    assert records[1].price == str(Decimal("1e-6"))
    assert following is None
    assert decimal_micros(Decimal("0.0000001"), "x") == 1  # a sub-micro rest rounds up


@pytest.mark.parametrize(
    ("text", "field"),
    [
        (_page(['"0.1"'], None), "price"),
        (_page(["true"], None), "price"),
        (_page(["1e400"], None), "total_amount"),
        ('{"_embedded": {"usage": {}}}', "_embedded.usage"),
        ('{"_links": {"next": {}}, "_embedded": {"usage": []}}', "_links.next.href"),
        ('{"_embedded": {"usage": [{"total_amount": NaN}]}}', "body"),
        ("[]", "body"),
    ],
)
def test_bad_pages_are_refused_naming_the_field(text: str, field: str) -> None:
    with pytest.raises(ValueError, match=field.replace(".", r"\.")):
        parse_page(text)


async def test_pages_are_followed_on_the_same_host_only() -> None:
    base = "https://bi.test/api"
    pages = {
        "1": _page(["0.1"], f"{base}/billing-insights/usage?page=2"),
        "2": _page(["0.2"], "/api/billing-insights/usage?page=3"),
        "3": _page(["0.3"], None),
    }

    def handler(request: httpx.Request) -> httpx.Response:
        assert request.headers["authorization"] == "Bearer bi-token"
        return httpx.Response(200, text=pages[request.url.params.get("page", "1")])

    client = BillingInsights(
        base, SecretStr("bi-token"), ["a1"], transport=httpx.MockTransport(handler)
    )
    usage = await client.monthly_usage("2023-08")
    assert (usage.pages, usage.totals()) == (3, {"USD": 600_000})
    pages["1"] = _page(["0.1"], "https://elsewhere.test/steal")
    with pytest.raises(UsageError, match="another host"):
        await client.monthly_usage("2023-08")
    await client.aclose()


async def test_a_403_names_the_accounts_and_is_never_zero() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(
            403,
            json={
                "code": "FORBIDDEN",
                "message": "This caller is not authorized to query the given accounts.",
                "fields": [{"name": "accounts", "description": "not under the organization"}],
            },
        )

    client = BillingInsights(
        "https://bi.test", SecretStr("t"), ["a1", "b2"], transport=httpx.MockTransport(handler)
    )
    with pytest.raises(UsageRefused) as refused:
        await client.monthly_usage("2023-08")
    assert refused.value.accounts == ["a1", "b2"]
    assert "a1, b2" in str(refused.value) and "FORBIDDEN" in str(refused.value)
    with pytest.raises(ValueError, match="month_from"):
        await client.monthly_usage("2023-8")
    await client.aclose()


def test_rate_charge_is_the_one_rule() -> None:
    """batch_charge is Rate.charge call after call, never its own arithmetic."""
    rate = Rate(per_minute_micros=1_000, tokens_per_minute=2)
    left, total = 5, 0
    for _ in range(3):
        charge = rate.charge(90, left)
        left -= charge.tokens
        total += charge.credit_micros
    assert batch_charge(rate, 90, 3, 5).credit_micros == total


# -- settings ----------------------------------------------------------------------------


def _settings(**values: Any) -> Settings:
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


def test_account_settings_defaults_and_secrets() -> None:
    plain = _settings()
    assert (plain.balance_buffer_percent, plain.balance_source, plain.monthly_cap_micros) == (
        10,
        "provider",
        None,
    )
    full = _settings(
        balance_source="voxpria",
        balance_url="https://app.voxpria.test/api/v1",
        balance_api_key="vx-secret-1",
        usage_url="https://bi.test",
        usage_token="bi-secret-2",
        usage_accounts="acc_1, acc-2",
        monthly_cap="250.00",
    )
    assert full.usage_account_list == ["acc_1", "acc-2"]
    assert full.monthly_cap_micros == 250_000_000
    assert {"vx-secret-1", "bi-secret-2"} <= set(full.secret_values())


@pytest.mark.parametrize(
    ("values", "field"),
    [
        ({"balance_source": "voxpria"}, "balance_url"),
        (
            {"balance_source": "voxpria", "balance_url": "https://v.test/api/v1"},
            "balance_api_key",
        ),
        ({"balance_source": "bank"}, "balance_source"),
        ({"balance_buffer_percent": -1}, "balance_buffer_percent"),
        ({"low_balance_micros": 2**53}, "low_balance_micros"),
        ({"usage_url": "ftp://bi.test"}, "usage_url"),
        ({"usage_token": ""}, "usage_token"),
        ({"usage_token": "two words"}, "usage_token"),
        ({"usage_accounts": "acc_1,acc 2"}, "usage_accounts"),
        ({"monthly_cap": "250.00"}, "monthly_cap"),
        (
            {
                "monthly_cap": "2.5e2",
                "usage_url": "https://bi.test",
                "usage_token": "t",
                "usage_accounts": "a",
            },
            "monthly_cap",
        ),
    ],
)
def test_bad_account_settings_name_the_setting(values: dict[str, Any], field: str) -> None:
    with pytest.raises(ValidationError) as refused:
        _settings(**values)
    first = refused.value.errors(include_input=False)[0]
    assert first["loc"] == (field,)
    assert "2.5e2" not in str(first["msg"]) and "two words" not in str(first["msg"])
