"""Reconciliation: a campaign's settled total beside ``/v1/usage`` of the sandbox.

Campaigns are dispatched and settled in-process against the sandbox over real
HTTP; ``campaigns reconcile`` is also run as the operator runs it.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from campaigns.domain.spec import parse_spec
from campaigns.engine.dispatch import Dispatcher
from campaigns.engine.settlement import Settler
from campaigns.operators.control import CampaignClient
from campaigns.operators.reconcile import reconcile
from campaigns.providers import Provider, make_provider
from campaigns.settings import Settings
from campaigns.store import CampaignRecord
from campaigns.testbed.sandbox import SandboxServer
from tests.conftest import API_KEY, spec_dict
from tests.support import CAMPAIGNS_BIN, ROOT, wait_for, worker_env

CALL_COST = 10_000  # 30 s at 0.01/min, ceiling to one minute


@pytest.fixture
async def provider(settings: Settings) -> AsyncIterator[Provider]:
    p = make_provider(settings)
    yield p
    await p.aclose()


async def first_batch(
    client: CampaignClient, provider: Provider, settings: Settings, spec: dict[str, Any]
) -> tuple[Dispatcher, int]:
    """Submit and run one dispatch run that stops short of completing: at one call
    a second, the shortest run (1 s, from a 5 s job timeout) places one or two."""
    spec["pacing"] = {**spec["pacing"], "calls_per_second": 1}
    await client.submit(parse_spec(spec))
    short = settings.model_copy(update={"job_timeout_seconds": 5})
    result = await Dispatcher(client.store, provider, client.queue, short).run_batch(
        spec["campaign_id"], 1
    )
    assert result.outcome in ("batch_done", "pace_wait"), result
    assert result.next_seq is not None
    return Dispatcher(client.store, provider, client.queue, settings), result.next_seq


async def finish(dispatcher: Dispatcher, campaign_id: str, seq: int) -> None:
    for _ in range(50):
        result = await dispatcher.run_batch(campaign_id, seq)
        if result.outcome == "completed" or result.next_seq is None:
            assert result.outcome == "completed", result
            return
        seq = result.next_seq
    raise AssertionError("campaign did not complete")


async def settle_all(
    settler: Settler, client: CampaignClient, campaign_id: str, expected: int
) -> CampaignRecord:
    async def check() -> CampaignRecord | None:
        await settler.poll_due()
        campaign = await client.get(campaign_id)
        return campaign if campaign.settled >= expected else None

    result: CampaignRecord = await wait_for(check, timeout=10, what="settled")
    return result


async def sandbox_billed(sandbox: SandboxServer, count: int) -> None:
    async def check() -> bool:
        calls = sandbox.calls()
        return len(calls) == count and all(c["settled"] for c in calls)

    await wait_for(check, timeout=10, what="sandbox calls billed")


async def other_traffic(sandbox: SandboxServer, numbers: list[str]) -> None:
    """Calls on the same account that belong to another campaign, over real HTTP."""
    async with httpx.AsyncClient(
        base_url=sandbox.url, headers={"Authorization": f"Bearer {API_KEY}"}
    ) as http:
        for i, to in enumerate(numbers):
            response = await http.post(
                "/v1/calls",
                json={
                    "from": "+15551230001",
                    "to": to,
                    "metadata": {"campaign_id": "someone-else", "attempt_id": f"other:{i}"},
                },
                headers={"Idempotency-Key": f"other-{i}"},
            )
            assert response.status_code == 201, response.text


async def run_cli(settings: Settings, *args: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        CAMPAIGNS_BIN,
        *args,
        env=worker_env(settings),
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), timeout=60)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def test_only_traffic_settled_total_equals_provider_usage(
    client: CampaignClient, sandbox: SandboxServer, provider: Provider, settings: Settings
) -> None:
    sandbox.configure(rate={"per_minute": "0.012345"}, call_seconds=30)
    dispatcher, seq = await first_batch(client, provider, settings, spec_dict("solo", contacts=4))
    await finish(dispatcher, "solo", seq)
    await settle_all(Settler(client.store, provider, settings), client, "solo", 4)

    result = await reconcile(client.store, provider, "solo")
    assert result.accepted_calls == result.settled_calls == 4
    assert result.unsettled_calls == 0
    assert result.estimated_settlements == 0
    assert result.settled_micros == 4 * 12_345
    assert result.provider_calls == 4
    assert result.provider_billsec == 4 * 30
    assert result.provider_micros == result.settled_micros
    assert result.provider_currency == "EUR"
    assert result.variance_micros == 0
    assert result.reserved_micros == 0
    assert result.worst_case_total_micros == 4 * 20_000
    assert result.rated_estimate_micros == 4 * CALL_COST
    assert result.explanation == ["settled total matches the provider's usage"]
    assert result.window_from < result.window_to


async def test_other_traffic_in_the_window_is_the_variance_and_is_explained(
    client: CampaignClient, sandbox: SandboxServer, provider: Provider, settings: Settings
) -> None:
    others = ["+15559990001", "+15559990002"]
    # The other campaign's calls run 90 s: 2 minutes at 0.01 = 20,000 micros each.
    sandbox.configure(call_seconds=30, per_number={n: {"billsec_seconds": 90} for n in others})
    dispatcher, seq = await first_batch(client, provider, settings, spec_dict("mine", contacts=3))
    await other_traffic(sandbox, others)  # inside the campaign's window
    await finish(dispatcher, "mine", seq)
    await settle_all(Settler(client.store, provider, settings), client, "mine", 3)
    await sandbox_billed(sandbox, 5)

    result = await reconcile(client.store, provider, "mine")
    assert result.settled_micros == 3 * CALL_COST
    assert result.provider_calls == 5
    assert result.provider_micros == 3 * CALL_COST + 2 * 20_000
    assert result.variance_micros == 2 * 20_000, "exactly the other campaign's cost"
    text = "\n".join(result.explanation)
    assert "2 calls in the window are not this campaign's settled calls" in text
    assert "other traffic" in text
    assert "matches" not in text


async def test_unsettled_calls_are_explained(
    client: CampaignClient, sandbox: SandboxServer, provider: Provider, settings: Settings
) -> None:
    dispatcher, seq = await first_batch(client, provider, settings, spec_dict("open", contacts=3))
    await finish(dispatcher, "open", seq)
    await sandbox_billed(sandbox, 3)
    settler = Settler(client.store, provider, settings)
    first, *_ = [a async for a in client.store.attempts("open")]
    assert await settler.poll_one(first.attempt_id) == "ok"

    result = await reconcile(client.store, provider, "open")
    assert result.accepted_calls == 3
    assert result.settled_calls == 1
    assert result.unsettled_calls == 2
    assert result.settled_micros == CALL_COST
    assert result.reserved_micros == 2 * 20_000
    assert result.provider_micros == 3 * CALL_COST, "the provider billed all three"
    assert result.variance_micros == 2 * CALL_COST
    text = "\n".join(result.explanation)
    assert "2 accepted calls are not settled yet" in text
    assert "calls the provider settled first" in text


async def test_rate_model_settlements_are_explained(
    client: CampaignClient,
    sandbox: SandboxServer,
    provider: Provider,
    settings: Settings,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from campaigns.engine import settlement

    monkeypatch.setattr(settlement, "_COST_GRACE_SECONDS", 0.3)
    sandbox.configure(omit_cost=True, call_seconds=30)
    dispatcher, seq = await first_batch(client, provider, settings, spec_dict("est", contacts=2))
    await finish(dispatcher, "est", seq)
    await settle_all(Settler(client.store, provider, settings), client, "est", 2)

    result = await reconcile(client.store, provider, "est")
    assert result.estimated_settlements == 2
    assert result.variance_micros == 0
    assert any("2 calls were booked by the rate model" in line for line in result.explanation)


async def test_cli_reconcile_json_and_text(
    client: CampaignClient, sandbox: SandboxServer, provider: Provider, settings: Settings
) -> None:
    others = ["+15559990003"]
    sandbox.configure(call_seconds=30)
    dispatcher, seq = await first_batch(client, provider, settings, spec_dict("cli", contacts=2))
    await other_traffic(sandbox, others)
    await finish(dispatcher, "cli", seq)
    await settle_all(Settler(client.store, provider, settings), client, "cli", 2)
    await sandbox_billed(sandbox, 3)

    code, out, err = await run_cli(settings, "reconcile", "cli", "--json")
    assert code == 0, err
    document = json.loads(out)
    expected = (await reconcile(client.store, provider, "cli")).to_json()
    assert document == expected
    assert document["campaign_id"] == "cli"
    assert document["settled_micros"] == 2 * CALL_COST
    assert document["provider_micros"] == 3 * CALL_COST
    assert document["variance_micros"] == CALL_COST
    assert any("other traffic" in line for line in document["explanation"])
    assert API_KEY not in out + err

    code, out, err = await run_cli(settings, "reconcile", "cli")
    assert code == 0, err
    assert "variance          EUR 0.01 (provider minus settled)" in out
    assert "settled actual    EUR 0.02" in out
    assert "other traffic" in out

    code, out, err = await run_cli(settings, "reconcile", "no-such-campaign", "--json")
    assert code == 1
    assert out == ""
    assert err.strip().splitlines() == ["error: no campaign 'no-such-campaign'"]
