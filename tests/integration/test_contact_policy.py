"""The contact policy end to end (issue 8): real Redis, the sandbox over HTTP, real
``campaigns worker`` processes. Calling windows close and reopen, numbers go on
the do-not-call list mid-campaign, busy calls are retried, the frequency cap
holds across campaigns and workers, the schedule starts and ends a campaign.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
from collections import Counter, defaultdict
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from campaigns.domain.spec import parse_spec
from campaigns.domain.window import zone
from campaigns.operators.control import CampaignClient
from campaigns.operators.report import report_rows
from campaigns.settings import Settings
from campaigns.store import now_ms
from campaigns.testbed.sandbox import SandboxServer, parse_rfc3339
from tests.conftest import spec_dict
from tests.integration.clock import ENV as CLOCK_ENV
from tests.support import CAMPAIGNS_BIN, WorkerProcess, creates, wait_for, worker_env

pytestmark = pytest.mark.integration

RECHECK = {"DISPATCHER_WAIT_RECHECK_SECONDS": "0.5"}


def _to(entry: dict[str, Any]) -> str:
    return str(json.loads(entry["body"])["to"])


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


async def _finished(client: CampaignClient, campaign_id: str) -> bool:
    campaign = await client.get(campaign_id)
    return campaign.state == "completed" and campaign.settled == campaign.accepted


async def _waiting(client: CampaignClient, campaign_id: str, reason: str) -> dict[str, Any] | None:
    """The campaign's status once it is waiting for ``reason``."""
    status = await client.status(campaign_id)
    waiting = status.get("waiting") or {}
    return status if waiting.get("reason") == reason else None


async def _rows(client: CampaignClient, campaign_id: str) -> list[dict[str, Any]]:
    campaign = await client.get(campaign_id)
    return [row async for row in report_rows(client.store, campaign)]


async def test_a_window_that_closes_stops_claims_and_its_reopening_resumes_them(
    client: CampaignClient,
    sandbox: SandboxServer,
    start_worker: Callable[..., WorkerProcess],
    tmp_path: Path,
) -> None:
    """The worker's clock is put a few seconds before 20:00 UTC, then on the next
    morning: every attempt is claimed inside the window, none while it is closed."""
    clock_file = tmp_path / "offset"
    tomorrow = datetime.now(UTC).date() + timedelta(days=1)
    closing = datetime(tomorrow.year, tomorrow.month, tomorrow.day, 20, 0, tzinfo=UTC)
    clock_file.write_text(str(int(closing.timestamp() * 1000) - 2500 - now_ms()))
    start_worker(
        settings_class="tests.integration.clock.ShiftedClock",
        **{CLOCK_ENV: str(clock_file)},
        **RECHECK,
    )
    window = {"start": "09:00", "end": "20:00", "timezone": "UTC"}
    spec = spec_dict("evening", contacts=30, calling_window=window)
    spec["pacing"] = {"calls_per_second": 4, "batch_size": 5, "max_in_flight": 50}
    await client.submit(parse_spec(spec))

    status = await wait_for(
        lambda: _waiting(client, "evening", "window"), timeout=30, what="the window to close"
    )
    assert status["state"] == "running"
    next_morning = closing + timedelta(hours=13)  # 09:00 the day after
    assert status["waiting"]["until"] == next_morning.strftime("%Y-%m-%dT%H:%M:%SZ")
    before = await client.get("evening")
    assert 0 < before.accepted < 30, "some calls before 20:00, not all"
    # No reservation is held while waiting: the calls placed before 20:00 settle.
    await wait_for(
        lambda: _settled_and_released(client, "evening"), timeout=30, what="calls settled"
    )
    assert (await client.get("evening")).accepted == before.accepted

    clock_file.write_text(str(int(next_morning.timestamp() * 1000) - 1500 - now_ms()))
    await wait_for(lambda: _finished(client, "evening"), timeout=60, what="the morning calls")
    campaign = await client.get("evening")
    assert campaign.accepted == 30
    assert campaign.wait_reason is None
    calculator = campaign.spec.calling_window
    assert calculator is not None
    rules = calculator.window()
    attempts = [a async for a in client.store.attempts("evening")]
    claimed_at = [datetime.fromtimestamp(a.created_at_ms / 1000, UTC) for a in attempts]
    assert all(rules.open_in(zone("UTC"), at) for at in claimed_at), claimed_at
    assert {at.date() for at in claimed_at} == {tomorrow, tomorrow + timedelta(days=1)}
    assert len({e["idempotency_key"] for e in creates(sandbox.ledger(), "evening")}) == 30


