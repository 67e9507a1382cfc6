"""The sandbox provider over real HTTP on loopback."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import re
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from campaigns.testbed.sandbox import (
    SandboxConfigError,
    SandboxServer,
    ThreadedServer,
    amount_string,
    load_config,
    parse_rfc3339,
)

KEY = "test-key"
SPEND_BODY = {
    "error": {"code": "spend_control_exceeded", "message": "outbound spend limit exceeded"}
}


_CONTROL: dict[str, httpx.Client] = {}


def ctl(server: SandboxServer) -> httpx.Client:
    """One pooled client per server for the control API (a new client per call is slow)."""
    return _CONTROL[server.url]


@pytest.fixture(scope="module")
def server() -> Iterator[SandboxServer]:
    with SandboxServer() as srv, httpx.Client(base_url=srv.url, timeout=5) as control:
        _CONTROL[srv.url] = control
        yield srv
        del _CONTROL[srv.url]


@pytest.fixture(autouse=True)
def fresh(server: SandboxServer) -> None:
    """Every test starts from defaults, with a known key and quick calls."""
    r = ctl(server).post("/_sandbox/reset", json={"config": True})
    assert r.status_code == 200
    configure(server, api_key=KEY, call_duration_real_seconds=0.2)


@pytest.fixture
def client(server: SandboxServer) -> Iterator[httpx.Client]:
    with httpx.Client(
        base_url=server.url, headers={"Authorization": f"Bearer {KEY}"}, timeout=5
    ) as c:
        yield c


def configure(server: SandboxServer, **patch: Any) -> dict[str, Any]:
    r = ctl(server).patch("/_sandbox/config", json=patch)
    assert r.status_code == 200, r.text
    return dict(r.json())


def call_body(attempt: str = "camp:000001:1", to: str = "+15551230002", **extra: Any) -> str:
    """MiniVoice's documented create body (calls/outbound-calls)."""
    body = {
        "from": "+15551230001",
        "to": to,
        "metadata": {"campaign_id": "camp", "attempt_id": attempt, "contact_ref": "c1"},
    }
    body.update(extra)
    return json.dumps(body)


def create(
    client: httpx.Client, key: str | None = "k1", body: str | None = None, **kw: Any
) -> httpx.Response:
    headers = {"Content-Type": "application/json"}
    if key is not None:
        headers["Idempotency-Key"] = key
    return client.post("/v1/calls", content=body or call_body(**kw), headers=headers)


def ledger(server: SandboxServer) -> list[dict[str, Any]]:
    return list(ctl(server).get("/_sandbox/ledger").json()["requests"])


def sandbox_calls(server: SandboxServer) -> list[dict[str, Any]]:
    return list(ctl(server).get("/_sandbox/calls").json()["data"])


def wait_for(predicate: Callable[[], Any], timeout: float = 5.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.02)
    raise AssertionError("condition not met in time")


# -- create, read, lifecycle --------------------------------------------------


def test_create_read_and_complete_with_cost(server: SandboxServer, client: httpx.Client) -> None:
    r = create(client)
    assert r.status_code == 201
    call = r.json()
    assert call["id"].startswith("call_")
    assert call["status"] == "dialing"
    assert call["direction"] == "outbound"
    assert (call["from"], call["to"]) == ("+15551230001", "+15551230002")
    assert call["metadata"]["attempt_id"] == "camp:000001:1"
    # every field of the documented answer
    assert set(call) == {
        "id",
        "status",
        "direction",
        "from",
        "to",
        "application_id",
        "customer_id",
        "provider_call_id",
        "answer_url",
        "metadata",
        "created_at",
        "route_mode",
        "routing_target",
        "dialing_at",
    }
    assert abs(parse_rfc3339(call["created_at"]) - time.time()) < 5
    assert "cost_amount" not in call and "billsec_seconds" not in call

    live = client.get(f"/v1/calls/{call['id']}").json()
    assert live["status"] in {"dialing", "in_progress"}
    assert "cost_amount" not in live

    final = wait_for(
        lambda: (c := client.get(f"/v1/calls/{call['id']}").json())["status"] == "completed" and c
    )
    assert final["billsec_seconds"] == 30
    assert final["cost_amount"] == "0.01"
    assert final["cost_currency"] == "EUR"
    assert "ended_at" in final

    # the same state is readable in-process
    [entry] = server.state.ledger
    assert (entry.status, entry.call_id, entry.replayed) == (201, call["id"], False)
    assert server.state.committed_spend_micros == 10_000


