"""Many small campaigns: a worker's capacity counted in calls, not campaigns.

Each figure against its physical reference: the pace configured (campaigns times
their rate), each campaign's own pace, its submit time; the split of calls
between two workers; a worker's RSS and Redis connections with few and with
many campaigns held; Redis commands per second while every campaign waits for
a closed calling window (idle must be nearly free).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import statistics
import time
from typing import Any

import psutil

from campaigns.domain.spec import parse_spec
from campaigns.operators.control import CampaignClient
from tests.bench.common import Results, Row, Target, progress, spec_for, wait_until
from tests.bench.dispatch import Rig
from tests.support import WorkerProcess

__all__ = ["bench_many"]

_RATE = 0.2
_CONTACTS = 5
_LATENCY = 0.05
_SUBMIT_CHUNK = 50


def _spec(campaign_id: str, n: int, **extra: Any) -> Any:
    """A campaign of its own numbers: one number on a live call is never dialled by
    another campaign meanwhile, so shared numbers would queue campaigns behind each
    other (the bench's usual list is the same for every campaign)."""
    spec = json.loads(
        spec_for(
            campaign_id, _CONTACTS, calls_per_second=_RATE, max_concurrent_requests=2
        ).model_dump_json()
    )
    for i, contact in enumerate(spec["contacts"]):
        contact["to"] = f"+1555{n * _CONTACTS + i:07d}"
    return parse_spec(spec | extra)


def _percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


async def _submit(client: CampaignClient, specs: list[Any]) -> dict[str, float]:
    """Submit in concurrent chunks; each campaign's submit-returned time (epoch s)."""
    done: dict[str, float] = {}
    for start in range(0, len(specs), _SUBMIT_CHUNK):
        chunk = specs[start : start + _SUBMIT_CHUNK]

        async def one(spec: Any) -> None:
            await client.submit(spec)
            done[spec.campaign_id] = time.time()

        await asyncio.gather(*(one(spec) for spec in chunk))
    return done


def _accepted_by(proc: WorkerProcess) -> int:
    return sum(1 for line in proc.log_text().splitlines() if '"call_accepted"' in line)


def _rss_mb(procs: list[WorkerProcess]) -> float:
    return sum(psutil.Process(p.proc.pid).memory_info().rss for p in procs) / 1e6


async def _clients(client: CampaignClient) -> int:
    info = await client.store.redis.info("clients")
    return int(info["connected_clients"])


async def _run(rig: Rig, tag: str, campaigns: int, workers: int) -> dict[str, Any]:
    settings = rig.settings(tag)
    rig.sandbox.configure(latency_seconds=_LATENCY)
    ids = [f"{tag}-c{i:04d}" for i in range(campaigns)]
    specs = [_spec(cid, n) for n, cid in enumerate(ids)]
    async with (
        rig.workers(tag, workers, settings) as procs,
        await CampaignClient.connect(settings) as client,
    ):
        submitted = await _submit(client, specs)
        rss, clients = 0.0, 0
        expected = campaigns * _CONTACTS

        async def all_sent() -> bool:
            nonlocal rss, clients
            rss = max(rss, _rss_mb(procs))
            clients = max(clients, await _clients(client))
            return len(await asyncio.to_thread(rig.sandbox.create_times, set(ids))) >= expected

        await wait_until(all_sent, _CONTACTS / _RATE * 4 + 60, f"{expected} creates ({tag})", 1.0)
        placed = [_accepted_by(p) for p in procs]
    ledger = rig.sandbox.ledger()
    rig.clean()
    per: dict[str, list[float]] = {cid: [] for cid in ids}
    for row in ledger:
        cid = (row.get("variables") or {}).get("campaign_id")
        if cid in per and row.get("status") == 201:
            per[cid].append(dt.datetime.fromisoformat(row["received_at"]).timestamp())
    first_wait = [min(per[cid]) - submitted[cid] for cid in ids if per[cid]]
    own = [(len(t) - 1) / (max(t) - min(t)) / _RATE for t in per.values() if len(t) > 1]
    starts = sorted(min(t) for t in per.values() if t)
    ends = sorted(max(t) for t in per.values() if t)
    # Delivered against configured while every campaign runs: from the last
    # campaign's first call to the first campaign's last call.
    lo, hi = starts[-1], ends[0]
    inside = sum(1 for t in per.values() for at in t if lo <= at <= hi)
    delivered = inside / (hi - lo) / (campaigns * _RATE) if hi > lo else float("nan")
    return {
        "first_wait": first_wait,
        "own": own,
        "delivered": delivered,
        "placed": placed,
        "rss": rss,
        "clients": clients,
    }


async def _idle_commands(rig: Rig, campaigns: int, seconds: float) -> float:
    """Redis commands per second with every campaign waiting for a closed window."""
    settings = rig.settings("idle")
    closed = (dt.datetime.now(dt.UTC) + dt.timedelta(hours=12)).strftime("%H:%M")
    until = (dt.datetime.now(dt.UTC) + dt.timedelta(hours=12, minutes=1)).strftime("%H:%M")
    async with (
        rig.workers("idle", 1, settings),
        await CampaignClient.connect(settings) as client,
    ):
        window = {
            "start": closed,
            "end": until,
            "timezone": "recipient",
            "default_timezone": "America/New_York",
        }
        specs = [_spec(f"idle-c{i:04d}", i, calling_window=window) for i in range(campaigns)]
        await _submit(client, specs)

        async def all_waiting() -> bool:
            for spec in specs[-10:]:
                status = await client.status(spec.campaign_id)
                if not status.get("waiting"):
                    return False
            return True

        await wait_until(all_waiting, 60, "idle campaigns waiting for their window", 0.5)
        await asyncio.sleep(2)
        before = int((await client.store.redis.info("stats"))["total_commands_processed"])
        await asyncio.sleep(seconds)
        after = int((await client.store.redis.info("stats"))["total_commands_processed"])
    rig.clean()
    # Our own two INFO commands are not the workers'.
    return (after - before - 1) / seconds


async def bench_many(rig: Rig, quick: bool) -> Results:
    """The issue's `many` figures for dispatch; fewer campaigns with ``--quick``."""
    big = 200 if quick else 1000
    results = Results()
    small = await _run(rig, "many10", 10, 1)
    progress(f"  many: 10 campaigns: RSS {small['rss']:.0f} MB, {small['clients']} clients")
    one = await _run(rig, "many1w", big, 1)
    waits = one["first_wait"]
    p50, p99, worst = (
        statistics.median(waits),
        _percentile(waits, 0.99),
        max(waits),
    )
    progress(
        f"  many: {big} campaigns on 1 worker: delivered {one['delivered']:.2f} of configured, "
        f"first call p50 {p50:.2f} s p99 {p99:.2f} s max {worst:.2f} s"
    )
    two = await _run(rig, "many2w", big, 2)
    split = two["placed"][0] / max(sum(two["placed"]), 1)
    idle = await _idle_commands(rig, big, 10 if quick else 20)
    progress(f"  many: {big} idle campaigns: {idle:.0f} Redis commands/s")
    label = f"{big} campaigns x {_CONTACTS} at {_RATE}/s"
    results.rows += [
        Row("many", f"{label}, 1 worker: delivered/configured", "ratio", [one["delivered"]]),
        Row("many", f"{label}, 1 worker: first call after submit p50", "s", [p50]),
        Row("many", f"{label}, 1 worker: first call after submit p99", "s", [p99]),
        Row("many", f"{label}, 1 worker: first call after submit max", "s", [worst]),
        Row("many", f"{label}, 1 worker: slowest campaign's own rate", "of pace", [min(one["own"])]),
        Row("many", f"{label}, 2 workers: delivered/configured", "ratio", [two["delivered"]]),
        Row("many", f"{label}, 2 workers: first worker's share", "of calls", [split]),
        Row("many", "worker RSS, 10 campaigns", "MB", [small["rss"]]),
        Row("many", f"worker RSS, {big} campaigns", "MB", [one["rss"]]),
        Row("many", "Redis connections, 10 campaigns", "clients", [small["clients"]]),
        Row("many", f"Redis connections, {big} campaigns", "clients", [one["clients"]]),
        Row("many", f"{big} campaigns waiting for a closed window", "commands/s", [idle]),
    ]  # fmt: skip
    results.targets += [
        Target("many", f"{label}: delivered/configured, 1 worker", one["delivered"], 0.95, True),
        Target("many", f"{label}: first call after submit, max", worst, 2.0, False, "s"),
        Target("many", f"{label}: every campaign's own rate", min(one["own"]), 0.9, True, "of pace"),
        Target("many", f"{label}: 2 workers, each >= 40 %", min(split, 1 - split), 0.4, True),
    ]  # fmt: skip
    return results
