"""The sandbox's VoIPBIN mode over real HTTP, every answer checked against VoIPBIN's
published OpenAPI shapes (tests/fixtures/voipbin/openapi.json).

Create, read, list (paged by ``tm_create``), hang up, the ledger, the account,
the error envelope and its statuses, per-destination failures as 500, and
``call_hangup`` webhooks signed ``X-VoIPBIN-Signature``.
"""

from __future__ import annotations

import hashlib
import hmac
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

from campaigns.testbed.sandbox import SandboxServer, ThreadedServer
from tests.fixtures.voipbin import response_schema, shape_problems

KEY = "vb-access-key"
FLOW = "f1a2b3c4-d5e6-7890-1234-567890abcdef"
AUTH = {"accesskey": KEY}


@pytest.fixture
def server(sandbox_server: SandboxServer) -> SandboxServer:
    sandbox_server.reset(config=True)
    sandbox_server.configure(api_key=KEY, call_duration_real_seconds=0, balance_micros=1_000_000)
    return sandbox_server


@pytest.fixture
def http(server: SandboxServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url + "/v1.0", timeout=10, params=AUTH) as client:
        yield client


def body(to: str = "+15551230002", **extra: Any) -> dict[str, Any]:
    return {
        "source": {"type": "tel", "target": "+15551230001"},
        "destinations": [{"type": "tel", "target": to}],
        "flow_id": FLOW,
        "variables": {"campaign_id": "c", "attempt_id": "c:1:1"},
        **extra,
    }


def fits(response: httpx.Response, operation: str) -> Any:
    """The answer's JSON, after checking it against the operation's documented schema."""
    schema = response_schema(operation, str(response.status_code))
    payload = response.json()
    assert shape_problems(payload, schema) == [], (operation, payload)
    return payload


def test_create_answers_the_calls_envelope_and_reads_back(
    server: SandboxServer, http: httpx.Client
) -> None:
    created = http.post("/calls", json=body())
    assert created.status_code == 200
    answer = fits(created, "POST /calls")
    assert set(answer) == {"calls", "groupcalls"} and answer["groupcalls"] == []
    [call] = answer["calls"]
    assert call["destination"]["target"] == "+15551230002" and call["direction"] == "outgoing"
    read = fits(http.get(f"/calls/{call['id']}"), "GET /calls/{id}")
    assert (read["status"], read["hangup_reason"], read["hangup_by"]) == (
        "hangup",
        "normal",
        "remote",
    )
    # billsec is in the times: tm_hangup - tm_progressing is the call's 30 billed seconds.
    assert read["tm_progressing"] < read["tm_hangup"] and "duration" not in read
    [internal] = server.calls()
    assert internal["variables"] == {"campaign_id": "c", "attempt_id": "c:1:1"}


@pytest.mark.parametrize("final", ["failed", "busy", "no_answer", "canceled"])
def test_hangup_reasons_and_no_answer_time(
    server: SandboxServer, http: httpx.Client, final: str
) -> None:
    server.configure(final_status=final)
    [call] = fits(http.post("/calls", json=body()), "POST /calls")["calls"]
    read = fits(http.get(f"/calls/{call['id']}"), "GET /calls/{id}")
    reason = {"failed": "failed", "busy": "busy", "no_answer": "noanswer", "canceled": "cancel"}
    assert read["hangup_reason"] == reason[final] and "tm_progressing" not in read


def test_no_idempotency_a_resend_is_a_second_call(http: httpx.Client) -> None:
    headers = {"Idempotency-Key": "same"}
    first = http.post("/calls", json=body(), headers=headers).json()["calls"][0]["id"]
    second = http.post("/calls", json=body(), headers=headers).json()["calls"][0]["id"]
    assert first != second


@pytest.mark.parametrize(
    ("setting", "number"),
    [
        ({"unroutable_numbers": ["+15551230009"]}, "+15551230009"),
        ({"blocked_numbers": ["+15551230009"]}, "+15551230009"),
        ({"balance_micros": 0}, "+15551230009"),
    ],
)
def test_per_destination_failures_are_500_internal(
    server: SandboxServer, http: httpx.Client, setting: dict[str, Any], number: str
) -> None:
    """The call manager logs and skips the destination, then has nothing to return."""
    server.configure(**setting)
    refused = http.post("/calls", json=body(number))
    assert refused.status_code == 500
    error = fits(refused, "POST /calls")["error"]
    assert (error["status"], error["reason"]) == ("INTERNAL", "INTERNAL")
    assert error["request_id"].startswith("req_") and server.calls() == []


@pytest.mark.parametrize(
    ("extra", "reason"),
    [
        ({"actions": [{"type": "tlak"}], "flow_id": None}, "INVALID_ACTION_TYPE"),
        ({"variables": {"n": 1}}, "INVALID_JSON_BODY"),
        ({"variables": {f"k{i}": "v" for i in range(101)}}, "INVALID_VARIABLES"),
    ],
)
def test_bad_requests_are_400_in_the_envelope(
    http: httpx.Client, extra: dict[str, Any], reason: str
) -> None:
    refused = http.post("/calls", json=body(**extra))
    assert refused.status_code == 400
    error = fits(refused, "POST /calls")["error"]
    assert (error["status"], error["reason"]) == ("INVALID_ARGUMENT", reason)


