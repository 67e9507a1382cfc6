"""Halts: provider spend control, budget exhaustion, contact-only rejections."""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest

from campaigns.domain.spec import parse_spec
from campaigns.operators.control import CampaignClient, ControlError
from campaigns.operators.report import report_rows
from campaigns.testbed.sandbox import SandboxServer
from tests.conftest import spec_dict
from tests.support import WorkerProcess, creates, wait_for

CALL_COST = 10_000  # a 30 s sandbox call at 0.01/min, ceiling-rounded to one minute


async def _state(client: CampaignClient, campaign_id: str, state: str) -> bool:
    return (await client.get(campaign_id)).state == state


async def test_spend_control_halts_after_n_calls_and_resume_completes(
    client: CampaignClient, sandbox: SandboxServer, start_worker: Callable[..., WorkerProcess]
) -> None:
    n = 4
    sandbox.configure(spend_limit_micros=n * CALL_COST)
    start_worker()
    # Requests may overlap (max_concurrent_requests 4), but a provider faster than
    # the schedule has answered each one before the next slot: still exactly N+1.
    spec = spec_dict("capped", contacts=10)
    spec["pacing"] = {"calls_per_second": 4, "max_concurrent_requests": 4}
    await client.submit(parse_spec(spec))
    await wait_for(lambda: _state(client, "capped", "halted"), timeout=30, what="halt")

    ledger = creates(sandbox.ledger(), "capped")
    assert len(ledger) == n + 1, "exactly N accepted + the one rejected create request"
    assert [e["status"] for e in ledger] == [201] * n + [403]
    status = await client.status("capped")
    assert status["state"] == "halted"
    assert status["halt"] == {
        "code": "spend_control_exceeded",
        "message": "outbound spend limit exceeded",
    }
    assert status["counts"]["accepted"] == n
    assert status["counts"]["rejected"] == 1
    assert status["counts"]["pending"] == 10 - n, "the halted contact goes back to pending"

    campaign = await client.get("capped")
    rows = [row async for row in report_rows(client.store, campaign)]
    rejected = [r for r in rows if r["status"] == "rejected"]
    assert len(rejected) == 1
    assert rejected[0]["error_code"] == "spend_control_exceeded"
    assert rejected[0]["request"] == ledger[-1]["body"], "the exact body sent is kept"
    assert rejected[0]["cost_micros"] is None

    # Nothing is sent while halted, however long we wait.
    await wait_for(lambda: _settled(client, "capped", n), timeout=20, what="accepted calls settled")
    assert len(creates(sandbox.ledger(), "capped")) == n + 1
    assert (await client.get("capped")).spent_micros == n * CALL_COST, "rejections cost nothing"

    sandbox.configure(spend_limit_micros=None)
    assert await client.resume("capped") == "running"
    await wait_for(lambda: _state(client, "capped", "completed"), timeout=30, what="completion")
    ledger = creates(sandbox.ledger(), "capped")
    accepted = [e for e in ledger if e["status"] == 201]
    assert len(accepted) == 10
    assert len({e["variables"]["contact_ref"] for e in accepted}) == 10, "nobody dialled twice"
    # The halted contact got a new attempt ID after resume (a 4xx is final for its key).
    keys = [e["idempotency_key"] for e in ledger]
    assert len(set(keys)) == len(keys)


async def _settled(client: CampaignClient, campaign_id: str, count: int) -> bool:
    return (await client.get(campaign_id)).settled >= count


async def test_budget_exhaustion_reserves_ceiling_rounded_worst_case(
    client: CampaignClient, sandbox: SandboxServer, start_worker: Callable[..., WorkerProcess]
) -> None:
    # A 61 s maximum at 60/60 reserves two minutes: 20,000 micros per call.
    # Budget 0.05 fits two reservations (40,000) but not a third (60,000).
    # Calls take long enough that reservations are still held when budget runs short.
    sandbox.configure(call_duration_real_seconds=1.0, call_seconds=30)
    spec = spec_dict("tight", contacts=6, budget="0.05", max_call_seconds=61)
    start_worker()
    await client.submit(parse_spec(spec))

    samples: list[tuple[int, int, int]] = []

    async def halted() -> bool:
        c = await client.get("tight")
        samples.append((c.spent_micros, c.reserved_micros, c.budget_micros))
        return c.state == "halted"

    await wait_for(halted, timeout=40, interval=0.02, what="budget halt")
    campaign = await client.get("tight")
    assert campaign.halt is not None and campaign.halt["code"] == "budget_exhausted"
    assert campaign.worst_case_micros == 20_000
    assert all(spent + reserved <= budget for spent, reserved, budget in samples)
    assert max(reserved for _, reserved, _ in samples) <= 40_000
    # Settled calls cost 10,000 each and release their 20,000 reservation, so the
    # campaign goes on until what is left cannot cover one more worst case.
    assert campaign.reserved_micros == 0
    remaining = campaign.budget_micros - campaign.spent_micros
    assert remaining < 20_000
    assert campaign.accepted == campaign.spent_micros // CALL_COST
    assert len(creates(sandbox.ledger(), "tight")) == campaign.accepted
    with pytest.raises(ControlError, match="budget"):
        await client.resume("tight")


async def test_budget_too_small_for_one_call_sends_nothing(
    client: CampaignClient, sandbox: SandboxServer, start_worker: Callable[..., WorkerProcess]
) -> None:
    start_worker()
    await client.submit(
        parse_spec(spec_dict("broke", contacts=3, budget="0.019", max_call_seconds=61))
    )
    await wait_for(lambda: _state(client, "broke", "halted"), timeout=20, what="halt")
    assert (await client.status("broke"))["halt"]["code"] == "budget_exhausted"
    assert creates(sandbox.ledger(), "broke") == []


async def test_contact_errors_reject_the_contact_and_go_on(
    client: CampaignClient, sandbox: SandboxServer, start_worker: Callable[..., WorkerProcess]
) -> None:
    spec = spec_dict("mixed", contacts=5)
    bad, blocked = spec["contacts"][1]["to"], spec["contacts"][3]["to"]
    sandbox.configure(invalid_numbers=[bad], blocked_numbers=[blocked])
    start_worker()
    await client.submit(parse_spec(spec))
    await wait_for(lambda: _state(client, "mixed", "completed"), timeout=30, what="completion")
    status = await client.status("mixed")
    assert status["counts"]["accepted"] == 3
    assert status["counts"]["rejected"] == 2
    assert status["counts"]["pending"] == 0
    campaign = await client.get("mixed")
    rows = [r async for r in report_rows(client.store, campaign)]
    codes = sorted(r["error_code"] for r in rows if r["status"] == "rejected")
    assert codes == ["blocked_destination", "invalid_destination"]
    body = json.loads(creates(sandbox.ledger(), "mixed")[0]["body"])
    assert body["metadata"]["campaign_id"] == "mixed"
    assert body["metadata"]["attempt_id"] == "mixed:000000:1"
