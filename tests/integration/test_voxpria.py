"""The Voxpria calls dialect end to end against the sandbox's Voxpria calls mode:
agentId from the spec, our IDs in variables, signed call.completed / call.failed
through the ingress, creates whose answers are lost (resolved by listing), the
per-minute limit held with X-RateLimit-Reset, and a campaign without an agent
refused at submit."""

from __future__ import annotations

import json
import subprocess
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from redis.asyncio import Redis

from campaigns.domain.spec import SpecError, parse_spec
from campaigns.operators.control import CampaignClient, account_hold_until_ms
from campaigns.operators.ingress import create_ingress_app_from_settings
from campaigns.providers.voxpria_calls import sign_webhook
from campaigns.settings import Settings
from campaigns.testbed.sandbox import SandboxServer, ThreadedServer
from tests.conftest import spec_dict
from tests.support import CAMPAIGNS_BIN, WorkerProcess, wait_for, worker_env

AGENT = "agent_abc123"
SECRET = "whsec_voxpria_test"


def _voxpria(settings: Settings, sandbox: SandboxServer) -> Settings:
    return settings.model_copy(
        update={"provider_dialect": "voxpria", "provider_url": f"{sandbox.url}/api/v1"}
    )


def refusal_ms(entry: dict[str, Any]) -> int:
    return int(
        datetime.fromisoformat(entry["received_at"].replace("Z", "+00:00")).timestamp() * 1000
    )


def vx_spec(campaign_id: str, contacts: int, **overrides: Any) -> dict[str, Any]:
    return spec_dict(campaign_id, contacts=contacts, call={"agent_id": AGENT}, **overrides)


@pytest.fixture
def ingress(settings: Settings, sandbox: SandboxServer) -> Iterator[ThreadedServer]:
    """The webhook receiver for the Voxpria dialect, verifying X-VoxPria-Signature."""
    app = create_ingress_app_from_settings(_voxpria(settings, sandbox), secret=SECRET)
    with ThreadedServer(app, health_path="/healthz") as server:
        yield server


async def test_a_voxpria_campaign_runs_and_settles_from_signed_webhooks(
    client: CampaignClient,
    sandbox: SandboxServer,
    settings: Settings,
    start_worker: Callable[..., WorkerProcess],
    ingress: ThreadedServer,
) -> None:
    busy = "+15551240001"
    sandbox.configure(
        webhook_url=f"{ingress.url}/webhooks",
        webhook_secret=SECRET,
        call_seconds=61,
        per_number={busy: {"final_status": "busy"}},
    )
    # A long poll: the settlement comes from the webhooks, not from reading calls back.
    start_worker(
        _voxpria(settings, sandbox),
        DISPATCHER_WEBHOOK_SECRET=SECRET,
        DISPATCHER_POLL_INTERVAL_SECONDS="60",
    )
    await client.submit(parse_spec(vx_spec("vx", contacts=4)))

    async def done() -> bool:
        c = await client.get("vx")
        return c.state == "completed" and c.settled == 4

    await wait_for(done, timeout=40, what="completion")
    ledger = sandbox.ledger()
    assert len(ledger) == 4 and all(e["path"] == "/api/v1/calls" for e in ledger)
    sent = [json.loads(e["body"]) for e in ledger]
    assert all(set(body) == {"agentId", "toNumber", "variables"} for body in sent)
    assert {body["agentId"] for body in sent} == {AGENT}
    assert {body["variables"]["campaign_id"] for body in sent} == {"vx"}
    attempts = {a.to: a async for a in client.store.attempts("vx")}
    assert attempts[busy].final_status == "busy" and attempts[busy].billsec == 0
    answered = [a for to, a in attempts.items() if to != busy]
    # 61 s at 0.01 a started minute: the rate model's 20,000 micros, marked estimated.
    assert all(a.final_status == "completed" and a.billsec == 61 for a in answered)
    assert all(a.cost_estimated for a in answered)
    assert (await client.get("vx")).spent_micros == 3 * 20_000
    deliveries = [d.to_dict() for d in sandbox.state.webhook_deliveries]
    assert len(deliveries) == 4 and all(d["status_code"] == 202 for d in deliveries), deliveries


