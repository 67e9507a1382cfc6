"""Webhook ingress over real HTTP into real Redis: only genuine, signed call events
worth a worker's time become jobs (MiniVoice: webhooks/signatures, its call events)."""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import httpx
import pytest
import structlog
from arq.connections import ArqRedis, RedisSettings, create_pool

from campaigns.domain.spec import parse_spec
from campaigns.operators.control import CampaignClient
from campaigns.operators.ingress import (
    MAX_BODY_BYTES,
    account_job_id,
    create_ingress_app_from_settings,
    event_job_id,
)
from campaigns.queue import JOB_CALL_EVENT, json_deserializer, settlement_queue
from campaigns.settings import Settings
from campaigns.testbed.sandbox import (
    SandboxServer,
    ThreadedServer,
    minivoice_headers,
    sign_payload,
)
from tests.conftest import spec_dict
from tests.support import WorkerProcess, seed_event, wait_for

SECRET = "whsec_4b9e2f7a1c6d8e3f0a5b"
PATH = "/webhooks/minivoice"

StartIngress = Callable[..., ThreadedServer]


def encode(payload: Any) -> bytes:
    return json.dumps(payload, separators=(",", ":")).encode()


def signed(body: bytes, secret: str = SECRET, ts: float | None = None) -> dict[str, str]:
    """MiniVoice's documented headers: X-MiniVoice-Timestamp, X-MiniVoice-Signature."""
    stamp = int(time.time() if ts is None else ts)
    return {"Content-Type": "application/json", **minivoice_headers(secret, stamp, body)}


def x_signed(body: bytes, secret: str = SECRET) -> dict[str, str]:
    """The contract's X-Signature scheme, still VoIPBIN's here."""
    stamp = int(time.time())
    return {"Content-Type": "application/json", "X-Signature": sign_payload(secret, stamp, body)}


def mac_of(headers: dict[str, str]) -> str:
    return headers["X-MiniVoice-Signature"].removeprefix("v1=")


@pytest.fixture
def start_ingress(settings: Settings) -> Iterator[StartIngress]:
    """Ingress servers on free loopback ports, each opening its own arq pool."""
    servers: list[ThreadedServer] = []

    def start(secret: str | None = SECRET, **kwargs: Any) -> ThreadedServer:
        app = create_ingress_app_from_settings(settings, secret=secret, **kwargs)
        server = ThreadedServer(app, health_path="/healthz")
        server.start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


@pytest.fixture
async def arq_pool(redis_url: str) -> AsyncIterator[ArqRedis]:
    pool = await create_pool(RedisSettings.from_dsn(redis_url), job_deserializer=json_deserializer)
    yield pool
    await pool.aclose()


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=10) as client:
        yield client


async def queued(pool: ArqRedis, settings: Settings) -> list[Any]:
    return list(await pool.queued_jobs(queue_name=settlement_queue(settings.queue_name)))


async def test_signed_completed_event_is_enqueued_as_a_json_job(
    start_ingress: StartIngress, http: httpx.AsyncClient, arq_pool: ArqRedis, settings: Settings
) -> None:
    ingress = start_ingress()
    payload = seed_event()
    body = encode(payload)
    with structlog.testing.capture_logs() as logs:
        response = await http.post(ingress.url + PATH, content=body, headers=signed(body))
    assert response.status_code == 202
    assert response.json() == {"queued": True}

    jobs = await queued(arq_pool, settings)
    assert len(jobs) == 1
    job = jobs[0]
    assert job.function == JOB_CALL_EVENT
    assert job.args == [payload]
    assert job.kwargs == {}
    assert job.job_id == f"event:call_123:call.completed:{hashlib.sha256(body).hexdigest()[:16]}"
    assert job.job_id == event_job_id("call_123", "call.completed", body)

    # What a producer in another language must write: plain JSON at arq:job:<id>.
    raw = json.loads(await arq_pool.get(f"arq:job:{job.job_id}"))
    assert raw["f"] == JOB_CALL_EVENT and raw["a"] == [payload] and raw["k"] == {}
    assert isinstance(raw["et"], int)
    assert await arq_pool.zscore(settlement_queue(settings.queue_name), job.job_id) == raw["et"]

    accepted = [e for e in logs if e["event"] == "webhook_accepted"]
    assert accepted and accepted[0]["job_id"] == job.job_id
    signature = mac_of(signed(body))
    assert SECRET not in repr(logs) and signature not in repr(logs)


