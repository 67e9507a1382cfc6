"""The sandbox's Voxpria calls mode over real HTTP, as voxpria.com's Calls API and
Webhooks API pages state it: the documented body only, the envelope, statuses
over time, the listing, 100 calls a minute (429 with ``X-RateLimit-*``), and
``call.completed`` / ``call.failed`` signed ``X-VoxPria-Signature``."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from campaigns.providers.voxpria_calls import parse_call_event, verify_webhook
from campaigns.testbed.sandbox import SandboxServer, ThreadedServer

KEY = "vx-key"
TO = "+14155551234"


@pytest.fixture
def server(sandbox_server: SandboxServer) -> SandboxServer:
    sandbox_server.reset(config=True)
    sandbox_server.configure(api_key=KEY, call_duration_real_seconds=0)
    return sandbox_server


@pytest.fixture
def http(server: SandboxServer) -> Iterator[httpx.Client]:
    headers = {"Authorization": f"Bearer {KEY}"}
    with httpx.Client(base_url=server.url + "/api/v1", timeout=10, headers=headers) as client:
        yield client


def body(to: str = TO, **extra: Any) -> dict[str, Any]:
    return {"agentId": "agent_abc123", "toNumber": to, "variables": {"attempt_id": "a:1"}, **extra}


def test_trigger_answers_the_documented_envelope_and_the_call_reads_back(
    http: httpx.Client,
) -> None:
    created = http.post("/calls", json=body())
    assert created.status_code == 201
    payload = created.json()
    assert payload["success"] is True
    data = payload["data"]
    assert set(data) == {"callId", "status", "toNumber", "agentId", "createdAt"}
    assert (data["status"], data["toNumber"], data["agentId"]) == ("queued", TO, "agent_abc123")
    details = http.get(f"/calls/{data['callId']}").json()["data"]
    assert details["status"] == "completed" and details["outcome"] == "successful"
    assert details["duration"] == 30 and "variables" not in details
    # completedAt - startedAt is the duration, as on the Calls API page.
    started = time.mktime(time.strptime(details["startedAt"][:19], "%Y-%m-%dT%H:%M:%S"))
    ended = time.mktime(time.strptime(details["completedAt"][:19], "%Y-%m-%dT%H:%M:%S"))
    assert ended - started == 30


def test_x_api_key_is_accepted_and_a_wrong_key_is_401(server: SandboxServer) -> None:
    url = server.url + "/api/v1/calls"
    assert httpx.post(url, json=body(), headers={"X-API-Key": KEY}).status_code == 201
    refused = httpx.post(url, json=body(), headers={"Authorization": "Bearer nope"})
    assert refused.status_code == 401 and refused.json()["success"] is False


@pytest.mark.parametrize(
    ("document", "named"),
    [
        ({"toNumber": TO}, "agentId"),
        ({"agentId": "a", "toNumber": "4155551234"}, "toNumber"),
        ({"agentId": "a", "toNumber": TO, "from": "+15551230001"}, "from"),
        ({"agentId": "a", "toNumber": TO, "variables": []}, "variables"),
    ],
)
def test_only_the_documented_body_is_accepted(
    http: httpx.Client, document: dict[str, Any], named: str
) -> None:
    refused = http.post("/calls", json=document)
    assert refused.status_code == 400 and named in refused.json()["error"]["message"]


def test_statuses_over_time_and_unanswered_outcomes(
    server: SandboxServer, http: httpx.Client
) -> None:
    server.configure(
        call_duration_real_seconds=30, per_number={"+14155550000": {"final_status": "busy"}}
    )
    live = http.post("/calls", json=body()).json()["data"]
    assert http.get(f"/calls/{live['callId']}").json()["data"]["status"] == "queued"
    server.configure(call_duration_real_seconds=0)
    busy = http.post("/calls", json=body("+14155550000")).json()["data"]
    details = http.get(f"/calls/{busy['callId']}").json()["data"]
    assert (details["status"], details["duration"], details["outcome"]) == (
        "busy",
        0,
        "unsuccessful",
    )
    assert "startedAt" not in details
    missing = http.get("/calls/call_nope")
    assert missing.status_code == 404 and missing.json()["success"] is False


def test_the_listing_pages_newest_first_and_echoes_variables_only_when_asked(
    server: SandboxServer, http: httpx.Client
) -> None:
    ids = [
        http.post("/calls", json=body(f"+1415555{n:04d}")).json()["data"]["callId"]
        for n in range(5)
    ]
    first = http.get("/calls", params={"page": 1, "limit": 2}).json()
    assert [row["callId"] for row in first["data"]] == ids[::-1][:2]
    assert first["pagination"] == {"page": 1, "limit": 2, "total": 5}
    third = http.get("/calls", params={"page": 3, "limit": 2}).json()["data"]
    assert [row["callId"] for row in third] == [ids[0]]
    assert all("variables" not in row for row in first["data"])
    server.configure(voxpria_echo_variables=True)
    row = http.get("/calls", params={"page": 1, "limit": 1}).json()["data"][0]
    assert row["variables"] == {"attempt_id": "a:1"}


def test_more_than_the_calls_per_minute_is_a_429_with_x_ratelimit_reset(
    server: SandboxServer, http: httpx.Client
) -> None:
    server.configure(voxpria_calls_per_minute=3)
    assert all(http.post("/calls", json=body()).status_code == 201 for _ in range(3))
    refused = http.post("/calls", json=body())
    assert refused.status_code == 429
    assert refused.json()["error"]["code"] == "rate_limit_exceeded"
    assert refused.headers["X-RateLimit-Limit"] == "3"
    assert refused.headers["X-RateLimit-Remaining"] == "0"
    reset = int(refused.headers["X-RateLimit-Reset"])
    assert time.time() < reset <= time.time() + 61
    assert "Retry-After" not in refused.headers
    assert len([c for c in server.calls() if c["dialect"] == "voxpria"]) == 3


def test_an_injected_rate_limit_fault_carries_x_ratelimit_reset(
    server: SandboxServer, http: httpx.Client
) -> None:
    server.configure(rate_limit_rate=1.0, retry_after_seconds=7)
    refused = http.post("/calls", json=body())
    assert refused.status_code == 429
    assert time.time() + 5 <= int(refused.headers["X-RateLimit-Reset"]) <= time.time() + 8


def test_call_ends_are_posted_signed_as_the_webhooks_api_page_says(
    server: SandboxServer, http: httpx.Client
) -> None:
    received: list[tuple[bytes, dict[str, str]]] = []

    async def hook(request: Request) -> Response:
        received.append((await request.body(), dict(request.headers)))
        return JSONResponse({})

    with ThreadedServer(Starlette(routes=[Route("/hook", hook, methods=["POST"])])) as sink:
        server.configure(
            webhook_url=f"{sink.url}/hook",
            webhook_secret="whsec_xyz",
            per_number={"+14155550000": {"final_status": "no_answer"}},
        )
        done = http.post("/calls", json=body()).json()["data"]["callId"]
        missed = http.post("/calls", json=body("+14155550000")).json()["data"]["callId"]
        deadline = time.monotonic() + 10
        while len(received) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
    events = {}
    for raw, headers in received:
        assert verify_webhook(headers, raw, "whsec_xyz", now=0, tolerance_seconds=1) is None
        payload = json.loads(raw)
        assert set(payload) == {"event", "timestamp", "data"}
        events[payload["data"]["callId"]] = parse_call_event(raw)
    assert events[done][0] == "call.completed" and events[done][1].billsec == 30
    assert events[missed][0] == "call.failed" and events[missed][1].status == "no_answer"