async def test_lost_create_answers_are_found_by_listing_and_never_dialled_twice(
    client: CampaignClient,
    sandbox: SandboxServer,
    settings: Settings,
    start_worker: Callable[..., WorkerProcess],
) -> None:
    """Voxpria documents no idempotency key: each create whose answer comes after the
    client gave up (hang 3 s, timeout 1 s) is found in ``GET /api/v1/calls`` by its
    number and time (the listing echoes no variables), never sent again."""
    sandbox.configure(accept_then_hang_rate=1.0, hang_seconds=3.0)
    start_worker(_voxpria(settings, sandbox), DISPATCHER_PROVIDER_TIMEOUT_SECONDS="1")
    await client.submit(parse_spec(vx_spec("vxlost", contacts=4)))

    async def all_found() -> bool:
        return (await client.get("vxlost")).accepted == 4

    await wait_for(all_found, timeout=60, what="every call found by listing")
    calls = [c for c in sandbox.calls() if c["variables"].get("campaign_id") == "vxlost"]
    dialled = Counter(c["to"] for c in calls)
    assert len(dialled) == 4 and set(dialled.values()) == {1}, f"second calls: {dialled}"
    recorded = {a.call_id async for a in client.store.attempts("vxlost")}
    assert recorded == {c["id"] for c in calls}
    assert len(sandbox.ledger()) == 4, "no create was sent twice"


async def test_the_per_minute_limit_holds_the_account_until_x_ratelimit_reset(
    client: CampaignClient,
    sandbox: SandboxServer,
    settings: Settings,
    start_worker: Callable[..., WorkerProcess],
) -> None:
    """Two calls a minute at the sandbox, no ceiling of ours: the third create is a
    429 whose X-RateLimit-Reset holds the whole account; nothing is lost or doubled."""
    sandbox.configure(voxpria_calls_per_minute=2)
    worker = start_worker(_voxpria(settings, sandbox), DISPATCHER_PROVIDER_CALLS_PER_SECOND="50")
    await client.submit(parse_spec(vx_spec("vxlimit", contacts=3)))

    async def refused_once() -> bool:
        return any(e["status"] == 429 for e in sandbox.ledger())

    await wait_for(refused_once, timeout=30, what="a 429")
    refusal = next(e for e in sandbox.ledger() if e["status"] == 429)

    async def held() -> int | None:
        return await account_hold_until_ms(client.store)

    held_until = await wait_for(held, timeout=10, what="the account held")
    # The reset is about a minute after the first call: held far longer than the 1 s
    # a 429 without a hint holds (capped at 60 s by the engine).
    assert held_until >= refusal_ms(refusal) + 30_000
    assert (await client.get("vxlimit")).accepted == 2
    calls = [c for c in sandbox.calls() if c["variables"].get("campaign_id") == "vxlimit"]
    assert len(calls) == 2
    assert "Traceback" not in worker.log_text()


async def test_a_voxpria_campaign_without_an_agent_is_refused_at_submit(
    sandbox: SandboxServer, settings: Settings
) -> None:
    vx = _voxpria(settings, sandbox)
    async with await CampaignClient.connect(vx) as client:
        with pytest.raises(SpecError) as caught:
            await client.submit(parse_spec(spec_dict("noagent", contacts=2)))
        assert caught.value.field == "call.agent_id"
        assert await client.store.campaign("noagent") is None


def test_the_cli_refuses_a_voxpria_campaign_without_an_agent_with_exit_2(
    sandbox: SandboxServer, settings: Settings, tmp_path: Path
) -> None:
    path = tmp_path / "spec.json"
    path.write_text(json.dumps(spec_dict("noagent", contacts=2)))
    out = subprocess.run(
        [CAMPAIGNS_BIN, "submit", str(path)],
        env=worker_env(_voxpria(settings, sandbox)),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 2 and "call.agent_id" in out.stderr, out.stderr
    assert sandbox.ledger() == []


async def test_the_ingress_takes_only_deliveries_signed_as_voxpria_signs_them(
    settings: Settings, ingress: ThreadedServer
) -> None:
    event = {
        "event": "call.completed",
        "timestamp": "2025-02-09T12:00:00Z",
        "data": {"callId": "call_xyz789", "status": "completed", "duration": 127},
    }
    raw = json.dumps(event, separators=(",", ":")).encode()
    good = sign_webhook(SECRET, raw)
    url = f"{ingress.url}/webhooks/voxpria"
    redis = Redis.from_url(settings.redis_url)
    try:
        async with httpx.AsyncClient(timeout=10) as http:
            for headers in (
                {},
                {"X-VoxPria-Signature": sign_webhook("another-secret", raw)},
                {"X-Webhook-Signature": good},
            ):
                refused = await http.post(url, content=raw, headers=headers)
                assert refused.status_code == 401, headers
            assert await redis.keys("arq:job:*") == []
            started = json.dumps({**event, "event": "call.started"}).encode()
            ignored = await http.post(
                url, content=started, headers={"X-VoxPria-Signature": sign_webhook(SECRET, started)}
            )
            assert ignored.status_code == 202 and ignored.json()["ignored"] is True
            taken = await http.post(url, content=raw, headers={"X-VoxPria-Signature": good})
            assert taken.status_code == 202 and taken.json() == {"queued": True}
            assert len(await redis.keys("arq:job:*")) == 1
    finally:
        await redis.aclose()
