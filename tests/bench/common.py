"""What every benchmark section shares: result rows, targets, waiting, CPU, specs."""

from __future__ import annotations

import asyncio
import math
import os
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from campaigns.domain.spec import CampaignSpec, Pacing, parse_spec

__all__ = [
    "API_KEY",
    "CONCURRENT_PACING",
    "CpuWindow",
    "Ratio",
    "Results",
    "Row",
    "Target",
    "fmt",
    "print_results",
    "progress",
    "spec_for",
    "wait_until",
]

API_KEY = "sk_bench_3e9d1c7a5f2b4e6d8a0c"
CONCURRENT_PACING = "max_concurrent_requests" in Pacing.model_fields
"""Whether this code base overlaps create requests (``pacing.max_concurrent_requests``)."""


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


@dataclass
class Target:
    """One of the issue's targets: ``value`` against ``limit`` (``at_least`` or at most)."""

    bench: str
    label: str
    value: float
    limit: float
    at_least: bool
    unit: str = ""

    @property
    def met(self) -> bool:
        if math.isnan(self.value):
            return False
        return self.value >= self.limit if self.at_least else self.value <= self.limit


@dataclass
class Results:
    rows: list[Row] = field(default_factory=list)
    ratios: list[Ratio] = field(default_factory=list)
    targets: list[Target] = field(default_factory=list)
    lines: list[str] = field(default_factory=list)
    """Free-form lines printed after the table (breakdowns, skipped sections)."""

    def add(self, other: Results) -> None:
        self.rows += other.rows
        self.ratios += other.ratios
        self.targets += other.targets
        self.lines += other.lines


def fmt(value: float) -> str:
    if math.isnan(value):
        return "-"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


def print_results(results: Results) -> None:
    head = f"{'benchmark':<10} {'variant':<52} {'median':>10} {'unit':<10} rounds"
    print()
    print(head)
    print("-" * (len(head) + 30))
    rows, ratios = results.rows, results.ratios
    for bench in dict.fromkeys([r.bench for r in rows] + [r.bench for r in ratios]):
        for row in (r for r in rows if r.bench == bench):
            each = " ".join(fmt(v) for v in row.values)
            print(f"{bench:<10} {row.variant:<52} {fmt(row.median):>10} {row.unit:<10} {each}")
            for note in row.notes:
                print(f"{'':<10}   {note}")
        for ratio in (r for r in ratios if r.bench == bench):
            print(f"{bench:<10} {'ratio ' + ratio.label:<52} {ratio.value:>9.2f}x {ratio.note}")
        print()
    if results.targets:
        print("targets")
        for t in results.targets:
            sign = ">=" if t.at_least else "<="
            verdict = "met" if t.met else "MISSED"
            print(
                f"  {verdict:<7} {t.bench:<10} {t.label:<58} {fmt(t.value):>9} "
                f"{sign} {fmt(t.limit)} {t.unit}"
            )
        print()
    for line in results.lines:
        print(line)


def progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


async def wait_until(
    check: Callable[[], Awaitable[bool] | bool], timeout: float, what: str, every: float = 0.1
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = check()
        if isinstance(result, Awaitable):
            result = await result
        if result:
            return
        await asyncio.sleep(every)
    raise TimeoutError(f"timed out after {timeout:g}s waiting for {what}")


def spec_for(campaign_id: str, contacts: int, **pacing: Any) -> CampaignSpec:
    """A valid campaign with a budget that never runs out (shape of tests' spec_dict).

    ``max_concurrent_requests`` is dropped where this code base has no such field.
    """
    if not CONCURRENT_PACING:
        pacing.pop("max_concurrent_requests", None)
    return parse_spec(
        {
            "campaign_id": campaign_id,
            "name": "bench",
            "caller_id": "+15551230001",
            "currency": "EUR",
            "budget": "1000000.00",
            "rate": {"per_minute": "0.01", "increments": "60/60", "connect_fee": "0"},
            "max_call_seconds": 120,
            "pacing": {"calls_per_second": 50, "batch_size": 10, "max_in_flight": 100_000} | pacing,
            "contacts": [
                {"to": f"+1555{i:07d}", "ref": f"cust_{i}", "variables": {}}
                for i in range(contacts)
            ],
        }
    )


def _process_cpu_seconds(pid: int) -> float:
    """utime + stime of a live process, from /proc (0 where /proc is unavailable)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _machine_cpu() -> tuple[float, float]:
    """(busy, total) jiffies of the whole machine, from /proc/stat."""
    try:
        values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    except (OSError, ValueError):
        return 0.0, 0.0
    idle = values[3] + (values[4] if len(values) > 4 else 0)
    return float(sum(values) - idle), float(sum(values))


@dataclass
class CpuWindow:
    """CPU seconds used by named processes, and the machine's busy share, over one window."""

    pids: dict[str, int]
    start: dict[str, float] = field(default_factory=dict)
    machine: tuple[float, float] = (0.0, 0.0)
    wall: float = 0.0

    def open(self) -> None:
        self.start = {name: _process_cpu_seconds(pid) for name, pid in self.pids.items()}
        self.machine = _machine_cpu()
        self.wall = time.monotonic()

    def close(self) -> tuple[dict[str, float], float, float]:
        """(CPU seconds per name, machine busy share, wall seconds)."""
        used = {n: _process_cpu_seconds(p) - self.start[n] for n, p in self.pids.items()}
        busy, total = _machine_cpu()
        d_total = total - self.machine[1]
        share = (busy - self.machine[0]) / d_total if d_total > 0 else math.nan
        return used, share, time.monotonic() - self.wall