async def test_fallback_path_and_health(
    start_ingress: StartIngress, http: httpx.AsyncClient, arq_pool: ArqRedis, settings: Settings
) -> None:
    ingress = start_ingress()
    health = await http.get(ingress.url + "/healthz")
    assert health.status_code == 200
    body = encode(seed_event("call_fallback", event="call.failed"))
    response = await http.post(ingress.url + "/webhooks", content=body, headers=signed(body))
    assert response.status_code == 202
    [job] = await queued(arq_pool, settings)
    assert job.job_id.startswith("event:call_fallback:call.failed:")


def _now() -> str:
    return str(int(time.time()))


@pytest.mark.parametrize(
    "headers",
    [
        pytest.param(
            lambda body: signed(body, secret="whsec_not_the_right_one"), id="wrong-secret"
        ),
        pytest.param(lambda body: signed(body + b" "), id="tampered-body"),
        pytest.param(lambda body: {}, id="missing-headers"),
        pytest.param(
            lambda body: {"X-MiniVoice-Signature": mac_of(signed(body))}, id="missing-timestamp"
        ),
        pytest.param(
            lambda body: {"X-MiniVoice-Timestamp": signed(body)["X-MiniVoice-Timestamp"]},
            id="missing-signature",
        ),
        pytest.param(
            lambda body: {**signed(body), "X-MiniVoice-Signature": mac_of(signed(body))},
            id="no-v1-prefix",
        ),
        pytest.param(
            lambda body: {**signed(body), "X-MiniVoice-Timestamp": str(int(time.time()) + 1)},
            id="timestamp-not-the-signed-one",
        ),
        pytest.param(
            lambda body: {"X-MiniVoice-Timestamp": "abc", "X-MiniVoice-Signature": "v1=00"},
            id="bad-timestamp",
        ),
        pytest.param(
            lambda body: {
                "X-MiniVoice-Timestamp": _now(),
                "X-MiniVoice-Signature": "v1=" + "0" * 64,
            },
            id="zero-mac",
        ),
        pytest.param(lambda body: x_signed(body), id="the-contract-scheme"),
    ],
)
async def test_forged_or_missing_signature_is_refused_and_nothing_enqueued(
    headers: Callable[[bytes], dict[str, str]],
    start_ingress: StartIngress,
    http: httpx.AsyncClient,
    arq_pool: ArqRedis,
    settings: Settings,
) -> None:
    ingress = start_ingress()
    body = encode(seed_event())
    response = await http.post(ingress.url + PATH, content=body, headers=headers(body))
    assert response.status_code == 401
    assert response.json() == {"error": "invalid signature"}
    assert await queued(arq_pool, settings) == []
    assert await arq_pool.keys("arq:job:*") == []


@pytest.mark.parametrize(
    "age", [3600, 301, -301, -3600], ids=["hour-old", "just-stale", "future", "hour-ahead"]
)
async def test_replayed_delivery_outside_tolerance_is_refused(
    age: int,
    start_ingress: StartIngress,
    http: httpx.AsyncClient,
    arq_pool: ArqRedis,
    settings: Settings,
) -> None:
    now = 1_780_000_000.0
    ingress = start_ingress(clock=lambda: now)
    body = encode(seed_event())
    response = await http.post(ingress.url + PATH, content=body, headers=signed(body, ts=now - age))
    assert response.status_code == 401
    assert await queued(arq_pool, settings) == []

    # The same event, signed within the window, goes through.
    fresh = await http.post(ingress.url + PATH, content=body, headers=signed(body, ts=now - 300))
    assert fresh.status_code == 202
    assert len(await queued(arq_pool, settings)) == 1


