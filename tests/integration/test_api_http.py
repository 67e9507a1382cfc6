"""HTTP as clients expect it (issue 19, item 4), over real HTTP and real Redis: one
error shape for every status (the router's 404/405 too, with a true ``Allow``),
every bad field in one 422, 415, 406 (and CSV by ``Accept``), request IDs, and
the per-token rate limit."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from campaigns.settings import Settings
from campaigns.store import Store
from tests.api_process import ApiProcess
from tests.conftest import spec_dict
from tests.integration.test_api import (
    OPERATOR,
    VIEWER,
    api_server,
    http,
    nothing_stored,
    store,
)

__all__ = ["api_server", "http", "store"]  # fixtures, shared with test_api


def is_error(response: httpx.Response, status: int, code: str) -> dict[str, object]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    error: dict[str, object] = response.json()["error"]
    assert error["code"] == code and isinstance(error["message"], str), error
    return error


async def test_router_404_and_405_answer_in_the_error_shape_with_a_true_allow(
    http: httpx.AsyncClient, store: Store
) -> None:
    is_error(await http.get("/v1/nothing-here", headers=VIEWER), 404, "not_found")
    response = await http.delete("/v1/campaigns", headers=OPERATOR)
    is_error(response, 405, "method_not_allowed")
    assert set(response.headers["allow"].split(", ")) == {"GET", "HEAD", "POST"}
    response = await http.put("/v1/campaigns/acme/pause", headers=OPERATOR)
    is_error(response, 405, "method_not_allowed")
    assert response.headers["allow"] == "POST"
    # /v1/dnc/add is not a number for /v1/dnc/{number}: its GET is a 405 naming POST.
    for verb in ("add", "remove", "import"):
        response = await http.get(f"/v1/dnc/{verb}", headers=OPERATOR)
        is_error(response, 405, "method_not_allowed")
        assert response.headers["allow"] == "POST"


async def test_every_invalid_field_is_in_one_422(http: httpx.AsyncClient, store: Store) -> None:
    spec = spec_dict("many-faults", max_call_seconds=0, colour="blue")
    spec["pacing"]["batch_size"] = 0
    spec["currency"] = "euro"
    error = is_error(await http.post("/v1/campaigns", headers=OPERATOR, json=spec), 422, "invalid")
    fields = {e["field"] for e in error["errors"]}  # type: ignore[attr-defined]
    assert fields == {"max_call_seconds", "colour", "pacing.batch_size", "currency"}, error
    assert error["field"] in fields
    assert await nothing_stored(store)
    resolve = await http.post(
        "/v1/attempts/a:000001:1/resolve",
        headers=OPERATOR,
        json={"call_id": "has space", "no_call": "yes", "why": 1},
    )
    fields = {e["field"] for e in is_error(resolve, 422, "invalid")["errors"]}  # type: ignore[attr-defined]
    assert fields == {"call_id", "no_call", "why"}


async def test_a_body_that_is_not_json_is_415_and_nothing_is_stored(
    http: httpx.AsyncClient, store: Store
) -> None:
    form = await http.post("/v1/campaigns", headers=OPERATOR, data={"campaign_id": "x"})
    assert is_error(form, 415, "unsupported_media_type")["field"] == "Content-Type"
    assert await nothing_stored(store)
    assert (
        await http.post(
            "/v1/estimate",
            headers={**VIEWER, "Content-Type": "application/merge-patch+json"},
            content=json.dumps(spec_dict()),
        )
    ).status_code == 200


async def test_accept_is_honoured_406_or_csv(http: httpx.AsyncClient, store: Store) -> None:
    refused = await http.get("/v1/campaigns", headers={**VIEWER, "Accept": "text/csv"})
    assert is_error(refused, 406, "not_acceptable")["field"] == "Accept"
    assert (
        await http.get("/v1/campaigns", headers={**VIEWER, "Accept": "text/html, */*;q=0.1"})
    ).status_code == 200
    submitted = await http.post("/v1/campaigns", headers=OPERATOR, json=spec_dict("negotiated"))
    assert submitted.status_code == 201
    report = await http.get(
        "/v1/campaigns/negotiated/report", headers={**VIEWER, "Accept": "text/csv"}
    )
    assert report.headers["content-type"].startswith("text/csv")
    assert report.text.startswith("attempt_id,")
    pdf = await http.get(
        "/v1/campaigns/negotiated/report", headers={**VIEWER, "Accept": "application/pdf"}
    )
    is_error(pdf, 406, "not_acceptable")


async def test_request_ids_are_echoed_generated_and_logged(
    http: httpx.AsyncClient, api_server: ApiProcess, store: Store
) -> None:
    given = await http.post(
        "/v1/campaigns/none-such/pause", headers={**OPERATOR, "X-Request-ID": "req-4711"}
    )
    assert given.headers["x-request-id"] == "req-4711"
    made = await http.get("/v1/whoami", headers={**VIEWER, "X-Request-ID": "bad id"})
    assert re.fullmatch(r"[0-9a-f]{32}", made.headers["x-request-id"])
    assert (await http.get("/no-such-page")).headers["x-request-id"]
    lines = [json.loads(line) for line in api_server.log().splitlines() if line.startswith("{")]
    logged = [line for line in lines if line.get("request_id") == "req-4711"]
    assert any(line.get("event") == "api_request" for line in logged), logged


@pytest.fixture
def limited_api(settings: Settings, tmp_path: Path) -> Iterator[ApiProcess]:
    server = ApiProcess(settings, tmp_path / "api.log", DISPATCHER_API_RATE_LIMIT="5")
    yield server
    server.stop()


async def test_each_token_is_limited_with_429_and_retry_after(limited_api: ApiProcess) -> None:
    async with httpx.AsyncClient(base_url=limited_api.url, timeout=30) as client:
        # 11 requests: past a minute's boundary the count starts again, at most once.
        answers = [await client.get("/v1/whoami", headers=VIEWER) for _ in range(11)]
        refused = [a for a in answers if a.status_code == 429]
        assert refused and {a.status_code for a in answers} == {200, 429}
        error = is_error(refused[0], 429, "rate_limited")
        assert 1 <= int(refused[0].headers["retry-after"]) <= 60, error
        other = await client.get("/v1/whoami", headers=OPERATOR)
        assert other.status_code == 200, "another token has its own count"
