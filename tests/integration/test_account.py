"""The account gate end to end (issue 10): real Redis, real workers, the sandbox over HTTP.

Every campaign on one provider account draws on one balance: the gate before a
batch counts the batch's worst case (tokens first) plus every campaign's
outstanding reservations, with the buffer, and halts before any create request.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest
from arq.jobs import Job
from pydantic import SecretStr
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from campaigns.domain.lifecycle import Move
from campaigns.domain.spec import parse_spec
from campaigns.engine.account import AccountGate
from campaigns.operators.control import CampaignClient
from campaigns.operators.ingress import account_job_id, create_ingress_app_from_settings
from campaigns.providers import make_provider
from campaigns.providers.balance import make_balance_source
from campaigns.queue import JobQueue, json_deserializer, open_queue
from campaigns.settings import Settings
from campaigns.store import CampaignRecord, Store
from campaigns.testbed.sandbox import SandboxServer, ThreadedServer
from tests.conftest import spec_dict
from tests.support import WorkerProcess, claim_next, submit_spec, wait_for

_FLOW = "f1a2b3c4-d5e6-7890-1234-567890abcdef"
"""What a VoIPBIN call does once answered (the spec's ``call.flow_id``)."""


def _voipbin(settings: Settings, sandbox: SandboxServer) -> Settings:
    return settings.model_copy(
        update={"provider_dialect": "voipbin", "provider_url": f"{sandbox.url}/v1.0"}
    )


@pytest.fixture
async def queue(settings: Settings) -> AsyncIterator[JobQueue]:
    opened = await open_queue(settings.redis_url, settings.queue_name)
    yield opened
    await opened.aclose()


async def test_two_campaigns_on_one_account_the_second_halts_before_sending(
    client: CampaignClient,
    sandbox: SandboxServer,
    settings: Settings,
    start_worker: Callable[..., WorkerProcess],
) -> None:
    """The balance covers one campaign's worst case (with the buffer), not two: the
    second halts ``insufficient_balance`` before its first create request."""
    # 3 calls x 10,000 micros worst case (60 s at 0.01/min) + 10 % = 33,000 <= 40,000;
    # with the first campaign's 30,000 still reserved, the second needs 66,000.
    sandbox.configure(balance_micros=40_000, call_duration_real_seconds=4.0)
    start_worker(_voipbin(settings, sandbox))
    await client.submit(
        parse_spec(spec_dict("acct_a", contacts=3, max_call_seconds=60, call={"flow_id": _FLOW}))
    )

    async def a_in_flight() -> bool:
        a = await client.get("acct_a")
        return a.accepted == 3 and a.reserved_micros == 30_000

    await wait_for(a_in_flight, timeout=30, what="the first campaign's calls in flight")
    await client.submit(
        parse_spec(spec_dict("acct_b", contacts=3, max_call_seconds=60, call={"flow_id": _FLOW}))
    )

    async def b_halted() -> bool:
        return (await client.get("acct_b")).state == "halted"

    await wait_for(b_halted, timeout=30, what="the second campaign halted")
    halt = (await client.status("acct_b"))["halt"]
    assert halt["code"] == "insufficient_balance"
    for part in ("balance 40000 micros", "0 tokens", "66000 micros", "10% buffer", "(3 calls)"):
        assert part in halt["message"], (part, halt["message"])
    assert len(sandbox.ledger()) == 3, "the second campaign sent a create request"

    async def a_done() -> bool:
        a = await client.get("acct_a")
        return a.state == "completed" and a.settled == 3

    await wait_for(a_done, timeout=40, what="the first campaign completed")
    assert len(sandbox.ledger()) == 3
    # The account paid at hangup: 3 calls of 30 s, billed 1 minute each.
    assert sandbox.state.account()["balance_micros"] == 10_000


async def test_tokens_cover_a_vn_campaigns_first_minutes_and_credit_the_overflow(
    client: CampaignClient,
    sandbox: SandboxServer,
    settings: Settings,
    start_worker: Callable[..., WorkerProcess],
) -> None:
    """VN (seed 001): 1 token or 1,000 micros a minute. 4 calls of 2 minutes with 5
    tokens: 2 + 2 tokens, then 1 token + 1,000, then 2,000: 3,000 micros of credit.
    The gate counts the same way: 3,000 + 10 % = 3,300 is enough, to the micro."""
    sandbox.configure(
        balance_micros=3_300,
        balance_token=5,
        call_seconds=90,
        rate={"per_minute": "0.001", "tokens_per_minute": 1},
    )
    start_worker(_voipbin(settings, sandbox))
    spec = spec_dict(
        "vn_tokens",
        contacts=4,
        max_call_seconds=120,
        rate={"preset": "vn"},
        call={"flow_id": _FLOW},
    )
    await client.submit(parse_spec(spec))

    async def done() -> bool:
        c = await client.get("vn_tokens")
        return c.state == "completed" and c.settled == 4

    await wait_for(done, timeout=40, what="the vn campaign completed")
    account = sandbox.state.account()
    assert (account["balance_micros"], account["balance_token"]) == (300, 0)
    assert len(sandbox.ledger()) == 4


async def test_tokens_are_counted_first_but_not_beyond_them(
    client: CampaignClient,
    sandbox: SandboxServer,
    settings: Settings,
    start_worker: Callable[..., WorkerProcess],
) -> None:
    """One micro short of the same need halts, naming the tokens and the need."""
    sandbox.configure(
        balance_micros=3_299, balance_token=5, rate={"per_minute": "0.001", "tokens_per_minute": 1}
    )
    start_worker(_voipbin(settings, sandbox))
    spec = spec_dict(
        "vn_short", contacts=4, max_call_seconds=120, rate={"preset": "vn"}, call={"flow_id": _FLOW}
    )
    await client.submit(parse_spec(spec))

    async def halted() -> bool:
        return (await client.get("vn_short")).state == "halted"

    await wait_for(halted, timeout=30, what="halt")
    message = (await client.status("vn_short"))["halt"]["message"]
    assert "5 tokens" in message and "3300 micros" in message and "after 5 tokens" in message
    assert sandbox.ledger() == []


async def test_the_provider_refusal_when_credit_runs_out_halts_the_campaign(
    client: CampaignClient,
    sandbox: SandboxServer,
    settings: Settings,
    start_worker: Callable[..., WorkerProcess],
) -> None:
    """The gate prices calls on the spec's rate; when the provider charges more (here
    0.05/min against 0.01), VoIPBIN's call manager skips the call it cannot pay for
    and answers ``500 INTERNAL``: resolved by listing (no call) and the balance
    read (short), the campaign halts ``insufficient_balance``, one call placed.
    Needs the engine's resolution of a 500 (issue 22 item 3)."""
    sandbox.configure(
        balance_micros=60_000, call_duration_real_seconds=4.0, rate={"per_minute": "0.05"}
    )
    start_worker(_voipbin(settings, sandbox))
    spec = spec_dict("vb402", contacts=3, max_call_seconds=60, call={"flow_id": _FLOW})
    spec["pacing"] = {"calls_per_second": 50, "batch_size": 1, "max_in_flight": 50}
    await client.submit(parse_spec(spec))

    async def halted() -> bool:
        return (await client.get("vb402")).state == "halted"

    await wait_for(halted, timeout=40, what="halt")
    assert (await client.status("vb402"))["halt"]["code"] == "insufficient_balance"
    answers = [(e["status"], e["error_code"]) for e in sandbox.ledger()]
    assert answers[0] == (200, None) and set(answers[1:]) <= {(500, "INTERNAL")}
    assert len(sandbox.calls()) == 1


async def _alert_jobs(store: Store) -> int:
    found = 0
    for pattern in ("arq:job:alert:account:*", "arq:result:alert:account:*"):
        found += len([k async for k in store.redis.scan_iter(match=pattern)])
    return found


async def test_account_updated_moves_the_cached_balance_and_alerts_once_per_crossing(
    client: CampaignClient,
    sandbox: SandboxServer,
    settings: Settings,
    queue: JobQueue,
    start_worker: Callable[..., WorkerProcess],
) -> None:
    """Seed 001's webhook posted to ``campaigns ingress``, applied by a real worker: the
    cached balance follows the newest timestamp, and below the mark one alert goes to
    the campaigns' webhook per crossing."""
    received: list[dict[str, Any]] = []

    async def hook(request: Request) -> JSONResponse:
        received.append(await request.json())
        return JSONResponse({"ok": True})

    receiver = ThreadedServer(Starlette(routes=[Route("/alerts", hook, methods=["POST"])]))
    receiver.start()
    ingress = ThreadedServer(
        create_ingress_app_from_settings(settings, secret=None), health_path="/healthz"
    )
    ingress.start()
    try:
        spec = spec_dict("watched", contacts=1)
        spec["alerts"] = {"thresholds_percent": [90], "webhook_url": f"{receiver.url}/alerts"}
        await client.submit(parse_spec(spec))
        await client.pause("watched")  # active (its alert webhook counts), nothing to send
        worker = start_worker(DISPATCHER_LOW_BALANCE_MICROS="20000000")
        store = Store(queue.redis)

        async def deliver(credit: Any, at: str, tokens: Any = 20) -> Any:
            body = {
                "event_type": "account_updated",
                "timestamp": at,
                "data": {"id": "acc", "balance_credit": credit, "balance_token": tokens},
            }
            raw = json.dumps(body).encode()
            job_id = account_job_id(raw)
            if isinstance(credit, int):  # through campaigns ingress, as VoIPBIN posts it
                async with httpx.AsyncClient(timeout=10) as http:
                    posted = await http.post(f"{ingress.url}/webhooks/voipbin", content=raw)
                assert posted.json() == {"queued": True}
            else:  # the ingress refuses it (400); a producer could still enqueue it
                await queue.account_event(body, job_id=job_id)
            job = Job(
                job_id,
                queue.redis,
                _queue_name=queue.settlement_queue,
                _deserializer=json_deserializer,
            )
            return await job.result(timeout=30, poll_delay=0.05)

        assert await deliver(15_500_000, "2026-05-01T10:00:00Z") == "updated"
        cached = await store.account("balance")
        assert cached is not None and (cached["amount"], cached["tokens"]) == (15_500_000, 20)
        assert await deliver(15_000_000, "2026-05-01T10:01:00Z") == "updated"  # still below
        assert await deliver(99, "2026-05-01T09:00:00Z") == "stale"  # older: ignored
        cached = await store.account("balance")
        assert cached is not None and cached["amount"] == 15_000_000
        assert await _alert_jobs(store) == 1
        assert await deliver(25_000_000, "2026-05-01T10:02:00Z") == "updated"  # re-arms
        assert await deliver(5_000_000, "2026-05-01T10:03:00Z") == "updated"  # crosses again
        assert await _alert_jobs(store) == 2

        async def two() -> bool:
            return len(received) >= 2

        await wait_for(two, timeout=20, what="two low-balance alerts")
        assert [a["balance_micros"] for a in received] == [15_500_000, 5_000_000]
        assert all(a["event"] == "account.low_balance" for a in received)
        assert worker.log_text().count('"account_low_balance"') == 2
        # A bad payload is one dead letter; the worker stays up and serves the next.
        assert "refused" in await deliver(1.5, "2026-05-01T10:04:00Z")
        assert any("data.balance_credit" in d["reason"] for d in await store.dead_letters())
        assert await deliver(6_000_000, "2026-05-01T10:05:00Z") == "updated"
        assert worker.alive
    finally:
        ingress.stop()
        receiver.stop()


def _voxpria_env(sandbox: SandboxServer, key: str, rates: str = "default=3") -> dict[str, str]:
    """The flat 3 credits a minute of the Credits API page, unless ``rates`` says otherwise;
    the sandbox bills with the same table."""
    sandbox.configure(voxpria_credit_rates=rates)
    return {
        "DISPATCHER_BALANCE_SOURCE": "voxpria",
        "DISPATCHER_BALANCE_URL": f"{sandbox.url}/api/v1",
        "DISPATCHER_BALANCE_API_KEY": key,
        "DISPATCHER_VOXPRIA_CREDIT_RATES": rates,
    }


THREE_COUNTRIES = ("+12025550123", "+442071234567", "+33142685300")
"""US, UK, France: 2, 3 and 10 credits a minute at the documented table's tops."""


async def test_voxpria_three_countries_reserve_by_the_highest_rate(
    client: CampaignClient,
    sandbox: SandboxServer,
    settings: Settings,
    start_worker: Callable[..., WorkerProcess],
) -> None:
    """Numbers in three countries, 2-minute calls: every call of the batch is reserved
    at France's 10 credits a minute (20 each), so 3 x 20 + 10 % = 66 credits are
    needed. 65 halts before any create request (a flat 3 a minute would have asked
    20 and sent); 66 lets it run, and the unanswered French attempt costs its
    1-credit minimum."""
    sandbox.configure(
        credits_balance=65, per_number={THREE_COUNTRIES[2]: {"final_status": "no_answer"}}
    )
    key = settings.provider_api_key.get_secret_value()
    start_worker(**_voxpria_env(sandbox, key, rates="US=2,CA=2,GB=3,default=10"))
    spec = spec_dict("vox3", contacts=0, max_call_seconds=120)
    spec["contacts"] = [
        {"to": to, "ref": f"c{i}", "variables": {}} for i, to in enumerate(THREE_COUNTRIES)
    ]
    await client.submit(parse_spec(spec))

    async def state(wanted: str) -> bool:
        return (await client.get("vox3")).state == wanted

    await wait_for(lambda: state("halted"), timeout=30, what="halt")
    halt = (await client.status("vox3"))["halt"]
    assert halt["code"] == "insufficient_balance"
    for part in ("65 credits", "66 credits", "worst case 60 credits (3 calls"):
        assert part in halt["message"], (part, halt["message"])
    assert sandbox.ledger() == [], "sent before the worst case by destination fit"

    sandbox.configure(credits_balance=66)
    await client.resume("vox3")

    async def done() -> bool:
        c = await client.get("vox3")
        return c.state == "completed" and c.settled == 3

    await wait_for(done, timeout=40, what="completion after the top-up")
    # 30 s calls: US 2, UK 3, and France unanswered: its minimum, 1.
    await wait_for(lambda: _credits_are(sandbox, 66 - 6), timeout=10, what="credits at hangup")


async def test_voxpria_credits_too_low_halt_before_sending_and_a_top_up_lets_it_run(
    client: CampaignClient,
    sandbox: SandboxServer,
    settings: Settings,
    start_worker: Callable[..., WorkerProcess],
) -> None:
    """3 calls of at most 2 minutes: 3 x 6 credits + 10 % = 20 credits needed."""
    sandbox.configure(credits_balance=19)
    key = settings.provider_api_key.get_secret_value()
    worker = start_worker(**_voxpria_env(sandbox, key))
    await client.submit(parse_spec(spec_dict("vox", contacts=3, max_call_seconds=120)))

    async def state(wanted: str) -> bool:
        return (await client.get("vox")).state == wanted

    await wait_for(lambda: state("halted"), timeout=30, what="halt")
    halt = (await client.status("vox"))["halt"]
    assert halt["code"] == "insufficient_balance"
    assert "19 credits" in halt["message"] and "20 credits" in halt["message"]
    assert sandbox.ledger() == []

    sandbox.configure(credits_balance=20)
    await client.resume("vox")

    async def done() -> bool:
        c = await client.get("vox")
        return c.state == "completed" and c.settled == 3

    await wait_for(done, timeout=40, what="completion after the top-up")
    # 30 s calls: 3 credits each, taken at hangup.
    await wait_for(lambda: _credits_are(sandbox, 11), timeout=10, what="credits debited at hangup")
    assert key not in worker.log_text()


async def test_the_gate_reserves_each_campaign_at_its_own_dearest_destination(
    client: CampaignClient, sandbox: SandboxServer, settings: Settings
) -> None:
    """The gate reads the campaign's stored contacts: a US-only campaign reserves
    2 credits a minute (3 x 4 + 10 % = 14), not the table's top 10 (66); once a
    UK campaign holds two calls (2 x 6 credits), they count at its own rate."""
    store = client.store
    key = settings.provider_api_key.get_secret_value()
    env = _voxpria_env(sandbox, key, rates="US=2,CA=2,GB=3,default=10")
    gate_settings = settings.model_copy(
        update={
            "balance_source": "voxpria",
            "balance_url": env["DISPATCHER_BALANCE_URL"],
            "balance_api_key": SecretStr(key),
            "voxpria_credit_rates": env["DISPATCHER_VOXPRIA_CREDIT_RATES"],
        }
    )
    us = spec_dict("gate_us", contacts=0, max_call_seconds=120)
    us["contacts"] = [{"to": f"+1202555012{i}", "ref": f"u{i}", "variables": {}} for i in range(3)]
    uk = spec_dict("gate_uk", contacts=0, max_call_seconds=120)
    uk["contacts"] = [{"to": f"+44207123456{i}", "ref": f"k{i}", "variables": {}} for i in range(2)]
    for spec in (us, uk):
        await submit_spec(store, parse_spec(spec))
    gate = AccountGate(
        store, make_balance_source(gate_settings, make_provider(gate_settings)), gate_settings
    )
    try:
        sandbox.configure(credits_balance=13)
        result = await gate.check(await _record(store, "gate_us"))
        assert result.verdict == "halt" and "below 14 credits" in result.message, result
        sandbox.configure(credits_balance=14)  # a cached 13 never halts: read again
        assert (await gate.check(await _record(store, "gate_us"))).verdict == "ok"
        await store.transition("gate_uk", Move.START)
        assert await store.acquire_lease("gate_uk", "t", 30)
        for _ in range(2):
            assert (await claim_next(store, "gate_uk", "t")).outcome == "claimed"
        # 12 (the batch) + 2 UK calls x 6 = 24, + 10 % = 27 (rounded up from 26.4).
        sandbox.configure(credits_balance=26)
        result = await gate.check(await _record(store, "gate_us"))
        assert result.verdict == "halt" and "below 27 credits" in result.message, result
        assert "outstanding 12 credits" in result.message
    finally:
        await gate.aclose()


async def _record(store: Store, campaign_id: str) -> CampaignRecord:
    record = await store.campaign(campaign_id)
    assert record is not None
    return record


async def _credits_are(sandbox: SandboxServer, wanted: int) -> bool:
    return bool(sandbox.state.account()["credits"] == wanted)


async def test_a_failing_credits_check_sends_nothing(
    client: CampaignClient,
    sandbox: SandboxServer,
    settings: Settings,
    start_worker: Callable[..., WorkerProcess],
) -> None:
    """``success: false`` is a failed check, never "the balance is fine": the campaign
    cools down (provider_unavailable) with nothing sent."""
    sandbox.configure(credits_balance=1000, credits_fail="success_false")
    start_worker(**_voxpria_env(sandbox, settings.provider_api_key.get_secret_value()))
    await client.submit(parse_spec(spec_dict("voxfail", contacts=2)))

    async def paused() -> Any:
        status = await client.status("voxfail")
        return status if status["state"] == "paused" else None

    status = await wait_for(paused, timeout=30, what="cool-down")
    assert status["halt"]["code"] == "provider_unavailable"
    assert "credits_check_failed" in status["halt"]["message"]
    assert sandbox.ledger() == []


def _usage_env(sandbox: SandboxServer, cap: str) -> dict[str, str]:
    return {
        "DISPATCHER_USAGE_URL": sandbox.url,
        "DISPATCHER_USAGE_CLIENT_ID": "sandbox-client",
        "DISPATCHER_USAGE_CLIENT_SECRET": "sandbox-client-secret",
        "DISPATCHER_USAGE_TOKEN_URL": f"{sandbox.url}/oauth/token",
        "DISPATCHER_USAGE_ACCOUNTS": "acc_sandbox",
        "DISPATCHER_MONTHLY_CAP": cap,
    }


async def test_the_monthly_cap_stops_a_campaign_at_the_cap(
    client: CampaignClient,
    sandbox: SandboxServer,
    settings: Settings,
    start_worker: Callable[..., WorkerProcess],
) -> None:
    """0.02 already used this month, a 0.05 cap, calls of 0.01 (worst case = cost):
    at most three calls fit, and the campaign halts ``monthly_cap_reached``."""
    month = time.strftime("%Y-%m", time.gmtime())
    sandbox.configure(
        usage_records=[{"month": month, "currency": "EUR", "total_amount": "0.02"}],
    )
    start_worker(**_usage_env(sandbox, "0.05"))
    spec = spec_dict("capped", contacts=6, max_call_seconds=60)
    spec["pacing"] = {"calls_per_second": 50, "batch_size": 1, "max_in_flight": 50}
    await client.submit(parse_spec(spec))

    async def halted() -> bool:
        return (await client.get("capped")).state == "halted"

    await wait_for(halted, timeout=40, what="halt at the cap")
    campaign = await client.get("capped")
    status = await client.status("capped")
    assert status["halt"]["code"] == "monthly_cap_reached"
    assert "DISPATCHER_MONTHLY_CAP" in status["halt"]["message"]
    # Never past the cap: what was used before plus every call placed fits in it.
    assert 20_000 + 10_000 * campaign.accepted <= 50_000
    assert 1 <= campaign.accepted <= 3
    assert sandbox.state.account()["committed_spend_micros"] == 10_000 * campaign.accepted


async def test_commitments_are_read_across_every_campaign_in_one_script(
    client: CampaignClient,
) -> None:
    """What the gate sums: every campaign's reservation (and spend), with the spec's
    fingerprint that prices it; campaigns with neither are left out."""
    store = client.store
    for campaign_id, contacts in (("com_a", 3), ("com_b", 2), ("com_idle", 1)):
        await submit_spec(store, parse_spec(spec_dict(campaign_id, contacts=contacts)))
    for campaign_id, claims in (("com_a", 2), ("com_b", 1)):
        await store.transition(campaign_id, Move.START)
        assert await store.acquire_lease(campaign_id, "t", 30)
        for _ in range(claims):
            assert (await claim_next(store, campaign_id, "t")).outcome == "claimed"
    found = await store.account_commitments()
    worst = 20_000  # 120 s at 0.01/min
    assert {cid: (r, s) for cid, (r, s, _f) in found.items()} == {
        "com_a": (2 * worst, 0),
        "com_b": (worst, 0),
    }
    spec = parse_spec(spec_dict("com_a", contacts=3))
    assert found["com_a"][2] == spec.fingerprint()


async def test_voxpria_credits_running_low_alert_once(
    client: CampaignClient,
    sandbox: SandboxServer,
    settings: Settings,
    start_worker: Callable[..., WorkerProcess],
) -> None:
    """Seed 002: alert when credits fall below a threshold. 40 credits against a mark
    of 50: however many batches read the balance, one alert for this crossing."""
    received: list[dict[str, Any]] = []

    async def hook(request: Request) -> JSONResponse:
        received.append(await request.json())
        return JSONResponse({"ok": True})

    receiver = ThreadedServer(Starlette(routes=[Route("/alerts", hook, methods=["POST"])]))
    receiver.start()
    try:
        sandbox.configure(credits_balance=40)
        key = settings.provider_api_key.get_secret_value()
        worker = start_worker(**_voxpria_env(sandbox, key), DISPATCHER_LOW_BALANCE_CREDITS="50")
        spec = spec_dict("voxlow", contacts=4, max_call_seconds=60)
        spec["alerts"] = {"thresholds_percent": [90], "webhook_url": f"{receiver.url}/alerts"}
        spec["pacing"] = {"calls_per_second": 50, "batch_size": 1, "max_in_flight": 50}
        await client.submit(parse_spec(spec))

        async def done() -> bool:
            c = await client.get("voxlow")
            return c.state == "completed" and c.settled == 4

        await wait_for(done, timeout=40, what="completion")

        async def alerted() -> bool:
            return len(received) >= 1

        await wait_for(alerted, timeout=20, what="the low-credits alert")
        assert received[0]["balance_credits"] == 40 and received[0]["threshold_credits"] == 50
        assert worker.log_text().count('"account_low_balance"') == 1
    finally:
        receiver.stop()


async def test_the_sandboxs_own_account_updated_reaches_the_cache_through_the_ingress(
    client: CampaignClient,
    sandbox: SandboxServer,
    settings: Settings,
    start_worker: Callable[..., WorkerProcess],
) -> None:
    """End to end: VoIPBIN calls hang up and pay, the sandbox posts ``account_updated``
    to ``campaigns ingress``, a worker moves the cached balance and, below the mark,
    alerts once."""
    received: list[dict[str, Any]] = []

    async def hook(request: Request) -> JSONResponse:
        received.append(await request.json())
        return JSONResponse({"ok": True})

    receiver = ThreadedServer(Starlette(routes=[Route("/alerts", hook, methods=["POST"])]))
    receiver.start()
    ingress = ThreadedServer(
        create_ingress_app_from_settings(settings, secret=None), health_path="/healthz"
    )
    ingress.start()
    try:
        sandbox.configure(
            balance_micros=100_000,
            webhook_url=f"{ingress.url}/webhooks/voipbin",
            account_webhooks=True,
        )
        # The alert goes to the webhooks of campaigns not finished: one stays paused.
        watcher = spec_dict("vbwatch", contacts=1)
        watcher["alerts"] = {"thresholds_percent": [90], "webhook_url": f"{receiver.url}/alerts"}
        await client.submit(parse_spec(watcher))
        await client.pause("vbwatch")
        start_worker(_voipbin(settings, sandbox), DISPATCHER_LOW_BALANCE_MICROS="85000")
        await client.submit(
            parse_spec(
                spec_dict("vbhook", contacts=2, max_call_seconds=60, call={"flow_id": _FLOW})
            )
        )

        async def cached_after_hangups() -> bool:
            cached = await client.store.account("balance")
            return cached is not None and cached["amount"] == 80_000

        await wait_for(cached_after_hangups, timeout=30, what="the webhook's balance cached")

        async def alerted() -> bool:
            return len(received) >= 1

        await wait_for(alerted, timeout=20, what="the low-balance alert")
        assert [a["balance_micros"] for a in received] == [80_000]
        deliveries = sandbox.state.webhook_deliveries
        assert any(d.call_id == "account_updated" and d.status_code == 202 for d in deliveries)
    finally:
        ingress.stop()
        receiver.stop()