async def test_without_a_secret_unsigned_deliveries_are_accepted(
    start_ingress: StartIngress, http: httpx.AsyncClient, arq_pool: ArqRedis, settings: Settings
) -> None:
    ingress = start_ingress(secret=None)
    payload = seed_event("call_unsigned")
    response = await http.post(ingress.url + PATH, json=payload)
    assert response.status_code == 202
    [job] = await queued(arq_pool, settings)
    assert job.args == [payload]


async def test_duplicate_delivery_becomes_one_job(
    start_ingress: StartIngress, http: httpx.AsyncClient, arq_pool: ArqRedis, settings: Settings
) -> None:
    ingress = start_ingress()
    body = encode(seed_event("call_twice"))
    for _ in range(3):
        response = await http.post(ingress.url + PATH, content=body, headers=signed(body))
        assert response.status_code == 202
    assert len(await queued(arq_pool, settings)) == 1

    # A different event for another call is a different job.
    other = encode(seed_event("call_other"))
    await http.post(ingress.url + PATH, content=other, headers=signed(other))
    assert len(await queued(arq_pool, settings)) == 2


async def test_retries_of_one_event_are_one_job_by_its_event_key(
    start_ingress: StartIngress, http: httpx.AsyncClient, arq_pool: ArqRedis, settings: Settings
) -> None:
    """MiniVoice re-delivers on any non-2xx; ``data.event_key`` names the event, so a
    retry whose body differs (another ``created_at``) is still the same job."""
    ingress = start_ingress()
    first = seed_event("call_keyed", event="call.created", status="in_progress")
    first["data"] = {"event_key": "call_keyed:call.created"}
    retry = {**first, "created_at": "2026-05-29T12:00:09Z"}
    for payload in (first, retry, first):
        body = encode(payload)
        response = await http.post(ingress.url + PATH, content=body, headers=signed(body))
        assert response.status_code == 202 and response.json() == {"queued": True}
    [job] = await queued(arq_pool, settings)
    assert job.job_id == event_job_id("call_keyed", "call.created", b"", "call_keyed:call.created")
    assert job.args == [first]


@pytest.mark.parametrize(
    "event", ["call.created", "call.answered", "call.completed", "call.failed", "call.canceled"]
)
async def test_every_documented_call_event_is_queued(
    event: str,
    start_ingress: StartIngress,
    http: httpx.AsyncClient,
    arq_pool: ArqRedis,
    settings: Settings,
) -> None:
    ingress = start_ingress()
    payload = seed_event("call_doc", event=event)
    payload["data"] = {"event_key": f"call_doc:{event}"}
    body = encode(payload)
    response = await http.post(ingress.url + PATH, content=body, headers=signed(body))
    assert response.json() == {"queued": True}
    [job] = await queued(arq_pool, settings)
    assert job.function == JOB_CALL_EVENT and job.args == [payload]


@pytest.mark.parametrize(
    "body",
    [
        b"{not json",
        b"\xff\xfe garbage",
        b"[1, 2, 3]",
        b'"call.completed"',
        b'{"call": {"id": "call_1"}}',
        b'{"event": 42, "call": {"id": "call_1"}}',
        b'{"event": "call.completed", "call": {"id": NaN}}',
        b'{"event": "call.completed", "call": {}}',
        b'{"event": "call.completed", "call": {"id": 7}}',
        b"[" * 50_000,
    ],
    ids=[
        "not-json",
        "not-utf8",
        "array",
        "string",
        "no-event",
        "event-not-string",
        "nan",
        "no-call-id",
        "call-id-not-string",
        "deep-nesting",
    ],
)
async def test_malformed_body_is_refused_and_nothing_enqueued(
    body: bytes,
    start_ingress: StartIngress,
    http: httpx.AsyncClient,
    arq_pool: ArqRedis,
    settings: Settings,
) -> None:
    ingress = start_ingress()
    response = await http.post(ingress.url + PATH, content=body, headers=signed(body))
    assert response.status_code == 400
    assert "error" in response.json()
    assert await queued(arq_pool, settings) == []


