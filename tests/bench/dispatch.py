"""Benchmarks with real ``campaigns worker`` processes against the sandbox process.

- ``dispatch``: one uncapped campaign on one worker against a bare loop of
  create requests from this process, with the dispatcher's own provider client
  and with httpx's default transport, same sandbox, same number in flight; and
  three campaigns on three workers;
- ``pacing``: delivered / configured at 10 and 100 calls/s, provider latency 0
  and 250 ms, and the busiest 1 s window;
- ``ceiling``: ``DISPATCHER_PROVIDER_CALLS_PER_SECOND`` with three campaigns on
  three workers;
- ``redis``: commands and round trips per placed call;
- ``failover``: SIGKILL of the lease holder to the next create request.

Every rate comes from the sandbox's ledger (the time each create request
arrived), never from the workers' own account.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import math
import os
import statistics
import time
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil
from redis.asyncio import Redis

from campaigns.operators.control import CampaignClient
from campaigns.settings import Settings
from campaigns.store import scripts
from campaigns.store.scripts import load_script
from campaigns.testbed.redis_server import RedisServer
from tests.bench.common import (
    API_KEY,
    CONCURRENT_PACING,
    CpuWindow,
    Ratio,
    Results,
    Row,
    Target,
    progress,
    spec_for,
    wait_until,
)
from tests.bench.sandbox_process import SandboxProcess
from tests.bench.transport import run_clients
from tests.support import WorkerProcess, busiest_window, fast_settings

__all__ = [
    "Rig",
    "bench_ceiling",
    "bench_dispatch",
    "bench_failover",
    "bench_pacing",
    "bench_redis",
]

UNCAPPED = {"calls_per_second": 1000, "batch_size": 50, "max_in_flight": 100_000}
"""Pacing out of the way: the highest pace a spec accepts, no live-call limit."""
IN_FLIGHT = 10
"""Create requests open at once in the dispatch comparison (both sides)."""
SANDBOX = {"api_key": API_KEY, "call_duration_real_seconds": 0.05}


@dataclass
class Rig:
    """The bench's Redis and sandbox processes, and a folder for worker logs."""

    redis: RedisServer
    sandbox: SandboxProcess
    logs: Path

    def settings(self, tag: str, *, defaults: bool = False, **overrides: Any) -> Settings:
        """The tests' fast settings (or the production defaults), on a queue of its own."""
        queue = f"bench:{tag}"
        if defaults:
            return Settings(
                redis_url=self.redis.url,
                provider_url=self.sandbox.url,
                provider_api_key=API_KEY,  # type: ignore[arg-type]
                queue_name=queue,
                _env_file=None,  # type: ignore[call-arg]
                **overrides,
            )
        base = fast_settings(self.redis.url, self.sandbox.url, API_KEY, queue)
        return base.model_copy(update=overrides)

    @contextlib.asynccontextmanager
    async def workers(
        self, tag: str, count: int, settings: Settings, **env: str
    ) -> AsyncIterator[list[WorkerProcess]]:
        """``count`` started workers (each logged ``worker_started``), stopped on exit."""
        procs = [
            WorkerProcess(settings, self.logs / f"{tag}-w{i}.log", **env) for i in range(count)
        ]
        try:
            await wait_until(
                lambda: all("worker_started" in p.log_text() for p in procs),
                60,
                f"{count} workers to start ({tag})",
            )
            yield procs
        finally:
            # A short grace: a worker still settling (polls against a slow
            # sandbox) would otherwise hold the run up to 15 s; the bench
            # checks nothing after this.
            await asyncio.gather(*(asyncio.to_thread(p.terminate, 2) for p in procs))

    def clean(self) -> None:
        self.redis.flushall()
        self.sandbox.reset()
        self.sandbox.configure(**SANDBOX)


def _rate(times: list[float]) -> float:
    """Creates per second, first to last (worker start-up is not counted)."""
    if len(times) < 2 or times[-1] <= times[0]:
        return math.nan
    return (len(times) - 1) / (times[-1] - times[0])


async def _all_created(sandbox: SandboxProcess, ids: set[str], expected: int) -> bool:
    return len(await asyncio.to_thread(sandbox.create_times, ids)) >= expected


