"""The HTTP API over real HTTP, with real Redis, a real worker and the sandbox provider.

Every endpoint, every role, bad bodies (422 naming the field, nothing stored),
forged, missing and viewer tokens (401/403), idempotent submit (200/409).
"""

from __future__ import annotations

import copy
import csv
import io
import json
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from campaigns.operators.api import openapi
from campaigns.settings import Settings
from campaigns.store import Store
from campaigns.testbed.redis_server import RedisServer
from campaigns.testbed.sandbox import SandboxServer
from tests.api_process import OPERATOR_TOKEN, TOKENS, VIEWER_TOKEN, ApiProcess, auth
from tests.conftest import API_KEY, spec_dict
from tests.support import ROOT, WorkerProcess, creates, fast_settings, wait_for

VIEWER = auth(VIEWER_TOKEN)
OPERATOR = auth(OPERATOR_TOKEN)


@pytest.fixture(scope="module")
def api_server(
    redis_server: RedisServer,
    sandbox_server: SandboxServer,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[ApiProcess]:
    settings = fast_settings(redis_server.url, sandbox_server.url, API_KEY, "dispatcher:test")
    server = ApiProcess(settings, tmp_path_factory.mktemp("api") / "api.log")
    yield server
    server.stop()
    for token in TOKENS:
        assert token not in server.log(), "a token was logged"


@pytest.fixture
async def http(api_server: ApiProcess, redis_url: str) -> AsyncIterator[httpx.AsyncClient]:
    """A client for the API; ``redis_url`` empties Redis before each test."""
    async with httpx.AsyncClient(base_url=api_server.url, timeout=30) as client:
        yield client


@pytest.fixture
async def store(settings: Settings) -> AsyncIterator[Store]:
    from redis.asyncio import Redis

    redis: Redis = Redis.from_url(settings.redis_url)
    yield Store(redis)
    await redis.aclose()


async def nothing_stored(store: Store) -> bool:
    return await store.campaign_ids() == [] and await store.redis.dbsize() == 0


# ---------------------------------------------------------------- authentication


CHANGES = [
    ("POST", "/v1/campaigns"),
    ("POST", "/v1/campaigns/acme/pause"),
    ("POST", "/v1/campaigns/acme/resume"),
    ("POST", "/v1/campaigns/acme/cancel"),
    ("POST", "/v1/attempts/acme:000000:1/resolve"),
    ("POST", "/v1/dnc/add"),
    ("POST", "/v1/dnc/remove"),
    ("POST", "/v1/dnc/import"),
]
READS = [
    ("GET", "/v1/campaigns"),
    ("GET", "/v1/campaigns/acme"),
    ("GET", "/v1/campaigns/acme/report"),
    ("GET", "/v1/campaigns/acme/reconcile"),
    ("POST", "/v1/estimate"),
    ("GET", "/v1/dead-letters"),
    ("GET", "/v1/whoami"),
    ("GET", "/v1/dnc"),
    ("GET", "/v1/dnc/+15551230002"),
]


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer"},
        {"Authorization": "Bearer \t x"},
        {"Authorization": "Bearer forged-token-0000000000"},
        {"Authorization": f"Bearer {VIEWER_TOKEN}x"},
        {"Authorization": f"Bearer {VIEWER_TOKEN[:-1]}"},
        {"Authorization": f"Basic {OPERATOR_TOKEN}"},
        {"Authorization": OPERATOR_TOKEN},
    ],
    ids=["none", "empty", "blank", "forged", "longer", "shorter", "basic", "no-scheme"],
)
async def test_missing_or_forged_token_is_401_everywhere(
    http: httpx.AsyncClient, store: Store, headers: dict[str, str]
) -> None:
    body = json.dumps(spec_dict("acme"))
    for method, path in CHANGES + READS:
        response = await http.request(method, path, headers=headers, content=body)
        assert response.status_code == 401, (method, path, response.text)
        assert response.headers["www-authenticate"] == "Bearer"
        assert response.json()["error"]["code"] == "unauthorized"
    assert await nothing_stored(store)


