"""Benchmarks that print ratios of variants measured side by side in one run.

The machine is shared and noisy, so absolute figures drift from run to run;
the ratios are what to read. Compared variants are interleaved round by round
(A, B, then B, A, ...) and each row reports the median over the rounds.

1. store: the dispatcher's per-call store path (claim + stamp_send +
   record_accepted + settle, three Lua scripts) against a naive, non-atomic
   baseline of plain commands doing the same logical writes with no checks.
2. e2e: real ``campaigns worker`` processes against the sandbox over HTTP:
   one campaign / one worker, three campaigns / three workers, and one
   campaign / three workers, in create requests per second (sandbox ledger).
3. rate: ``Rate.cost_micros`` (exact integer micros) against the same
   computation in floats.

Self-contained: starts its own redis-server (never 6379) and sandbox, cleans
up, exits 0. ``--quick`` for a ~30 s smoke run, ``--rounds N`` to override.

    .venv/bin/python tests/bench/run.py [--quick] [--rounds N] [--only store,e2e,rate]
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# Run as a script, so the repository root (for ``tests.support``) is not on the path.
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from redis.asyncio import Redis

from campaigns.domain.lifecycle import Move
from campaigns.domain.rating import Rate
from campaigns.domain.spec import CampaignSpec, parse_spec
from campaigns.operators.control import CampaignClient
from campaigns.settings import Settings
from campaigns.store import Store
from campaigns.testbed.redis_server import RedisServer
from campaigns.testbed.sandbox import SandboxServer
from tests.support import WorkerProcess, claim_next, fast_settings, submit_spec

ROOT = Path(__file__).resolve().parents[2]
API_KEY = "sk_bench_3e9d1c7a5f2b4e6d8a0c"
WORST_CASE_MICROS = 20_000  # 120 s at 0.01/min, 60/60 increments
BODY = '{"from":"+15551230001","to":"+15551240000","max_duration":120,"variables":{}}'


# --------------------------------------------------------------------------- results


@dataclass
class Row:
    bench: str
    variant: str
    unit: str
    values: list[float] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def median(self) -> float:
        return statistics.median(self.values) if self.values else math.nan


@dataclass
class Ratio:
    bench: str
    label: str
    value: float
    note: str = ""


def _fmt(value: float) -> str:
    if math.isnan(value):
        return "-"
    if value >= 100:
        return f"{value:,.0f}"
    if value >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


def print_table(rows: list[Row], ratios: list[Ratio]) -> None:
    head = f"{'benchmark':<8} {'variant':<44} {'median':>10} {'unit':<9} rounds"
    print()
    print(head)
    print("-" * (len(head) + 30))
    for bench in dict.fromkeys(r.bench for r in rows):
        for row in (r for r in rows if r.bench == bench):
            each = " ".join(_fmt(v) for v in row.values)
            print(f"{bench:<8} {row.variant:<44} {_fmt(row.median):>10} {row.unit:<9} {each}")
            for note in row.notes:
                print(f"{'':<8}   {note}")
        for ratio in (r for r in ratios if r.bench == bench):
            print(f"{bench:<8} {'ratio ' + ratio.label:<44} {ratio.value:>9.2f}x {ratio.note}")
        print()


def progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- specs


def spec_for(campaign_id: str, contacts: int, **pacing: float) -> CampaignSpec:
    """A valid campaign with a budget that never runs out (shape of tests' spec_dict)."""
    return parse_spec(
        {
            "campaign_id": campaign_id,
            "name": "bench",
            "caller_id": "+15551230001",
            "currency": "EUR",
            "budget": "100000.00",
            "rate": {"per_minute": "0.01", "increments": "60/60", "connect_fee": "0"},
            "max_call_seconds": 120,
            "pacing": {"calls_per_second": 50, "batch_size": 10, "max_in_flight": 100_000} | pacing,
            "contacts": [
                {"to": f"+1555124{i:04d}", "ref": f"cust_{i}", "variables": {}}
                for i in range(contacts)
            ],
        }
    )


# --------------------------------------------------------------------------- 1. store


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


async def bench_store(url: str, calls: int, rounds: int) -> tuple[list[Row], list[Ratio]]:
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
    return [atomic, naive], [ratio]


# --------------------------------------------------------------------------- 2. e2e


def worker_settings(redis_url: str, sandbox_url: str, queue: str) -> Settings:
    """Like tests/conftest.py's ``settings`` fixture, pointed at the bench's servers."""
    return fast_settings(redis_url, sandbox_url, API_KEY, queue)


async def wait_until(
    check: Callable[[], Awaitable[bool] | bool], timeout: float, what: str
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = check()
        if isinstance(result, Awaitable):
            result = await result
        if result:
            return
        await asyncio.sleep(0.1)
    raise TimeoutError(f"timed out after {timeout:g}s waiting for {what}")


def process_cpu_seconds(pid: int) -> float:
    """utime + stime of a live process, from /proc (0 where /proc is unavailable)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def machine_cpu() -> tuple[float, float]:
    """(busy, total) jiffies of the whole machine, from /proc/stat."""
    try:
        values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    except (OSError, ValueError):
        return 0.0, 0.0
    idle = values[3] + (values[4] if len(values) > 4 else 0)
    return float(sum(values) - idle), float(sum(values))


@dataclass
class CpuWindow:
    """CPU used by the bench's processes and the whole machine over one run."""

    pids: dict[str, int]
    start: dict[str, float] = field(default_factory=dict)
    machine: tuple[float, float] = (0.0, 0.0)

    def open(self) -> None:
        self.start = {name: process_cpu_seconds(pid) for name, pid in self.pids.items()}
        self.machine = machine_cpu()

    def close(self) -> tuple[dict[str, float], float]:
        used = {n: process_cpu_seconds(p) - self.start[n] for n, p in self.pids.items()}
        busy, total = machine_cpu()
        d_total = total - self.machine[1]
        share = (busy - self.machine[0]) / d_total if d_total > 0 else math.nan
        return used, share


def ledger_creates(sandbox: SandboxServer, campaign_ids: set[str]) -> list[tuple[float, str, int]]:
    """(received_at, idempotency key, status) of answered creates for these campaigns."""
    state = sandbox.state
    with state.lock:
        return [
            (e.received_at, e.idempotency_key or "", e.status)
            for e in state.ledger
            if e.status is not None and (e.variables or {}).get("campaign_id") in campaign_ids
        ]


@dataclass(frozen=True)
class E2eResult:
    creates_per_second: float
    cpu_ms_per_create: dict[str, float]
    machine_busy: float


async def e2e_run(
    redis_server: RedisServer,
    sandbox: SandboxServer,
    logs: Path,
    tag: str,
    campaigns: int,
    workers: int,
    contacts: int,
) -> E2eResult:
    """Create requests per second, first to last, across ``campaigns`` campaigns."""
    settings = worker_settings(redis_server.url, sandbox.url, f"bench:{tag}")
    procs = [WorkerProcess(settings, logs / f"{tag}-w{i}.log") for i in range(workers)]
    ids = {f"{tag}-c{i}" for i in range(campaigns)}
    expected = campaigns * contacts
    pids = {f"worker{i}": p.proc.pid for i, p in enumerate(procs)}
    pids["sandbox"] = os.getpid()  # the sandbox runs in a thread of this process
    if redis_server.pid is not None:
        pids["redis"] = redis_server.pid
    cpu = CpuWindow(pids)
    try:
        await wait_until(
            lambda: all("worker_started" in p.log_text() for p in procs), 60, "workers to start"
        )
        specs = [
            spec_for(cid, contacts, calls_per_second=1000, batch_size=50, max_in_flight=100_000)
            for cid in sorted(ids)
        ]
        async with await CampaignClient.connect(settings) as client:
            cpu.open()
            for spec in specs:
                await client.submit(spec)

            def done() -> bool:
                return (
                    len(sandbox.state.ledger) >= expected
                    and len(ledger_creates(sandbox, ids)) >= expected
                )

            await wait_until(done, 180, f"{expected} create requests ({tag})")
            used, busy = cpu.close()
    finally:
        await asyncio.gather(*(asyncio.to_thread(p.terminate) for p in procs))
    creates = ledger_creates(sandbox, ids)
    keys = {key for _, key, status in creates if status == 201}
    if len(keys) != expected or len(creates) != expected:
        progress(
            f"  warning {tag}: {len(creates)} creates, {len(keys)} distinct accepted keys, "
            f"expected {expected}"
        )
    stamps = sorted(at for at, _, _ in creates)
    rate = (len(stamps) - 1) / (stamps[-1] - stamps[0])
    redis_server.flushall()
    sandbox.reset()
    per_create = {
        "workers": sum(v for k, v in used.items() if k.startswith("worker")),
        "sandbox": used.get("sandbox", 0.0),
        "redis": used.get("redis", 0.0),
    }
    return E2eResult(rate, {k: v * 1000 / expected for k, v in per_create.items()}, busy)


async def bench_e2e(
    redis_server: RedisServer, contacts: int, rounds: int
) -> tuple[list[Row], list[Ratio]]:
    scenarios = [
        ("a", 1, 1, Row("e2e", "(a) 1 campaign, 1 worker", "creates/s")),
        ("b", 3, 3, Row("e2e", "(b) 3 campaigns, 3 workers", "creates/s")),
        ("c", 1, 3, Row("e2e", "(c) 1 campaign, 3 workers", "creates/s")),
    ]
    cpu_by_scenario: dict[str, list[E2eResult]] = {name: [] for name, *_ in scenarios}
    with (
        SandboxServer() as sandbox,
        tempfile.TemporaryDirectory(prefix="campaigns-bench-") as tmp,
    ):
        sandbox.configure(api_key=API_KEY, call_duration_real_seconds=0.05, latency_seconds=0)
        for r in range(rounds):
            order = scenarios if r % 2 == 0 else scenarios[::-1]
            for name, n_campaigns, n_workers, row in order:
                result = await e2e_run(
                    redis_server, sandbox, Path(tmp), f"e2e-r{r}-{name}", n_campaigns,
                    n_workers, contacts,
                )  # fmt: skip
                row.values.append(result.creates_per_second)
                cpu_by_scenario[name].append(result)
                progress(
                    f"  e2e round {r + 1}/{rounds} ({name}): "
                    f"{result.creates_per_second:,.0f} creates/s, machine busy "
                    f"{result.machine_busy:.0%}"
                )
    for name, _, _, row in scenarios:
        results = cpu_by_scenario[name]
        parts = {
            k: statistics.median(r.cpu_ms_per_create[k] for r in results)
            for k in ("workers", "sandbox", "redis")
        }
        busy = statistics.median(r.machine_busy for r in results)
        row.notes.append(
            "CPU ms per create: "
            + ", ".join(f"{k} {v:.1f}" for k, v in parts.items())
            + f"; machine busy {busy:.0%} of {os.cpu_count()} cores"
        )
    a, b, c = (s[3] for s in scenarios)
    ratios = [
        Ratio("e2e", "b / a", b.median / a.median, "(scaling across campaigns)"),
        Ratio("e2e", "c / a", c.median / a.median, "(~1 expected: one lease holder per campaign)"),
    ]
    return [a, b, c], ratios


# --------------------------------------------------------------------------- 3. rate


def bench_rate(n: int, rounds: int) -> tuple[list[Row], list[Ratio]]:
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
    return [exact_row, float_row, inline_row], [
        Ratio(
            "rate",
            "Rate.cost_micros / float",
            exact_row.median / float_row.median,
            f"(time; the float sum of {n:,} costs is off by {drift:.1e} EUR)",
        ),
        Ratio("rate", "inline integer / float", inline_row.median / float_row.median),
    ]


# --------------------------------------------------------------------------- main


async def main_async(args: argparse.Namespace) -> None:
    quick = args.quick
    only = set(args.only.split(",")) if args.only else {"store", "e2e", "rate"}
    rows: list[Row] = []
    ratios: list[Ratio] = []
    started = time.monotonic()
    conf = ROOT / "deploy" / "redis.conf"
    with RedisServer(
        appendonly=True, appendfsync="everysec", base_config=conf if conf.is_file() else None
    ) as redis_server:
        if "store" in only:
            calls = 500 if quick else 2000
            rounds = args.rounds or (3 if quick else 5)
            progress(f"1. store: {calls} calls per variant, {rounds} rounds")
            got = await bench_store(redis_server.url, calls, rounds)
            rows += got[0]
            ratios += got[1]
        if "e2e" in only:
            contacts = 100 if quick else 300
            rounds = args.rounds or (1 if quick else 2)
            progress(f"2. e2e: {contacts} contacts per campaign, {rounds} rounds")
            got = await bench_e2e(redis_server, contacts, rounds)
            rows += got[0]
            ratios += got[1]
    if "rate" in only:
        n = 20_000 if quick else 100_000
        rounds = args.rounds or (3 if quick else 5)
        progress(f"3. rate: {n:,} durations, {rounds} rounds")
        got = bench_rate(n, rounds)
        rows += got[0]
        ratios += got[1]
    print_table(rows, ratios)
    print(f"total {time.monotonic() - started:.0f} s; medians over rounds, ratios of medians")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else "")
    parser.add_argument("--quick", action="store_true", help="small sizes, ~30 s")
    parser.add_argument("--rounds", type=int, default=0, help="rounds for every benchmark")
    parser.add_argument("--only", default="", help="comma-separated subset: store,e2e,rate")
    args = parser.parse_args(argv)
    asyncio.run(main_async(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
