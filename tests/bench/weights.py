"""Weights: DISPATCHER_PROVIDER_CALLS_PER_SECOND shared by ``pacing.weight``.

One account ceiling of 60/s over 100 campaigns that each want more than their
share, ten of them weight 3: the busiest 1 s window at the provider stays at or
under 60, and a weight-3 campaign gets three times a weight-1 campaign's calls
(``campaigns/domain/sharing.py``). Counted from the sandbox's ledger over the
seconds when every campaign was sending. Called by ``run.py`` (the ``many``
section): ``results.add(await bench_weights(rig, quick))``.
"""

from __future__ import annotations

import asyncio
import contextlib
import statistics
import time

from campaigns.operators.control import CampaignClient, ControlError
from campaigns.testbed.sandbox import parse_rfc3339
from tests.bench.common import Results, Row, Target, progress, spec_for, wait_until
from tests.bench.dispatch import Rig
from tests.support import busiest_window

__all__ = ["bench_weights"]

_CEILING = 60
_CAMPAIGNS = 100
_HEAVY = 10
_WARM_UP = 3.0
"""Seconds after the last campaign's first request before shares are counted."""


async def bench_weights(rig: Rig, quick: bool, workers: int = 5) -> Results:
    """100 campaigns at 5/s each (500/s wanted) under a 60/s ceiling, ten of weight 3.

    ``workers``: enough that every campaign gets a job slot (arq's ``max_jobs``
    per worker: a campaign without one is not sending, so it is not sharing).
    """
    seconds = 10.0 if quick else 20.0
    settings = rig.settings("weights", provider_calls_per_second=_CEILING)
    ids = [f"weights-c{i:03d}" for i in range(_CAMPAIGNS)]
    heavy = set(ids[:_HEAVY])
    # Weight 3 gets 60 * 3 / 120 = 1.5/s, and sends more until every campaign
    # has started: enough contacts that none runs out.
    contacts = int(3 * (seconds + _WARM_UP + 60))
    async with (
        rig.workers("weights", workers, settings),
        await CampaignClient.connect(settings) as client,
    ):
        for cid in ids:
            weight = 3 if cid in heavy else 1
            await client.submit(
                spec_for(
                    cid, contacts, calls_per_second=5, max_concurrent_requests=2, weight=weight
                )
            )
        started: dict[str, float] = {}

        def all_sending() -> bool:
            for row in rig.sandbox.ledger():
                cid = (row.get("variables") or {}).get("campaign_id")
                if cid in ids and cid not in started:
                    started[cid] = parse_rfc3339(row["received_at"])
            return len(started) == len(ids)

        await wait_until(all_sending, 120, "every campaign's first create request", every=0.5)
        begin = max(started.values()) + _WARM_UP
        await asyncio.sleep(max(0.0, begin + seconds - time.time()))
        end = begin + seconds
        for cid in ids:
            with contextlib.suppress(ControlError):
                await client.cancel(cid)
        claims = [a.created_at_ms / 1000 for c in ids async for a in client.store.attempts(c)]
    rows = rig.sandbox.ledger()
    rig.clean()
    times: dict[str, list[float]] = {cid: [] for cid in ids}
    for row in rows:
        cid = (row.get("variables") or {}).get("campaign_id")
        if cid in times and row.get("status") is not None:
            times[cid].append(parse_rfc3339(row["received_at"]))
    counted = {cid: sum(1 for t in ts if begin <= t < end) for cid, ts in times.items()}
    heavy_mean = statistics.mean(counted[c] for c in heavy)
    light_mean = statistics.mean(counted[c] for c in ids if c not in heavy)
    ratio = heavy_mean / light_mean if light_mean else float("nan")
    window = busiest_window([t for ts in times.values() for t in ts], 1.0)
    claimed = busiest_window(claims, 1.0)
    delivered = sum(counted.values()) / seconds
    progress(
        f"  weights: busiest 1 s window {window} arriving, {claimed} claimed (ceiling "
        f"{_CEILING}), weight-3 share "
        f"{ratio:.2f}x weight-1 ({heavy_mean:.1f} vs {light_mean:.1f} calls in {seconds:g} s), "
        f"{delivered:.1f} creates/s"
    )
    row = Row("weights", f"100 campaigns, ten weight 3, ceiling {_CEILING}/s", "creates/s")
    row.values.append(delivered)
    row.notes.append(
        f"busiest 1 s window: {window} creates arriving, {claimed} claimed; "
        f"weight 3 vs 1: {heavy_mean:.1f} vs {light_mean:.1f} calls"
    )
    return Results(
        rows=[row],
        targets=[
            Target("weights", f"ceiling {_CEILING}/s over 100 campaigns: busiest 1 s window", window, _CEILING, False, "creates"),
            Target("weights", "weight 3 vs 1: |share / 3 - 1|", abs(ratio / 3 - 1), 0.10, False),
        ],
    )  # fmt: skip