async def test_viewer_cannot_change_anything(http: httpx.AsyncClient, store: Store) -> None:
    body = json.dumps(spec_dict("acme"))
    for method, path in CHANGES:
        response = await http.request(method, path, headers=VIEWER, content=body)
        assert response.status_code == 403, (method, path, response.text)
        assert response.json()["error"]["code"] == "forbidden"
    assert await nothing_stored(store)
    assert (await http.get("/v1/whoami", headers=VIEWER)).json() == {"role": "viewer"}
    assert (await http.get("/v1/whoami", headers=OPERATOR)).json() == {"role": "operator"}


async def test_open_endpoints(http: httpx.AsyncClient) -> None:
    assert (await http.get("/healthz")).json() == {"ok": True}
    page = await http.get("/")
    assert page.status_code == 200
    assert "text/html" in page.headers["content-type"]
    assert "default-src 'self'" in page.headers["content-security-policy"]
    for asset in ("/page/app.js", "/page/style.css"):
        assert (await http.get(asset)).status_code == 200


async def test_served_openapi_is_the_checked_in_document(http: httpx.AsyncClient) -> None:
    served = (await http.get("/v1/openapi.json")).json()
    checked_in = json.loads((ROOT / "docs" / "openapi.json").read_text())
    assert served == checked_in == json.loads(json.dumps(openapi())), (
        "regenerate: python -m campaigns.operators.api > docs/openapi.json"
    )
    assert {p for p in served["paths"] if p.startswith("/v1/campaigns")} >= {
        "/v1/campaigns",
        "/v1/campaigns/{campaign_id}",
        "/v1/campaigns/{campaign_id}/report",
        "/v1/campaigns/{campaign_id}/pause",
        "/v1/campaigns/{campaign_id}/resume",
        "/v1/campaigns/{campaign_id}/cancel",
    }


# ---------------------------------------------------------------- bad input


def _bad(mutate: Callable[[dict[str, Any]], None]) -> str:
    spec = spec_dict("acme", contacts=3)
    mutate(spec)
    return json.dumps(spec)


BAD_BODIES = [
    ("float budget", _bad(lambda s: s.update(budget=50.5)), "budget"),
    ("float rate", _bad(lambda s: s["rate"].update(per_minute=0.01)), "rate.per_minute"),
    ("unknown field", _bad(lambda s: s.update(colour="red")), "colour"),
    ("unknown contact field", _bad(lambda s: s["contacts"][0].update(x=1)), "contacts.0.x"),
    ("bad E.164", _bad(lambda s: s["contacts"][1].update(to="5551234")), "contacts.1.to"),
    ("bad caller ID", _bad(lambda s: s.update(caller_id="+1")), "caller_id"),
    ("bad campaign ID", _bad(lambda s: s.update(campaign_id="a:b")), "campaign_id"),
    (
        "unknown day",
        _bad(
            lambda s: s.update(
                calling_window={
                    "days": ["someday"],
                    "start": "09:00",
                    "end": "20:00",
                    "timezone": "UTC",
                }
            )
        ),
        "calling_window.days",
    ),
    (
        "window start equals end",
        _bad(
            lambda s: s.update(calling_window={"start": "09:00", "end": "09:00", "timezone": "UTC"})
        ),
        "calling_window.end",
    ),
    (
        "unknown zone",
        _bad(
            lambda s: s.update(
                calling_window={"start": "09:00", "end": "20:00", "timezone": "Mars/Olympus"}
            )
        ),
        "calling_window.timezone",
    ),
    (
        "schedule ends before it starts",
        _bad(
            lambda s: s.update(
                schedule={"start_at": "2026-12-02T00:00:00Z", "end_at": "2026-12-01T00:00:00Z"}
            )
        ),
        "schedule.end_at",
    ),
    (
        "retry for completed",
        _bad(lambda s: s.update(retry={"completed": {"after_seconds": 5, "max_attempts": 2}})),
        "retry.completed",
    ),
    ("not JSON", "{not json", "spec"),
    ("a list", "[1, 2]", "spec"),
    # The last key would win: a reviewer reading the first approves 1.00 EUR.
    (
        "duplicate key",
        _bad(lambda s: s.update(budget="1.00"))[:-1] + ',"budget":"900000.00"}',
        "spec",
    ),
]