def test_lifecycle_dialing_in_progress_completed(
    server: SandboxServer, client: httpx.Client
) -> None:
    """The statuses the documentation shows: dialing, in_progress, completed."""
    configure(server, call_duration_real_seconds=0.6)
    call_id = create(client).json()["id"]
    seen = set()
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline and "completed" not in seen:
        seen.add(client.get(f"/v1/calls/{call_id}").json()["status"])
        time.sleep(0.03)
    assert seen == {"dialing", "in_progress", "completed"}


def test_unknown_call_is_404(client: httpx.Client) -> None:
    r = client.get("/v1/calls/call_nope")
    assert r.status_code == 404
    assert r.json()["error"]["code"] == "not_found"


def test_settle_delay_hides_cost_until_settled(server: SandboxServer, client: httpx.Client) -> None:
    configure(server, call_duration_real_seconds=0, settle_delay_seconds=0.5)
    call_id = create(client).json()["id"]
    first = client.get(f"/v1/calls/{call_id}").json()
    assert first["status"] == "completed" and first["billsec_seconds"] == 30
    assert "cost_amount" not in first
    wait_for(lambda: "cost_amount" in client.get(f"/v1/calls/{call_id}").json())


def test_per_number_final_status_and_no_max_duration(
    server: SandboxServer, client: httpx.Client
) -> None:
    configure(
        server,
        call_duration_real_seconds=0,
        call_seconds=300,
        per_number={"+15550000009": {"final_status": "busy"}},
    )
    busy = create(client, "kb", to="+15550000009").json()
    long = create(client, "kc").json()
    busy = client.get(f"/v1/calls/{busy['id']}").json()
    long = client.get(f"/v1/calls/{long['id']}").json()
    assert (busy["status"], busy["billsec_seconds"], busy["cost_amount"]) == ("busy", 0, "0.00")
    # MiniVoice takes no max duration: the call lasts what it lasts (5 min at 0.01/min)
    assert (long["billsec_seconds"], long["cost_amount"]) == (300, "0.05")


@pytest.mark.parametrize(
    ("document", "fragment"),
    [
        (
            {"from": "+15551230001", "to": "+15551230002", "variables": {}},
            "unknown field: variables",
        ),
        (
            {"from": "+15551230001", "to": "+15551230002", "max_duration_seconds": 60},
            "unknown field: max_duration_seconds",
        ),
        ({"from": "15551230001", "to": "+15551230002"}, "'from' must be an E.164"),
        ({"from": "+15551230001", "to": "+1 555 123"}, "'to' must be an E.164"),
        ({"from": "+15551230001", "to": "+15551230002", "metadata": []}, "'metadata'"),
        ({"from": "+15551230001", "to": "+15551230002", "record": "yes"}, "'record'"),
    ],
)
def test_only_the_documented_body_is_accepted(
    client: httpx.Client, document: dict[str, Any], fragment: str
) -> None:
    r = create(client, body=json.dumps(document))
    assert r.status_code == 400
    assert r.json()["error"]["code"] == "invalid_request"
    assert fragment in r.json()["error"]["message"]


def test_record_true_is_stored_as_metadata_record(client: httpx.Client) -> None:
    """calls/outbound-calls: "record=true stores metadata.record=true"."""
    call = create(client, "r1", body=call_body(record=True)).json()
    assert call["metadata"]["record"] is True
    plain = create(client, "r2", body=call_body(record=False)).json()
    assert plain["metadata"].get("record") is None


# -- idempotency ----------------------------------------------------------------


