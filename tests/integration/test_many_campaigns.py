"""Many small campaigns at once: a worker's capacity is counted in calls.

Counted from the sandbox's ledger and the workers' own logs, never from
timings: every campaign starts before any has run far ahead (no campaign waits
for another's run to end), every contact is dialled once, two workers share
the campaigns, a pause among them is honoured the moment it returns, and a
SIGKILLed worker's campaigns are all taken over with no second dial.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest

from campaigns.domain.spec import parse_spec
from campaigns.operators.control import CampaignClient
from campaigns.store import now_ms
from campaigns.testbed.sandbox import SandboxServer, parse_rfc3339
from tests.conftest import spec_dict
from tests.support import WorkerProcess, creates, wait_for

pytestmark = pytest.mark.integration


def _spec(campaign_id: str, contacts: int, rate: float, offset: int) -> dict[str, Any]:
    spec = spec_dict(campaign_id, contacts=contacts)
    spec["contacts"] = [
        {"to": f"+1555{offset + i:07d}", "ref": f"c{i}", "variables": {}} for i in range(contacts)
    ]
    spec["pacing"] = {"calls_per_second": rate, "max_concurrent_requests": 2}
    return spec


async def _submit_all(client: CampaignClient, specs: list[dict[str, Any]]) -> None:
    await asyncio.gather(*(client.submit(parse_spec(spec)) for spec in specs))


async def _all_final(client: CampaignClient, ids: list[str]) -> bool:
    for campaign_id in ids:
        campaign = await client.get(campaign_id)
        if campaign.state not in ("completed", "cancelled", "paused"):
            return False
    return True


def _accepted_by(worker: WorkerProcess) -> Counter[str]:
    """Calls this worker recorded, by campaign (its ``call_accepted`` log lines)."""
    counts: Counter[str] = Counter()
    for line in worker.log_path.read_text(errors="replace").splitlines():
        if '"call_accepted"' not in line:
            continue
        event = json.loads(line)
        counts[event["campaign_id"]] += 1
    return counts


async def _both_started(workers: list[WorkerProcess]) -> bool:
    return all("worker_started" in w.log_text() for w in workers)


def _accepted(ledger: list[dict[str, Any]], campaign_id: str) -> list[dict[str, Any]]:
    return [e for e in creates(ledger, campaign_id) if e["status"] == 201]


def _each_number_dialled_once(sandbox: SandboxServer) -> None:
    """The provider's own records: no number has two calls."""
    dialled = Counter(call["to"] for call in sandbox.calls())
    twice = {number: n for number, n in dialled.items() if n > 1}
    assert not twice, f"numbers dialled more than once: {twice}"


async def test_a_worker_starts_every_campaign_at_once_and_keeps_each_pace(
    client: CampaignClient, sandbox: SandboxServer, start_worker: Callable[..., WorkerProcess]
) -> None:
    # 60 campaigns at 1 call/s: with a fixed number of job slots (20 before)
    # the 21st waited for a run to end, after the first ones' last calls.
    sandbox.configure(latency_seconds=0.05)
    start_worker()
    ids = [f"many{i}" for i in range(60)]
    await _submit_all(client, [_spec(cid, 5, 1.0, i * 10) for i, cid in enumerate(ids)])
    await wait_for(lambda: _all_final(client, ids), timeout=90, what="all 60 campaigns completed")

    ledger = sandbox.ledger()
    firsts, fifths = [], []
    for campaign_id in ids:
        times = sorted(parse_rfc3339(e["received_at"]) for e in _accepted(ledger, campaign_id))
        assert len(times) == 5, f"{campaign_id}: {len(times)} calls of 5"
        firsts.append(times[0])
        fifths.append(times[4])
    # A fifth call comes at least 4 s (four slots) after its campaign's first.
    assert max(firsts) < min(fifths), "a campaign started only after another had finished"
    _each_number_dialled_once(sandbox)