@pytest.mark.parametrize(
    ("body", "field"), [(b, f) for _, b, f in BAD_BODIES], ids=[n for n, _, _ in BAD_BODIES]
)
async def test_bad_spec_is_422_naming_the_field_and_nothing_is_stored(
    http: httpx.AsyncClient, store: Store, body: str, field: str
) -> None:
    for path in ("/v1/campaigns", "/v1/estimate"):
        response = await http.post(path, headers=OPERATOR, content=body)
        assert response.status_code == 422, response.text
        error = response.json()["error"]
        assert error["field"] == field, error
        assert error["code"] == "invalid"
        if body.count('"budget"') == 2:
            assert "duplicate key 'budget'" in error["message"], error
    assert await nothing_stored(store)


async def test_bad_path_and_query_values_are_422_naming_them(
    http: httpx.AsyncClient, store: Store
) -> None:
    for method, path in [
        ("GET", "/v1/campaigns/-bad"),
        ("GET", "/v1/campaigns/-bad/report"),
        ("POST", "/v1/campaigns/-bad/pause"),
        ("GET", f"/v1/campaigns/{'x' * 65}"),
    ]:
        response = await http.request(method, path, headers=OPERATOR)
        assert response.status_code == 422, (path, response.text)
        assert response.json()["error"]["field"] == "campaign_id"
    for query, field in [("?format=xml", "format")]:
        response = await http.get(f"/v1/campaigns/acme/report{query}", headers=VIEWER)
        assert response.json()["error"]["field"] == field
    for limit in ("0", "x", "10001", "-1"):
        response = await http.get(f"/v1/dead-letters?limit={limit}", headers=VIEWER)
        assert response.status_code == 422
        assert response.json()["error"]["field"] == "limit"
    for body, field in [
        ("[]", "body"),
        ("{}", "call_id"),
        ('{"call_id": "c1", "no_call": true}', "call_id"),
        ('{"no_call": "yes"}', "no_call"),
        ('{"call_id": "a b"}', "call_id"),
        ('{"extra": 1}', "extra"),
        ('{"call_id": "c1", "call_id": "c2"}', "body"),
    ]:
        response = await http.post(
            "/v1/attempts/acme:000000:1/resolve", headers=OPERATOR, content=body
        )
        assert response.status_code == 422, (body, response.text)
        assert response.json()["error"]["field"] == field
    assert await nothing_stored(store)


async def test_unknown_campaign_and_attempt_are_404(http: httpx.AsyncClient, store: Store) -> None:
    for method, path in [
        ("GET", "/v1/campaigns/nobody"),
        ("GET", "/v1/campaigns/nobody/report"),
        ("GET", "/v1/campaigns/nobody/reconcile"),
        ("POST", "/v1/campaigns/nobody/pause"),
        ("POST", "/v1/campaigns/nobody/resume"),
        ("POST", "/v1/campaigns/nobody/cancel"),
    ]:
        response = await http.request(method, path, headers=OPERATOR)
        assert response.status_code == 404, (path, response.text)
    response = await http.post(
        "/v1/attempts/nobody:000000:1/resolve", headers=OPERATOR, json={"no_call": True}
    )
    assert response.status_code == 404
    assert await nothing_stored(store)


async def test_oversized_body_is_413(http: httpx.AsyncClient, store: Store) -> None:
    from campaigns.operators.api import MAX_BODY_BYTES

    for path in ("/v1/campaigns", "/v1/dnc/import"):
        response = await http.post(path, headers=OPERATOR, content=b" " * (MAX_BODY_BYTES + 1))
        assert response.status_code == 413, path
    assert await nothing_stored(store)


# ---------------------------------------------------------------- with a worker