def test_credentials_as_authenticate_go_reads_them(server: SandboxServer) -> None:
    with httpx.Client(base_url=server.url + "/v1.0", timeout=10) as bare:
        assert bare.get("/billing_account").status_code == 401
        refused = bare.get("/billing_account", params={"accesskey": "wrong"})
        error = fits(refused, "GET /billing_account")["error"]
        assert (refused.status_code, error["status"]) == (401, "UNAUTHENTICATED")
        for ok in (
            bare.get("/billing_account", params={"accesskey": KEY}),
            bare.get("/billing_account", params={"token": KEY}),
            bare.get("/billing_account", headers={"Authorization": f"Bearer {KEY}"}),
        ):
            account = fits(ok, "GET /billing_account")
            assert account["balance_credit"] == 1_000_000


def test_listing_pages_newest_first_by_tm_create(server: SandboxServer, http: httpx.Client) -> None:
    ids = []
    for _ in range(5):
        ids.append(http.post("/calls", json=body()).json()["calls"][0]["id"])
        time.sleep(0.002)
    seen: list[str] = []
    token: str | None = None
    pages = 0
    while True:
        params = {"page_size": 2, **({"page_token": token} if token else {})}
        page = fits(http.get("/calls", params=params), "GET /calls")
        pages += 1
        seen += [row["id"] for row in page["result"]]
        if not page["result"]:
            assert page["next_page_token"] == ""
            break
        assert page["next_page_token"] == page["result"][-1]["tm_create"]
        token = page["next_page_token"]
    assert seen == ids[::-1] and pages == 4
    everything = http.get("/calls", params={"page_size": 0}).json()["result"]
    assert len(everything) == 5, "0 means the default of 100, as calls.go has it"


def test_hang_up_ends_a_live_call_and_bills_what_it_used(
    server: SandboxServer, http: httpx.Client
) -> None:
    server.configure(call_duration_real_seconds=30)
    [call] = http.post("/calls", json=body()).json()["calls"]
    live = fits(http.get(f"/calls/{call['id']}"), "GET /calls/{id}")
    assert live["status"] == "dialing" and "hangup_reason" not in live
    ended = fits(http.post(f"/calls/{call['id']}/hangup"), "POST /calls/{id}/hangup")
    assert (ended["status"], ended["hangup_reason"], ended["hangup_by"]) == (
        "hangup",
        "cancel",
        "local",
    )
    assert server.calls()[0]["hung_up_at"] is not None
    missing = http.post("/calls/550e8400-e29b-41d4-a716-446655440000/hangup")
    assert missing.status_code == 404
    assert fits(missing, "POST /calls/{id}/hangup")["error"]["status"] == "NOT_FOUND"
    bad = http.post("/calls/not-a-uuid/hangup")
    assert bad.status_code == 400 and bad.json()["error"]["reason"] == "INVALID_ID"


def test_an_answered_call_hung_up_is_billed_to_the_second(
    server: SandboxServer, http: httpx.Client
) -> None:
    now = [1_800_000_000.0]
    server.state.clock = lambda: now[0]
    try:
        server.configure(call_duration_real_seconds=30, call_seconds=600)
        [call] = http.post("/calls", json=body()).json()["calls"]
        now[0] += 20 + 7.6  # answered at 20 s (two thirds), talked 7.6 s
        up = fits(http.get(f"/calls/{call['id']}"), "GET /calls/{id}")
        assert up["status"] == "progressing" and "tm_progressing" in up
        ended = fits(http.post(f"/calls/{call['id']}/hangup"), "POST /calls/{id}/hangup")
        assert (ended["status"], ended["hangup_reason"], ended["hangup_by"]) == (
            "hangup",
            "normal",
            "local",
        )
        [internal] = server.calls()
        assert (internal["final_status"], internal["billsec_seconds"]) == ("completed", 7)
        [row] = http.get("/billings").json()["result"]
        assert (row["status"], row["usage_duration"], row["amount_credit"]) == ("end", 7, -10_000)
    finally:
        server.state.clock = time.time


def test_the_ledger_row_of_an_answered_call(server: SandboxServer, http: httpx.Client) -> None:
    server.configure(call_seconds=61, rate={"per_minute": "0.01"})
    [call] = http.post("/calls", json=body()).json()["calls"]
    server.configure(final_status="busy")
    http.post("/calls", json=body("+15551230003"))  # never answered: no ledger row
    rows = fits(http.get("/billings"), "GET /billings")["result"]
    [row] = rows
    assert (row["reference_type"], row["reference_id"], row["status"]) == (
        "call",
        call["id"],
        "end",
    )
    assert (row["usage_duration"], row["billable_units"], row["amount_credit"]) == (61, 2, -20_000)
    assert fits(http.get("/billing_account"), "GET /billing_account")["balance_credit"] == 980_000


def test_call_hangup_webhooks_are_signed_as_voipbin_signs_them(
    server: SandboxServer, http: httpx.Client
) -> None:
    received: list[tuple[bytes, dict[str, str]]] = []

    async def hook(request: Request) -> Response:
        received.append((await request.body(), dict(request.headers)))
        return JSONResponse({})

    with ThreadedServer(Starlette(routes=[Route("/hook", hook, methods=["POST"])])) as sink:
        server.configure(webhook_url=f"{sink.url}/hook", webhook_secret="whsec")
        [call] = http.post("/calls", json=body()).json()["calls"]
        deadline = time.monotonic() + 10
        while not received and time.monotonic() < deadline:
            time.sleep(0.05)
    raw, headers = received[0]
    event = json.loads(raw)
    assert set(event) == {"type", "data"} and event["type"] == "call_hangup"
    assert shape_problems(event["data"], {"$ref": "#/components/schemas/CallManagerCall"}) == []
    assert event["data"]["id"] == call["id"] and event["data"]["status"] == "hangup"
    digest = hmac.new(b"whsec", raw, hashlib.sha256).hexdigest()
    assert headers["x-voipbin-signature"] == f"sha256={digest}" and "x-signature" not in headers
