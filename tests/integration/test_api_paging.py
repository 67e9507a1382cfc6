"""Paged, filtered campaign lists (issue 19, item 2) over real HTTP and real Redis,
at 10,000 campaigns written straight into the store; status reads no SCAN; workers beat."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from campaigns.domain.spec import parse_spec
from campaigns.settings import Settings
from campaigns.store import Store, now_ms
from tests.conftest import spec_dict
from tests.integration.test_api import VIEWER, api_server, http, store
from tests.support import WorkerProcess, submit_spec, wait_for

__all__ = ["api_server", "http", "store"]  # fixtures, shared with test_api

COUNT = 10_000
BASE_MS = 1_900_000_000_000
STATES = ("queued", "running", "paused", "halted", "completed", "cancelled")


def created_ms(i: int) -> int:
    return BASE_MS + i // 2  # two campaigns per millisecond: ties ordered by ID


def state_of(i: int) -> str:
    return STATES[i % len(STATES)]


def name_of(i: int) -> str:
    return f"{'north' if i % 3 else 'south'}-{i}"


@pytest.fixture
async def many(store: Store, settings: Settings) -> list[str]:
    """10,000 campaigns: one submitted, its meta copied (fast, by pipeline) to the rest."""
    await submit_spec(store, parse_spec(spec_dict("seed", contacts=1)))
    meta = await store.redis.hgetall(store.keys.meta("seed"))
    await store.redis.delete(store.keys.meta("seed"))
    await store.redis.zrem(store.keys.campaigns, "seed")
    ids = [f"c{i:05d}" for i in range(COUNT)]
    async with store.redis.pipeline(transaction=False) as pipe:
        for i, cid in enumerate(ids):
            pipe.hset(
                store.keys.meta(cid),
                mapping={**meta, b"state": state_of(i), b"name": name_of(i)},
            )
            pipe.zadd(store.keys.campaigns, {cid: created_ms(i)})
        await pipe.execute()
    return sorted(ids, key=lambda cid: (created_ms(int(cid[1:])), cid))


async def walk(http: httpx.AsyncClient, limit: int, **params: str) -> tuple[list[str], int]:
    """Every page of one query: the IDs in order, and how many requests it took."""
    found: list[str] = []
    cursor: str | None = None
    pages = 0
    while True:
        query: dict[str, Any] = {"limit": limit, **params}
        if cursor is not None:
            query["cursor"] = cursor
        response = await http.get("/v1/campaigns", headers=VIEWER, params=query)
        assert response.status_code == 200, response.text
        pages += 1
        page = response.json()
        found += [c["campaign_id"] for c in page["campaigns"]]
        cursor = page["next_cursor"]
        if cursor is None:
            return found, pages


async def test_paging_over_10000_campaigns_is_complete_ordered_and_filtered(
    http: httpx.AsyncClient, many: list[str]
) -> None:
    everything, pages = await walk(http, 500)
    assert everything == many, "each campaign once, by creation time, ties by ID"
    assert pages == COUNT // 500

    paused, _ = await walk(http, 100, state="paused")
    assert paused == [c for c in many if state_of(int(c[1:])) == "paused"]
    final, _ = await walk(http, 200, state="completed,cancelled", name="south")
    assert final == [
        c
        for c in many
        if state_of(int(c[1:])) in ("completed", "cancelled")
        and name_of(int(c[1:])) == "south-" + str(int(c[1:]))
    ]
    window, _ = await walk(
        http,
        50,
        created_after="2030-03-17T17:46:40.100Z",  # BASE_MS + 100, exclusive
        created_before="2030-03-17T18:46:40.200+01:00",  # BASE_MS + 200, exclusive
    )
    assert window == [c for c in many if BASE_MS + 100 < created_ms(int(c[1:])) < BASE_MS + 200]


async def test_a_page_answers_fast_at_10000_campaigns(
    http: httpx.AsyncClient, many: list[str]
) -> None:
    """Measured, not asserted (a loaded machine is slow): the first page and a deep one."""
    first = await http.get("/v1/campaigns", headers=VIEWER)
    deep_cursor = first.json()["next_cursor"]
    timings = []
    for params in ({}, {"cursor": deep_cursor}, {"state": "halted", "limit": "20"}):
        started = time.perf_counter()
        response = await http.get("/v1/campaigns", headers=VIEWER, params=params)
        timings.append(round((time.perf_counter() - started) * 1000, 1))
        assert response.status_code == 200
        assert len(response.json()["campaigns"]) == int(params.get("limit", 50))
    print(f"page ms at {COUNT} campaigns (first, second, filtered): {timings}")


async def test_lists_are_gzipped_for_clients_that_take_it(
    http: httpx.AsyncClient, many: list[str]
) -> None:
    response = await http.get(
        "/v1/campaigns", headers={**VIEWER, "Accept-Encoding": "gzip"}, params={"limit": 100}
    )
    assert response.headers["content-encoding"] == "gzip"
    assert len(response.json()["campaigns"]) == 100


async def test_bad_and_unknown_parameters_are_all_named_in_one_422(
    http: httpx.AsyncClient, store: Store
) -> None:
    response = await http.get(
        "/v1/campaigns",
        headers=VIEWER,
        params={"page_size": "5", "limit": "0", "state": "done", "created_after": "yesterday"},
    )
    assert response.status_code == 422
    fields = [e["field"] for e in response.json()["error"]["errors"]]
    assert sorted(fields) == ["created_after", "limit", "page_size", "state"]
    first = await http.get("/v1/campaigns", headers=VIEWER, params={"cursor": "bm9wZQ"})
    assert first.status_code == 422
    assert first.json()["error"]["field"] == "cursor"


async def test_status_and_lists_never_scan_the_keyspace(
    http: httpx.AsyncClient, many: list[str], store: Store
) -> None:
    """No worker is alive here: status used to SCAN for one (about 41 per call)."""
    await store.redis.config_resetstat()
    for path in ("/v1/campaigns", f"/v1/campaigns/{many[0]}", "/v1/campaigns?state=queued"):
        response = await http.get(path, headers=VIEWER)
        assert response.status_code == 200
        assert response.json().get("waiting", {"reason": "no_worker"})["reason"] == "no_worker"
    stats = await store.redis.info("commandstats")
    assert not [name for name in stats if name in ("cmdstat_scan", "cmdstat_keys")], stats


async def test_a_worker_beats_while_it_runs_and_says_when_it_stops(
    settings: Settings, store: Store, start_worker: Callable[..., WorkerProcess]
) -> None:
    worker = start_worker()

    async def alive() -> bool:
        return await store.worker_alive(settings.queue_name, now_ms())

    await wait_for(alive, timeout=30, what="the worker's beat")
    assert await store.worker_alive("another:queue", now_ms()) is False
    assert worker.terminate() == 0
    assert await alive() is False, "a worker that stopped cleanly is gone at once"
