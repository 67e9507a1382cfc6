"""Benchmarks: the issue's targets and ratios of variants measured side by side in one run.

The machine is shared and noisy, so absolute figures drift from run to run;
ratios of variants interleaved round by round (A, B, then B, A, ...) are what
to read, and each row reports the median over its rounds. Sections:

    transport  httpx's default transport vs httpx-aiohttp vs the dispatcher's client
    dispatch   full dispatch path vs a bare loop, one campaign; three campaigns
    pacing     10 and 100 calls/s, provider latency 0 and 250 ms
    ceiling    DISPATCHER_PROVIDER_CALLS_PER_SECOND, 3 campaigns on 3 workers
    loaded     the pace at the provider with two CPU hogs beside the run: 10/s, ceiling 8/s
    many       1,000 small campaigns on 1 and 2 workers; RSS, connections; idle commands/s;
               webhook -> call settled p50/p99 with 0 and 1,000 running campaigns (100 with --quick)
    redis      commands and round trips per placed call
    contacts   1M-contact CSV: submit rate, RSS (tests/bench/contacts.py)
    failover   SIGKILL of the lease holder -> next create request (not in --quick)
    replicas   DISPATCHER_REDIS_MIN_REPLICAS 0 vs 1: creates/s, round trips (a replica on loopback)
    sentinel   SIGKILL of the Redis primary -> next create request (not in --quick)
    store      the atomic store path vs naive plain commands
    rate       exact integer money vs floats

Self-contained: starts its own redis-server (never 6379) and the sandbox
provider in a process of its own, real ``campaigns worker`` processes, cleans
up, exits 0 (also when a target is missed: the table says so).

    .venv/bin/python tests/bench/run.py [--quick] [--rounds N] [--only transport,dispatch,...]
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import re
import sys
import tempfile
import time
from pathlib import Path

# Run as a script, so the repository root (for ``tests.*``) is not on the path.
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from campaigns.testbed.redis_server import RedisServer
from tests.bench.common import Results, Target, print_results, progress
from tests.bench.dispatch import (
    SANDBOX,
    Rig,
    bench_ceiling,
    bench_dispatch,
    bench_failover,
    bench_pacing,
    bench_redis,
)
from tests.bench.loaded import bench_loaded
from tests.bench.many import bench_many
from tests.bench.micro import bench_rate, bench_store
from tests.bench.replicas import bench_replicas, bench_sentinel_failover
from tests.bench.sandbox_process import SandboxProcess
from tests.bench.settling import bench_settling
from tests.bench.transport import bench_transport

ROOT = Path(__file__).resolve().parents[2]
SECTIONS = (
    "transport",
    "dispatch",
    "pacing",
    "ceiling",
    "loaded",
    "many",
    "redis",
    "contacts",
    "failover",
    "replicas",
    "sentinel",
    "store",
    "rate",
)


def _contacts(quick: bool) -> Results:
    """``tests/bench/contacts.py``'s rows, and the issues' targets read from them."""
    if importlib.util.find_spec("tests.bench.contacts") is None:
        return Results(lines=["contacts: skipped (no tests/bench/contacts.py here)"])
    from tests.bench import contacts

    lines = contacts.run(quick)
    text = "\n".join(lines)
    rows = re.search(r"contacts CSV, (\d+) rows", text)
    submit = re.search(r"campaigns submit\s+([0-9.]+) s .*peak RSS\s+([0-9.]+) MB", text)
    varied = re.search(r"campaigns submit, varied\s+([0-9.]+) s .*peak RSS\s+([0-9.]+) MB", text)
    growth = re.search(r"worker growth\s+([-+0-9.]+) MB", text)
    results = Results(lines=["contacts (tests/bench/contacts.py):", *(f"  {row}" for row in lines)])
    if rows is None or submit is None or varied is None or growth is None:
        results.lines.append("  (the targets could not be read from these rows)")
        return results
    size = int(rows.group(1))
    results.targets += [
        Target("contacts", f"submit of {size:,} contacts", size / float(submit.group(1)), 100_000, True, "contacts/s"),
        Target("contacts", "submit: peak RSS", float(submit.group(2)), 300, False, "MB"),
        Target("contacts", f"submit of {size:,} varied contacts", size / float(varied.group(1)), 100_000, True, "contacts/s"),
        Target("contacts", "submit, varied: peak RSS", float(varied.group(2)), 300, False, "MB"),
        Target("contacts", "worker RSS growth, 10k -> all pending", float(growth.group(1)), 10, False, "MB"),
    ]  # fmt: skip
    return results


async def main_async(args: argparse.Namespace) -> None:
    quick = args.quick
    # --quick leaves out failover: on production lease defaults it takes ~30 s alone.
    only = (
        set(args.only.split(","))
        if args.only
        else set(SECTIONS) - ({"failover", "sentinel"} if quick else set())
    )
    unknown = only - set(SECTIONS)
    if unknown:
        raise SystemExit(f"--only: unknown section(s) {', '.join(sorted(unknown))}")
    results = Results()
    started = last = time.monotonic()

    def progress_timed(message: str) -> None:
        """A section's heading, with how long the previous one took."""
        nonlocal last
        now = time.monotonic()
        if now - started > 1:
            progress(f"  ({now - last:.0f} s)")
        last = now
        progress(message)

    def rounds(full: int, fast: int) -> int:
        return int(args.rounds or (fast if quick else full))

    if "transport" in only:
        progress_timed("transport: creates/s by HTTP transport, 1/10/50 in flight")
        results.add(await asyncio.to_thread(bench_transport, quick, rounds(2, 1)))
    conf = ROOT / "deploy" / "redis.conf"
    with (
        RedisServer(
            appendonly=True,
            appendfsync="everysec",
            base_config=conf if conf.is_file() else None,
            # One Redis without replicas: the deploy file's split-brain guard
            # (min-replicas-to-write 1) would refuse every write.
            extra_config={"min-replicas-to-write": "0"},
        ) as redis_server,
        SandboxProcess(**SANDBOX) as sandbox,
        tempfile.TemporaryDirectory(prefix="campaigns-bench-") as tmp,
    ):
        rig = Rig(redis_server, sandbox, Path(tmp))
        if "dispatch" in only:
            progress_timed("dispatch: full dispatch path vs bare loop, uncapped")
            results.add(await bench_dispatch(rig, quick, rounds(2, 1)))
        if "pacing" in only:
            progress_timed("pacing: 10 and 100 calls/s, latency 0 and 250 ms")
            results.add(await bench_pacing(rig, quick))
        if "ceiling" in only:
            progress_timed("ceiling: account calls/s over 3 campaigns on 3 workers")
            results.add(await bench_ceiling(rig, quick))
        if "loaded" in only:
            progress_timed("loaded: the pace at the provider with two CPU hogs")
            results.add(await bench_loaded(rig, quick))
        if "many" in only:
            progress_timed("many: small campaigns at 0.2 calls/s on 1 and 2 workers")
            results.add(await bench_many(rig, quick))
            progress_timed("many: webhook -> settled, 0 and many running campaigns")
            results.add(await bench_settling(rig, quick))
        if "redis" in only:
            progress_timed("redis: commands and round trips per placed call")
            results.add(await bench_redis(rig, quick))
        if "failover" in only:
            progress_timed("failover: SIGKILL of the lease holder, production defaults")
            results.add(await bench_failover(rig))
        if "replicas" in only:
            progress_timed("replicas: DISPATCHER_REDIS_MIN_REPLICAS 0 vs 1 through sentinels")
            results.add(await bench_replicas(rig, quick, rounds(2, 1)))
        if "sentinel" in only:
            progress_timed("sentinel: SIGKILL of the Redis primary, dispatcher defaults")
            results.add(await bench_sentinel_failover(rig))
        if "store" in only:
            calls = 500 if quick else 2000
            progress_timed(f"store: {calls} calls per variant")
            results.add(await bench_store(redis_server.url, calls, rounds(5, 3)))
    if "contacts" in only:
        progress_timed("contacts: 1M-contact CSV")
        results.add(await asyncio.to_thread(_contacts, quick))
    if "rate" in only:
        n = 20_000 if quick else 100_000
        progress_timed(f"rate: {n:,} durations")
        results.add(bench_rate(n, rounds(5, 3)))
    progress_timed("done")
    print_results(results)
    print(f"total {time.monotonic() - started:.0f} s; medians over rounds, ratios of medians")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else "")
    parser.add_argument("--quick", action="store_true", help="small sizes, ~1 minute")
    parser.add_argument("--rounds", type=int, default=0, help="rounds for every benchmark")
    parser.add_argument("--only", default="", help="comma-separated subset: " + ",".join(SECTIONS))
    args = parser.parse_args(argv)
    asyncio.run(main_async(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