def test_idempotent_replay_returns_original(server: SandboxServer, client: httpx.Client) -> None:
    configure(server, idempotency_keys=True)
    first = create(client, "same")
    time.sleep(0.1)
    again = create(client, "same")
    assert again.status_code == 201
    assert again.headers["Idempotent-Replayed"] == "true"
    assert "Idempotent-Replayed" not in first.headers
    assert again.content == first.content
    assert len(sandbox_calls(server)) == 1
    entries = ledger(server)
    assert [e["replayed"] for e in entries] == [False, True]
    assert entries[1]["call_id"] == first.json()["id"]
    assert server.state.committed_spend_micros == 10_000


def test_replay_ignores_key_order_but_not_content(
    server: SandboxServer, client: httpx.Client
) -> None:
    configure(server, idempotency_keys=True)
    body = json.loads(call_body())
    create(client, "k", body=json.dumps(body))
    reordered = json.dumps(dict(reversed(list(body.items()))))
    assert create(client, "k", body=reordered).status_code == 201
    r = create(client, "k", body=call_body(to="+15559999999"))
    assert r.status_code == 409
    assert r.json()["error"]["code"] == "idempotency_key_reuse"
    assert len(sandbox_calls(server)) == 1
    assert ledger(server)[-1]["error_code"] == "idempotency_key_reuse"


def test_ignoring_idempotency_places_duplicates(
    server: SandboxServer, client: httpx.Client
) -> None:
    # The default, as the real MiniVoice and VoIPBIN: the header is ignored.
    a, b = create(client, "dup"), create(client, "dup")
    assert a.status_code == b.status_code == 201
    assert a.json()["id"] != b.json()["id"]
    assert len(sandbox_calls(server)) == 2


# -- money: spend control and balance --------------------------------------------


def test_spend_limit_rejects_next_call(server: SandboxServer, client: httpx.Client) -> None:
    configure(server, spend_limit_micros=30_000)
    for n in range(3):
        assert create(client, f"k{n}", attempt=f"a{n}").status_code == 201
    body = call_body(attempt="a3")
    r = create(client, "k3", body=body)
    assert r.status_code == 403
    assert r.json() == SPEND_BODY
    last = ledger(server)[-1]
    assert last["body"] == body
    assert (last["status"], last["error_code"], last["call_id"]) == (
        403,
        "spend_control_exceeded",
        None,
    )
    assert last["variables"]["attempt_id"] == "a3"
    assert len(sandbox_calls(server)) == 3
    account = ctl(server).get("/_sandbox/account").json()
    assert account["committed_spend_micros"] == 30_000


async def test_spend_limit_holds_under_concurrency(server: SandboxServer) -> None:
    configure(server, spend_limit_micros=50_000, latency_seconds=0.05)
    async with httpx.AsyncClient(
        base_url=server.url, headers={"Authorization": f"Bearer {KEY}"}, timeout=10
    ) as ac:
        responses = await asyncio.gather(
            *(
                ac.post(
                    "/v1/calls",
                    content=call_body(attempt=f"a{n}"),
                    headers={"Idempotency-Key": f"k{n}"},
                )
                for n in range(20)
            )
        )
    statuses = sorted(r.status_code for r in responses)
    assert statuses == [201] * 5 + [403] * 15
    assert server.state.committed_spend_micros == 50_000


def test_insufficient_balance_is_402(server: SandboxServer, client: httpx.Client) -> None:
    configure(server, balance_micros=15_000)
    assert create(client, "k1").status_code == 201
    r = create(client, "k2", attempt="a2")
    assert r.status_code == 402
    assert r.json()["error"]["code"] == "insufficient_balance"
    assert ctl(server).get("/_sandbox/account").json()["balance_micros"] == 5_000
    configure(server, balance_micros=1_000_000)  # top-up: retry now passes
    assert create(client, "k2", attempt="a2").status_code == 201


@pytest.mark.parametrize(
    ("field", "status", "code"),
    [
        ("invalid_numbers", 422, "invalid_destination"),
        ("blocked_numbers", 422, "blocked_destination"),
        ("unroutable_numbers", 403, "no_route"),
    ],
)
def test_destination_rejections(
    server: SandboxServer, client: httpx.Client, field: str, status: int, code: str
) -> None:
    configure(server, **{field: ["+15550000001"]})
    r = create(client, to="+15550000001")
    assert r.status_code == status
    assert r.json()["error"]["code"] == code
    assert sandbox_calls(server) == []
    assert create(client, "other").status_code == 201


