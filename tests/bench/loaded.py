"""The pace as the provider sees it on a loaded machine.

Two CPU hogs (one per core) run beside the worker, the sandbox and Redis: a
request's way from its claim to the provider then varies by tens of
milliseconds, and the busiest 1 s window of requests *as the provider receives
them* is what a provider's rate limiter counts. Measured for one campaign at
10 calls/s and for three uncapped campaigns under an account ceiling of 8/s.
"""

from __future__ import annotations

import contextlib
import subprocess
import sys
from collections.abc import Iterator

from campaigns.operators.control import CampaignClient
from tests.bench.common import Results, Row, Target, progress
from tests.bench.dispatch import UNCAPPED, Rig, _dispatch
from tests.support import busiest_window

__all__ = ["bench_loaded"]

_HOG = "while True: pass"
RAISED_MARGIN = 10.0
"""DISPATCHER_PACE_MARGIN_PERCENT for a loaded host, measured beside the default."""


@contextlib.contextmanager
def _hogs(count: int) -> Iterator[None]:
    procs = [subprocess.Popen([sys.executable, "-c", _HOG]) for _ in range(count)]
    try:
        yield
    finally:
        for proc in procs:
            proc.kill()
            proc.wait(10)


async def bench_loaded(rig: Rig, quick: bool) -> Results:
    """Each case at the default DISPATCHER_PACE_MARGIN_PERCENT and at a raised one."""
    seconds = 5 if quick else 15
    results = Results()
    cases = (
        ("10 calls/s, one campaign", {}, 1, {"calls_per_second": 10}, 10),
        ("account ceiling 8/s, 3 campaigns", {"provider_calls_per_second": 8.0}, 3, UNCAPPED, 8),
    )
    for margin in (1.0, RAISED_MARGIN):
        for label, overrides, campaigns, pacing, limit in cases:
            tag = f"loaded{limit}m{margin:g}"
            settings = rig.settings(tag, pace_margin_percent=margin, **overrides)
            async with (
                rig.workers(tag, 1, settings) as procs,
                await CampaignClient.connect(settings) as client,
            ):
                with _hogs(2):
                    run = await _dispatch(
                        rig,
                        client,
                        procs,
                        tag,
                        campaigns=campaigns,
                        contacts=limit * seconds // campaigns + 1,
                        pacing=pacing | {"max_concurrent_requests": 4},
                        cut_off=seconds * 2 + 20,
                    )
            rig.clean()
            window = busiest_window(run.times, 1.0)
            name = f"{label}, margin {margin:g} %"
            progress(f"  loaded {name}: busiest 1 s window at the provider {window}")
            row = Row("loaded", f"{name}: busiest 1 s window", "creates", [window])
            row.notes.append(f"{run.windows()}; delivered {run.rate:.2f}/s")
            results.rows.append(row)
            results.targets.append(
                Target("loaded", f"{name}, 2 CPU hogs: busiest 1 s window", window, limit, False)
            )
    return results
