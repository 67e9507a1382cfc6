"""Chaos against the dialects whose providers take no idempotency key but list
their calls: VoIPBIN as the platform is, and Voxpria as its Calls API page states
it. Every ambiguous create (a 5xx, an answer after the client gave up, a worker
SIGKILLed between request and record) must be resolved by listing the provider's
calls (``GET /v1.0/calls``, ``GET /api/v1/calls``), never by sending it again
unless the listing proved, after the provider's settle time, that nothing was
placed.

Real ``campaigns worker`` processes (the ``KillAfterSend`` seam), several at
once, ``DISPATCHER_PROVIDER_DIALECT`` set to the dialect against its sandbox mode
(VoIPBIN: access key, ``call.flow_id``, ``/v1.0``; Voxpria: Bearer,
``call.agent_id``, ``/api/v1``, a listing that echoes no variables, so calls are
matched by number and time), provider faults, kills and pauses; then the
invariants against the sandbox's own ledger and calls. The seed is printed
(``--chaos-seed N`` replays the faults, not the scheduling).
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest

from campaigns.domain.spec import parse_spec
from campaigns.operators.control import CampaignClient, ControlError
from campaigns.settings import Settings
from campaigns.testbed.sandbox import SandboxServer, parse_rfc3339
from tests.chaos.faults import ENV, KEYS_ENV
from tests.chaos.test_chaos import (
    KILLER,
    Observations,
    _check_calls,
    _sample_budget,
    _settle_in_doubt_as_an_operator,
    chaos_seed,
)
from tests.conftest import spec_dict
from tests.support import WorkerProcess, creates, wait_for

pytestmark = pytest.mark.chaos

__all__ = ["chaos_seed"]  # the fixture, imported so pytest finds it here

TIMEOUT = 1.0
"""The workers' provider timeout: short, so slow answers and lookups stay cheap."""
RESOLUTIONS = {
    "call_found_by_lookup": "found by listing",
    "lookup_found_no_call": "proved not placed, re-sent",
    "attempt_in_doubt": "in doubt",
}
"""The engine's log events for each way an ambiguous create ends (engine/dispatch.py)."""


@dataclass(frozen=True)
class ListingDialect:
    """What differs between the dialects under test: the rest of the run is the same."""

    name: str
    path: str
    """The API root under the sandbox's URL."""
    call: dict[str, Any]
    """The spec's call section the dialect needs."""
    sandbox: dict[str, Any] = field(default_factory=dict)
    worker_env: dict[str, str] = field(default_factory=dict)


DIALECTS = [
    ListingDialect(
        "voipbin",
        "/v1.0",
        {"flow_id": "f1a2b3c4-d5e6-7890-1234-567890abcdef"},
        sandbox={"balance_micros": 1_000_000_000},
    ),
    ListingDialect(
        "voxpria",
        "/api/v1",
        {"agent_id": "agent_chaos"},
        # Voxpria's 100 calls a minute would stretch the run past a minute: the
        # sandbox's limit and the account ceiling are raised together.
        sandbox={"voxpria_calls_per_minute": 1000},
        worker_env={"DISPATCHER_PROVIDER_CALLS_PER_SECOND": "12"},
    ),
]


def _spec(dialect: ListingDialect, cid: str, n: int, contacts: int) -> dict[str, Any]:
    """A campaign with its own caller ID and its own numbers (no number is shared
    between campaigns, so any destination with two calls is a double dial)."""
    spec = spec_dict(
        cid,
        contacts=contacts,
        budget="100.00",
        currency="USD",
        caller_id=f"+155512300{n + 10}",
        call=dialect.call,
    )
    spec["contacts"] = [
        {"to": f"+155513{n}{i:04d}", "ref": f"cust_{i}", "variables": {}} for i in range(contacts)
    ]
    # Slow enough that the sends span the whole chaos window.
    spec["pacing"] = {
        "calls_per_second": 3,
        "batch_size": 8,
        "max_in_flight": 30,
        "max_concurrent_requests": 3,
    }
    return spec