async def _run_campaigns(
    rig: Rig,
    tag: str,
    *,
    workers: int,
    settings: Settings | None = None,
    **run: Any,
) -> _Run:
    """Start ``workers`` workers, run campaigns on them (see _dispatch), stop them."""
    settings = settings or rig.settings(tag)
    env = {k: run.pop(k) for k in list(run) if k.startswith("DISPATCHER_")}
    async with (
        rig.workers(tag, workers, settings, **env) as procs,
        await CampaignClient.connect(settings) as client,
    ):
        result = await _dispatch(rig, client, procs, tag, **run)
    rig.clean()
    return result


async def _dispatch(
    rig: Rig,
    client: CampaignClient,
    procs: list[WorkerProcess],
    tag: str,
    *,
    campaigns: int,
    contacts: int,
    pacing: dict[str, Any],
    timeout: float = 180,
    cut_off: float | None = None,
) -> _Run:
    """Submit campaigns to running workers; wait until every contact was sent.

    ``cut_off``: stop waiting that many seconds after submitting and measure
    what was sent by then (a dispatcher slower than its pace shows as a low rate).
    """
    ids = {f"{tag}-c{i}" for i in range(campaigns)}
    specs = [spec_for(cid, contacts, **pacing) for cid in sorted(ids)]
    pids = {f"worker{i}": p.proc.pid for i, p in enumerate(procs)}
    pids["sandbox"] = rig.sandbox.pid
    if rig.redis.pid is not None:
        pids["redis"] = rig.redis.pid
    cpu = CpuWindow(pids)
    cpu.open()
    for spec in specs:
        await client.submit(spec)
    try:
        # Polled in Redis: fetching the sandbox's ledger would load the sandbox.
        await wait_until(
            lambda: _recorded(client, ids, contacts),
            cut_off or timeout,
            f"{campaigns * contacts} create requests answered and recorded ({tag})",
            every=0.25,
        )
    except TimeoutError:
        if cut_off is None:
            raise
        progress(f"  {tag}: not all sent after {cut_off:g} s; measuring what was")
    used, busy, wall = cpu.close()
    claims = [a.created_at_ms / 1000 for c in ids async for a in client.store.attempts(c)]
    times = rig.sandbox.create_times(ids)
    cpu_ms = {
        "workers": sum(v for k, v in used.items() if k.startswith("worker")),
        "sandbox": used.get("sandbox", 0.0),
        "redis": used.get("redis", 0.0),
    }
    per_create = {k: v * 1000 / max(1, len(times)) for k, v in cpu_ms.items()}
    share = cpu_ms["workers"] / len(procs) / wall
    return _Run(times, sorted(claims), per_create, busy, share)


@dataclass
class _Run:
    times: list[float]
    """When each create request arrived at the sandbox (epoch seconds)."""
    claims: list[float]
    """When each attempt was claimed (the worker's clock, ms precision)."""
    cpu_ms: dict[str, float]
    """CPU milliseconds per create request: workers, sandbox, redis."""
    busy: float
    """The whole machine's busy share over the run."""
    worker_share: float
    """CPU seconds per wall second of each worker process (1.0: one core, flat out)."""

    @property
    def rate(self) -> float:
        return _rate(self.times)

    def windows(self) -> str:
        return (
            f"busiest 1 s window: {busiest_window(self.times, 1.0)} creates arriving, "
            f"{busiest_window(self.claims, 1.0)} claimed"
        )


# --------------------------------------------------------------------------- dispatch


