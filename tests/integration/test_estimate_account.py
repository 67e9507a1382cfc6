"""``campaigns estimate`` against the account, and ``campaigns reconcile``'s estimate vs
actual (issue 10, point 5): the real CLI, real Redis, the sandbox over HTTP."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

from campaigns.domain.spec import parse_spec
from campaigns.operators.control import CampaignClient
from campaigns.settings import Settings
from campaigns.testbed.sandbox import SandboxServer
from tests.conftest import spec_dict
from tests.support import CAMPAIGNS_BIN, WorkerProcess, wait_for, worker_env


def _run(settings: Settings, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [CAMPAIGNS_BIN, *args],
        env=worker_env(settings, **env),
        capture_output=True,
        text=True,
        timeout=60,
    )


def _spec(tmp_path: Path, **overrides: Any) -> str:
    path = tmp_path / "spec.json"
    path.write_text(json.dumps(spec_dict("est", **overrides)))
    return str(path)


def test_estimate_against_a_voipbin_account_with_tokens(
    settings: Settings, sandbox: SandboxServer, tmp_path: Path
) -> None:
    """10 VN calls of at most 2 minutes, averaging 90 s (2 billed minutes), 15 tokens:
    expected 20,000 micros without tokens, 5,000 after 15 tokens (tokens cover 15,000);
    worst case 5,000 after tokens, 5,500 with the buffer; the balance covers it."""
    sandbox.configure(balance_micros=5_500, balance_token=15)
    spec = _spec(tmp_path, contacts=10, max_call_seconds=120, rate={"preset": "vn"})
    env = {
        "DISPATCHER_PROVIDER_DIALECT": "voipbin",
        "DISPATCHER_PROVIDER_URL": f"{sandbox.url}/v1.0",
    }
    out = _run(settings, "estimate", spec, "--average-seconds", "90", "--account", "--json", **env)
    assert out.returncode == 0, out.stderr
    account = json.loads(out.stdout)["account"]
    assert account["expected_total_micros"] == 20_000
    assert (account["expected_credit_micros"], account["tokens_used"]) == (5_000, 15)
    assert account["tokens_cover_micros"] == 15_000
    assert (account["balance"], account["balance_tokens"]) == (5_500, 15)
    assert (account["need_worst_case"], account["covers_worst_case"]) == (5_500, True)
    sandbox.configure(balance_micros=5_499)
    table = _run(settings, "estimate", spec, "--average-seconds", "90", "--account", **env)
    assert table.returncode == 0
    assert "does NOT cover the worst case" in table.stdout and "15 tokens" in table.stdout
    assert sandbox.ledger() == [], "an estimate never places a call"


def test_estimate_in_voxpria_credits(
    settings: Settings, sandbox: SandboxServer, tmp_path: Path
) -> None:
    sandbox.configure(credits_balance=33)
    spec = _spec(tmp_path, contacts=5, max_call_seconds=120)
    env = {
        "DISPATCHER_BALANCE_SOURCE": "voxpria",
        "DISPATCHER_BALANCE_URL": f"{sandbox.url}/api/v1",
        "DISPATCHER_BALANCE_API_KEY": settings.provider_api_key.get_secret_value(),
        "DISPATCHER_VOXPRIA_CREDIT_RATES": "default=3",
    }
    out = _run(settings, "estimate", spec, "--average-seconds", "45", "--account", "--json", **env)
    assert out.returncode == 0, out.stderr
    account = json.loads(out.stdout)["account"]
    # 5 x 6 credits + 10 % = 33 worst case; 5 x 3 credits + 10 % = 17 expected.
    assert (account["balance_unit"], account["need_worst_case"]) == ("credits", 33)
    assert (account["need_expected"], account["covers_expected"]) == (17, True)


def test_estimate_in_voxpria_credits_by_destination(
    settings: Settings, sandbox: SandboxServer, tmp_path: Path
) -> None:
    """US, UK and France at the documented table's tops (2, 3 and 10 credits a
    minute): each contact reserves its own destination's rate, not one flat 3."""
    sandbox.configure(credits_balance=35)
    contacts = [
        {"to": to, "ref": f"c{i}", "variables": {}}
        for i, to in enumerate(("+12025550123", "+442071234567", "+33142685300"))
    ]
    path = tmp_path / "spec.json"
    path.write_text(
        json.dumps(spec_dict("est3", contacts=0, max_call_seconds=120) | {"contacts": contacts})
    )
    env = {
        "DISPATCHER_BALANCE_SOURCE": "voxpria",
        "DISPATCHER_BALANCE_URL": f"{sandbox.url}/api/v1",
        "DISPATCHER_BALANCE_API_KEY": settings.provider_api_key.get_secret_value(),
    }
    out = _run(
        settings, "estimate", str(path), "--average-seconds", "10", "--account", "--json", **env
    )
    assert out.returncode == 0, out.stderr
    account = json.loads(out.stdout)["account"]
    # 2 minutes each: 4 + 6 + 20 = 30 credits, + 10 % = 33; a flat 3 a minute said 20.
    assert account["contacts_by_credit_rate"] == {"2": 1, "3": 1, "10": 1}
    assert (account["need_worst_case"], account["covers_worst_case"]) == (33, True)
    # 10 s each: one started minute, 2 + 3 + 10 = 15, + 10 % = 17.
    assert account["need_expected"] == 17
    table = _run(settings, "estimate", str(path), "--account", **env)
    assert "1 at 10 credits/min, 1 at 3 credits/min, 1 at 2 credits/min" in table.stdout
    sandbox.configure(credits_balance=32)
    short = _run(settings, "estimate", str(path), "--account", **env)
    assert "does NOT cover the worst case 33 credits" in short.stdout