def _faults(sandbox: SandboxServer, rng: random.Random, *, on: bool) -> None:
    """5xx before acceptance, 429s, accept-then-500, and answers after the client
    gave up: some a little late, some never within any client's patience."""
    sandbox.configure(
        error_rate=0.06 if on else 0.0,
        rate_limit_rate=0.03 if on else 0.0,
        accept_then_fail_rate=0.06 if on else 0.0,
        accept_then_hang_rate=0.06 if on else 0.0,
        hang_seconds=rng.choice([TIMEOUT + 0.5, 20.0]),
        retry_after_seconds=0,
    )


def _worker_events(workers: list[WorkerProcess]) -> list[dict[str, Any]]:
    """Every JSON line of every worker's log (unbuffered, so a SIGKILLed worker's
    lines are there too)."""
    events: list[dict[str, Any]] = []
    for worker in workers:
        for line in worker.log_text().splitlines():
            if line.startswith("{"):
                try:
                    events.append(json.loads(line))
                except json.JSONDecodeError:
                    continue
    return events


def _resolutions(events: list[dict[str, Any]]) -> tuple[int, Counter[str]]:
    """Attempts whose create was ambiguous (looked up at least once), and how each
    lookup ended (an attempt proved not placed and re-sent may be found later)."""
    looked = {
        e["attempt_id"]
        for e in events
        if e.get("attempt_id")
        and e.get("event") in {*RESOLUTIONS, "lookup_found_nothing_yet", "lookup_failed"}
    }
    ended = Counter(RESOLUTIONS[e["event"]] for e in events if e.get("event") in RESOLUTIONS)
    return len(looked), ended


def _check_pauses(ledger: list[dict[str, Any]], obs: Observations) -> None:
    for cid, start, end in obs.pause_windows:
        inside = [
            e for e in creates(ledger, cid) if start <= parse_rfc3339(e["received_at"]) <= end
        ]
        assert not inside, f"{cid}: create requests while paused: {inside[:3]}"