async def bench_dispatch(rig: Rig, quick: bool, rounds: int) -> Results:
    """One uncapped campaign through a real worker against a bare loop, side by side."""
    contacts = 500 if quick else 3000
    in_flight = IN_FLIGHT if CONCURRENT_PACING else 1
    pacing = UNCAPPED | {"max_concurrent_requests": in_flight}
    # Polls deferred past the window: the window measures claim -> send -> record.
    polls_later = {"DISPATCHER_POLL_INTERVAL_SECONDS": "60"}
    full = Row("dispatch", f"(a) 1 campaign, 1 worker, {in_flight} in flight", "creates/s")
    bare = Row("dispatch", f"bare loop, dispatcher's client, {in_flight} in flight", "creates/s")
    plain = Row("dispatch", f"bare loop, httpx default, {in_flight} in flight", "creates/s")
    three = Row("dispatch", f"(b) 3 campaigns, 3 workers, {in_flight} in flight", "creates/s")
    cpu_rows: dict[str, list[_Run]] = {"a": [], "b": []}
    client_ms: dict[str, list[float]] = {"bare": [], "plain": []}
    for r in range(rounds):
        steps = ["a", "bare", "plain", "b"]
        for step in steps if r % 2 == 0 else steps[::-1]:
            if step in ("bare", "plain"):
                variant = "dispatcher" if step == "bare" else "httpx"
                row = bare if step == "bare" else plain
                got = await asyncio.to_thread(
                    run_clients, variant, rig.sandbox.url, API_KEY, contacts, in_flight, f"d{r}"
                )
                row.values.append(got[0].rate)
                client_ms[step].append(got[0].cpu_ms)
                rig.clean()
                continue
            n_campaigns = 1 if step == "a" else 3
            run = await _run_campaigns(
                rig,
                f"d{r}{step}",
                campaigns=n_campaigns,
                workers=n_campaigns,
                contacts=contacts,
                pacing=pacing,
                **polls_later,
            )
            (full if step == "a" else three).values.append(run.rate)
            cpu_rows[step].append(run)
        progress(
            f"  dispatch round {r + 1}/{rounds}: (a) {full.values[-1]:,.0f}/s, "
            f"bare {bare.values[-1]:,.0f}/s, httpx {plain.values[-1]:,.0f}/s, "
            f"(b) {three.values[-1]:,.0f}/s"
        )
    for key, row in (("a", full), ("b", three)):
        per = {
            k: statistics.median(run.cpu_ms[k] for run in cpu_rows[key])
            for k in ("workers", "sandbox", "redis")
        }
        busy = statistics.median(run.busy for run in cpu_rows[key])
        worker_busy = statistics.median(run.worker_share for run in cpu_rows[key])
        row.notes.append(
            "CPU ms per create: "
            + ", ".join(f"{k} {v:.2f}" for k, v in per.items())
            + f"; each worker busy {worker_busy:.0%} of a core"
            + f"; machine busy {busy:.0%} of {os.cpu_count()} cores"
        )
    for key, row in (("bare", bare), ("plain", plain)):
        row.notes.append(f"client CPU ms per create: {statistics.median(client_ms[key]):.2f}")
    ratio = full.median / bare.median
    results = Results(
        rows=[full, bare, plain, three],
        ratios=[
            Ratio("dispatch", "(a) / bare loop (dispatcher's client)", ratio),
            Ratio("dispatch", "(a) / bare loop (httpx default)", full.median / plain.median),
            Ratio("dispatch", "(b) / (a)", three.median / full.median, "(three campaigns)"),
        ],
        targets=[
            # The wording: against a bare httpx loop (httpx's default transport).
            Target(
                "dispatch",
                "full dispatch / bare httpx loop (default transport)",
                full.median / plain.median,
                0.85,
                True,
            ),
            # The dispatch path's own overhead: the same client on both sides.
            Target("dispatch", "full dispatch / bare loop with the same client", ratio, 0.85, True),
        ],
    )
    cap = float(UNCAPPED["calls_per_second"])
    results.lines.append(
        f"dispatch: a campaign's pace is at most {cap:,.0f} calls/s (the spec's maximum), "
        f"which alone caps (a) / bare loop with the same client at {cap / bare.median:.2f}"
    )
    if not CONCURRENT_PACING:
        results.lines.append(
            "dispatch: this code base sends a campaign's creates one at a time; "
            "compared at 1 in flight"
        )
    return results


# --------------------------------------------------------------------------- pacing


