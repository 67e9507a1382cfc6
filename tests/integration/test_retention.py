"""Deleting final campaigns (issue 19, item 7) with real Redis, a real worker and the
sandbox: refused while the report can still change, then every key of the campaign
goes (and its entries in shared keys); by age in the sweep; from the CLI."""

from __future__ import annotations

import asyncio
import subprocess
from collections.abc import Callable
from typing import Any

import httpx
from redis.asyncio import Redis

from campaigns.engine.retention import delete_expired
from campaigns.settings import Settings
from campaigns.store import Store, now_ms
from campaigns.testbed.sandbox import SandboxServer
from tests.conftest import spec_dict
from tests.integration.test_api import OPERATOR, VIEWER, api_server, http, store
from tests.support import CAMPAIGNS_BIN, WorkerProcess, wait_for, worker_env

__all__ = ["api_server", "http", "store"]  # fixtures, shared with test_api

_DAY_MS = 86_400_000


async def everything(redis: Redis, prefix: bytes = b"dsp:") -> dict[bytes, Any]:
    """Every key of the store with its whole content (test data is small)."""
    found: dict[bytes, Any] = {}
    for key in await redis.keys(prefix + b"*"):
        kind = (await redis.type(key)).decode()
        read = {
            "string": redis.get,
            "hash": redis.hgetall,
            "list": lambda k: redis.lrange(k, 0, -1),
            "set": redis.smembers,
            "zset": lambda k: redis.zrange(k, 0, -1),
            "stream": lambda k: redis.xrange(k),
        }[kind]
        found[key] = await read(key)
    return found


def mentions(data: dict[bytes, Any], campaign_id: str) -> list[bytes]:
    needle = campaign_id.encode()
    return [key for key, value in data.items() if needle in key or needle in repr(value).encode()]


def cli(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [CAMPAIGNS_BIN, *args], env=worker_env(settings), capture_output=True, text=True, timeout=60
    )


async def memory_of(redis: Redis, campaign_id: str) -> int:
    keys = [k for k in await redis.keys(b"*") if campaign_id.encode() in k]
    return sum([await redis.memory_usage(k) or 0 for k in keys])


async def test_delete_leaves_no_key_of_the_campaign(
    http: httpx.AsyncClient,
    sandbox: SandboxServer,
    start_worker: Callable[..., WorkerProcess],
    store: Store,
) -> None:
    start_worker()
    for cid in ("gone", "kept"):
        spec = spec_dict(cid, contacts=20)
        assert (await http.post("/v1/campaigns", headers=OPERATOR, json=spec)).status_code == 201

    async def final(cid: str) -> bool:
        status = (await http.get(f"/v1/campaigns/{cid}", headers=VIEWER)).json()
        counts = status["counts"]
        return bool(status["state"] == "completed" and counts["settled"] == counts["accepted"])

    early = await http.delete("/v1/campaigns/gone", headers=OPERATOR)
    if early.status_code != 200:  # it may already be over on a fast machine
        assert early.status_code == 409, early.text
    await wait_for(lambda: final("gone"), timeout=40, what="gone to complete and settle")
    await wait_for(lambda: final("kept"), timeout=40, what="kept to complete and settle")
    before = await everything(store.redis)
    assert mentions(before, "gone") and mentions(before, "kept")
    size = await memory_of(store.redis, "gone")
    print(f"a completed, settled campaign of 20 contacts: {size} bytes in Redis")

    response = await http.delete("/v1/campaigns/gone", headers=OPERATOR)
    assert response.status_code == 200, response.text
    assert response.json()["deleted"] is True
    after = await everything(store.redis)
    assert mentions(after, "gone") == [], "a key or an entry of the deleted campaign is left"
    # The other campaign keeps every key (its worker may still add one: a
    # reconciliation run after it completed).
    kept_before, kept_after = set(mentions(before, "kept")), set(mentions(after, "kept"))
    assert kept_before <= kept_after, f"another campaign was touched: {kept_before - kept_after}"
    arq_keys = [k for k in await store.redis.keys(b"arq:*") if b"gone" in k]
    assert arq_keys == [], arq_keys
    assert (await http.get("/v1/campaigns/gone", headers=VIEWER)).status_code == 404
    assert (await http.delete("/v1/campaigns/gone", headers=OPERATOR)).status_code == 404
    assert (await http.get("/v1/campaigns/kept/report", headers=VIEWER)).status_code == 200


async def test_not_final_is_refused_and_the_sweep_deletes_by_age(
    settings: Settings, store: Store
) -> None:
    from campaigns import CampaignClient, parse_spec

    async with await CampaignClient.connect(settings) as client:
        for cid in ("aged-1", "live-1"):
            await client.submit(parse_spec(spec_dict(cid, contacts=3)))
        refused = await asyncio.to_thread(cli, settings, "delete", "aged-1")
        assert refused.returncode == 1
        assert "only completed or cancelled" in refused.stderr
        await client.cancel("aged-1")
        now = now_ms()
        assert await delete_expired(store, 1, now=now) == [], "finished just now"
        assert await delete_expired(store, 1, now=now + 2 * _DAY_MS) == ["aged-1"]
        assert await store.campaign_ids() == ["live-1"], "a campaign not over stays"
        assert mentions(await everything(store.redis), "aged-1") == []
        await client.cancel("live-1")
    deleted = await asyncio.to_thread(cli, settings, "delete", "live-1")
    assert deleted.returncode == 0, deleted.stderr
    assert "live-1: deleted" in deleted.stdout
    # Only the account's callback outbox stays (a stream keeps its consumer group), empty.
    assert await store.redis.keys(b"dsp:*") in ([], [b"dsp:callbacks:outbox"])
    assert await store.redis.xlen(store.keys.callbacks_outbox) == 0


async def test_the_sweep_deletes_past_the_retention_once_an_interval(
    settings: Settings, store: Store
) -> None:
    from campaigns import CampaignClient, parse_spec
    from campaigns.engine.sweeper import sweep
    from campaigns.queue import open_queue

    kept = settings.model_copy(update={"retention_days": 30})
    async with await CampaignClient.connect(settings) as client:
        for cid in ("month-old", "week-old", "later"):
            await client.submit(parse_spec(spec_dict(cid, contacts=1)))
            await client.cancel(cid)
    for cid, days in (("month-old", 31), ("week-old", 7), ("later", 0)):
        # As if created and finished that long ago (the pass reads the index's older part).
        await store.redis.zadd(store.keys.campaigns, {cid: now_ms() - 32 * _DAY_MS})
        await store.redis.hset(store.keys.meta(cid), "finished_at", now_ms() - days * _DAY_MS)
    queue = await open_queue(settings.redis_url, settings.queue_name)
    try:
        await sweep(store, queue, kept)
        assert sorted(await store.campaign_ids()) == ["later", "week-old"]
        await store.redis.hset(store.keys.meta("later"), "finished_at", now_ms() - 31 * _DAY_MS)
        await sweep(store, queue, kept)
        assert "later" in await store.campaign_ids(), "one pass an interval, over every worker"
    finally:
        await queue.aclose()