@pytest.mark.parametrize("dialect", DIALECTS, ids=[d.name for d in DIALECTS])
async def test_chaos_without_idempotency_keys_resolved_by_listing(
    client: CampaignClient,
    sandbox: SandboxServer,
    settings: Settings,
    start_worker: Callable[..., WorkerProcess],
    chaos_seed: int,
    dialect: ListingDialect,
) -> None:
    rng = random.Random(chaos_seed)
    obs = Observations()
    campaigns, contacts, duration = 2, 45, 22.0
    sandbox.configure(
        seed=chaos_seed,
        call_duration_real_seconds=0.3,
        latency_seconds=0.02,
        **dialect.sandbox,
    )
    own = settings.model_copy(
        update={
            "provider_dialect": dialect.name,
            "provider_url": f"{sandbox.url}{dialect.path}",
            "provider_timeout_seconds": TIMEOUT,
        }
    )
    every: list[WorkerProcess] = []

    def start(kill: bool) -> WorkerProcess:
        env = {ENV: "0.05" if kill else "0", KEYS_ENV: "0", "PYTHONUNBUFFERED": "1"}
        worker = start_worker(own, settings_class=KILLER, **env, **dialect.worker_env)
        every.append(worker)
        return worker

    workers = [start(kill=True) for _ in range(3)]
    ids = [f"{dialect.name}chaos{n}" for n in range(campaigns)]
    async with await CampaignClient.connect(own) as own_client:
        for n, cid in enumerate(ids):
            await own_client.submit(parse_spec(_spec(dialect, cid, n, contacts)))

    stop = asyncio.Event()
    sampler = asyncio.create_task(_sample_budget(settings.redis_url, ids, obs, stop))
    faults_on = True
    _faults(sandbox, rng, on=True)
    slow_episodes = 0
    deadline = time.monotonic() + duration
    try:
        while time.monotonic() < deadline:
            await asyncio.sleep(rng.uniform(0.3, 1.0))
            for i, w in enumerate(workers):
                if not w.alive:
                    obs.injected_kills += 1
                    workers[i] = start(kill=False)
            action = rng.random()
            if action < 0.3:
                victim = rng.randrange(len(workers))
                workers[victim].kill()
                obs.kills += 1
                workers[victim] = start(kill=False)
            elif action < 0.5:
                faults_on = not faults_on
                _faults(sandbox, rng, on=faults_on)
            elif action < 0.6:
                # Every answer (and every lookup) slower than the client timeout for a
                # moment: creates time out before the call exists, then it appears.
                slow_episodes += 1
                sandbox.configure(latency_seconds=TIMEOUT + 0.3)
                await asyncio.sleep(rng.uniform(0.5, 1.0))
                sandbox.configure(latency_seconds=0.02)
            elif action < 0.8:
                cid = rng.choice(ids)
                try:
                    await client.pause(cid)
                except ControlError:
                    continue
                start_at = time.time()
                await asyncio.sleep(rng.uniform(0.5, 1.2))
                obs.pause_windows.append((cid, start_at, time.time()))
                await client.resume(cid)
        sandbox.configure(
            error_rate=0.0,
            rate_limit_rate=0.0,
            accept_then_fail_rate=0.0,
            accept_then_hang_rate=0.0,
            latency_seconds=0.02,
        )
        for i, w in enumerate(workers):
            w.kill()
            workers[i] = start(kill=False)

        async def finished() -> bool:
            for cid in ids:
                c = await client.get(cid)
                if c.state == "paused" and c.halt and c.halt["code"] == "provider_unavailable":
                    await client.resume(cid)
                    return False
                if c.state == "halted" and c.halt and c.halt["code"] == "in_doubt_review":
                    await _settle_in_doubt_as_an_operator(client, sandbox, cid, obs)
                    await client.resume(cid)
                    return False
                if c.state != "completed" or c.settled != c.accepted:
                    return False
            return True

        # Leftovers wait out the dialect's 10 s settle time before a lookup proves anything.
        await wait_for(finished, timeout=75, interval=0.5, what=f"{dialect.name} chaos settled")
    finally:
        stop.set()
        await sampler

    ledger = sandbox.ledger()
    calls = sandbox.calls()
    assert all(e["idempotency_key"] is None for e in ledger), f"{dialect.name} takes no keys"
    # 0 numbers dialled twice: no destination has more than one call at the provider.
    dialled = Counter(c["to"] for c in calls)
    twice = {to: n for to, n in dialled.items() if n > 1}
    assert not twice, f"numbers dialled more than once: {twice}"
    placed = _check_calls(calls, ids)
    assert not obs.unrecorded, f"placed calls neither recorded nor in doubt: {obs.unrecorded}"
    _check_pauses(ledger, obs)
    lost: list[str] = []
    for cid in ids:
        campaign = await client.get(cid)
        assert campaign.in_doubt == 0 and campaign.reserved_micros == 0, campaign
        assert campaign.accepted == len(placed[cid]), campaign
        # An attempt in doubt that the operator found was never placed is the only
        # way a contact ends without a call.
        for call_id in placed[cid]:
            attempt_id = await client.store.attempt_for_call(call_id)
            if attempt_id is None or not attempt_id.startswith(f"{cid}:"):
                lost.append(call_id)
    assert not lost, f"placed calls whose ID was never recorded: {lost}"
    spare = obs.resolved_in_doubt - obs.in_doubt_with_call
    total = sum(len(p) for p in placed.values())
    assert campaigns * contacts - spare <= total <= campaigns * contacts
    assert not obs.budget_violations, obs.budget_violations[:5]
    assert obs.budget_samples > 100

    faults = Counter(e["fault"] for e in ledger if e.get("fault"))
    events = _worker_events(every)
    ambiguous, resolved = _resolutions(events)
    failed_lookups = [e["error"] for e in events if e.get("event") == "lookup_failed"]
    # The sandbox lists well-formed pages: only a timeout (a slow moment) may fail one.
    unreadable = [error for error in failed_lookups if "timeout" not in error]
    assert not unreadable, f"lookups that failed on a well-formed answer: {unreadable[:3]}"
    print(
        f"{dialect.name} chaos summary: seed={chaos_seed} contacts={campaigns * contacts} "
        f"calls={total} create_requests={len(ledger)} kills={obs.kills} "
        f"injected_kills={obs.injected_kills} pauses={len(obs.pause_windows)} "
        f"slow_episodes={slow_episodes} faults={dict(faults)} "
        f"ambiguous_attempts={ambiguous} lookups_ended={dict(resolved)} "
        f"lookups_timed_out={len(failed_lookups)} "
        f"in_doubt_settled_by_operator={obs.resolved_in_doubt} "
        f"(with a call: {obs.in_doubt_with_call}) double_dials=0 lost_ids=0 "
        f"budget_samples={obs.budget_samples}"
    )
    assert ambiguous > 0, "the run produced no ambiguous create to resolve"
