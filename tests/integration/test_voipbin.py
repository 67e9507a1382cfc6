"""The VoIPBIN dialect end to end against the sandbox's VoIPBIN mode: access keys,
the calls envelope, the ledger's amounts, the call section checked at submit,
the balance re-check, and creates whose answers are lost (resolved by listing)."""

from __future__ import annotations

import json
import subprocess
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from campaigns.domain.spec import SpecError, parse_spec
from campaigns.operators.control import CampaignClient
from campaigns.settings import Settings
from campaigns.testbed.sandbox import SandboxServer
from tests.api_process import OPERATOR_TOKEN, ApiProcess, auth
from tests.conftest import API_KEY, spec_dict
from tests.support import CAMPAIGNS_BIN, WorkerProcess, creates, wait_for, worker_env

FLOW = "f1a2b3c4-d5e6-7890-1234-567890abcdef"


def _voipbin(settings: Settings, sandbox: SandboxServer) -> Settings:
    return settings.model_copy(
        update={"provider_dialect": "voipbin", "provider_url": f"{sandbox.url}/v1.0"}
    )


def vb_spec(campaign_id: str, contacts: int, **overrides: Any) -> dict[str, Any]:
    """A VoIPBIN campaign: dollars (its ledger's currency) and a flow to run on answer."""
    return spec_dict(
        campaign_id, contacts=contacts, currency="USD", call={"flow_id": FLOW}, **overrides
    )


async def test_voipbin_campaign_settles_with_the_ledgers_amounts(
    client: CampaignClient,
    sandbox: SandboxServer,
    settings: Settings,
    start_worker: Callable[..., WorkerProcess],
) -> None:
    sandbox.configure(balance_micros=10_000_000, call_seconds=61)
    worker = start_worker(_voipbin(settings, sandbox))
    await client.submit(parse_spec(vb_spec("vb", contacts=4, max_call_seconds=120)))

    async def done() -> bool:
        c = await client.get("vb")
        return c.state == "completed" and c.settled == 4

    await wait_for(done, timeout=40, what="completion")
    ledger = sandbox.ledger()
    assert len(ledger) == 4 and all(e["path"] == "/v1.0/calls" for e in ledger)
    assert all(e["idempotency_key"] is None for e in ledger)
    sent = [json.loads(e["body"]) for e in ledger]
    assert all(body["flow_id"] == FLOW for body in sent)
    assert {body["variables"]["campaign_id"] for body in sent} == {"vb"}
    campaign = await client.get("vb")
    # 61 s bill 2 minutes at 0.01: the ledger's 20,000 micros each, not the worst case.
    assert campaign.spent_micros == 4 * 20_000
    attempts = [a async for a in client.store.attempts("vb")]
    assert len(attempts) == 4
    assert all(not a.cost_estimated and a.billsec == 61 for a in attempts)
    assert API_KEY not in worker.log_text(), "the access key travels in the URL: never logged"


async def test_a_voipbin_campaign_without_a_flow_is_refused_at_submit(
    sandbox: SandboxServer, settings: Settings
) -> None:
    vb = _voipbin(settings, sandbox)
    async with await CampaignClient.connect(vb) as client:
        with pytest.raises(SpecError) as caught:
            await client.submit(parse_spec(spec_dict("noflow", contacts=2, currency="USD")))
        assert caught.value.field == "call.flow_id"
        assert await client.store.campaign("noflow") is None