def test_estimate_bad_input_and_no_balance(
    settings: Settings, sandbox: SandboxServer, tmp_path: Path
) -> None:
    spec = _spec(tmp_path, contacts=2)
    for bad in ("0", "-5", "1.5", "many"):
        out = _run(settings, "estimate", spec, "--average-seconds", bad)
        assert out.returncode == 2 and "--average-seconds" in out.stderr, out.stderr
    plain = _run(settings, "estimate", spec, "--average-seconds", "30", "--json")
    assert plain.returncode == 0
    assert json.loads(plain.stdout)["account"]["expected_total_micros"] == 2 * 10_000
    minivoice = _run(settings, "estimate", spec, "--account")
    assert minivoice.returncode == 2 and "reports no balance" in minivoice.stderr
    sandbox.configure(credits_fail="http_500")
    failing = _run(
        settings,
        "estimate",
        spec,
        "--account",
        DISPATCHER_BALANCE_SOURCE="voxpria",
        DISPATCHER_BALANCE_URL=f"{sandbox.url}/api/v1",
        DISPATCHER_BALANCE_API_KEY=settings.provider_api_key.get_secret_value(),
    )
    assert failing.returncode == 1 and "balance check failed" in failing.stderr
    assert len(failing.stderr.strip().splitlines()) == 1


async def test_reconcile_shows_actual_beside_estimate_and_worst_case(
    client: CampaignClient,
    sandbox: SandboxServer,
    settings: Settings,
    start_worker: Callable[..., WorkerProcess],
) -> None:
    """30 s calls at 0.01/min, 61 s worst case: each call reserves 20,000 and costs 10,000."""
    start_worker()
    await client.submit(parse_spec(spec_dict("recon", contacts=3, max_call_seconds=61)))

    async def settled() -> bool:
        c = await client.get("recon")
        return c.state == "completed" and c.settled == 3

    await wait_for(settled, timeout=40, what="settled")
    out = _run(settings, "reconcile", "recon", "--json")
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    assert report["settled_micros"] == 30_000
    assert report["worst_case_total_micros"] == 60_000
    assert report["actual_minus_worst_case_micros"] == -30_000
    assert report["actual_minus_estimate_micros"] == 30_000 - report["rated_estimate_micros"]
    table = _run(settings, "reconcile", "recon")
    assert "vs estimate" in table.stdout and "vs worst case" in table.stdout


async def test_reconcile_shows_the_voxpria_usage_history(
    client: CampaignClient,
    sandbox: SandboxServer,
    settings: Settings,
    start_worker: Callable[..., WorkerProcess],
) -> None:
    """With Voxpria as the balance source, the days' credits and ``$`` cost (parsed
    exactly) stand beside the settled total: 3 calls of 30 s, 3 credits each."""
    sandbox.configure(credits_balance=100, credit_price="0.15", voxpria_credit_rates="default=3")
    env = {
        "DISPATCHER_BALANCE_SOURCE": "voxpria",
        "DISPATCHER_BALANCE_URL": f"{sandbox.url}/api/v1",
        "DISPATCHER_BALANCE_API_KEY": settings.provider_api_key.get_secret_value(),
        "DISPATCHER_VOXPRIA_CREDIT_RATES": "default=3",
    }
    start_worker(**env)
    await client.submit(parse_spec(spec_dict("voxrec", contacts=3, max_call_seconds=60)))

    async def settled() -> bool:
        c = await client.get("voxrec")
        return c.state == "completed" and c.settled == 3

    await wait_for(settled, timeout=40, what="settled")
    out = _run(settings, "reconcile", "voxrec", "--json", **env)
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    assert (report["credits_used"], report["credits_calls"]) == (9, 3)
    assert report["credits_cost_micros"] == 1_350_000
    table = _run(settings, "reconcile", "voxrec", **env)
    assert "9 credits over 3 calls" in table.stdout