# -- request validation and auth -----------------------------------------------------


@pytest.mark.parametrize("key", [None, "Bearer wrong", "test-key"])
def test_auth_required(server: SandboxServer, key: str | None) -> None:
    headers = {} if key is None else {"Authorization": key}
    for r in (
        ctl(server).post("/v1/calls", content=call_body(), headers=headers),
        ctl(server).get("/v1/calls/call_x", headers=headers),
        ctl(server).get("/v1/usage", headers=headers),
    ):
        assert r.status_code == 401
        assert r.json()["error"]["code"] == "unauthorized"
    assert ledger(server)[0]["status"] == 401
    assert sandbox_calls(server) == []


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ("not json", "invalid_json"),
        ("[]", "invalid_request"),
        (json.dumps({"from": "+15551230001"}), "invalid_request"),
        (json.dumps({"from": "+1555", "to": "+1556", "metadata": []}), "invalid_request"),
    ],
)
def test_invalid_body_is_400(
    server: SandboxServer, client: httpx.Client, body: str, code: str
) -> None:
    """The documented 400 codes: invalid_json, invalid_request."""
    r = create(client, body=body)
    assert r.status_code == 400
    assert r.json()["error"]["code"] == code
    assert ledger(server)[0]["body"] == body


# -- usage ------------------------------------------------------------------------


def _iso(dt: datetime) -> str:
    return dt.strftime("%Y-%m-%dT%H:%M:%SZ")


def test_usage_window_totals(server: SandboxServer, client: httpx.Client) -> None:
    configure(server, call_duration_real_seconds=0, application_id="app_123")
    before = datetime.now(UTC) - timedelta(seconds=2)
    create(client, "k1")
    create(client, "k2", attempt="a2")
    after = datetime.now(UTC) + timedelta(seconds=2)
    r = client.get("/v1/usage", params={"from": _iso(before), "to": _iso(after)})
    assert r.status_code == 200
    assert r.json() == {
        "application_id": "app_123",
        "from": _iso(before),
        "to": _iso(after),
        "summary": {
            "calls": 2,
            "billsec_seconds": 60,
            "cost_amount": "0.02",
            "cost_currency": "EUR",
        },
    }
    # [from, to): a window ending before the calls is empty; offsets work too
    empty = client.get(
        "/v1/usage",
        params={"from": "2026-01-01T00:00:00+00:00", "to": before.isoformat()},
    ).json()["summary"]
    assert empty == {
        "calls": 0,
        "billsec_seconds": 0,
        "cost_amount": "0.00",
        "cost_currency": "EUR",
    }


def test_usage_counts_only_settled(server: SandboxServer, client: httpx.Client) -> None:
    configure(server, call_duration_real_seconds=0, settle_delay_seconds=60)
    create(client)
    params = {"from": "2000-01-01T00:00:00Z", "to": "2100-01-01T00:00:00Z"}
    assert client.get("/v1/usage", params=params).json()["summary"]["calls"] == 0


@pytest.mark.parametrize(
    "params",
    [{}, {"from": "yesterday", "to": "2026-01-01T00:00:00Z"}, {"from": "2026-01-01", "to": "x"}],
)
def test_usage_rejects_bad_timestamps(client: httpx.Client, params: dict[str, str]) -> None:
    r = client.get("/v1/usage", params=params)
    assert r.status_code == 400
    assert r.json()["error"]["code"] == "invalid_request"


def test_omit_cost_never_shows_cost(server: SandboxServer, client: httpx.Client) -> None:
    configure(server, call_duration_real_seconds=0, omit_cost=True)
    call_id = create(client).json()["id"]
    time.sleep(0.1)
    final = client.get(f"/v1/calls/{call_id}").json()
    assert final["status"] == "completed" and final["billsec_seconds"] == 30
    assert "cost_amount" not in final and "cost_currency" not in final