def test_the_cli_refuses_it_with_exit_2(
    sandbox: SandboxServer, settings: Settings, tmp_path: Path
) -> None:
    path = tmp_path / "spec.json"
    path.write_text(json.dumps(spec_dict("noflow", contacts=2, currency="USD")))
    out = subprocess.run(
        [CAMPAIGNS_BIN, "submit", str(path)],
        env=worker_env(_voipbin(settings, sandbox)),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 2 and "call.flow_id" in out.stderr, out.stderr


async def test_the_api_refuses_it_with_422(
    sandbox: SandboxServer, settings: Settings, tmp_path: Path
) -> None:
    api = ApiProcess(
        _voipbin(settings, sandbox), tmp_path / "api.log", DISPATCHER_PROVIDER_DIALECT="voipbin"
    )
    try:
        async with httpx.AsyncClient(base_url=api.url, timeout=30) as http:
            spec = spec_dict("noflow", contacts=2, currency="USD")
            refused = await http.post("/v1/campaigns", json=spec, headers=auth(OPERATOR_TOKEN))
            assert refused.status_code == 422, refused.text
            assert "call.flow_id" in refused.text
            spec["call"] = {"flow_id": FLOW}
            taken = await http.post("/v1/campaigns", json=spec, headers=auth(OPERATOR_TOKEN))
            assert taken.status_code == 201, taken.text
    finally:
        api.stop()


async def test_voipbin_low_balance_halts_before_sending(
    client: CampaignClient,
    sandbox: SandboxServer,
    settings: Settings,
    start_worker: Callable[..., WorkerProcess],
) -> None:
    sandbox.configure(balance_micros=15_000)  # below one worst case of 20,000
    start_worker(_voipbin(settings, sandbox))
    await client.submit(parse_spec(vb_spec("vbpoor", contacts=3, max_call_seconds=61)))

    async def halted() -> bool:
        return (await client.get("vbpoor")).state == "halted"

    await wait_for(halted, timeout=30, what="halt")
    assert (await client.status("vbpoor"))["halt"]["code"] == "insufficient_balance"
    assert creates(sandbox.ledger(), "vbpoor") == [] and sandbox.ledger() == []


async def test_every_create_answer_lost_after_the_call_is_placed(
    client: CampaignClient,
    sandbox: SandboxServer,
    settings: Settings,
    start_worker: Callable[..., WorkerProcess],
) -> None:
    """VoIPBIN has no idempotency: a create whose answer is lost must never be sent
    again. Every answer here comes after the client gave up (hang 4 s, timeout 1 s):
    each call is found by listing ``GET /v1.0/calls``, and no number is dialled twice.

    The dialect's own word (``Capabilities.idempotency_keys=False``) is enough:
    ``DISPATCHER_PROVIDER_HONOURS_IDEMPOTENCY`` is left at its default. Needs the
    engine's resolution by ``find_calls`` (issue 22 item 3).
    """
    sandbox.configure(balance_micros=10_000_000, accept_then_hang_rate=1.0, hang_seconds=4.0)
    start_worker(
        _voipbin(settings, sandbox),
        DISPATCHER_PROVIDER_TIMEOUT_SECONDS="1",
    )
    await client.submit(parse_spec(vb_spec("vblost", contacts=5, max_call_seconds=120)))

    async def all_found() -> bool:
        c = await client.get("vblost")
        return c.accepted == 5

    await wait_for(all_found, timeout=60, what="every call found by listing")
    calls = [c for c in sandbox.calls() if c["variables"].get("campaign_id") == "vblost"]
    dialled = Counter(c["to"] for c in calls)
    assert len(dialled) == 5 and set(dialled.values()) == {1}, f"second calls: {dialled}"
    recorded = {a.call_id async for a in client.store.attempts("vblost")}
    assert recorded == {c["id"] for c in calls}
    assert len(sandbox.ledger()) == 5, "no create was sent twice"


async def test_a_call_still_up_past_max_call_seconds_is_hung_up(
    client: CampaignClient,
    sandbox: SandboxServer,
    settings: Settings,
    start_worker: Callable[..., WorkerProcess],
) -> None:
    """VoIPBIN takes no per-call maximum (its own ends calls after an hour): the
    dispatcher ends a call past the ``max_call_seconds`` its reservation assumed
    with ``POST /v1.0/calls/{id}/hangup``, and it is billed at most that long.
    Needs the engine's hang-up timer (issue 22 item 4)."""
    # Answered at 20 s (two thirds of 30 s); 600 billed seconds if left alone.
    sandbox.configure(balance_micros=10_000_000, call_duration_real_seconds=30, call_seconds=600)
    start_worker(_voipbin(settings, sandbox), DISPATCHER_POLL_MAX_INTERVAL_SECONDS="1")
    await client.submit(parse_spec(vb_spec("vblong", contacts=2, max_call_seconds=2)))

    async def settled() -> bool:
        return (await client.get("vblong")).settled == 2

    await wait_for(settled, timeout=60, what="both calls hung up and settled")
    calls = sandbox.calls()
    assert len(calls) == 2 and all(c["hung_up_at"] is not None for c in calls), calls
    # max_call_seconds, the engine's grace and a poll: far below the 600 s left alone.
    assert all(c["billsec_seconds"] <= 10 for c in calls), calls
    attempts = [a async for a in client.store.attempts("vblong")]
    assert all((a.billsec or 0) <= 10 for a in attempts)