async def bench_pacing(rig: Rig, quick: bool) -> Results:
    """Delivered / configured pace, and the busiest 1 s window, per rate and latency.

    One worker runs the four campaigns one after the other (the sandbox's
    latency changes between them).
    """
    seconds = 2 if quick else 10
    results = Results()
    settings = rig.settings("pacing")
    async with (
        rig.workers("pacing", 1, settings) as procs,
        await CampaignClient.connect(settings) as client,
    ):
        for rate in (10, 100):
            for latency in (0.0, 0.25):
                need = max(4, math.ceil(2 * rate * latency))
                pacing = {
                    "calls_per_second": rate,
                    "batch_size": 10,
                    "max_in_flight": 100_000,
                    "max_concurrent_requests": need,
                }
                rig.sandbox.configure(latency_seconds=latency)
                label = f"{rate} calls/s, latency {int(latency * 1000)} ms"
                run = await _dispatch(
                    rig,
                    client,
                    procs,
                    f"p{rate}-{int(latency * 1000)}",
                    campaigns=1,
                    contacts=rate * seconds + 1,
                    pacing=pacing,
                    cut_off=seconds * 1.5 + 10,
                )
                delivered, window = run.rate, busiest_window(run.times, 1.0)
                row = Row("pacing", label + f", {need} in flight", "creates/s", [delivered])
                row.notes.append(run.windows())
                results.rows.append(row)
                results.targets += [
                    Target("pacing", f"{label}: delivered / configured", delivered / rate, 0.98, True),
                    Target("pacing", f"{label}: busiest 1 s window", window, rate, False, "creates"),
                ]  # fmt: skip
                progress(f"  pacing {label}: {delivered:.2f}/s, busiest window {window}")
    rig.sandbox.configure(latency_seconds=0)
    rig.clean()
    return results


# --------------------------------------------------------------------------- ceiling


async def bench_ceiling(rig: Rig, quick: bool) -> Results:
    """DISPATCHER_PROVIDER_CALLS_PER_SECOND over three uncapped campaigns on three workers."""
    if "provider_calls_per_second" not in Settings.model_fields:
        return Results(lines=["ceiling: skipped (no DISPATCHER_PROVIDER_CALLS_PER_SECOND here)"])
    ceiling, seconds = 60, (3 if quick else 10)
    per_campaign = ceiling * seconds // 3 + 1
    pacing = UNCAPPED | {"max_concurrent_requests": IN_FLIGHT}
    settings = rig.settings("ceiling", provider_calls_per_second=ceiling)
    run = await _run_campaigns(
        rig,
        "ceiling",
        campaigns=3,
        workers=3,
        contacts=per_campaign,
        pacing=pacing,
        settings=settings,
        cut_off=seconds * 1.5 + 10,
    )
    delivered, window = run.rate, busiest_window(run.times, 1.0)
    row = Row("ceiling", f"3 campaigns, 3 workers, ceiling {ceiling}/s", "creates/s", [delivered])
    row.notes.append(f"{run.windows()}; {len(run.times)} creates")
    progress(f"  ceiling {ceiling}/s: {delivered:.2f}/s, busiest window {window}")
    return Results(
        rows=[row],
        targets=[
            Target("ceiling", f"account ceiling {ceiling}/s: used", delivered / ceiling, 0.95, True),
            Target("ceiling", f"account ceiling {ceiling}/s: busiest 1 s window", window, ceiling, False, "creates"),
        ],
    )  # fmt: skip


# --------------------------------------------------------------------------- redis


def _script_names() -> dict[str, str]:
    """SHA1 of each store script as loaded (what EVALSHA names) -> script name."""
    names = {}
    for path in sorted((Path(scripts.__file__).parent / "lua").glob("[!_]*.lua")):
        source = load_script(path.stem).source
        names[hashlib.sha1(source.encode()).hexdigest()] = path.stem
    return names


def _own_ports() -> set[str]:
    """Local TCP ports of this process: its commands are the bench's, not the workers'."""
    return {str(c.laddr.port) for c in psutil.Process().net_connections("tcp") if c.laddr}


