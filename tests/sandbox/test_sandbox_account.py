"""The sandbox's account side (issue 10): VoIPBIN tokens-first debits at hangup and
its refusal (a 500: VoIPBIN's call manager skips a call the balance cannot pay),
Voxpria credits, paged Billing Insights with a 403. Over real HTTP."""

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


def _call(http: httpx.Client) -> httpx.Response:
    body = {
        "source": {"type": "tel", "target": "+15551230001"},
        "destinations": [{"type": "tel", "target": "+15551230002"}],
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
    server.configure(credits_balance=100, call_seconds=61, credit_price="0.10")
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


def _usage(http: httpx.Client, **params: str) -> httpx.Response:
    query = {"accounts": "acc_sandbox", "month_from": "2026-03", **params}
    return http.get(
        "/billing-insights/usage",
        params=query,
        headers={"Authorization": "Bearer sandbox-usage-token"},
    )


def test_billing_insights_pages_and_403(server: SandboxServer, http: httpx.Client) -> None:
    server.configure(
        usage_records=[
            {"month": "2026-03", "total_amount": amount} for amount in ("0.1", "1e-6", "2")
        ],
        usage_page_size=2,
    )
    first = _usage(http)
    assert first.status_code == 200
    assert '"total_amount": 0.1' in first.text and '"total_amount": 1e-6' in first.text
    document = first.json()
    assert len(document["_embedded"]["usage"]) == 2 and "prev" not in document["_links"]
    second = http.get(
        document["_links"]["next"]["href"],
        headers={"Authorization": "Bearer sandbox-usage-token"},
    ).json()
    assert len(second["_embedded"]["usage"]) == 1 and "next" not in second["_links"]
    refused = _usage(http, accounts="acc_sandbox,acc_other")
    assert refused.status_code == 403
    assert "acc_other" in refused.json()["fields"][0]["description"]
    assert _usage(http, month_from="2026-13").status_code == 400
    wrong = http.get("/billing-insights/usage", params={"accounts": "acc_sandbox"})
    assert wrong.status_code == 401


def test_config_refuses_bad_account_fields(server: SandboxServer, http: httpx.Client) -> None:
    for patch in (
        {"usage_records": [{"total_amount": "0x10"}]},
        {"usage_records": [{"month": "2026-3"}]},
        {"credit_price": "ten"},
        {"credits_fail": "sometimes"},
        {"rate": {"tokens_per_minute": -1}},
    ):
        response = http.patch("/_sandbox/config", json=patch)
        assert response.status_code == 400, patch
