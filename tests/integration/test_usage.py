"""``campaigns usage`` against the sandbox's Talkdesk Billing Insights over HTTP.

A client-credentials token fetched (and fetched again on a 401), three pages
followed to the end, amounts a binary float would round (``0.1``, ``1e-6``)
summed exactly, forty accounts split over filters of at most 1,600 characters,
the accounts listed when none are set, a 403 naming the foreign accounts, bad
input refused.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
from decimal import Decimal

from pydantic import SecretStr

from campaigns.providers.billing_insights import BillingInsights, ClientCredentials
from campaigns.settings import Settings
from campaigns.testbed.sandbox import SandboxServer
from tests.support import CAMPAIGNS_BIN, worker_env

MONTH = "2026-03"
AMOUNTS = ["0.1", "0.2", "1e-6", "0.7", "3E-6"]


def _run(settings: Settings, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    merged = worker_env(settings, **env)
    return subprocess.run(
        [CAMPAIGNS_BIN, "usage", *args], env=merged, capture_output=True, text=True, timeout=60
    )


def _usage_env(sandbox: SandboxServer, accounts: str = "acc_sandbox") -> dict[str, str]:
    return {
        "DISPATCHER_USAGE_URL": sandbox.url,
        "DISPATCHER_USAGE_CLIENT_ID": "sandbox-client",
        "DISPATCHER_USAGE_CLIENT_SECRET": "sandbox-client-secret",
        "DISPATCHER_USAGE_TOKEN_URL": f"{sandbox.url}/oauth/token",
        "DISPATCHER_USAGE_ACCOUNTS": accounts,
    }


def _configure(sandbox: SandboxServer) -> None:
    records = [
        {"month": MONTH, "currency": "EUR", "total_amount": amount, "price": amount}
        for amount in AMOUNTS
    ]
    records.append({"month": MONTH, "currency": "USD", "total_amount": "0.3", "type": "NUMBER"})
    records.append({"month": "2026-04", "currency": "EUR", "total_amount": "7"})  # other month
    sandbox.configure(usage_records=records, usage_page_size=2)


def test_usage_follows_every_page_and_sums_exactly(
    settings: Settings, sandbox: SandboxServer
) -> None:
    _configure(sandbox)
    out = _run(settings, "--month", MONTH, "--json", **_usage_env(sandbox))
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    assert report["month"] == MONTH
    assert (report["records"], report["pages"]) == (6, 3)
    exact = sum(Decimal(a) for a in AMOUNTS)
    assert report["totals_micros"] == {"EUR": int(exact * 1_000_000), "USD": 300_000}
    assert report["totals_micros"]["EUR"] == 1_000_004
    assert int(sum(float(a) for a in AMOUNTS) * 1_000_000) != 1_000_004, "floats would lose it"
    table = _run(settings, "--month", MONTH, **_usage_env(sandbox))
    assert table.returncode == 0
    assert "EUR 1.000004" in table.stdout and "USD 0.30 " in table.stdout, "money as money"
    assert "6 records on 3 pages" in table.stdout
    assert sandbox.state.account()["usage_tokens_issued"] == 2, "one token per process"


def test_links_at_the_top_level_are_followed_too(
    settings: Settings, sandbox: SandboxServer
) -> None:
    _configure(sandbox)
    sandbox.configure(usage_links="top")
    out = _run(settings, "--month", MONTH, "--json", **_usage_env(sandbox))
    assert out.returncode == 0, out.stderr
    assert (json.loads(out.stdout)["records"], json.loads(out.stdout)["pages"]) == (6, 3)


def test_forty_accounts_split_over_filters_and_listed_when_unset(
    settings: Settings, sandbox: SandboxServer
) -> None:
    """Forty 24-character IDs make a filter of about 2,600 characters: two filters,
    each within 1,600, and every account's record counted exactly once."""
    accounts = [f"{n:024x}" for n in range(40)]
    sandbox.configure(
        usage_accounts=accounts,
        usage_records=[
            {"account_id": a, "month": MONTH, "currency": "EUR", "total_amount": "0.1"}
            for a in accounts
        ],
        usage_page_size=7,
    )
    out = _run(settings, "--month", MONTH, "--json", **_usage_env(sandbox, ",".join(accounts)))
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    assert report["filters"] == 2 and report["records"] == 40
    assert report["totals_micros"] == {"EUR": 4_000_000}
    assert report["pages"] >= 6
    listed = _run(settings, "--month", MONTH, "--json", **_usage_env(sandbox, ""))
    assert listed.returncode == 0, listed.stderr
    assert json.loads(listed.stdout)["accounts"] == accounts
    assert json.loads(listed.stdout)["totals_micros"] == {"EUR": 4_000_000}


