"""Pace: overlapping requests, the schedule in Redis, the account ceilings.

Safety properties only, counted from the sandbox's ledger: never more requests
in a window than the pace allows, never more open at once than configured,
nothing started after a halt. Delivered-rate figures belong to ``make bench``.

The pace is enforced where a request is allowed to start (the Redis clock);
the provider sees it after a claim's answer, a stamp and the HTTP trip, and on
a loaded two-core machine that delay varies by tens of milliseconds. Windows
are therefore counted over ``1 s - _JITTER``: a dispatcher without the pace or
the ceiling (or with either wrong by more than about 15 %) still overruns them.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable

import pytest
import redis.asyncio as aioredis

from campaigns.domain.lifecycle import Move
from campaigns.domain.pacing import pace_rule
from campaigns.domain.spec import parse_spec
from campaigns.operators.control import CampaignClient
from campaigns.settings import Settings
from campaigns.store import Store
from campaigns.testbed.sandbox import SandboxServer, parse_rfc3339
from tests.conftest import spec_dict
from tests.support import (
    WorkerProcess,
    busiest_window,
    claim_next,
    creates,
    submit_spec,
    wait_for,
)

_JITTER = 0.15


@pytest.fixture
async def store(redis_url: str) -> AsyncIterator[Store]:
    client = aioredis.Redis.from_url(redis_url)
    yield Store(client)
    await client.aclose()


def _times(entries: list[dict[str, object]]) -> list[float]:
    return [parse_rfc3339(str(e["received_at"])) for e in entries]


async def _done(client: CampaignClient, ids: list[str]) -> bool:
    for cid in ids:
        campaign = await client.get(cid)
        if campaign.state != "completed":
            return False
    return True


async def test_requests_overlap_with_a_slow_provider_but_never_beyond_the_limit(
    client: CampaignClient, sandbox: SandboxServer, start_worker: Callable[..., WorkerProcess]
) -> None:
    latency = 0.3
    sandbox.configure(latency_seconds=latency)
    start_worker()
    spec = spec_dict("overlap", contacts=16)
    spec["pacing"] = {"calls_per_second": 10, "max_concurrent_requests": 3, "max_in_flight": 50}
    await client.submit(parse_spec(spec))
    await wait_for(lambda: _done(client, ["overlap"]), timeout=60, what="campaign completed")

    entries = creates(sandbox.ledger(), "overlap")
    assert len(entries) == 16
    starts = _times(entries)
    # A request is open from its arrival until the sandbox answers, `latency` later.
    open_at_arrival = [sum(1 for s in starts if s <= t < s + latency) for t in starts]
    assert max(open_at_arrival) <= 3, "never more requests open than max_concurrent_requests"
    assert max(open_at_arrival) >= 2, "a slow provider does not serialise the campaign"
    assert busiest_window(starts, 1.0 - _JITTER) <= 10
    assert (await client.get("overlap")).accepted == 16


async def test_no_request_starts_after_a_halt_while_open_ones_are_recorded(
    client: CampaignClient, sandbox: SandboxServer, start_worker: Callable[..., WorkerProcess]
) -> None:
    latency, n, concurrent = 0.3, 3, 4
    sandbox.configure(latency_seconds=latency, spend_limit_micros=n * 10_000)
    start_worker()
    spec = spec_dict("halting", contacts=20)
    spec["pacing"] = {"calls_per_second": 20, "max_concurrent_requests": concurrent}
    await client.submit(parse_spec(spec))

    async def halted() -> bool:
        c = await client.get("halting")
        return c.state == "halted" and c.unresolved == 0

    await wait_for(halted, timeout=30, what="halt with every open request recorded")
    await asyncio.sleep(1.0)  # would anything start late?
    entries = creates(sandbox.ledger(), "halting")
    refused = [e for e in entries if e["status"] == 403]
    accepted = [e for e in entries if e["status"] == 201]
    assert len(accepted) == n
    first_refusal = min(_times(refused))
    # The dispatcher learns of the halt when its answer arrives, `latency` later;
    # a request that arrives after that (plus transit) was started after it.
    late = [e for e in entries if parse_rfc3339(e["received_at"]) > first_refusal + latency + 0.1]
    assert not late, f"requests started after the halt: {late}"
    assert len(entries) <= n + concurrent, "at most the requests open at the halt"
    status = await client.status("halting")
    assert status["counts"]["accepted"] == n, "every accepted call ID is recorded"
    assert status["counts"]["rejected"] == len(refused)
    assert status["counts"]["pending"] == 20 - n, "refused contacts go back to pending"


async def test_account_ceiling_holds_across_campaigns_and_workers(
    client: CampaignClient,
    sandbox: SandboxServer,
    settings: Settings,
    start_worker: Callable[..., WorkerProcess],
) -> None:
    ceiling = 12
    sandbox.configure(latency_seconds=0.02)
    config = settings.model_copy(update={"provider_calls_per_second": float(ceiling)})
    for _ in range(3):
        start_worker(config)
    ids = [f"shared{i}" for i in range(3)]
    for cid in ids:
        spec = spec_dict(cid, contacts=24)
        spec["pacing"] = {"calls_per_second": 10, "max_concurrent_requests": 4}
        await client.submit(parse_spec(spec))
    await wait_for(lambda: _done(client, ids), timeout=60, what="all campaigns completed")

    ledger = sandbox.ledger()
    everything = [t for cid in ids for t in _times(creates(ledger, cid))]
    assert len(everything) == 72
    assert busiest_window(everything, 1.0 - _JITTER) <= ceiling
    # Fair: while all three ran, each had a share (FIFO slots give a third each).
    last_start = min(max(_times(creates(ledger, cid))) for cid in ids)
    shares = [sum(1 for t in _times(creates(ledger, cid)) if t <= last_start) for cid in ids]
    assert min(shares) >= sum(shares) / 6, f"a campaign was starved: {shares}"


async def test_account_live_calls_ceiling_holds_across_campaigns(
    client: CampaignClient,
    sandbox: SandboxServer,
    settings: Settings,
    start_worker: Callable[..., WorkerProcess],
) -> None:
    sandbox.configure(call_duration_real_seconds=0.6)
    config = settings.model_copy(update={"provider_max_live_calls": 3})
    start_worker(config)
    start_worker(config)
    ids = ["trunk0", "trunk1"]
    for cid in ids:
        await client.submit(parse_spec(spec_dict(cid, contacts=8)))
    most = 0
    deadline = time.monotonic() + 60
    while not await _done(client, ids):
        assert time.monotonic() < deadline, "campaigns did not complete"
        live = sum([(await client.get(cid)).live for cid in ids])
        most = max(most, live)
        assert live <= 3, f"{live} live calls across the account, ceiling 3"
        await asyncio.sleep(0.02)
    assert most >= 2, "the ceiling is shared, not one call at a time"
    assert await client.store.account_live_calls() >= 0


async def test_the_schedule_continues_in_redis_across_workers(store: Store) -> None:
    """A second dispatcher (another worker, a restart) continues the held schedule:
    no burst when it takes over, and the slot it waits for is the one held."""
    spec = parse_spec(spec_dict("handover", contacts=4))
    await submit_spec(store, spec)
    await store.transition("handover", Move.START)
    rule = pace_rule(2.0)  # a slot every 0.5 s
    await store.acquire_lease("handover", "w1", 10)
    first = await store.claim("handover", "w1", review_message="r", budget_message="b", pace=rule)
    assert first.outcome == "claimed"
    await store.release_lease("handover", "w1")
    await store.acquire_lease("handover", "w2", 10)
    second = await store.claim("handover", "w2", review_message="r", budget_message="b", pace=rule)
    assert second.outcome == "pace_wait"
    assert 0.3 < second.wait_seconds <= 0.505  # 1 % margin
    again = await store.claim("handover", "w2", review_message="r", budget_message="b", pace=rule)
    assert again.outcome == "pace_wait"
    assert again.wait_seconds <= second.wait_seconds, "the held slot, not a new one behind it"
    await asyncio.sleep(again.wait_seconds)
    third = await store.claim("handover", "w2", review_message="r", budget_message="b", pace=rule)
    assert third.outcome == "claimed"


async def test_a_429_holds_every_campaign(store: Store) -> None:
    for cid in ("held0", "held1"):
        await submit_spec(store, parse_spec(spec_dict(cid, contacts=2)))
        await store.transition(cid, Move.START)
        await store.acquire_lease(cid, f"t-{cid}", 10)
    await store.hold_account(0.6)
    blocked = await claim_next(store, "held1", "t-held1")
    assert blocked.outcome == "pace_wait"
    assert 0.4 < blocked.wait_seconds <= 0.6
    await asyncio.sleep(blocked.wait_seconds)
    assert (await claim_next(store, "held1", "t-held1")).outcome == "claimed"
