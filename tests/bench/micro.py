"""In-process micro benchmarks: the store's per-call path and exact money.

- ``store``: the dispatcher's per-call store path (claim + stamp_send +
  record_accepted + settle, three Lua scripts) against a naive, non-atomic
  baseline of plain commands doing the same logical writes with no checks;
- ``rate``: ``Rate.cost_micros`` (exact integer micros) against the same
  computation in floats.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable
from typing import Any

from redis.asyncio import Redis

from campaigns.domain.lifecycle import Move
from campaigns.domain.rating import Rate
from campaigns.domain.spec import CampaignSpec
from campaigns.store import Store
from tests.bench.common import Ratio, Results, Row, progress, spec_for
from tests.support import claim_next, submit_spec

__all__ = ["bench_rate", "bench_store"]

WORST_CASE_MICROS = 20_000  # 120 s at 0.01/min, 60/60 increments
BODY = '{"from":"+15551230001","to":"+15551240000","max_duration":120,"variables":{}}'


async def store_path(store: Store, spec: CampaignSpec, n: int) -> float:
    """Calls/s through the dispatcher's own store path, setup outside the clock."""
    cid = spec.campaign_id
    await submit_spec(store, spec)
    await store.transition(cid, Move.START)
    token = "bench-lease"
    assert await store.acquire_lease(cid, token, 600)
    start = time.perf_counter()
    for i in range(n):
        claim = await claim_next(store, cid, token)
        attempt = claim.attempt
        assert attempt is not None, claim.outcome
        await store.stamp_send(attempt.attempt_id, BODY, token)
        await store.record_accepted(attempt.attempt_id, f"call_{cid}_{i}", 1.0)
        await store.settle(
            attempt.attempt_id,
            final_status="completed",
            billsec=30,
            cost_micros=10_000,
            estimated=False,
            currency="EUR",
        )
    elapsed = time.perf_counter() - start
    record = await store.campaign(cid)
    assert record is not None
    assert (record.spent_micros, record.reserved_micros, record.settled) == (n * 10_000, 0, n)
    return n / elapsed


async def naive_path(client: Redis, cid: str, n: int) -> float:
    """The same logical writes as plain commands: no state, lease or budget checks."""
    redis: Any = client  # redis-py types async commands as ``Awaitable[T] | T``
    meta, pending, calls = f"naive:c:{cid}:meta", f"naive:c:{cid}:pending", "naive:calls"
    await redis.hset(meta, mapping={"reserved": 0, "spent": 0})
    await redis.rpush(pending, *range(n))
    start = time.perf_counter()
    for i in range(n):
        index = int(await redis.lpop(pending))
        await redis.hincrby(meta, "reserved", WORST_CASE_MICROS)
        attempt_id = f"{cid}:{index:06d}:1"
        await redis.hset(
            f"naive:a:{attempt_id}",
            mapping={
                "status": "accepted",
                "contact": index,
                "reserved": WORST_CASE_MICROS,
                "request": BODY,
            },
        )
        await redis.hset(calls, f"call_{cid}_{i}", attempt_id)
        await redis.hincrby(meta, "spent", 10_000)
    elapsed = time.perf_counter() - start
    assert int(await redis.hget(meta, "spent")) == n * 10_000
    return n / elapsed


async def bench_store(url: str, calls: int, rounds: int) -> Results:
    atomic = Row("store", "atomic store path (claim+save+record+settle)", "calls/s")
    naive = Row("store", "naive plain commands, no checks", "calls/s")
    base = spec_for("store-base", calls)
    redis = Redis.from_url(url)
    store = Store(redis)
    try:
        # Warm-up: script cache, connection, code paths.
        await store_path(store, base.model_copy(update={"campaign_id": "warm"}), 100)
        await naive_path(redis, "warm", 100)
        await redis.flushall()
        for r in range(rounds):
            order = [("atomic", atomic), ("naive", naive)]
            if r % 2:
                order.reverse()
            for name, row in order:
                cid = f"store-r{r}"
                if name == "atomic":
                    spec = base.model_copy(update={"campaign_id": cid})
                    row.values.append(await store_path(store, spec, calls))
                else:
                    row.values.append(await naive_path(redis, cid, calls))
                await redis.flushall()
            progress(
                f"  store round {r + 1}/{rounds}: atomic {atomic.values[-1]:,.0f}/s, "
                f"naive {naive.values[-1]:,.0f}/s"
            )
    finally:
        await redis.flushall()
        await redis.aclose()
    ratio = Ratio(
        "store",
        "naive / atomic",
        naive.median / atomic.median,
        "(cost of the atomic safety; 4 vs 5 round trips per call)",
    )
    return Results(rows=[atomic, naive], ratios=[ratio])


def bench_rate(n: int, rounds: int) -> Results:
    rng = random.Random(20261121)
    durations = [rng.randint(0, 3600) for _ in range(n)]
    rate = Rate.from_decimal("0.01")  # 10,000 micros/min, 60/60 increments
    per_minute = rate.per_minute_micros
    price = 0.01
    cost = rate.cost_micros
    ceil = math.ceil

    def timed(body: Callable[[int], object]) -> Callable[[], float]:
        def run() -> float:
            start = time.perf_counter()
            for s in durations:
                body(s)
            return (time.perf_counter() - start) / n * 1e9

        return run

    def inline(s: int) -> int:
        # The same integer arithmetic without the Rate/Charge layers.
        return -(-(60 * -(-s // 60)) * per_minute // 60)

    variants = [
        (timed(cost), Row("rate", "Rate.cost_micros (integer micros)", "ns/cost")),
        (timed(lambda s: ceil(s / 60) * price), Row("rate", "math.ceil(s/60) * 0.01 (float)", "ns/cost")),
        (timed(inline), Row("rate", "same integer arithmetic, inline", "ns/cost")),
    ]  # fmt: skip
    for fn, _ in variants:
        fn()  # warm-up
    for r in range(rounds):
        for fn, row in variants if r % 2 == 0 else variants[::-1]:
            row.values.append(fn())
    assert all(inline(s) == cost(s) for s in durations)
    exact_sum = sum(cost(s) for s in durations)
    float_sum = sum(ceil(s / 60) * price for s in durations)
    drift = float_sum - exact_sum / 1_000_000
    exact_row, float_row, inline_row = (row for _, row in variants)
    return Results(
        rows=[exact_row, float_row, inline_row],
        ratios=[
            Ratio(
                "rate",
                "Rate.cost_micros / float",
                exact_row.median / float_row.median,
                f"(time; the float sum of {n:,} costs is off by {drift:.1e} EUR)",
            ),
            Ratio("rate", "inline integer / float", inline_row.median / float_row.median),
        ],
    )