@dataclass
class _Tally:
    """Commands Redis ran, from MONITOR: sent by clients (scripts by name), run inside scripts."""

    sent: Counter[str] = field(default_factory=Counter)
    inside: Counter[str] = field(default_factory=Counter)
    by_port: Counter[str] = field(default_factory=Counter)

    def copy(self) -> _Tally:
        return _Tally(Counter(self.sent), Counter(self.inside), Counter(self.by_port))

    def since(self, earlier: _Tally, ours: set[str]) -> _Tally:
        """What was counted after ``earlier``, less the commands on ``ours`` ports."""
        own = sum(n for port, n in (self.by_port - earlier.by_port).items() if port in ours)
        mine = Counter({"(bench)": own})
        return _Tally(self.sent - earlier.sent - mine, self.inside - earlier.inside, mine)


async def _watch(watcher: Redis, tally: _Tally, ready: asyncio.Event) -> None:
    names = _script_names()
    async with watcher.monitor() as monitor:
        ready.set()
        async for event in monitor.listen():
            words = str(event["command"]).split()
            if not words:
                continue
            name = words[0].lower()
            if event["client_type"] == "lua":
                tally.inside[name] += 1
                continue
            if name == "evalsha" and len(words) > 1:
                name = f"evalsha {names.get(words[1].lower(), 'another script')}"
            tally.sent[name] += 1
            tally.by_port[str(event["client_port"])] += 1


async def _reads(redis: Redis) -> int:
    stats: dict[str, Any] = await redis.info("stats")
    return int(stats["total_reads_processed"])


def _per_call(
    counter: Counter[str], idle: Counter[str], seconds: float, calls: int
) -> dict[str, float]:
    per = {k: (counter[k] - idle[k] * seconds) / calls for k in counter | idle}
    return {k: v for k, v in sorted(per.items(), key=lambda kv: -kv[1]) if v >= 0.005}


async def bench_redis(rig: Rig, quick: bool) -> Results:
    """Commands and round trips per placed call: dispatch phase, then settlement.

    Counted by the server. A MONITOR connection sees every command: those sent
    by the worker (``EVALSHA`` named by script) and those run inside scripts;
    the bench's own commands (found by this process's ports) are left out.
    Round trips are ``INFO stats`` ``total_reads_processed`` deltas (one read
    per request or pipeline), less the bench's own. The idle worker's rate (arq
    polling its queue, crons), measured first, is subtracted from each phase.
    """
    contacts = 200 if quick else 1000
    in_flight = IN_FLIGHT if CONCURRENT_PACING else 1
    pacing = UNCAPPED | {"max_concurrent_requests": in_flight}
    cid = "redis-c0"
    settings = rig.settings("redis", poll_interval_seconds=3.0)  # polls after the dispatch
    info = Redis.from_url(rig.redis.url, single_connection_client=True)
    watcher = Redis.from_url(rig.redis.url)
    tally, ready = _Tally(), asyncio.Event()
    monitor = asyncio.create_task(_watch(watcher, tally, ready))
    try:
        await asyncio.wait_for(ready.wait(), 10)
        async with (
            rig.workers("redis", 1, settings),
            await CampaignClient.connect(settings) as client,
        ):
            marks: list[tuple[float, _Tally, int]] = []

            async def mark() -> None:
                await asyncio.sleep(0.1)  # MONITOR lags the command a little
                marks.append((time.monotonic(), tally.copy(), await _reads(info)))

            await mark()
            await asyncio.sleep(3.0)
            await mark()
            await client.submit(spec_for(cid, contacts, **pacing))
            await wait_until(lambda: _recorded(client, {cid}, contacts), 120, "all recorded")
            await mark()
            await wait_until(
                lambda: _recorded(client, {cid}, contacts, settled=True), 120, "all settled"
            )
            await mark()
            ours = _own_ports()
    finally:
        monitor.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await monitor
        await info.aclose()
        await watcher.aclose()
        rig.clean()
    (t0, m0, r0), (t1, m1, r1), (t2, m2, r2), (t3, m3, r3) = marks
    idle_seconds = t1 - t0
    idle = m1.since(m0, ours)
    idle_sent = Counter({k: v / idle_seconds for k, v in idle.sent.items()})
    idle_inside = Counter({k: v / idle_seconds for k, v in idle.inside.items()})
    idle_reads = (r1 - r0 - idle.by_port["(bench)"]) / idle_seconds
    rows = []
    phases = {
        "dispatch: claim, send, record": (m1, m2, r2 - r1, t2 - t1),
        "settlement: poll, settle": (m2, m3, r3 - r2, t3 - t2),
    }
    for phase, (before, after, reads, seconds) in phases.items():
        got = after.since(before, ours)
        sent = _per_call(got.sent, idle_sent, seconds, contacts)
        inside = _per_call(got.inside, idle_inside, seconds, contacts)
        trips = (reads - got.by_port["(bench)"] - idle_reads * seconds) / contacts
        row = Row("redis", f"{phase}: round trips per placed call", "trips", [trips])
        row.notes += [
            f"commands sent per call {sum(sent.values()):.2f}: "
            + ", ".join(f"{k} {v:.2f}" for k, v in sent.items()),
            f"run inside those scripts per call {sum(inside.values()):.1f}: "
            + ", ".join(f"{k} {v:.1f}" for k, v in list(inside.items())[:8]),
            f"phase {seconds:.1f} s; idle worker's {idle_reads:.1f} reads/s subtracted",
        ]
        rows.append(row)
    idle_line = ", ".join(f"{k} {v:.1f}" for k, v in idle_sent.most_common(8))
    return Results(
        rows=rows,
        lines=[f"redis: idle worker {idle_reads:.1f} round trips/s; commands/s: {idle_line}"],
    )