async def test_two_workers_share_the_campaigns_and_a_pause_among_them_holds(
    client: CampaignClient, sandbox: SandboxServer, start_worker: Callable[..., WorkerProcess]
) -> None:
    sandbox.configure(latency_seconds=0.05)
    workers = [start_worker(), start_worker()]
    # Both up before the campaigns come: a worker alone takes past its share
    # what no other worker is there to take.
    await wait_for(lambda: _both_started(workers), timeout=60, what="both workers started")
    ids = [f"pair{i}" for i in range(200)]
    await _submit_all(client, [_spec(cid, 3, 1.0, i * 10) for i, cid in enumerate(ids)])

    async def started(campaign_id: str) -> bool:
        return bool(_accepted(sandbox.ledger(), campaign_id))

    paused = ids[123]
    await wait_for(lambda: started(paused), timeout=60, what=f"{paused}'s first call")
    await client.pause(paused)
    after_pause = len(creates(sandbox.ledger(), paused))
    await wait_for(lambda: _all_final(client, ids), timeout=120, what="all campaigns final")

    ledger = sandbox.ledger()
    assert len(creates(ledger, paused)) == after_pause, "a request was sent after pause returned"
    assert (await client.get(paused)).state == "paused"
    for campaign_id in ids:
        if campaign_id != paused:
            assert len(_accepted(ledger, campaign_id)) == 3, campaign_id
    _each_number_dialled_once(sandbox)
    placed = [sum(_accepted_by(w).values()) for w in workers]
    assert sum(placed) == len([e for e in ledger if e["status"] == 201])
    share = placed[0] / sum(placed)
    assert 0.3 <= share <= 0.7, f"one worker placed {placed[0]} of {sum(placed)} calls"


async def test_a_killed_workers_campaigns_are_all_taken_over_without_a_second_dial(
    client: CampaignClient, sandbox: SandboxServer, start_worker: Callable[..., WorkerProcess]
) -> None:
    sandbox.configure(latency_seconds=0.05)
    doomed = start_worker()
    ids = [f"handover{i}" for i in range(100)]
    await _submit_all(client, [_spec(cid, 6, 0.5, i * 10) for i, cid in enumerate(ids)])

    async def all_started() -> bool:
        ledger = sandbox.ledger()
        return all(_accepted(ledger, cid) for cid in ids)

    await wait_for(all_started, timeout=60, what="every campaign's first call")
    doomed.kill()
    survivor = start_worker()

    async def ended() -> bool:
        for campaign_id in ids:
            if (await client.get(campaign_id)).state not in ("completed", "halted"):
                return False
        return True

    await wait_for(ended, timeout=120, what="all campaigns completed or halted for review")

    # A request open at the kill may have placed a call whose answer was never
    # recorded: with no lookup and no creation event here it is in doubt (the
    # campaign halts for review), never sent again.
    in_doubt = 0
    for campaign_id in ids:
        campaign = await client.get(campaign_id)
        if campaign.state == "halted":
            assert campaign.halt is not None and campaign.halt["code"] == "in_doubt_review"
        in_doubt += campaign.in_doubt
        assert campaign.accepted + campaign.in_doubt == 6, f"{campaign_id}: {campaign}"
    assert in_doubt <= 2 * len(ids) // 10, f"{in_doubt} attempts in doubt after one kill"
    _each_number_dialled_once(sandbox)
    taken_over = _accepted_by(survivor)
    assert set(taken_over) == set(ids), "some campaigns were never taken over"


async def test_campaigns_waiting_for_a_window_are_not_swept_until_their_next_run(
    client: CampaignClient, sandbox: SandboxServer, start_worker: Callable[..., WorkerProcess]
) -> None:
    # A window twelve hours away: closed for every North American number now.
    opens = dt.datetime.now(dt.UTC) + dt.timedelta(hours=12)
    window = {
        "start": opens.strftime("%H:%M"),
        "end": (opens + dt.timedelta(minutes=1)).strftime("%H:%M"),
        "timezone": "recipient",
        "default_timezone": "America/New_York",
    }
    start_worker()
    ids = [f"idle{i}" for i in range(40)]
    specs = []
    for i, cid in enumerate(ids):
        spec = _spec(cid, 2, 1.0, i * 10)
        spec["calling_window"] = window
        specs.append(spec)
    await _submit_all(client, specs)

    async def all_waiting() -> bool:
        for campaign_id in ids:
            waiting = (await client.status(campaign_id)).get("waiting")
            if waiting is None or waiting["reason"] != "window":
                return False
        return True

    await wait_for(all_waiting, timeout=60, what="every campaign waiting for its window")
    # Each has a run queued for later and a due time after it: a sweeper pass
    # (one ZRANGEBYSCORE of the overdue) does not read any of them.
    overdue = await client.store.overdue_campaigns(now_ms() + 30_000, 1000)
    assert not set(overdue) & set(ids), f"waiting campaigns the sweeper reads: {overdue}"
    assert not creates(sandbox.ledger(), ids[0]), "a call was placed outside the window"
