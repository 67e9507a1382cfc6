"""The account rule and the account sources' parsing (issue 10): exact or refused."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import httpx
import pytest
from pydantic import SecretStr, ValidationError

from campaigns.domain.account import (
    DEFAULT_CREDIT_RATES,
    Commitment,
    CreditTable,
    batch_charge,
    credits_need,
    micros_need,
    parse_credit_rates,
    with_buffer,
)
from campaigns.domain.errors import ProviderError
from campaigns.domain.rating import PRESETS, Rate
from campaigns.providers.base import EventError
from campaigns.providers.billing_insights import (
    MAX_FILTER,
    BillingInsights,
    ClientCredentials,
    UsageError,
    UsageRefused,
    account_filters,
    decimal_micros,
    parse_page,
    usage_filter,
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


def test_voxpria_credits_by_destination_with_a_minimum_per_attempt() -> None:
    """voxpria.com Billing & Credits: US/Canada 1-2, UK 2-3, others 3-10 credits a
    minute, at least 1 credit per attempt even if not answered."""
    table = CreditTable.parse(DEFAULT_CREDIT_RATES)
    assert [table.rate_for(n) for n in ("+12025550123", "+14165550123", "+442071234567")] == [
        2,
        2,
        3,
    ]
    assert table.rate_for("+33142685300") == 10  # France: the default
    assert table.rate_for("+18765550123") == 10  # Jamaica shares +1 but is not US/Canada
    assert [table.call_credits(3, s) for s in (0, 1, 60, 61, 121)] == [1, 3, 3, 6, 9]
    per_second = CreditTable.parse("default=3", minimum=2, rounding="second")
    assert [per_second.call_credits(3, s) for s in (0, 1, 20, 21, 60)] == [2, 2, 2, 2, 3]
    assert per_second.call_credits(3, 41) == 3  # 2.05 credits round up to 3
    both = CreditTable.parse("GB=3,+44=5,default=4")
    assert both.rate_for("+442071234567") == 5  # several entries apply: the highest
    assert both.worst_call("+442071234567", 61) == 10
    need = credits_need(
        per_call=6,
        calls=3,
        commitments=[Commitment(10_000, 10_000, 60, PSTN, credits_per_call=20)],
        buffer_percent=10,
    )
    assert (need.batch, need.committed, need.total) == (18, 20, with_buffer(38, 10))


def test_destinations_agree_with_phonenumbers_on_shared_calling_codes() -> None:
    """The cached fast path answers as ``phonenumbers.region_code_for_number`` does,
    numbers sharing a code (+1, +7, +44, ...) and their leading digits included."""
    import random

    import phonenumbers
    from phonenumbers.phonenumberutil import COUNTRY_CODE_TO_REGION_CODE

    from campaigns.domain.account import destination

    rng = random.Random(24)
    checked = 0
    for code, regions in COUNTRY_CODE_TO_REGION_CODE.items():
        for region in regions if len(regions) > 1 else regions[:1]:
            example = phonenumbers.example_number(region)
            if example is None:
                continue
            national = str(example.national_number)
            for keep in range(len(national) + 1):
                tail = "".join(rng.choice("0123456789") for _ in range(len(national) - keep))
                number = f"+{code}{national[:keep]}{tail}"
                expected = phonenumbers.region_code_for_number(phonenumbers.parse(number))
                found = destination(number)
                assert found is not None and found[1] == f"+{code}", number
                assert found[0] == (None if expected in (None, "001") else expected), number
                checked += 1
    assert checked > 2000
    assert destination("not a number") is None


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("US=2", "default"),
        ("US=2,default=x", "entry 2"),
        ("usa=2,default=1", "entry 1"),
        ("+0=2,default=1", "entry 1"),
        ("US=2,US=3,default=1", "twice"),
        ("US=-1,default=1", "entry 1"),
        ("US=1.5,default=1", "entry 1"),
    ],
)
def test_bad_credit_tables_are_refused_naming_the_entry(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_credit_rates(text)


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
        httpx.Response(200, json={"success": True, "data": {"balance": 10**30}}),
        httpx.Response(200, json={"success": True, "data": {"balance": 2**53}}),
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


def _page(amounts: list[str], next_href: str | None, *, top: bool = False) -> str:
    """A HAL page as raw text: the amounts go in verbatim, as JSON number text."""
    rows = ",".join(
        f'{{"id": "r{i}-{a.strip(chr(34))}", "account_id": "a1", "product_id": "P", "aggr_product_id": "P", '
        f'"month": "2023-08", "type": "CALL", "description": "d", "currency": "USD", '
        f'"direction": null, "resolution": null, "unit": "MINUTES", "price": {a}, '
        f'"wallet_name": "w", "number_of_units": 5, "total_amount": {a}}}'
        for i, a in enumerate(amounts)
    )
    links = '"self": {"href": "x"}'
    if next_href is not None:
        links += f', "next": {{"href": "{next_href}"}}'
    if top:
        return f'{{{links}, "_embedded": {{"usage": [{rows}]}}}}'
    return f'{{"_links": {{{links}}}, "_embedded": {{"usage": [{rows}]}}}}'


def test_numbers_are_read_from_the_text_exactly() -> None:
    records, following = parse_page(_page(["0.1", "1e-6", "12345678.123456", "-2.5"], None))
    assert [r.total_micros for r in records] == [100_000, 1, 12_345_678_123_456, -2_500_000]
    assert records[1].price == str(Decimal("1e-6"))
    assert following is None
    assert decimal_micros(Decimal("0.0000001"), "x") == 1  # a sub-micro rest rounds up
    _, top = parse_page(_page(["0.1"], "/next", top=True))
    assert top == "/next", "links at the top level, as the usage reference lists them"


def test_without_total_amount_the_total_is_price_times_units_exactly() -> None:
    row = (
        '{"_embedded": {"usage": [{"id": "r", "account_id": "a", "month": "2023-08", '
        '"type": "CALL", "currency": "USD", "price": 0.1, "number_of_units": 3}]}}'
    )
    (record,), _ = parse_page(row)
    assert record.total_micros == 300_000 and (record.price, record.number_of_units) == ("0.1", "3")
    assert 0.1 * 3 != 0.3, "a float would make it 0.30000000000000004"


@pytest.mark.parametrize(
    ("text", "field"),
    [
        (_page(['"0.1"'], None), "price"),
        (_page(["true"], None), "price"),
        (_page(["1e400"], None), "total_amount"),
        ('{"_embedded": {"usage": {}}}', "_embedded.usage"),
        ('{"_links": {"next": {}}, "_embedded": {"usage": []}}', "_links.next.href"),
        ('{"next": {"href": 5}, "_embedded": {"usage": []}}', "next.href"),
        ('{"_embedded": {"usage": [{"total_amount": NaN}]}}', "body"),
        ("[]", "body"),
    ],
)
def test_bad_pages_are_refused_naming_the_field(text: str, field: str) -> None:
    with pytest.raises(ValueError, match=field.replace(".", r"\.")):
        parse_page(text)


def test_many_accounts_are_split_over_filters_within_1600_characters() -> None:
    accounts = [f"{n:024x}" for n in range(100)]
    groups = account_filters("2023-08", accounts)
    assert [a for g in groups for a in g] == accounts and len(groups) > 1
    for group in groups:
        text = usage_filter("2023-08", group)
        assert len(text) <= MAX_FILTER
        assert text.startswith("(month eq '2023-08' and account_id eq '")
    assert len(usage_filter("2023-08", groups[0] + groups[1][:1])) > MAX_FILTER
    with pytest.raises(ValueError, match="account"):
        account_filters("2023-08", ["a' or account_id ne '"])


def _tokens(handler: Any, clock: Any = None) -> ClientCredentials:
    options: dict[str, Any] = {"transport": httpx.MockTransport(handler)}
    if clock is not None:
        options["clock"] = clock
    return ClientCredentials(
        "https://acme.talkdeskid.test/oauth/token",
        "client-1",
        SecretStr("secret-1"),
        "express-accounts-usage:read",
        **options,
    )


def _token_handler(issued: list[str], expires_in: int = 3600) -> Any:
    def handler(request: httpx.Request) -> httpx.Response:
        assert request.method == "POST"
        assert request.headers["authorization"] == "Basic Y2xpZW50LTE6c2VjcmV0LTE="
        assert (
            request.content == b"grant_type=client_credentials&scope=express-accounts-usage%3Aread"
        )
        issued.append(f"tok{len(issued) + 1}")
        return httpx.Response(200, json={"access_token": issued[-1], "expires_in": expires_in})

    return handler


async def test_the_token_is_cached_until_shortly_before_it_expires() -> None:
    issued: list[str] = []
    now = [1000.0]
    tokens = _tokens(_token_handler(issued, expires_in=600), clock=lambda: now[0])
    assert await tokens.token() == "tok1"
    now[0] += 539
    assert await tokens.token() == "tok1"
    now[0] += 1  # 60 s (a tenth of 600) before expiry: a new one
    assert await tokens.token() == "tok2"
    tokens.invalidate()
    assert await tokens.token() == "tok3"
    await tokens.aclose()


@pytest.mark.parametrize(
    ("answer", "message"),
    [
        (
            httpx.Response(401, json={"error": "invalid_client", "error_description": "bad"}),
            "invalid_client",
        ),
        (httpx.Response(200, json={"access_token": "t"}), "expires_in"),
        (httpx.Response(200, json={"expires_in": 60}), "access_token"),
        (httpx.Response(200, text="nope"), "access_token"),
    ],
)
async def test_a_token_endpoint_failure_is_a_usage_error(
    answer: httpx.Response, message: str
) -> None:
    tokens = _tokens(lambda request: answer)
    with pytest.raises(UsageError, match=message) as failed:
        await tokens.token()
    assert "secret-1" not in str(failed.value)
    await tokens.aclose()


async def test_pages_are_followed_on_the_same_host_only() -> None:
    base = "https://bi.test/api"
    pages = {
        "1": _page(["0.1"], f"{base}/express/usage/month?page=2"),
        "2": _page(["0.2"], "/api/express/usage/month?page=3", top=True),
        "3": _page(["0.3"], None),
    }
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/oauth/token":
            return httpx.Response(200, json={"access_token": "bi-token", "expires_in": 3600})
        seen.append(request)
        assert request.headers["authorization"] == "Bearer bi-token"
        assert request.url.path == "/api/express/usage/month"
        return httpx.Response(200, text=pages[request.url.params.get("page", "1")])

    transport = httpx.MockTransport(handler)
    tokens = ClientCredentials(
        "https://bi.test/oauth/token", "c", SecretStr("s"), "x", transport=transport
    )
    client = BillingInsights(base, tokens, ["a1"], transport=transport)
    usage = await client.monthly_usage("2023-08")
    assert (usage.pages, usage.filters, usage.totals()) == (3, 1, {"USD": 600_000})
    first = seen[0].url.params
    assert first["filter"] == "(month eq '2023-08' and account_id eq 'a1')"
    assert (first["page"], first["per_page"], first["order_by"]) == ("1", "250", "id:desc")
    pages["1"] = _page(["0.1"], "https://elsewhere.test/steal")
    with pytest.raises(UsageError, match="another host"):
        await client.monthly_usage("2023-08")
    await client.aclose()


async def test_a_403_names_the_foreign_accounts_and_is_never_zero() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/oauth/token":
            return httpx.Response(200, json={"access_token": "t", "expires_in": 3600})
        return httpx.Response(
            403,
            json={
                "code": "1003",
                "message": "Forbidden",
                "description": "This caller is not authorized to query the given accounts.",
                "fields": [{"name": "filter", "description": "not under the organization: b2"}],
            },
        )

    transport = httpx.MockTransport(handler)
    tokens = ClientCredentials(
        "https://bi.test/oauth/token", "c", SecretStr("s"), "x", transport=transport
    )
    client = BillingInsights("https://bi.test", tokens, ["a1", "b2"], transport=transport)
    with pytest.raises(UsageRefused) as refused:
        await client.monthly_usage("2023-08")
    assert refused.value.accounts == ["b2"]
    text = str(refused.value)
    assert "b2" in text and "1003" in text and "Forbidden" in text and "filter" in text
    with pytest.raises(ValueError, match="month"):
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
        usage_url="https://api.talkdeskapp.test",
        usage_client_id="client-1",
        usage_client_secret="bi-secret-2",
        usage_account_name="acme",
        usage_region="eu",
        usage_accounts="acc_1, acc-2",
        monthly_cap="250.00",
    )
    assert full.usage_account_list == ["acc_1", "acc-2"]
    assert full.monthly_cap_micros == 250_000_000
    assert {"vx-secret-1", "bi-secret-2"} <= set(full.secret_values())
    assert full.usage_token_endpoint == "https://acme.talkdeskid.eu/oauth/token"
    ca = _settings(usage_account_name="acme", usage_region="ca")
    assert ca.usage_token_endpoint == "https://acme.talkdeskidca.com/oauth/token"
    assert _settings(usage_account_name="acme").usage_token_endpoint == (
        "https://acme.talkdeskid.com/oauth/token"
    )
    table = plain.credit_table
    assert (table.default, table.minimum, table.rounding) == (10, 1, "minute")
    assert table.rates == {"US": 2, "CA": 2, "GB": 3}


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
        ({"usage_client_secret": ""}, "usage_client_secret"),
        ({"usage_client_secret": "two words"}, "usage_client_secret"),
        ({"usage_url": "https://bi.test"}, "usage_client_id"),
        (
            {"usage_url": "https://bi.test", "usage_client_id": "c"},
            "usage_client_secret",
        ),
        (
            {"usage_url": "https://bi.test", "usage_client_id": "c", "usage_client_secret": "s"},
            "usage_token_url",
        ),
        ({"usage_account_name": "acme.evil.test/x"}, "usage_account_name"),
        ({"usage_region": "mars"}, "usage_region"),
        ({"usage_token_url": "file:///etc/passwd"}, "usage_token_url"),
        ({"usage_accounts": "acc_1,acc 2"}, "usage_accounts"),
        ({"monthly_cap": "250.00"}, "monthly_cap"),
        (
            {
                "monthly_cap": "2.5e2",
                "usage_url": "https://bi.test",
                "usage_client_id": "c",
                "usage_client_secret": "t",
                "usage_account_name": "a",
            },
            "monthly_cap",
        ),
        ({"voxpria_credit_rates": "US=2"}, "voxpria_credit_rates"),
        ({"voxpria_credit_rates": "US=two words,default=1"}, "voxpria_credit_rates"),
        ({"voxpria_minimum_credits": -1}, "voxpria_minimum_credits"),
        ({"voxpria_rounding": "hour"}, "voxpria_rounding"),
    ],
)
def test_bad_account_settings_name_the_setting(values: dict[str, Any], field: str) -> None:
    with pytest.raises(ValidationError) as refused:
        _settings(**values)
    first = refused.value.errors(include_input=False)[0]
    assert first["loc"] == (field,)
    assert "2.5e2" not in str(first["msg"]) and "two words" not in str(first["msg"])