async def test_contacts_whose_window_is_open_go_on_while_others_wait(
    client: CampaignClient,
    sandbox: SandboxServer,
    start_worker: Callable[..., WorkerProcess],
    tmp_path: Path,
) -> None:
    """Recipient zones: at 20:00 in New York, New York numbers wait for the morning
    while Los Angeles numbers (17:00 there) go on; each contact is claimed only
    while its own window is open."""
    clock_file = tmp_path / "offset"
    tomorrow = datetime.now(UTC).date() + timedelta(days=1)
    new_york = zone("America/New_York")
    closing = datetime(tomorrow.year, tomorrow.month, tomorrow.day, 20, 0, tzinfo=new_york)
    clock_file.write_text(str(int(closing.timestamp() * 1000) - 2500 - now_ms()))
    start_worker(
        settings_class="tests.integration.clock.ShiftedClock",
        **{CLOCK_ENV: str(clock_file)},
        **RECHECK,
    )
    window = {
        "start": "09:00",
        "end": "20:00",
        "timezone": "recipient",
        "default_timezone": "America/Chicago",
    }
    spec = spec_dict("coasts", contacts=0, calling_window=window)
    east = [f"+1212555{i:04d}" for i in range(100, 120)]
    west = [f"+1310555{i:04d}" for i in range(100, 105)]
    spec["contacts"] = [{"to": n, "ref": n} for n in east + west]
    spec["pacing"] = {"calls_per_second": 4, "batch_size": 5, "max_in_flight": 50}
    await client.submit(parse_spec(spec))

    async def west_done() -> bool:
        dialled = {_to(e) for e in creates(sandbox.ledger(), "coasts")}
        return set(west) <= dialled

    await wait_for(west_done, timeout=30, what="the west coast numbers")
    status = await wait_for(
        lambda: _waiting(client, "coasts", "window"), timeout=30, what="the east to wait"
    )
    morning = datetime(tomorrow.year, tomorrow.month, tomorrow.day, 9, 0, tzinfo=new_york)
    morning += timedelta(days=1)
    assert status["waiting"]["until"] == morning.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    campaign = await client.get("coasts")
    assert campaign.zone_groups == (("America/New_York",), ("America/Los_Angeles",))
    assert 0 < campaign.pending < len(east), "some New York numbers wait for the morning"
    calculator = campaign.spec.calling_window
    assert calculator is not None
    rules = calculator.window()
    for attempt in [a async for a in client.store.attempts("coasts")]:
        tz = new_york if attempt.to in east else zone("America/Los_Angeles")
        at = datetime.fromtimestamp(attempt.created_at_ms / 1000, UTC)
        assert rules.open_in(tz, at), (attempt.to, at)


async def _settled_and_released(client: CampaignClient, campaign_id: str) -> bool:
    campaign = await client.get(campaign_id)
    return campaign.live == 0 and campaign.reserved_micros == 0


async def test_dnc_add_during_a_running_campaign_with_three_workers(
    client: CampaignClient,
    sandbox: SandboxServer,
    settings: Settings,
    start_worker: Callable[..., WorkerProcess],
) -> None:
    """Numbers put on the account's do-not-call list while the campaign runs are
    never dialled after the add returns; the campaign's own suppress list never."""
    for _ in range(3):
        start_worker()
    spec = spec_dict("dnc-live", contacts=60)
    numbers = [c["to"] for c in spec["contacts"]]
    spec["suppress"] = numbers[1:3]
    spec["pacing"] = {"calls_per_second": 8, "batch_size": 4, "max_in_flight": 50}
    await client.submit(parse_spec(spec))
    await wait_for(
        lambda: _created_at_least(sandbox, "dnc-live", 10), timeout=30, what="first calls"
    )
    listed = numbers[20::2]  # every other number from the 21st on
    added = await asyncio.to_thread(
        subprocess.run,
        [CAMPAIGNS_BIN, "dnc", "add", *listed],
        env=worker_env(settings),
        capture_output=True,
        text=True,
        timeout=60,
    )
    added_at = now_ms() / 1000  # `campaigns dnc add` has returned
    assert added.returncode == 0, added.stderr
    await wait_for(lambda: _finished(client, "dnc-live"), timeout=60, what="completion")

    ledger = creates(sandbox.ledger(), "dnc-live")
    after = [e for e in ledger if _to(e) in listed and parse_rfc3339(e["received_at"]) >= added_at]
    assert after == [], "a number on the do-not-call list was dialled after the add returned"
    dialled = {_to(e) for e in ledger}
    assert not dialled & set(numbers[1:3]), "the campaign's suppress list was dialled"
    campaign = await client.get("dnc-live")
    never = [n for n in listed if n not in dialled]
    assert campaign.suppressed == len(never) + 2
    assert campaign.accepted == 60 - campaign.suppressed
    assert campaign.reserved_micros == 0
    rows = await _rows(client, "dnc-live")
    suppressed = [r for r in rows if r["status"] == "suppressed"]
    assert sorted(r["to"] for r in suppressed) == sorted([*never, *numbers[1:3]])
    assert all(r["request"] is None and r["cost_micros"] is None for r in suppressed)
    status = await client.status("dnc-live")
    assert status["counts"]["suppressed"] == campaign.suppressed


async def _created_at_least(sandbox: SandboxServer, campaign_id: str, count: int) -> bool:
    return len(creates(sandbox.ledger(), campaign_id)) >= count