# -- faults ------------------------------------------------------------------------


def test_error_rate_answers_5xx_without_call(server: SandboxServer, client: httpx.Client) -> None:
    configure(server, error_rate=1.0, error_statuses=[502, 503])
    for n in range(4):
        r = create(client, f"k{n}")
        assert r.status_code in {502, 503}
        assert r.json()["error"]["code"] == "provider_error"
    assert sandbox_calls(server) == []
    assert {e["fault"] for e in ledger(server)} == {"error"}
    configure(server, error_rate=0.0)
    assert create(client, "k0").status_code == 201  # the key was not burnt


def test_rate_limit_sends_retry_after(server: SandboxServer, client: httpx.Client) -> None:
    configure(server, rate_limit_rate=1.0, retry_after_seconds=7)
    r = create(client)
    assert r.status_code == 429
    assert r.headers["Retry-After"] == "7"
    # the documented 429 code (calls/outbound-calls)
    assert r.json()["error"]["code"] == "cps_limit_reached"
    assert ledger(server)[0]["fault"] == "rate_limit"


def test_accept_then_fail_then_replay(server: SandboxServer, client: httpx.Client) -> None:
    configure(server, accept_then_fail_rate=1.0, idempotency_keys=True)
    lost = create(client, "lost")
    assert lost.status_code == 500
    [call] = sandbox_calls(server)
    configure(server, accept_then_fail_rate=0.0)
    retry = create(client, "lost")
    assert retry.status_code == 201
    assert retry.json()["id"] == call["id"]
    assert retry.headers["Idempotent-Replayed"] == "true"
    entries = ledger(server)
    assert (entries[0]["status"], entries[0]["call_id"], entries[0]["fault"]) == (
        500,
        call["id"],
        "accept_then_fail",
    )
    assert len(sandbox_calls(server)) == 1


def test_accept_then_hang_call_exists(server: SandboxServer, client: httpx.Client) -> None:
    configure(
        server, idempotency_keys=True, script=[{"action": "accept_then_hang", "hang_seconds": 1.5}]
    )
    with pytest.raises(httpx.ReadTimeout):
        client.post("/v1/calls", content=call_body(), headers={"Idempotency-Key": "h"}, timeout=0.3)
    [call] = sandbox_calls(server)
    assert call["idempotency_key"] == "h"
    retry = create(client, "h")
    assert retry.status_code == 201 and retry.json()["id"] == call["id"]
    assert ledger(server)[0]["fault"] == "script:accept_then_hang"


def test_script_is_consumed_in_order(server: SandboxServer, client: httpx.Client) -> None:
    configure(
        server,
        script=[
            {"status": 503, "code": "provider_error", "retry_after": 2},
            {"action": "pass"},
            {
                "status": 403,
                "code": "spend_control_exceeded",
                "message": "outbound spend limit exceeded",
            },
        ],
    )
    first = create(client, "s1")
    assert first.status_code == 503 and first.headers["Retry-After"] == "2"
    assert create(client, "s1").status_code == 201
    third = create(client, "s3", attempt="a3")
    assert third.status_code == 403 and third.json() == SPEND_BODY
    assert create(client, "s4", attempt="a4").status_code == 201
    assert [e["fault"] for e in ledger(server)] == ["script:503", None, "script:403", None]


def test_faults_are_seeded(server: SandboxServer, client: httpx.Client) -> None:
    def run() -> list[int]:
        return [create(client, f"k{n}", attempt=f"a{n}").status_code for n in range(12)]

    configure(server, seed=42, error_rate=0.5, error_statuses=[503])
    first = run()
    ctl(server).post("/_sandbox/reset", json={})
    assert run() == first
    assert {201, 503} == set(first)


def test_faults_do_not_touch_control_api(server: SandboxServer) -> None:
    configure(server, error_rate=1.0, latency_seconds=0.5)
    started = time.monotonic()
    assert ctl(server).get("/_sandbox/ledger").status_code == 200
    assert time.monotonic() - started < 0.4


