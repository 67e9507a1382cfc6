"""The report a page at a time and the outcome statistics (issue 21, point 7) over
real HTTP and real Redis, at a few thousand attempts written straight into the store."""

from __future__ import annotations

import json
import math
from typing import Any

import httpx
import pytest

from campaigns.domain.spec import parse_spec
from campaigns.store import Store
from campaigns.store.keys import attempt_id
from tests.conftest import spec_dict
from tests.integration.test_api import VIEWER, api_server, http, store
from tests.support import submit_spec

__all__ = ["api_server", "http", "store"]  # fixtures, shared with test_api

CLAIMED = 3000
UNSENT = 5
FINALS = ("completed", "busy", "no_answer", "failed", "completed", "canceled", None)
"""Cycled over the accepted calls; None: not over yet."""


def attempt_hash(cid: str, n: int, contact: str) -> dict[str, Any]:
    """Attempt ``n``: every tenth rejected, the rest calls ending as FINALS cycles."""
    row: dict[str, Any] = {
        "attempt_id": attempt_id(cid, n % 20, n // 20 + 1),
        "campaign_id": cid,
        "contact": n % 20,
        "contact_json": contact,
        "created_at": 1_900_000_000_000 + n,
        "reserved": 20_000,
    }
    if n % 10 == 9:
        return {**row, "status": "rejected", "error_code": "invalid_number"}
    row |= {"status": "accepted", "call_id": f"call-{n}"}
    final = FINALS[n % len(FINALS)]
    if final is not None:
        row |= {"final_status": final, "billsec": n % 90, "cost": 1000 + n, "settled": "1"}
    return row


async def write_report(store: Store, cid: str, claimed: int, unsent: int) -> list[dict[str, Any]]:
    """A campaign of ``claimed`` attempts and ``unsent`` expired contacts, written by
    pipeline (no worker); its attempts' hashes."""
    await submit_spec(store, parse_spec(spec_dict(cid, contacts=20)))
    contacts = await store.redis.hgetall(store.keys.campaign(cid, "contacts"))
    rows = [attempt_hash(cid, n, contacts[str(n % 20).encode()].decode()) for n in range(claimed)]
    async with store.redis.pipeline(transaction=False) as pipe:
        for row in rows:
            pipe.hset(store.keys.attempt(row["attempt_id"]), mapping=row)
        pipe.rpush(store.keys.campaign(cid, "attempts"), *(r["attempt_id"] for r in rows))
        pipe.rpush(store.keys.campaign(cid, "unsent"), *(f"expired|{i}|9" for i in range(unsent)))
        await pipe.execute()
    return rows


@pytest.fixture
async def reported(store: Store) -> tuple[str, list[dict[str, Any]]]:
    """A campaign of 3,000 attempts and 5 expired contacts."""
    return "paged", await write_report(store, "paged", CLAIMED, UNSENT)


async def walk(
    http: httpx.AsyncClient, cid: str, limit: int | None, cursor: str | None = None
) -> tuple[list[str], int]:
    """Every page from ``cursor`` on: the attempt IDs in order, and the pages read."""
    found: list[str] = []
    pages = 0
    while True:
        params: dict[str, Any] = {} if limit is None else {"limit": limit}
        if cursor is not None:
            params["cursor"] = cursor
        answer = await http.get(f"/v1/campaigns/{cid}/report", headers=VIEWER, params=params)
        assert answer.status_code == 200, answer.text
        page = answer.json()
        assert limit is None or len(page["attempts"]) <= limit
        found += [row["attempt_id"] for row in page["attempts"]]
        pages += 1
        cursor = page["next_cursor"]
        if cursor is None:
            return found, pages


async def hgetall_calls(store: Store) -> int:
    stats = await store.redis.info("commandstats")
    return int(stats.get("cmdstat_hgetall", {}).get("calls", 0))


async def test_report_pages_hold_every_attempt_once_in_report_order(
    http: httpx.AsyncClient, store: Store, reported: tuple[str, list[dict[str, Any]]]
) -> None:
    cid, rows = reported
    full = await http.get(f"/v1/campaigns/{cid}/report", headers=VIEWER)
    assert full.status_code == 200
    everything = [row["attempt_id"] for row in full.json()]  # the export: a flat array
    assert len(everything) == CLAIMED + UNSENT
    assert everything[:CLAIMED] == [r["attempt_id"] for r in rows]

    found, pages = await walk(http, cid, 700)
    assert found == everything and pages == math.ceil(len(everything) / 700)
    found, pages = await walk(http, cid, 1000)
    assert found == everything and pages == 4

    # A page reads its own attempts only: one hash each, not the campaign's 3,000.
    before = await hgetall_calls(store)
    first = await http.get(f"/v1/campaigns/{cid}/report", headers=VIEWER, params={"limit": 50})
    read = await hgetall_calls(store) - before
    assert 50 <= read <= 55, read  # 50 attempts, and the campaign's meta
    page = first.json()
    assert [r["attempt_id"] for r in page["attempts"]] == everything[:50]
    assert page["attempts"][0] == full.json()[0], "a page row is the export's row"

    # Only a cursor: pages of 100.
    second = await http.get(
        f"/v1/campaigns/{cid}/report", headers=VIEWER, params={"cursor": page["next_cursor"]}
    )
    assert [r["attempt_id"] for r in second.json()["attempts"]] == everything[50:150]

    # CSV stays the full export.
    csv_answer = await http.get(f"/v1/campaigns/{cid}/report?format=csv", headers=VIEWER)
    assert csv_answer.text.count("\n") == 1 + CLAIMED + UNSENT


async def test_claims_made_while_paging_come_on_a_later_page(
    http: httpx.AsyncClient, store: Store, reported: tuple[str, list[dict[str, Any]]]
) -> None:
    """A page that reached the expired rows, then a new claim: the new attempt comes
    next, and nothing is read twice."""
    cid, rows = reported
    cursor = None
    for limit in (1000, 1000, 1000, 2):  # every claim, then two expired rows
        params: dict[str, Any] = {"limit": limit} | ({"cursor": cursor} if cursor else {})
        page = (await http.get(f"/v1/campaigns/{cid}/report", headers=VIEWER, params=params)).json()
        assert len(page["attempts"]) == limit and page["next_cursor"]
        cursor = page["next_cursor"]
    late = attempt_hash(cid, CLAIMED, rows[0]["contact_json"]) | {
        "attempt_id": attempt_id(cid, 19, 999)
    }
    await store.redis.hset(store.keys.attempt(late["attempt_id"]), mapping=late)
    await store.redis.rpush(store.keys.campaign(cid, "attempts"), late["attempt_id"])
    rest, _ = await walk(http, cid, 2, cursor)
    assert rest == [late["attempt_id"]] + [attempt_id(cid, i, 9) for i in range(2, UNSENT)]


async def test_report_query_errors_name_every_parameter(
    http: httpx.AsyncClient, reported: tuple[str, list[dict[str, Any]]]
) -> None:
    cid, _ = reported
    url = f"/v1/campaigns/{cid}/report"
    answer = await http.get(
        url, headers=VIEWER, params={"limit": "0", "cursor": "nope", "page": "2", "format": "x"}
    )
    assert answer.status_code == 422
    fields = {e["field"]: e["message"] for e in answer.json()["error"]["errors"]}
    assert set(fields) == {"limit", "cursor", "page", "format"}, fields
    assert "unknown parameter" in fields["page"] and "1 to 1000" in fields["limit"]
    for params in ({"limit": "1001"}, {"limit": "-1"}, {"limit": "1", "format": "csv"}):
        answer = await http.get(url, headers=VIEWER, params=params)
        assert answer.status_code == 422 and answer.json()["error"]["field"] == "limit"
    # Another campaign's cursor, and a cursor that is not one of ours.
    first = (await http.get(url, headers=VIEWER, params={"limit": 1})).json()
    await submit_other(http)
    answer = await http.get(
        "/v1/campaigns/other/report", headers=VIEWER, params={"cursor": first["next_cursor"]}
    )
    assert answer.status_code == 422 and answer.json()["error"]["field"] == "cursor"
    forged = first["next_cursor"][:-2]
    answer = await http.get(url, headers=VIEWER, params={"cursor": forged})
    assert answer.status_code == 422 and answer.json()["error"]["field"] == "cursor"
    answer = await http.get(url, headers=VIEWER | {"Accept": "text/csv"}, params={"limit": 5})
    assert answer.status_code == 406
    answer = await http.get("/v1/campaigns/none/report?limit=5", headers=VIEWER)
    assert answer.status_code == 404


async def submit_other(http: httpx.AsyncClient) -> None:
    from tests.integration.test_api import OPERATOR

    answer = await http.post("/v1/campaigns", headers=OPERATOR, json=spec_dict("other", 1))
    assert answer.status_code == 201, answer.text


async def test_outcomes_are_counted_on_the_server(
    http: httpx.AsyncClient, reported: tuple[str, list[dict[str, Any]]]
) -> None:
    cid, rows = reported
    answer = await http.get(f"/v1/campaigns/{cid}/outcomes", headers=VIEWER)
    assert answer.status_code == 200, answer.text
    got = answer.json()
    ended = [r for r in rows if r["status"] == "accepted" and "final_status" in r]
    answered = [r for r in ended if r["final_status"] == "completed"]
    spent = sum(r["cost"] for r in ended)
    assert got["calls_ended"] == len(ended)
    assert got["final_status"] == {
        s: sum(r["final_status"] == s for r in ended)
        for s in ("busy", "canceled", "completed", "failed", "no_answer")
    }
    assert got["answered"] == len(answered)
    assert got["average_billsec"] == round(sum(r["billsec"] for r in ended) / len(ended), 1)
    assert got["spent_on_ended_micros"] == spent
    assert got["spend_per_answered_call_micros"] == math.ceil(spent / len(answered))
    assert got["currency"] == "EUR"
    empty = await http.get("/v1/campaigns/nothing/outcomes", headers=VIEWER)
    assert empty.status_code == 404
    assert json.loads((await http.get("/v1/openapi.json")).text)["paths"][
        "/v1/campaigns/{campaign_id}/outcomes"
    ]