async def test_submit_run_report_reconcile_estimate(
    http: httpx.AsyncClient, sandbox: SandboxServer, start_worker: Callable[..., WorkerProcess]
) -> None:
    bad = "+15551240003"
    sandbox.configure(invalid_numbers=[bad])
    start_worker()
    spec = spec_dict("via-api", contacts=6)

    estimate = await http.post("/v1/estimate", headers=VIEWER, json=spec)
    assert estimate.status_code == 200
    assert estimate.json()["contacts"] == 6
    assert estimate.json()["budget_micros"] == 50_000_000

    first = await http.post("/v1/campaigns", headers=OPERATOR, json=spec)
    assert first.status_code == 201, first.text
    assert first.json()["created"] is True
    assert first.json()["campaign"]["campaign_id"] == "via-api"
    again = await http.post("/v1/campaigns", headers=OPERATOR, json=spec)
    assert again.status_code == 200
    assert again.json()["created"] is False
    changed = copy.deepcopy(spec)
    changed["budget"] = "60.00"
    conflict = await http.post("/v1/campaigns", headers=OPERATOR, json=changed)
    assert conflict.status_code == 409
    assert conflict.json()["error"]["code"] == "conflict"

    async def settled() -> dict[str, Any] | None:
        status = (await http.get("/v1/campaigns/via-api", headers=VIEWER)).json()
        counts = status["counts"]
        done = status["state"] == "completed" and counts["settled"] == counts["accepted"]
        return status if done else None

    status = await wait_for(settled, timeout=40, what="completion and settlement")
    assert status["counts"]["accepted"] == 5
    assert status["counts"]["rejected"] == 1
    assert set(status) >= {"campaign_id", "state", "halt", "counts", "money"}

    listed = (await http.get("/v1/campaigns", headers=VIEWER)).json()
    assert [c["campaign_id"] for c in listed["campaigns"]] == ["via-api"]
    assert "running" in listed["actions"]["pause"]

    rows = (await http.get("/v1/campaigns/via-api/report", headers=VIEWER)).json()
    ledger = creates(sandbox.ledger(), "via-api")
    assert len(rows) == len(ledger) == 6
    by_status = {r["status"] for r in rows}
    assert by_status == {"accepted", "rejected"}
    rejected = [r for r in rows if r["status"] == "rejected"]
    assert [r["to"] for r in rejected] == [bad]
    assert rejected[0]["cost_micros"] is None
    accepted_ids = {r["call_id"] for r in rows if r["status"] == "accepted"}
    assert accepted_ids == {e["call_id"] for e in ledger if e["status"] == 201}
    assert (
        sum(r["cost_micros"] for r in rows if r["cost_micros"]) == status["money"]["spent_micros"]
    )

    response = await http.get("/v1/campaigns/via-api/report?format=csv", headers=VIEWER)
    assert response.headers["content-type"].startswith("text/csv")
    assert response.headers["transfer-encoding"] == "chunked", "streamed, not built in memory"
    assert "content-length" not in response.headers
    assert 'filename="via-api.csv"' in response.headers["content-disposition"]
    table = list(csv.DictReader(io.StringIO(response.text)))
    assert [r["attempt_id"] for r in table] == [r["attempt_id"] for r in rows]

    reconciled = await http.get("/v1/campaigns/via-api/reconcile", headers=VIEWER)
    assert reconciled.status_code == 200, reconciled.text
    assert reconciled.json()["settled_micros"] == status["money"]["spent_micros"]
    assert reconciled.json()["accepted_calls"] == 5