def test_latency_applies_to_provider_api(server: SandboxServer, client: httpx.Client) -> None:
    configure(server, latency_seconds=0.3)
    started = time.monotonic()
    client.get("/v1/calls/call_x")
    assert time.monotonic() - started >= 0.3


# -- lookup, control API, config -------------------------------------------------------


def test_no_undocumented_call_listing(client: httpx.Client) -> None:
    """MiniVoice documents no call listing: the sandbox serves none."""
    create(client, "k1", attempt="camp:000042:1")
    assert client.get("/v1/calls", params={"attempt_id": "camp:000042:1"}).status_code == 405


def test_config_patch_validates(server: SandboxServer) -> None:
    r = ctl(server).patch("/_sandbox/config", json={"spend_limit": 5})
    assert r.status_code == 400
    assert "spend_limit" in r.json()["error"]["message"]
    r = ctl(server).patch("/_sandbox/config", json={"rate": {"per_minute": 0.5}})
    assert r.status_code == 400
    r = ctl(server).patch("/_sandbox/config", json={"error_rate": 0.7, "rate_limit_rate": 0.7})
    assert r.status_code == 400
    cfg = configure(server, rate={"increments": "1/1"}, spend_limit_micros=None)
    assert cfg["rate"] == {
        "per_minute": "0.01",
        "increments": "1/1",
        "connect_fee": "0",
        "tokens_per_minute": 0,
    }
    assert ctl(server).get("/_sandbox/config").json()["rate"]["increments"] == "1/1"


def test_rate_config_drives_cost(server: SandboxServer, client: httpx.Client) -> None:
    # 1/1 at 0.01 per second + 0.10 connect fee, 45 s -> 0.55 (CONTRACT vector)
    configure(
        server,
        call_duration_real_seconds=0,
        call_seconds=45,
        rate={"per_minute": "0.60", "increments": "1/1", "connect_fee": "0.10"},
    )
    call_id = create(client).json()["id"]
    assert client.get(f"/v1/calls/{call_id}").json()["cost_amount"] == "0.55"


def test_reset_clears_everything(server: SandboxServer, client: httpx.Client) -> None:
    configure(server, spend_limit_micros=10_000)
    create(client, "k1")
    assert ctl(server).post("/_sandbox/reset").status_code == 200
    assert ledger(server) == [] and sandbox_calls(server) == []
    assert server.state.committed_spend_micros == 0
    assert create(client, "k1").status_code == 201  # key forgotten, spend cleared
    assert ctl(server).get("/_sandbox/config").json()["spend_limit_micros"] == 10_000


def test_in_process_shortcuts(server: SandboxServer, client: httpx.Client) -> None:
    server.configure(spend_limit_micros=0)
    assert create(client).status_code == 403
    assert [e["error_code"] for e in server.ledger()] == ["spend_control_exceeded"]
    with pytest.raises(SandboxConfigError, match="nonsense"):
        server.configure(nonsense=1)
    server.reset()
    assert server.ledger() == [] and server.calls() == []


def test_load_config(tmp_path: Path) -> None:
    path = tmp_path / "sandbox.json"
    path.write_text(json.dumps({"spend_limit_micros": 1_000, "rate": {"per_minute": "0.02"}}))
    cfg = load_config(path)
    assert cfg.spend_limit_micros == 1_000 and cfg.rate_model().per_minute_micros == 20_000
    path.write_text(json.dumps({"bogus": 1}))
    with pytest.raises(SandboxConfigError, match="bogus"):
        load_config(path)


def test_amount_string_is_exact() -> None:
    assert [amount_string(m) for m in (0, 10_000, 5_000, 12_500_000, 1)] == [
        "0.00",
        "0.01",
        "0.005",
        "12.50",
        "0.000001",
    ]


# -- webhooks -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def receiver() -> Iterator[tuple[ThreadedServer, list[tuple[dict[str, str], bytes]]]]:
    received: list[tuple[dict[str, str], bytes]] = []

    async def hook(request: Request) -> Response:
        received.append((dict(request.headers), await request.body()))
        return JSONResponse({"ok": True})

    with ThreadedServer(Starlette(routes=[Route("/hook", hook, methods=["POST"])])) as srv:
        yield srv, received