def test_a_token_the_api_refuses_is_fetched_again_once(sandbox: SandboxServer) -> None:
    """The first token is accepted for 0.2 s though it says 3,600: the next read gets a
    401, fetches one new token and succeeds; a token endpoint that refuses the
    client is an error naming it, never zero usage."""
    _configure(sandbox)

    async def scenario() -> None:
        tokens = ClientCredentials(
            f"{sandbox.url}/oauth/token",
            "sandbox-client",
            SecretStr("sandbox-client-secret"),
            "express-accounts-usage:read",
        )
        client = BillingInsights(sandbox.url, tokens, ["acc_sandbox"])
        try:
            sandbox.configure(usage_token_valid_seconds=0.2)
            assert len((await client.monthly_usage(MONTH)).records) == 6
            await asyncio.sleep(0.4)
            sandbox.configure(usage_token_valid_seconds=None)
            assert len((await client.monthly_usage(MONTH)).records) == 6
            assert tokens.fetched == 2
            assert sandbox.state.account()["usage_tokens_issued"] == 2
        finally:
            await client.aclose()

    asyncio.run(scenario())


def test_a_refused_account_is_one_line_naming_it(
    settings: Settings, sandbox: SandboxServer
) -> None:
    _configure(sandbox)
    out = _run(settings, "--month", MONTH, **_usage_env(sandbox, "acc_sandbox,acc_elsewhere"))
    assert out.returncode == 1
    assert out.stdout == ""
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and "acc_elsewhere" in lines[0] and "403" in lines[0]
    assert "accounts refused: acc_elsewhere:" in lines[0], "only the foreign account"
    assert "Forbidden" in lines[0] and "filter" in lines[0]  # message and field name
    assert "sandbox-client-secret" not in out.stderr


def test_bad_input_is_exit_2_naming_it(settings: Settings, sandbox: SandboxServer) -> None:
    for month in ("2026-13", "2026-3", "march", ""):
        out = _run(settings, "--month", month, **_usage_env(sandbox))
        assert out.returncode == 2, (month, out.stderr)
        assert "--month" in out.stderr and len(out.stderr.strip().splitlines()) == 1
    missing = _run(settings, "--month", MONTH)
    assert missing.returncode == 2 and len(missing.stderr.strip().splitlines()) == 1
    for name in (
        "DISPATCHER_USAGE_URL",
        "DISPATCHER_USAGE_CLIENT_ID",
        "DISPATCHER_USAGE_CLIENT_SECRET",
        "DISPATCHER_USAGE_TOKEN_URL",
    ):
        assert name in missing.stderr, "every missing setting named at once"
    bad_accounts = _run(settings, "--month", MONTH, **_usage_env(sandbox, "acc one"))
    assert bad_accounts.returncode == 2 and "DISPATCHER_USAGE_ACCOUNTS" in bad_accounts.stderr
    no_secret = {**_usage_env(sandbox)}
    del no_secret["DISPATCHER_USAGE_CLIENT_SECRET"]
    unset = _run(settings, "--month", MONTH, **no_secret)
    assert unset.returncode == 2 and "DISPATCHER_USAGE_CLIENT_SECRET" in unset.stderr
    wrong_secret = _run(
        settings,
        "--month",
        MONTH,
        **{**_usage_env(sandbox), "DISPATCHER_USAGE_CLIENT_SECRET": "nope-secret"},
    )
    assert wrong_secret.returncode == 1 and "401" in wrong_secret.stderr
    assert "invalid_client" in wrong_secret.stderr and "nope-secret" not in wrong_secret.stderr
