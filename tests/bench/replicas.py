"""Benchmarks of a replicated Redis (issue 17), side by side in one run.

- ``replicas``: the cost of writes a failover cannot take back: creates/s and
  Redis round trips per placed call with ``DISPATCHER_REDIS_MIN_REPLICAS`` 0
  and 1, against the same sandbox, through the sentinels of a primary with one
  replica on loopback, variants interleaved; and the delivered share of a
  100 calls/s pace with confirmation on (target >= 0.98).
- ``sentinel``: SIGKILL of the primary -> the next create request, dispatcher
  defaults, sentinel ``down-after-milliseconds`` 5000 (target <= 30 s).
"""

from __future__ import annotations

import statistics
import time
from typing import Any

from redis.asyncio import Redis

from campaigns.operators.control import CampaignClient
from campaigns.settings import Settings
from campaigns.testbed.sentinel_group import SentinelGroup
from tests.bench.common import Ratio, Results, Row, Target, progress, spec_for, wait_until
from tests.bench.dispatch import UNCAPPED, Rig, _all_created, _rate, _recorded

__all__ = ["bench_replicas", "bench_sentinel_failover"]


def _through(settings: Settings, group: SentinelGroup, **overrides: Any) -> Settings:
    return settings.model_copy(
        update={
            "redis_sentinels": group.sentinel_setting,
            "redis_sentinel_master": group.service,
            **overrides,
        }
    )


async def _reads(port: int) -> int:
    """Requests the primary read from clients: its reads less the replica's ACKs
    (each ``WAIT`` asks the replica for one: a primary-replica exchange, not a
    client's round trip)."""
    async with Redis(host="127.0.0.1", port=port) as redis:
        stats: dict[str, Any] = await redis.info("stats")
        commands: dict[str, Any] = await redis.info("commandstats")
    acks = int(commands.get("cmdstat_replconf", {}).get("calls", 0))
    return int(stats["total_reads_processed"]) - acks


async def _one(
    rig: Rig, group: SentinelGroup, replicas: int, contacts: int, n: int
) -> tuple[float, float]:
    """One uncapped campaign on one worker: (creates/s, round trips per placed call)."""
    tag = f"replicas{replicas}-{n}"
    cid = f"{tag}-c0"
    settings = _through(rig.settings(tag, poll_interval_seconds=3.0), group)
    settings = settings.model_copy(update={"redis_min_replicas": replicas})
    async with (
        rig.workers(tag, 1, settings),
        await CampaignClient.connect(settings) as client,
    ):
        primary = group.primary_port()
        before = await _reads(primary)
        await client.submit(spec_for(cid, contacts, **UNCAPPED, max_concurrent_requests=10))
        await wait_until(lambda: _recorded(client, {cid}, contacts), 180, f"{tag} recorded")
        trips = (await _reads(primary) - before) / contacts
    rate = _rate(rig.sandbox.create_times({cid}))
    group.primary().flushall()
    rig.sandbox.reset()
    return rate, trips


async def _paced(rig: Rig, group: SentinelGroup, contacts: int, replicas: int) -> float:
    """A 100 calls/s campaign: the delivered share of its pace."""
    tag = f"replicas-paced{replicas}"
    settings = _through(rig.settings(tag), group, redis_min_replicas=replicas)
    cid = f"{tag}-c0"
    async with (
        rig.workers(tag, 1, settings),
        await CampaignClient.connect(settings) as client,
    ):
        await client.submit(
            spec_for(cid, contacts, calls_per_second=100, batch_size=50, max_in_flight=100_000)
        )
        await wait_until(lambda: _recorded(client, {cid}, contacts), 120, "paced recorded")
    group.primary().flushall()
    rate = _rate(rig.sandbox.create_times({cid}))
    rig.sandbox.reset()
    return rate / 100


async def bench_replicas(rig: Rig, quick: bool, rounds: int) -> Results:
    contacts = 300 if quick else 1500
    rows = {r: (Row("replicas", f"MIN_REPLICAS={r}: creates/s", "creates/s"), Row(
        "replicas", f"MIN_REPLICAS={r}: round trips per placed call", "trips"
    )) for r in (0, 1)}  # fmt: skip
    with SentinelGroup(replicas=1, min_replicas_to_write=0) as group:
        for n in range(rounds):
            for replicas in (0, 1) if n % 2 == 0 else (1, 0):
                rate, trips = await _one(rig, group, replicas, contacts, n)
                progress(f"  MIN_REPLICAS={replicas}: {rate:.0f} creates/s, {trips:.1f} trips")
                rows[replicas][0].values.append(rate)
                rows[replicas][1].values.append(trips)
        shares = {r: await _paced(rig, group, 300 if quick else 1000, r) for r in (1, 0)}
        share = shares[1]
    for create_row, trip_row in rows.values():
        create_row.notes.append("one worker, uncapped, 10 requests open, one replica on loopback")
        trip_row.notes.append(
            "primary's reads less replica ACKs, per placed call (polls and crons too)"
        )
    slower = statistics.median(rows[1][0].values) / statistics.median(rows[0][0].values)
    return Results(
        rows=[row for pair in rows.values() for row in pair],
        ratios=[
            Ratio("replicas", "creates/s, MIN_REPLICAS 1 / 0", slower),
            Ratio("replicas", "100 calls/s delivered, MIN_REPLICAS 1 / 0", share / shares[0]),
        ],
        targets=[
            Target("replicas", "100 calls/s with MIN_REPLICAS=1: delivered share", share, 0.98, True),
        ],
    )  # fmt: skip


async def bench_sentinel_failover(rig: Rig) -> Results:
    """SIGKILL of the primary mid-campaign; seconds to the next create request."""
    cid = "sentinel-failover-c0"
    spec = spec_for(cid, 2000, calls_per_second=10, batch_size=10, max_in_flight=100_000)
    with SentinelGroup(down_after_ms=5000, failover_timeout_ms=10_000) as group:
        settings = _through(rig.settings("sentinel", defaults=True), group)
        settings = settings.model_copy(update={"redis_min_replicas": 1})
        async with (
            rig.workers("sentinel", 2, settings),
            await CampaignClient.connect(settings) as client,
        ):
            await client.submit(spec)
            await wait_until(lambda: _all_created(rig.sandbox, {cid}, 10), 60, "dialling")
            killed_at = time.time()
            group.kill_primary()

            def resumed() -> bool:
                return any(t > killed_at for t in rig.sandbox.create_times({cid}))

            await wait_until(resumed, 120, "a create request after the SIGKILL", every=0.1)
            after = min(t for t in rig.sandbox.create_times({cid}) if t > killed_at)
    rig.sandbox.reset()
    gap = after - killed_at
    progress(f"  sentinel failover: next create {gap:.1f} s after SIGKILL of the primary")
    row = Row("sentinel", "SIGKILL of the primary -> next create", "seconds", [gap])
    row.notes.append("dispatcher defaults, MIN_REPLICAS 1, sentinel down-after-milliseconds 5000")
    return Results(
        rows=[row],
        targets=[Target("sentinel", "primary SIGKILL -> next create request", gap, 30, False, "s")],
    )