async def test_busy_is_retried_after_the_delay_with_a_new_attempt_id_at_most_max_attempts(
    client: CampaignClient,
    sandbox: SandboxServer,
    start_worker: Callable[..., WorkerProcess],
) -> None:
    spec = spec_dict("redial", contacts=3)
    busy, silent, answers = (c["to"] for c in spec["contacts"])
    sandbox.configure(
        per_number={busy: {"final_status": "busy"}, silent: {"final_status": "no_answer"}}
    )
    spec["retry"] = {
        "busy": {"after_seconds": 1, "max_attempts": 3},
        "no_answer": {"after_seconds": 1, "max_attempts": 2},
    }
    start_worker(**RECHECK)
    await client.submit(parse_spec(spec))
    await wait_for(lambda: _finished(client, "redial"), timeout=60, what="retries done")

    ledger = creates(sandbox.ledger(), "redial")
    keys: dict[str, list[str]] = defaultdict(list)
    times: dict[str, list[float]] = defaultdict(list)
    for entry in ledger:
        keys[_to(entry)].append(entry["idempotency_key"])
        times[_to(entry)].append(parse_rfc3339(entry["received_at"]))
    assert keys[busy] == ["redial:000000:1", "redial:000000:2", "redial:000000:3"]
    assert keys[silent] == ["redial:000001:1", "redial:000001:2"]
    assert keys[answers] == ["redial:000002:1"]
    for number in (busy, silent):
        gaps = [b - a for a, b in zip(times[number], times[number][1:], strict=False)]
        assert all(gap >= 1.0 for gap in gaps), f"retried before after_seconds: {gaps}"
    campaign = await client.get("redial")
    assert campaign.accepted == 6
    assert campaign.retries == 3
    rows = await _rows(client, "redial")
    assert [r["attempt_id"] for r in rows if r["to"] == busy] == keys[busy]
    assert [r["final_status"] for r in rows if r["to"] == busy] == ["busy"] * 3


async def test_the_frequency_cap_holds_across_two_campaigns_and_two_workers(
    client: CampaignClient,
    sandbox: SandboxServer,
    start_worker: Callable[..., WorkerProcess],
) -> None:
    cap = {
        "DISPATCHER_MAX_CALLS_PER_NUMBER": "1",
        "DISPATCHER_FREQUENCY_WINDOW_SECONDS": "3600",
        **RECHECK,
    }
    for _ in range(2):
        start_worker(**cap)
    end_at = _iso(now_ms() + 8000)
    for cid in ("cap-a", "cap-b"):
        spec = spec_dict(cid, contacts=12, schedule={"end_at": end_at})
        spec["pacing"] = {"calls_per_second": 20, "batch_size": 3, "max_in_flight": 50}
        await client.submit(parse_spec(spec))
    for cid in ("cap-a", "cap-b"):
        await wait_for(lambda cid=cid: _finished(client, cid), timeout=60, what=f"{cid} ended")

    ledger = [e for cid in ("cap-a", "cap-b") for e in creates(sandbox.ledger(), cid)]
    per_number = Counter(_to(e) for e in ledger)
    assert len(per_number) == 12
    assert set(per_number.values()) == {1}, f"a number called twice: {per_number}"
    a, b = await client.get("cap-a"), await client.get("cap-b")
    assert a.accepted + b.accepted == 12
    assert a.capped + b.capped == 12
    assert a.expired + b.expired == 0
    capped = [r for cid in ("cap-a", "cap-b") for r in await _rows(client, cid)]
    assert Counter(r["status"] for r in capped) == {"accepted": 12, "capped": 12}


async def test_the_schedule_starts_and_ends_the_campaign(
    client: CampaignClient,
    sandbox: SandboxServer,
    start_worker: Callable[..., WorkerProcess],
) -> None:
    start_worker(**RECHECK)
    start = now_ms() + 3000
    end = start + 2500
    spec = spec_dict("office", contacts=60, schedule={"start_at": _iso(start), "end_at": _iso(end)})
    spec["pacing"] = {"calls_per_second": 5, "batch_size": 5, "max_in_flight": 50}
    await client.submit(parse_spec(spec))

    status = await wait_for(
        lambda: _waiting(client, "office", "not_started"), timeout=10, what="waiting for start_at"
    )
    assert status["waiting"]["until"] == _iso(start)[:19] + "Z"
    assert status["schedule"]["end_at"] == _iso(end)[:19] + "Z"
    await wait_for(lambda: _finished(client, "office"), timeout=60, what="the schedule's end")
    campaign = await client.get("office")
    attempts = [a async for a in client.store.attempts("office")]
    sent = [a for a in attempts if a.status == "accepted"]
    assert 0 < len(sent) < 60
    assert all(start <= a.created_at_ms < end for a in sent), "claimed outside the schedule"
    assert campaign.expired == 60 - len(sent)
    assert campaign.pending == 0
    first = min(parse_rfc3339(e["received_at"]) for e in creates(sandbox.ledger(), "office"))
    assert first >= start / 1000
    status = await client.status("office")
    assert status["counts"]["expired"] == campaign.expired
