"""``campaigns usage`` against the sandbox's Billing Insights (seed 003) over HTTP.

Three pages followed to the end, amounts a binary float would round (``0.1``,
``1e-6``) summed exactly, a 403 naming the refused account, bad input refused.
"""

from __future__ import annotations

import json
import subprocess
from decimal import Decimal

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
        "DISPATCHER_USAGE_TOKEN": "sandbox-usage-token",
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
    assert "1.000004 EUR" in table.stdout and "0.300000 USD" in table.stdout
    assert "6 records on 3 pages" in table.stdout


def test_a_refused_account_is_one_line_naming_it(
    settings: Settings, sandbox: SandboxServer
) -> None:
    _configure(sandbox)
    out = _run(settings, "--month", MONTH, **_usage_env(sandbox, "acc_sandbox,acc_elsewhere"))
    assert out.returncode == 1
    assert out.stdout == ""
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and "acc_elsewhere" in lines[0] and "403" in lines[0]
    assert "sandbox-usage-token" not in out.stderr


def test_bad_input_is_exit_2_naming_it(settings: Settings, sandbox: SandboxServer) -> None:
    for month in ("2026-13", "2026-3", "march", ""):
        out = _run(settings, "--month", month, **_usage_env(sandbox))
        assert out.returncode == 2, (month, out.stderr)
        assert "--month" in out.stderr and len(out.stderr.strip().splitlines()) == 1
    missing = _run(settings, "--month", MONTH)
    assert missing.returncode == 2 and "DISPATCHER_USAGE_URL" in missing.stderr
    bad_accounts = _run(settings, "--month", MONTH, **_usage_env(sandbox, "acc one"))
    assert bad_accounts.returncode == 2 and "DISPATCHER_USAGE_ACCOUNTS" in bad_accounts.stderr
    wrong_token = _run(
        settings, "--month", MONTH, **{**_usage_env(sandbox), "DISPATCHER_USAGE_TOKEN": "nope"}
    )
    assert wrong_token.returncode == 1 and "401" in wrong_token.stderr