async def test_pause_resume_cancel(
    http: httpx.AsyncClient, sandbox: SandboxServer, start_worker: Callable[..., WorkerProcess]
) -> None:
    start_worker()
    spec = spec_dict("steered", contacts=40)
    spec["pacing"] = {"calls_per_second": 10, "batch_size": 5, "max_in_flight": 50}
    assert (await http.post("/v1/campaigns", headers=OPERATOR, json=spec)).status_code == 201

    async def some_sent() -> bool:
        return len(creates(sandbox.ledger(), "steered")) >= 3

    await wait_for(some_sent, timeout=20, what="calls going out")
    paused = await http.post("/v1/campaigns/steered/pause", headers=OPERATOR)
    assert paused.status_code == 200, paused.text
    assert paused.json()["state"] == "paused"
    sent = len(creates(sandbox.ledger(), "steered"))

    async def all_settled() -> bool:
        counts = (await http.get("/v1/campaigns/steered", headers=VIEWER)).json()["counts"]
        return counts["settled"] == counts["accepted"] == sent

    # Settlement takes several poll rounds of the worker: time for a stray create to show.
    await wait_for(all_settled, timeout=30, what="calls placed before the pause to settle")
    assert len(creates(sandbox.ledger(), "steered")) == sent, "a create request after pause"

    assert (await http.post("/v1/campaigns/steered/resume", headers=OPERATOR)).json()[
        "state"
    ] == "running"
    again = await http.post("/v1/campaigns/steered/resume", headers=OPERATOR)
    assert again.status_code == 409, again.text
    cancelled = await http.post("/v1/campaigns/steered/cancel", headers=OPERATOR)
    assert cancelled.json()["state"] == "cancelled"
    for verb in ("pause", "resume"):
        response = await http.post(f"/v1/campaigns/steered/{verb}", headers=OPERATOR)
        assert response.status_code == 409, (verb, response.text)
        assert "cancelled" in response.json()["error"]["message"]
    # Cancelling a cancelled campaign is a no-op, as in the client.
    response = await http.post("/v1/campaigns/steered/cancel", headers=OPERATOR)
    assert response.json()["state"] == "cancelled"


async def test_resolve_an_attempt_that_is_not_in_doubt_is_409(
    http: httpx.AsyncClient, sandbox: SandboxServer, start_worker: Callable[..., WorkerProcess]
) -> None:
    start_worker()
    assert (
        await http.post("/v1/campaigns", headers=OPERATOR, json=spec_dict("one", contacts=1))
    ).status_code == 201

    async def accepted() -> str | None:
        rows = (await http.get("/v1/campaigns/one/report", headers=VIEWER)).json()
        return rows[0]["attempt_id"] if rows and rows[0]["status"] == "accepted" else None

    attempt_id = await wait_for(accepted, timeout=20, what="an accepted call")
    response = await http.post(
        f"/v1/attempts/{attempt_id}/resolve", headers=OPERATOR, json={"no_call": True}
    )
    assert response.status_code == 409
    assert "not in_doubt" in response.json()["error"]["message"]
    letters = await http.get("/v1/dead-letters?limit=5", headers=VIEWER)
    assert letters.json() == {"dead_letters": []}


def test_api_refuses_to_start_without_tokens(settings: Settings, tmp_path: Path) -> None:
    import subprocess

    from tests.support import CAMPAIGNS_BIN, worker_env

    for value, why in [("", "DISPATCHER_API_TOKENS"), ('{"short": "viewer"}', "token 1")]:
        env = worker_env(settings)
        env["DISPATCHER_API_TOKENS"] = value
        if not value:
            del env["DISPATCHER_API_TOKENS"]
        done = subprocess.run(
            [CAMPAIGNS_BIN, "api", "--port", "1"],
            env=env,
            capture_output=True,
            text=True,
            timeout=30,
            cwd=tmp_path,
        )
        assert done.returncode == 2, done.stderr
        assert "DISPATCHER_API_TOKENS" in done.stderr and why in done.stderr
        assert "short" not in done.stderr


# ---------------------------------------------------------------- do-not-call list


def _listed(store: Store) -> Any:
    return store.redis.smembers(store.keys.dnc)


