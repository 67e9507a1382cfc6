"""Every Redis fault a single host meets, under three real workers (issue 17, item 0).

One campaign runs while Redis reaches ``maxmemory`` under ``noeviction`` (then
memory is freed), is SIGKILLed and restarted from its AOF, and is frozen with
``CLIENT PAUSE``. At the end: every worker is still alive, nothing was
quarantined as poison, the campaign completed, every contact was dialled
exactly once (the sandbox's ledger) and every call ID is recorded; each
worker logged its faults once each, not once per retried command.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable

import pytest
import redis.asyncio as aioredis
from redis.exceptions import OutOfMemoryError

from campaigns.domain.spec import parse_spec
from campaigns.operators.control import CampaignClient, status_json
from campaigns.testbed.redis_server import RedisServer
from campaigns.testbed.sandbox import SandboxServer
from tests.conftest import spec_dict
from tests.support import WorkerProcess, creates, wait_for

pytestmark = pytest.mark.chaos

CAMPAIGN = "faults"
CONTACTS = 240
FILLER = "test:filler:"
_CHUNK = b"x" * 65536


@pytest.fixture
async def raw_redis(redis_server: RedisServer) -> AsyncIterator[aioredis.Redis]:
    """A plain client for the test's own faults; memory limits undone afterwards
    (on a fresh connection: the server may have been restarted meanwhile)."""
    r = aioredis.Redis.from_url(redis_server.url)
    yield r
    await r.aclose()
    if redis_server.running:
        r = aioredis.Redis.from_url(redis_server.url)
        await r.config_set("maxmemory", "0")
        await r.aclose()


def _fault_lines(worker: WorkerProcess) -> list[dict[str, object]]:
    lines = []
    for line in worker.log_text().splitlines():
        if '"redis_fault"' in line:
            lines.append(json.loads(line))
    return lines


async def _fill_to_oom(r: aioredis.Redis) -> int:
    """Set ``maxmemory`` just above what is used, then write until Redis refuses."""
    used = int((await r.info("memory"))["used_memory"])
    await r.config_set("maxmemory", str(used + 2 * len(_CHUNK)))
    for n in range(1000):
        try:
            await r.set(f"{FILLER}{n}", _CHUNK)
        except OutOfMemoryError:
            return n
    raise AssertionError("Redis never refused a write at maxmemory")


async def _count_oom(r: aioredis.Redis) -> int:
    errors = await r.info("errorstats")
    return int(errors.get("errorstat_OOM", {}).get("count", 0))


async def _progress(sandbox: SandboxServer, at_least: int) -> None:
    async def enough() -> bool:
        return len(creates(sandbox.ledger(), CAMPAIGN)) >= at_least

    await wait_for(enough, timeout=30, interval=0.2, what=f"{at_least} create requests")


async def test_workers_ride_out_oom_restart_and_pause(
    client: CampaignClient,
    sandbox: SandboxServer,
    start_worker: Callable[..., WorkerProcess],
    redis_server: RedisServer,
    raw_redis: aioredis.Redis,
) -> None:
    sandbox.configure(latency_seconds=0.01)
    workers = [start_worker() for _ in range(3)]
    spec = spec_dict(CAMPAIGN, contacts=CONTACTS)
    spec["pacing"] = {"calls_per_second": 30, "batch_size": 10, "max_in_flight": 100}
    await client.submit(parse_spec(spec))
    await _progress(sandbox, 30)

    # 1. maxmemory + noeviction: writes refused; status still answers.
    await _fill_to_oom(raw_redis)

    refused_before = await _count_oom(raw_redis)

    async def workers_refused() -> bool:
        return await _count_oom(raw_redis) >= refused_before + 20

    await wait_for(workers_refused, timeout=20, interval=0.2, what="20 writes refused with OOM")
    during = status_json(await client.get(CAMPAIGN))  # reads only: no MULTI to refuse
    assert during["state"] == "running"
    assert all(w.alive for w in workers), "a worker died of OOM"
    fillers = [k async for k in raw_redis.scan_iter(f"{FILLER}*")]
    if fillers:
        await raw_redis.delete(*fillers)
    await raw_redis.config_set("maxmemory", "0")
    sent_after_oom = len(creates(sandbox.ledger(), CAMPAIGN))
    await _progress(sandbox, sent_after_oom + 30)

    # 2. SIGKILL, then a restart that replays the AOF (LOADING, lost connections).
    redis_server.restart(graceful=False)
    await _progress(sandbox, len(creates(sandbox.ledger(), CAMPAIGN)) + 30)

    # 3. CLIENT PAUSE: every command waits, none fails.
    pauser = aioredis.Redis.from_url(redis_server.url)
    await pauser.execute_command("CLIENT", "PAUSE", "2000", "ALL")
    await pauser.aclose()

    async def done() -> bool:
        try:
            c = await client.get(CAMPAIGN)
        except Exception:  # the client's own connection reconnects on next use
            return False
        return c.state == "completed" and c.settled == c.accepted

    await wait_for(done, timeout=45, interval=0.5, what="completion after every fault")

    dead = [w.log_path.name for w in workers if not w.alive]
    assert not dead, f"workers died: {dead}"
    logs = [w.log_text() for w in workers]
    assert not any("job_quarantined" in text for text in logs), "a job was quarantined"
    assert not [d for d in await client.store.dead_letters() if "poison" in str(d.get("reason"))]

    ledger = creates(sandbox.ledger(), CAMPAIGN)
    per_contact: dict[str, set[str]] = {}
    for e in ledger:
        if e["status"] in (200, 201):
            per_contact.setdefault(e["variables"]["contact_ref"], set()).add(e["call_id"])
    assert len(per_contact) == CONTACTS, "a contact was never dialled"
    twice = [ref for ref, ids in per_contact.items() if len(ids) > 1]
    assert not twice, f"contacts dialled twice: {twice}"
    for ids in per_contact.values():
        assert await client.store.attempt_for_call(next(iter(ids))) is not None

    # One line per fault, not per retried command: three faults, a few kinds each.
    for worker in workers:
        lines = _fault_lines(worker)
        assert len(lines) <= 12, f"{worker.log_path.name}: {len(lines)} fault lines"