def _events(received: list[tuple[dict[str, str], bytes]]) -> list[str]:
    return [json.loads(raw)["event"] for _, raw in received]


def test_webhook_delivery_signed(
    server: SandboxServer,
    client: httpx.Client,
    receiver: tuple[ThreadedServer, list[tuple[dict[str, str], bytes]]],
) -> None:
    """call.created, call.answered, call.completed: the documented payload
    (webhooks/call-created), signed as webhooks/signatures states."""
    srv, received = receiver
    received.clear()
    configure(
        server,
        webhook_url=f"{srv.url}/hook",
        webhook_secret="whsec",
        customer_id="cust_123",
        application_id="app_123",
        call_seconds=42,
    )
    call = create(client).json()
    wait_for(lambda: len(received) == 3)
    assert _events(received) == ["call.created", "call.answered", "call.completed"]
    payloads = [json.loads(raw) for _, raw in received]
    created = payloads[0]
    assert created == {
        "event": "call.created",
        "created_at": call["created_at"],
        "call": {
            "id": call["id"],
            "customer_id": "cust_123",
            "application_id": "app_123",
            "provider_call_id": call["provider_call_id"],
            "status": "dialing",
            "direction": "outbound",
            "from": "+15551230001",
            "to": "+15551230002",
            "route_mode": "webhook",
            "routing_target": "app_123",
        },
        "variables": {},
        "data": {"event_key": f"{call['id']}:call.created"},
    }
    assert [p["data"]["event_key"] for p in payloads] == [
        f"{call['id']}:{event}" for event in _events(received)
    ]
    assert [p["call"]["status"] for p in payloads] == ["dialing", "in_progress", "completed"]
    # answer to end is what the call is billed
    answered, ended = (parse_rfc3339(p["created_at"]) for p in payloads[1:])
    assert ended - answered == pytest.approx(42, abs=0.002)
    for headers, raw in received:
        ts = headers["x-minivoice-timestamp"]
        assert re.fullmatch(r"\d+", ts) and abs(int(ts) - time.time()) < 5
        expected = hmac.new(b"whsec", ts.encode() + b"." + raw, hashlib.sha256).hexdigest()
        assert headers["x-minivoice-signature"] == f"v1={expected}"
        assert "x-signature" not in headers
    time.sleep(0.3)
    assert len(received) == 3  # once each
    deliveries = ctl(server).get("/_sandbox/webhooks").json()["deliveries"]
    assert [(d["call_id"], d["event"], d["status_code"]) for d in deliveries] == [
        (call["id"], event, 200) for event in _events(received)
    ]


def test_webhooks_of_a_call_that_fails_and_with_metadata(
    server: SandboxServer,
    client: httpx.Client,
    receiver: tuple[ThreadedServer, list[tuple[dict[str, str], bytes]]],
) -> None:
    """No answer for a call that was never answered; busy/no_answer/failed end in
    call.failed, canceled in call.canceled; ``webhook_metadata`` adds our metadata."""
    srv, received = receiver
    received.clear()
    configure(
        server,
        webhook_url=f"{srv.url}/hook",
        webhook_metadata=True,
        per_number={
            "+15550000001": {"final_status": "busy"},
            "+15550000002": {"final_status": "canceled"},
        },
    )
    create(client, "b", to="+15550000001", attempt="camp:000001:1")
    create(client, "c", to="+15550000002", attempt="camp:000002:1")
    wait_for(lambda: len(received) == 4)
    by_number: dict[str, list[dict[str, Any]]] = {}
    for _, raw in received:
        payload = json.loads(raw)
        by_number.setdefault(payload["call"]["to"], []).append(payload)
    busy, canceled = by_number["+15550000001"], by_number["+15550000002"]
    assert [(p["event"], p["call"]["status"]) for p in busy] == [
        ("call.created", "dialing"),
        ("call.failed", "busy"),
    ]
    assert [p["event"] for p in canceled] == ["call.created", "call.canceled"]
    assert busy[0]["call"]["metadata"]["attempt_id"] == "camp:000001:1"