@pytest.mark.parametrize(
    "event",
    [
        "call.ringing",
        "call.in_progress",
        "call.busy",
        "call.gathered",
        "recording.completed",
        "account_updated",
    ],
)
async def test_non_final_event_is_ignored(
    event: str,
    start_ingress: StartIngress,
    http: httpx.AsyncClient,
    arq_pool: ArqRedis,
    settings: Settings,
) -> None:
    ingress = start_ingress()
    body = encode(seed_event(event=event))
    response = await http.post(ingress.url + PATH, content=body, headers=signed(body))
    assert response.status_code == 202
    assert response.json() == {"queued": False, "ignored": True}
    assert await queued(arq_pool, settings) == []


async def test_oversized_body_is_refused(
    start_ingress: StartIngress, http: httpx.AsyncClient, arq_pool: ArqRedis, settings: Settings
) -> None:
    ingress = start_ingress()
    payload = seed_event()
    payload["data"] = {"padding": "x" * MAX_BODY_BYTES}
    body = encode(payload)
    response = await http.post(ingress.url + PATH, content=body, headers=signed(body))
    assert response.status_code == 413

    async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: capped while reading
        for start in range(0, len(body), 8192):
            yield body[start : start + 8192]

    response = await http.post(ingress.url + PATH, content=chunks(), headers=signed(body))
    assert response.status_code == 413
    assert await queued(arq_pool, settings) == []


async def test_sandbox_webhooks_settle_a_campaign_through_the_ingress(
    start_ingress: StartIngress,
    sandbox: SandboxServer,
    client: CampaignClient,
    start_worker: Callable[..., WorkerProcess],
    arq_pool: ArqRedis,
) -> None:
    ingress = start_ingress()
    sandbox.configure(
        webhook_url=ingress.url + PATH, webhook_secret=SECRET, webhook_duplicates=True
    )
    start_worker()
    await client.submit(parse_spec(spec_dict("hooked", contacts=3)))

    async def settled() -> bool:
        return (await client.get("hooked")).settled == 3

    await wait_for(settled, timeout=40, what="3 calls settled")

    # created, answered, completed for each call, each delivered twice.
    async def delivered() -> list[Any]:
        deliveries = list(sandbox.state.webhook_deliveries)
        return deliveries if len(deliveries) == 18 else []

    deliveries = await wait_for(delivered, timeout=10, what="18 webhook deliveries")
    assert {d.status_code for d in deliveries} == {202}
    assert sorted({d.event for d in deliveries}) == [
        "call.answered",
        "call.completed",
        "call.created",
    ]

    async def event_results() -> list[Any]:
        results = [r for r in await arq_pool.all_job_results() if r.function == JOB_CALL_EVENT]
        return results if len(results) == 9 else []

    # Each event delivered twice, enqueued once, and run by the worker.
    results = await wait_for(event_results, timeout=15, what="9 record_call_event results")
    call_ids = {d.call_id for d in deliveries}
    assert len(call_ids) == 3
    assert {r.args[0]["call"]["id"] for r in results} == call_ids
    assert all(r.success for r in results)
    finals = [r for r in results if r.args[0]["event"] == "call.completed"]
    assert len(finals) == 3
    assert {r.result for r in finals} <= {"ok", "duplicate"}


async def test_unsigned_zero_cost_completion_is_refused(
    start_ingress: StartIngress, http: httpx.AsyncClient, arq_pool: ArqRedis, settings: Settings
) -> None:
    """Issue #12, defect 2: this delivery settled a live 3,600 s call at zero cost."""
    ingress = start_ingress()
    payload = seed_event(billsec_seconds=3600, cost_amount="0", cost_currency="EUR")
    response = await http.post(ingress.url + PATH, json=payload)
    assert response.status_code == 401
    assert response.json() == {"error": "invalid signature"}
    assert await queued(arq_pool, settings) == []
    assert await arq_pool.keys("arq:job:*") == []


@pytest.mark.parametrize("secret", ["", " ", "\n"], ids=["empty", "space", "newline"])
def test_an_empty_secret_never_starts_an_unsigned_ingress(secret: str, settings: Settings) -> None:
    """Empty is refused where the ingress is built, as well as in the settings."""
    with pytest.raises(ValueError, match="DISPATCHER_WEBHOOK_SECRET"):
        create_ingress_app_from_settings(settings, secret=secret)


