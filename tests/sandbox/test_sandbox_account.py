"""The sandbox's account side (issues 10, 24): VoIPBIN tokens-first debits at hangup and
its refusal (a 500: VoIPBIN's call manager skips a call the balance cannot pay),
Voxpria credits by destination with a minimum per attempt, Talkdesk Billing Insights
as documented (client-credentials token, filter, pages, 403). Over real HTTP."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from campaigns.testbed.sandbox import SandboxServer

KEY = "acct-key"


@pytest.fixture
def server(sandbox_server: SandboxServer) -> SandboxServer:
    sandbox_server.reset(config=True)
    sandbox_server.configure(api_key=KEY, call_duration_real_seconds=0)
    return sandbox_server


@pytest.fixture
def http(server: SandboxServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=10) as client:
        yield client


def _call(http: httpx.Client, to: str = "+15551230002") -> httpx.Response:
    body = {
        "source": {"type": "tel", "target": "+15551230001"},
        "destinations": [{"type": "tel", "target": to}],
    }
    return http.post("/v1.0/calls", params={"token": KEY}, json=body)


def _account(http: httpx.Client) -> dict[str, Any]:
    return dict(http.get("/v1.0/billing_account", params={"token": KEY}).json())


def test_voipbin_debits_tokens_first_at_hangup_then_402(
    server: SandboxServer, http: httpx.Client
) -> None:
    """VN at 1,000 micros or 1 token a minute; 90 s calls bill 2 minutes."""
    server.configure(
        balance_micros=2_500,
        balance_token=3,
        call_seconds=90,
        rate={"per_minute": "0.001", "tokens_per_minute": 1},
    )
    assert _call(http).status_code == 200  # 2 tokens
    assert (_account(http)["balance_credit"], _account(http)["balance_token"]) == (2_500, 1)
    assert _call(http).status_code == 200  # 1 token + 1,000
    assert (_account(http)["balance_credit"], _account(http)["balance_token"]) == (1_500, 0)
    refused = _call(http)  # 2,000 needed, 1,500 left: the call manager skips it, a 500
    assert refused.status_code == 500
    assert refused.json()["error"]["reason"] == "INTERNAL"
    assert _account(http)["balance_credit"] == 1_500


def test_voipbin_calls_still_up_hold_their_charge(
    server: SandboxServer, http: httpx.Client
) -> None:
    server.configure(balance_micros=25_000, call_duration_real_seconds=30)
    assert _call(http).status_code == 200
    assert _call(http).status_code == 200
    assert _account(http)["balance_credit"] == 25_000  # nothing hung up yet
    assert _call(http).status_code == 500  # 5,000 free of the two calls' 20,000


def _credits(http: httpx.Client, key: str = KEY) -> httpx.Response:
    return http.get("/api/v1/credits", headers={"Authorization": f"Bearer {key}"})


def test_voxpria_credits_and_usage(server: SandboxServer, http: httpx.Client) -> None:
    server.configure(
        credits_balance=100, call_seconds=61, credit_price="0.10", voxpria_credit_rates="default=3"
    )
    assert _credits(http, "wrong").status_code == 401
    answer = _credits(http).json()
    assert answer["success"] is True and answer["data"]["balance"] == 100
    assert answer["data"]["currency"] == "credits"
    assert _call(http).status_code == 200  # 61 s: 2 started minutes, 6 credits
    assert _credits(http).json()["data"]["balance"] == 94
    day = server.state.calls_snapshot()[0]["created_at"][:10]
    usage = http.get(
        "/api/v1/credits/usage",
        params={"startDate": day, "endDate": day},
        headers={"Authorization": f"Bearer {KEY}"},
    ).json()
    assert usage["data"]["usage"] == [{"date": day, "calls": 1, "creditsUsed": 6, "cost": "$0.60"}]
    assert usage["data"]["total"] == {"calls": 1, "creditsUsed": 6, "cost": "$0.60"}
    server.configure(credits_fail="success_false")
    assert _credits(http).json()["success"] is False
    server.configure(credits_fail="http_500")
    assert _credits(http).status_code == 500


def test_voxpria_credits_by_destination_and_the_minimum_per_attempt(
    server: SandboxServer, http: httpx.Client
) -> None:
    """US 2, UK 3, France (default) 10 credits a minute; an unanswered attempt costs 1."""
    server.configure(credits_balance=1000, call_seconds=61)
    for to, used in (("+12025550123", 4), ("+442071234567", 6), ("+33142685300", 20)):
        before = _credits(http).json()["data"]["balance"]
        assert _call(http, to).status_code == 200
        assert before - _credits(http).json()["data"]["balance"] == used, to
    server.configure(per_number={"+33142685301": {"final_status": "no_answer"}})
    before = _credits(http).json()["data"]["balance"]
    assert _call(http, "+33142685301").status_code == 200
    assert before - _credits(http).json()["data"]["balance"] == 1


def _token(
    http: httpx.Client, auth: tuple[str, str] = ("sandbox-client", "sandbox-client-secret")
) -> httpx.Response:
    return http.post(
        "/oauth/token",
        data={"grant_type": "client_credentials", "scope": "express-accounts-usage:read"},
        auth=auth,
    )


def _usage(http: httpx.Client, token: str, **params: str) -> httpx.Response:
    query = {"filter": "(month eq '2026-03' and account_id eq 'acc_sandbox')", **params}
    return http.get(
        "/express/usage/month", params=query, headers={"Authorization": f"Bearer {token}"}
    )


def test_billing_insights_token_pages_and_403(server: SandboxServer, http: httpx.Client) -> None:
    server.configure(
        usage_records=[
            {"month": "2026-03", "total_amount": amount} for amount in ("0.1", "1e-6", "2")
        ],
        usage_page_size=2,
    )
    assert _token(http, ("sandbox-client", "wrong")).status_code == 401
    issued = _token(http).json()
    assert issued["token_type"] == "Bearer" and issued["expires_in"] == 3600
    token = issued["access_token"]
    first = _usage(http, token, order_by="id:asc")
    assert first.status_code == 200
    assert '"total_amount": 0.1' in first.text and '"total_amount": 1e-6' in first.text
    document = first.json()
    assert len(document["_embedded"]["usage"]) == 2 and "prev" not in document["_links"]
    assert set(document["_links"]) == {"first", "last", "next", "self", "show"}
    second = http.get(
        document["_links"]["next"]["href"], headers={"Authorization": f"Bearer {token}"}
    ).json()
    assert len(second["_embedded"]["usage"]) == 1 and "next" not in second["_links"]
    server.configure(usage_links="top")
    top = _usage(http, token).json()
    assert "next" in top and "_links" not in top
    refused = _usage(http, token, filter="account_id eq 'acc_sandbox' or account_id eq 'acc_other'")
    assert refused.status_code == 403
    body = refused.json()
    assert {"code", "message", "description", "fields"} <= set(body)
    assert "acc_other" in body["fields"][0]["description"]
    too_long = _usage(http, token, filter="account_id eq 'acc_sandbox'" + " " * 1600)
    assert too_long.status_code == 400 and too_long.json()["fields"][0]["name"] == "filter"
    assert _usage(http, token, per_page="251").status_code == 400
    assert _usage(http, token, page="0").status_code == 400
    assert _usage(http, token, filter="month gt '2026'").status_code == 400
    assert _usage(http, "not-a-token").status_code == 401
    accounts = http.get("/express/accounts", headers={"Authorization": f"Bearer {token}"}).json()
    assert [a["id"] for a in accounts["_embedded"]["accounts"]] == ["acc_sandbox"]
    assert (accounts["total"], accounts["total_pages"]) == (1, 1)


def test_billing_insights_tokens_expire_when_the_sandbox_says(
    server: SandboxServer, http: httpx.Client
) -> None:
    server.configure(usage_token_valid_seconds=0)
    token = _token(http).json()["access_token"]
    assert _usage(http, token).status_code == 401
    assert server.state.account()["usage_tokens_issued"] == 1


def test_config_refuses_bad_account_fields(server: SandboxServer, http: httpx.Client) -> None:
    for patch in (
        {"usage_records": [{"total_amount": "0x10"}]},
        {"usage_records": [{"month": "2026-3"}]},
        {"credit_price": "ten"},
        {"credits_fail": "sometimes"},
        {"rate": {"tokens_per_minute": -1}},
        {"voxpria_credit_rates": "US=2"},
        {"usage_links": "footer"},
    ):
        response = http.patch("/_sandbox/config", json=patch)
        assert response.status_code == 400, patch
