"""Operators: pause stops create requests before the next claim; resume finishes."""

from __future__ import annotations

import asyncio
import subprocess
from collections.abc import Callable
from pathlib import Path

from campaigns.domain.spec import parse_spec
from campaigns.operators.control import CampaignClient
from campaigns.settings import Settings
from campaigns.testbed.sandbox import SandboxServer
from tests.conftest import spec_dict
from tests.support import CAMPAIGNS_BIN, WorkerProcess, creates, wait_for, worker_env


async def test_pause_stops_create_requests_and_resume_dials_nobody_twice(
    client: CampaignClient, sandbox: SandboxServer, start_worker: Callable[..., WorkerProcess]
) -> None:
    sandbox.configure(latency_seconds=0.02)
    start_worker()
    spec = spec_dict("pausable", contacts=40)
    spec["pacing"] = {"calls_per_second": 25, "batch_size": 5, "max_in_flight": 50}
    await client.submit(parse_spec(spec))

    for round_no in range(3):

        async def some_sent(floor: int = (round_no + 1) * 5) -> bool:
            return len(creates(sandbox.ledger(), "pausable")) >= floor

        await wait_for(some_sent, timeout=20, what="calls going out")
        assert await client.pause("pausable") == "paused"
        seen = len(creates(sandbox.ledger(), "pausable"))
        await asyncio.sleep(1.5)
        assert len(creates(sandbox.ledger(), "pausable")) == seen, "a request after pause"
        status = await client.status("pausable")
        assert status["state"] == "paused"
        assert status["halt"] is None, "an operator pause is not a dispatcher halt"
        await client.resume("pausable")

    async def done() -> bool:
        return (await client.get("pausable")).state == "completed"

    await wait_for(done, timeout=40, what="completion")
    ledger = creates(sandbox.ledger(), "pausable")
    refs = [e["variables"]["contact_ref"] for e in ledger if e["status"] == 201]
    assert len(refs) == 40
    assert len(set(refs)) == 40, "somebody was dialled twice"


async def test_cancel_is_final(
    client: CampaignClient, sandbox: SandboxServer, start_worker: Callable[..., WorkerProcess]
) -> None:
    sandbox.configure(latency_seconds=0.02)
    start_worker()
    spec = spec_dict("doomed", contacts=30)
    spec["pacing"] = {"calls_per_second": 20, "batch_size": 5, "max_in_flight": 50}
    await client.submit(parse_spec(spec))
    await wait_for(lambda: _count(sandbox, "doomed", 3), timeout=20, what="calls going out")
    assert await client.cancel("doomed") == "cancelled"
    seen = len(creates(sandbox.ledger(), "doomed"))
    await asyncio.sleep(1.0)
    assert len(creates(sandbox.ledger(), "doomed")) == seen
    status = await client.status("doomed")
    assert status["state"] == "cancelled"
    for verb in ("resume", "pause"):
        try:
            await getattr(client, verb)("doomed")
        except Exception as exc:  # ControlError
            assert "cancelled" in str(exc)
        else:
            raise AssertionError(f"{verb} of a cancelled campaign succeeded")


async def _count(sandbox: SandboxServer, campaign_id: str, floor: int) -> bool:
    return len(creates(sandbox.ledger(), campaign_id)) >= floor


def test_cli_operator_commands(settings: Settings, sandbox: SandboxServer, tmp_path: Path) -> None:
    """The CLI end to end, as an operator types it (no worker: the campaign stays queued)."""
    env = worker_env(settings)
    spec_path = tmp_path / "spec.json"
    import json

    spec_path.write_text(json.dumps(spec_dict("cli-flow", contacts=3)))

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [CAMPAIGNS_BIN, *args], env=env, capture_output=True, text=True, timeout=60
        )

    out = run("submit", str(spec_path))
    assert out.returncode == 0, out.stderr
    assert "cli-flow: submitted, 3 contacts" in out.stdout
    again = run("submit", str(spec_path))
    assert again.returncode == 0 and "already submitted" in again.stdout
    status = json.loads(run("status", "cli-flow", "--json").stdout)
    assert status["state"] == "queued"
    assert status["counts"]["contacts"] == 3
    assert status["money"] == {
        "currency": "EUR",
        "budget_micros": 50_000_000,
        "reserved_micros": 0,
        "spent_micros": 0,
    }
    assert "cli-flow" in run("list").stdout
    assert run("pause", "cli-flow").stdout.strip() == "cli-flow: paused"
    cancel = run("cancel", "cli-flow")
    assert cancel.returncode == 0
    refused = run("resume", "cli-flow")
    assert refused.returncode == 1
    assert refused.stderr.count("\n") == 1 and "cancelled" in refused.stderr
    missing = run("status", "no-such-campaign")
    assert missing.returncode == 1 and "no campaign" in missing.stderr
    report = run("report", "cli-flow", "--format", "json")
    assert report.returncode == 0 and json.loads(report.stdout) == []
    estimate = run("estimate", str(spec_path), "--json")
    assert json.loads(estimate.stdout)["worst_case_per_call_micros"] == 20_000