async def test_dnc_add_check_remove_count(http: httpx.AsyncClient, store: Store) -> None:
    body = {"numbers": ["+15551230002", "+1 555 123 0003"]}
    added = await http.post("/v1/dnc/add", headers=OPERATOR, json=body)
    assert added.status_code == 200, added.text
    assert added.json() == {
        "numbers": ["+15551230002", "+15551230003"],
        "added": 2,
        "already_listed": 0,
    }
    again = await http.post("/v1/dnc/add", headers=OPERATOR, json=body)
    assert again.json()["added"] == 0 and again.json()["already_listed"] == 2
    for path, listed in [
        ("/v1/dnc/+15551230002", True),
        ("/v1/dnc/%2B15551230003", True),
        ("/v1/dnc/+1%20555%20123%200009", False),
    ]:
        found = await http.get(path, headers=VIEWER)
        assert found.status_code == 200, found.text
        assert found.json()["listed"] is listed
    assert (await http.get("/v1/dnc", headers=VIEWER)).json() == {"count": 2}
    removed = await http.post(
        "/v1/dnc/remove", headers=OPERATOR, json={"numbers": ["+15551230002", "+15551230009"]}
    )
    assert removed.json() == {
        "numbers": ["+15551230002", "+15551230009"],
        "removed": 1,
        "not_listed": 1,
    }
    assert await _listed(store) == {b"+15551230003"}


async def test_dnc_import_streams_a_csv_body(http: httpx.AsyncClient, store: Store) -> None:
    data = "number,reason\n" + "".join(f"+1555{i:07d},asked\n" for i in range(12_000))
    response = await http.post("/v1/dnc/import", headers=OPERATOR, content=data.encode())
    assert response.status_code == 200, response.text
    assert response.json() == {"rows": 12_000, "numbers": 12_000, "added": 12_000, "listed": 12_000}
    assert await store.redis.scard(store.keys.dnc) == 12_000
    # The list, and the account history's entry for the import: no staging left behind.
    assert sorted(await store.redis.keys("*")) == [b"dsp:dnc", store.keys.history().encode()]


DNC_BAD = [
    ("POST", "/v1/dnc/add", {"numbers": ["+15551230002", "12345"]}, "numbers.1"),
    ("POST", "/v1/dnc/add", {"numbers": ["+15551230002", 7]}, "numbers.1"),
    ("POST", "/v1/dnc/add", {"numbers": []}, "numbers"),
    ("POST", "/v1/dnc/add", {"numbers": "+15551230002"}, "numbers"),
    ("POST", "/v1/dnc/add", {"numbers": ["+15551230002"], "strict": "yes"}, "strict"),
    ("POST", "/v1/dnc/add", {"numbers": ["+15551230002"], "strict": True}, "numbers.0"),
    ("POST", "/v1/dnc/add", {"number": ["+15551230002"]}, "number"),
    ("POST", "/v1/dnc/add", [1], "body"),
    ("POST", "/v1/dnc/remove", {"numbers": ["+1555"]}, "numbers.0"),
    ("POST", "/v1/dnc/remove", {"numbers": ["+15551230002"], "strict": True}, "strict"),
    ("POST", "/v1/dnc/import", b"number\n+15551230002\n+1555\n", "dnc[body line 3].number"),
    ("POST", "/v1/dnc/import", b"phone\n+15551230002\n", "dnc"),
    ("POST", "/v1/dnc/import", b"", "dnc"),
    ("POST", "/v1/dnc/import?strict=1", b"number\n+15551230002\n", "strict"),
    ("POST", "/v1/dnc/import?strict=true", b"number\n+15551230002\n", "dnc[body line 2].number"),
    ("GET", "/v1/dnc/15551230002", None, "number"),
    ("GET", "/v1/dnc/plus-one", None, "number"),
]


@pytest.mark.parametrize(("method", "path", "body", "field"), DNC_BAD)
async def test_dnc_bad_input_is_422_naming_the_field_and_nothing_is_written(
    http: httpx.AsyncClient, store: Store, method: str, path: str, body: Any, field: str
) -> None:
    await store.redis.sadd(store.keys.dnc, "+15551239999")
    content = body if isinstance(body, bytes) or body is None else json.dumps(body).encode()
    response = await http.request(method, path, headers=OPERATOR, content=content)
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert (error["code"], error["field"]) == ("invalid", field), error
    assert await store.redis.keys("*") == [store.keys.dnc.encode()]
    assert await _listed(store) == {b"+15551239999"}