async def test_a_signed_account_updated_delivery_is_queued_once(
    start_ingress: StartIngress, http: httpx.AsyncClient, arq_pool: ArqRedis, settings: Settings
) -> None:
    """VoIPBIN names its event ``event_type``: ``account_updated`` becomes one
    ``record_account_event`` job (the same body twice is one job); another
    VoIPBIN event is acknowledged and not queued; unsigned is 401."""
    ingress = start_ingress()
    body = encode(
        {
            "event_type": "account_updated",
            "timestamp": "2026-05-29T12:10:00Z",
            "data": {"id": "acc_1", "balance_credit": 5_000_000, "balance_token": 0},
        }
    )
    for _ in range(2):
        response = await http.post(
            ingress.url + "/webhooks/voipbin", content=body, headers=x_signed(body)
        )
        assert response.status_code == 202
        assert response.json() == {"queued": True}
    jobs = await queued(arq_pool, settings)
    assert [(j.function, j.job_id) for j in jobs] == [
        ("record_account_event", account_job_id(body))
    ]
    other = encode({"event_type": "call_updated", "data": {}})
    response = await http.post(
        ingress.url + "/webhooks/voipbin", content=other, headers=x_signed(other)
    )
    assert response.json() == {"queued": False, "ignored": True}
    unsigned = await http.post(ingress.url + "/webhooks/voipbin", content=body)
    assert unsigned.status_code == 401
    assert len(await queued(arq_pool, settings)) == 1


@pytest.mark.parametrize(
    ("data", "why"),
    [
        ({"balance_credit": 1.5, "balance_token": 0}, "data.balance_credit"),
        ({"balance_credit": "100", "balance_token": 0}, "data.balance_credit"),
        ({"balance_credit": 100, "balance_token": -1}, "data.balance_token"),
        ({"balance_credit": 100}, "data.balance_token"),
        ({"balance_credit": 2**63, "balance_token": 0}, "data.balance_credit"),
        ("nope", "data: expected an object"),
    ],
)
async def test_a_bad_account_updated_is_400_and_queues_nothing(
    start_ingress: StartIngress,
    http: httpx.AsyncClient,
    arq_pool: ArqRedis,
    settings: Settings,
    data: Any,
    why: str,
) -> None:
    ingress = start_ingress()
    body = encode(
        {"event_type": "account_updated", "timestamp": "2026-05-29T12:10:00Z", "data": data}
    )
    response = await http.post(
        ingress.url + "/webhooks/voipbin", content=body, headers=x_signed(body)
    )
    assert response.status_code == 400
    assert why in response.json()["error"]
    bad_time = encode({"event_type": "account_updated", "timestamp": "yesterday", "data": {}})
    response = await http.post(
        ingress.url + "/webhooks/voipbin", content=bad_time, headers=x_signed(bad_time)
    )
    assert response.status_code == 400 and "timestamp" in response.json()["error"]
    assert await queued(arq_pool, settings) == []


@pytest.mark.parametrize(
    ("body", "why"),
    [
        (b'{"event": "call.completed", "call": {"id": "c", "billsec_seconds": 1e400}}', "JSON"),
        (
            b'{"event": "call.completed", "call": {"id": "c"}, "data": '
            + b'{"a": ' * 16
            + b"1"
            + b"}" * 17,
            "16 levels",
        ),
        (b'{"event_type": 7}', "event_type: expected a non-empty string"),
        (b'{"event": "call.completed", "call": {"id": "\\ud800"}}', "lone surrogate"),
        (b'{"event": "call.failed", "call": {"id": "c", "x\\udfff": 1}}', "lone surrogate"),
    ],
    ids=[
        "infinite-number",
        "too-deep",
        "event-type-not-string",
        "surrogate-call-id",
        "surrogate-key",
    ],
)
async def test_bodies_a_worker_would_choke_on_are_refused(
    body: bytes,
    why: str,
    start_ingress: StartIngress,
    http: httpx.AsyncClient,
    arq_pool: ArqRedis,
    settings: Settings,
) -> None:
    ingress = start_ingress()
    response = await http.post(ingress.url + PATH, content=body, headers=signed(body))
    assert response.status_code == 400
    assert why in response.json()["error"]
    assert await queued(arq_pool, settings) == []