def test_webhook_duplicates_and_failures(
    server: SandboxServer,
    client: httpx.Client,
    receiver: tuple[ThreadedServer, list[tuple[dict[str, str], bytes]]],
) -> None:
    srv, received = receiver
    received.clear()
    configure(server, webhook_url=f"{srv.url}/hook", webhook_duplicates=True)
    create(client)
    wait_for(lambda: len(received) == 6)
    bodies = sorted(raw for _, raw in received)
    assert bodies[0::2] == bodies[1::2], "each event twice, byte for byte"
    assert all("x-minivoice-signature" not in headers for headers, _ in received)

    # An unreachable receiver: the first try and each retry recorded, then given up.
    configure(
        server,
        webhook_url="http://127.0.0.1:9/nowhere",
        webhook_duplicates=False,
        webhook_retries=2,
        webhook_retry_seconds=0.05,
    )
    create(client, "k2", attempt="a2")

    def failed() -> list[dict[str, Any]]:
        deliveries = ctl(server).get("/_sandbox/webhooks").json()["deliveries"]
        created = [d for d in deliveries if d["error"] and d["event"] == "call.created"]
        return created if len(created) == 3 else []

    deliveries = wait_for(failed)
    assert {d["status_code"] for d in deliveries} == {None}
    assert ctl(server).get("/_sandbox/health").status_code == 200


def test_a_non_2xx_answer_is_retried(server: SandboxServer, client: httpx.Client) -> None:
    """webhooks/call-created: non-2xx responses cause retries."""
    answers = [503, 500, 204]
    seen: list[str] = []

    async def flaky(request: Request) -> Response:
        seen.append(json.loads(await request.body())["event"])
        return Response(status_code=answers.pop(0) if answers else 200)

    app = Starlette(routes=[Route("/hook", flaky, methods=["POST"])])
    with ThreadedServer(app) as srv:
        configure(
            server,
            webhook_url=f"{srv.url}/hook",
            webhook_retry_seconds=0.05,
            per_number={"+15551230002": {"final_status": "failed"}},
        )
        create(client)
        wait_for(lambda: len(seen) == 4)
    assert seen[:3] == ["call.created"] * 3, "retried until a 2xx"
    assert seen[3] == "call.failed"


# -- VoIPBIN dialect ---------------------------------------------------------------------


def _voipbin_body(to: str = "+15551230002") -> dict[str, Any]:
    return {
        "source": {"type": "tel", "target": "+15551230001"},
        "destinations": [{"type": "tel", "target": to}],
    }


def test_voipbin_dialect(server: SandboxServer) -> None:
    configure(server, balance_micros=25_000, balance_token=70, call_duration_real_seconds=0)
    base, token = "/v1.0", {"token": KEY}
    assert ctl(server).get(f"{base}/billing_account").status_code == 401
    account = ctl(server).get(f"{base}/billing_account", params=token).json()
    assert (account["balance_credit"], account["balance_token"], account["plan_type"]) == (
        25_000,
        70,
        "free",
    )
    r = ctl(server).post(f"{base}/calls", params=token, json=_voipbin_body())
    assert r.status_code == 200
    [call] = r.json()["calls"]
    assert call["destination"]["target"] == "+15551230002"
    read = ctl(server).get(f"{base}/calls/{call['id']}", params=token).json()
    assert (read["status"], read["hangup_reason"]) == ("hangup", "normal")
    ctl(server).post(f"{base}/calls", params=token, json=_voipbin_body())
    low = ctl(server).post(f"{base}/calls", params=token, json=_voipbin_body())
    # The call manager skips a destination the balance cannot pay for: a 500.
    assert low.status_code == 500
    assert low.json()["error"]["reason"] == "INTERNAL"
    after = ctl(server).get(f"{base}/billing_account", params=token).json()
    assert after["balance_credit"] == 5_000
    assert [e["path"] for e in ledger(server)] == ["/v1.0/calls"] * 3
    bad = ctl(server).post(f"{base}/calls", params=token, json={"source": {}})
    assert bad.status_code == 400 and bad.json()["error"]["reason"] == "INVALID_ARGUMENT"