async def _recorded(
    client: CampaignClient, ids: set[str], n: int, *, settled: bool = False
) -> bool:
    """Every campaign has ``n`` answers recorded (accepted or rejected), or settled."""
    for cid in ids:
        record = await client.store.campaign(cid)
        if record is None:
            return False
        done = record.settled if settled else record.accepted + record.rejected
        if done < n:
            return False
    return True


# --------------------------------------------------------------------------- failover


def _holder_pid(token: str | None) -> int | None:
    """The pid in a lease token (``host:pid:hex:seq:uuid``)."""
    if not token:
        return None
    parts = token.split(":")
    return int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else None


async def bench_failover(rig: Rig) -> Results:
    """SIGKILL the worker holding a campaign's lease; time to its next create request.

    Production defaults (``DISPATCHER_LEASE_SECONDS`` 10, sweep every 5 s),
    two workers, a campaign paced at 5 calls/s so it is mid-run when killed.
    """
    settings = rig.settings("failover", defaults=True)
    cid = "failover-c0"
    spec = spec_for(cid, 2000, calls_per_second=5, batch_size=10, max_in_flight=100_000)
    async with (
        rig.workers("failover", 2, settings) as procs,
        await CampaignClient.connect(settings) as client,
    ):
        await client.submit(spec)
        await wait_until(lambda: _all_created(rig.sandbox, {cid}, 10), 60, "the campaign to start")
        holders: list[int] = []

        async def held() -> bool:
            pid = _holder_pid(await client.store.lease_holder(cid))
            holders[:] = [pid] if pid is not None else []
            return bool(holders)

        await wait_until(held, 30, "a worker to hold the campaign's lease", every=0.02)
        holder = holders[0]
        victim = next(p for p in procs if p.proc.pid == holder)
        killed_at = time.time()
        victim.kill()  # SIGKILL to its process group

        def resumed() -> bool:
            return any(t > killed_at for t in rig.sandbox.create_times({cid}))

        await wait_until(resumed, 120, "a create request after the SIGKILL", every=0.1)
        after = min(t for t in rig.sandbox.create_times({cid}) if t > killed_at)
    rig.clean()
    gap = after - killed_at
    progress(f"  failover: next create {gap:.1f} s after SIGKILL")
    row = Row("failover", "SIGKILL of the lease holder -> next create", "seconds", [gap])
    row.notes.append("defaults: DISPATCHER_LEASE_SECONDS 10, DISPATCHER_SWEEP_INTERVAL_SECONDS 5")
    return Results(
        rows=[row],
        targets=[Target("failover", "SIGKILL -> next create request", gap, 30, False, "s")],
    )
