"""Chaos: the Redis primary lost (SIGKILL) or frozen (SIGSTOP) under three workers.

A real primary, two replicas and three ``redis-server --sentinel`` on free
ports; workers, the ingress and the operator's client all find the primary
through the sentinels, with ``DISPATCHER_REDIS_MIN_REPLICAS=1``. While two
campaigns dial at a pace with overlapping requests, a do-not-call list grows
and operators pause and resume, the test SIGKILLs the current primary (and
brings it back as a replica), and freezes one with SIGSTOP until a replica is
promoted, then lets it run again: a primary that must not take writes that are
later lost. Checked against the sandbox's ledger: no number dialled twice,
every accepted call recorded, ``spent + reserved <= budget`` throughout, no
create request for a number after its ``dnc add`` returned, none for a
campaign between ``pause`` returning and ``resume``. It prints how long
dispatch stood still at each failover.

``--soak`` repeats failovers for ``CHAOS_SOAK_SECONDS`` (default 900) or until
the ``CHAOS_SOAK_CONTACTS`` per campaign (default 5000) are nearly dialled.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import itertools
import json
import os
import random
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from redis.exceptions import RedisError

from campaigns.connection import RedisLocation
from campaigns.domain.spec import parse_spec
from campaigns.operators import dnc as dnc_ops
from campaigns.operators.control import CampaignClient, ControlError
from campaigns.settings import Settings
from campaigns.testbed.sandbox import SandboxServer, parse_rfc3339
from campaigns.testbed.sentinel_group import SentinelGroup
from tests.api_process import free_port
from tests.chaos.test_chaos import (
    WEBHOOK_SECRET,
    Observations,
    _check_calls,
    _check_ledger,
    _sample_budget,
    _settle_in_doubt_as_an_operator,
    chaos_seed,
)
from tests.conftest import spec_dict
from tests.support import CAMPAIGNS_BIN, ROOT, WorkerProcess, wait_for, worker_env

pytestmark = pytest.mark.chaos
__all__ = ["chaos_seed"]  # the seed fixture, shared with the chaos suite

IDS = ["fo0", "fo1"]


@dataclass
class Failovers:
    events: list[tuple[str, float]] = field(default_factory=list)
    """(how, when the primary was killed or frozen)."""
    dnc_added: dict[str, float] = field(default_factory=dict)
    """Number -> when ``dnc add`` returned."""
    refused_writes: int = 0
    """Operator writes refused (not acknowledged, or Redis failing over)."""
    worker_restarts: int = 0
    """Workers that exited with Redis and were started again, as a supervisor
    (systemd, Kubernetes) would: the dispatcher's guarantees must not depend on
    them living (that they do is tests/chaos/test_redis_faults.py's business)."""


async def _supervise(
    workers: list[WorkerProcess],
    start: Callable[[], WorkerProcess],
    fo: Failovers,
    stop: asyncio.Event,
) -> None:
    while not stop.is_set():
        for i, worker in enumerate(workers):
            if not worker.alive:
                fo.worker_restarts += 1
                workers[i] = start()
        await asyncio.sleep(0.5)


@contextlib.contextmanager
def _ingress_process(settings: Settings, log_path: Path) -> Iterator[str]:
    """``campaigns ingress`` as its own process, finding Redis through the sentinels."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with log_path.open("ab") as log:
        proc = subprocess.Popen(
            [CAMPAIGNS_BIN, "ingress", "--port", str(port)],
            env=worker_env(settings, DISPATCHER_WEBHOOK_SECRET=WEBHOOK_SECRET),
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=ROOT,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            assert proc.poll() is None, log_path.read_text()
            try:
                if httpx.get(f"{url}/healthz", timeout=1.0).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.05)
        yield url
    finally:
        proc.terminate()
        proc.wait(15)


@pytest.fixture
def sentinel_group() -> Iterator[SentinelGroup]:
    with SentinelGroup(down_after_ms=1000, failover_timeout_ms=2000) as group:
        yield group


def _sentinel_settings(settings: Settings, group: SentinelGroup) -> Settings:
    return settings.model_copy(
        update={
            "redis_sentinels": group.sentinel_setting,
            "redis_sentinel_master": group.service,
            "redis_min_replicas": 1,
            "redis_replica_timeout_ms": 1000,
            "creation_event_wait_seconds": 10.0,
            # The sandbox shares this test's process: a loaded moment is not a lost answer.
            "provider_timeout_seconds": 5.0,
            "poll_interval_seconds": 0.5,
            "poll_max_interval_seconds": 2.0,
        }
    )


async def _grow_dnc(
    client: CampaignClient, numbers: list[str], fo: Failovers, stop: asyncio.Event
) -> None:
    """Put numbers not dialled yet on the list, one at a time, noting when each add returned."""
    listed = dnc_ops.list_for(client.store)
    for number in numbers:
        if stop.is_set():
            return
        try:
            await listed.add([number])
        except (RedisError, OSError):
            fo.refused_writes += 1
        else:
            fo.dnc_added[number] = time.time()
        await asyncio.sleep(0.3)


async def _operate(
    client: CampaignClient,
    sandbox: SandboxServer,
    obs: Observations,
    stop: asyncio.Event,
    *,
    resume_paused: bool = False,
) -> bool:
    """What an operator does until ``stop``: settle attempts in doubt from the
    provider's records and resume, and resume a cool-down; with
    ``resume_paused``, also a pause whose resume was refused. True once done."""
    while True:
        done = True
        for cid in IDS:
            try:
                c = await client.get(cid)
                halted = c.halt["code"] if c.halt else None
                if c.state == "halted" and halted == "in_doubt_review":
                    await _settle_in_doubt_as_an_operator(client, sandbox, cid, obs)
                    await client.resume(cid)
                elif c.state == "halted" or (c.state == "paused" and (halted or resume_paused)):
                    await client.resume(cid)
                done = done and c.state == "completed" and c.settled == c.accepted
            except (RedisError, OSError, ControlError):
                done = False
        if stop.is_set() or done:
            return done
        await asyncio.sleep(0.5)


async def _pause_and_resume(
    client: CampaignClient, rng: random.Random, obs: Observations, fo: Failovers
) -> None:
    cid = rng.choice(IDS)
    try:
        await client.pause(cid)
    except (ControlError, RedisError, OSError):
        fo.refused_writes += 1
        return  # not confirmed: the finish loop resumes it if it did pause
    start = time.time()
    await asyncio.sleep(rng.uniform(0.4, 1.0))
    end = time.time()
    obs.pause_windows.append((cid, start, end))
    for _ in range(30):
        try:
            await client.resume(cid)
            return
        except (RedisError, OSError):
            await asyncio.sleep(0.5)
        except ControlError:
            return


async def _fail_over(group: SentinelGroup, how: str, fo: Failovers) -> None:
    """One failover, done in a thread: the sentinel calls block."""
    if how == "kill":
        old = group.primary()
        fo.events.append((how, time.time()))
        old.kill()
        await asyncio.to_thread(group.wait_for_new_primary, old.port)
        await asyncio.to_thread(group.rejoin, old)
    else:
        old = group.freeze_primary()
        fo.events.append((how, time.time()))
        await asyncio.to_thread(group.wait_for_new_primary, old.port)
        group.thaw(old)
    await asyncio.to_thread(group.wait_healthy, 60.0)


def _stalls(fo: Failovers, ledger: list[dict[str, object]]) -> list[tuple[str, float]]:
    """For each failover, the longest gap between create requests in the 30 s after
    the primary was lost: how long dispatch stood still."""
    times = sorted(parse_rfc3339(str(e["received_at"])) for e in ledger)
    found = []
    for how, at in fo.events:
        window = [at, *(t for t in times if at < t <= at + 30)]
        gaps = [b - a for a, b in itertools.pairwise(window)]
        found.append((how, round(max(gaps), 2) if gaps else float("inf")))
    return found


async def test_failover_keeps_every_invariant(
    sandbox: SandboxServer,
    settings: Settings,
    sentinel_group: SentinelGroup,
    start_worker: Callable[..., WorkerProcess],
    chaos_seed: int,
    request: pytest.FixtureRequest,
    tmp_path: Path,
) -> None:
    soak = request.config.getoption("--soak")
    # The sandbox shares this process with the test: on a 2-core machine its
    # webhooks (three per call, retried while the ingress rides out a failover)
    # starve it. The fast run settles by polling; the soak adds the ingress
    # (through the sentinels) and MiniVoice's creation events.
    webhooks = bool(soak)
    contacts = int(os.environ.get("CHAOS_SOAK_CONTACTS", "5000")) if soak else 1000
    duration = float(os.environ.get("CHAOS_SOAK_SECONDS", "900")) if soak else 0.0
    rng = random.Random(chaos_seed)
    config = _sentinel_settings(settings, sentinel_group)
    sandbox.configure(
        seed=chaos_seed, latency_seconds=0.05, call_duration_real_seconds=0.3, webhook_retries=6
    )
    workers = [start_worker(config) for _ in range(3)]
    client = await CampaignClient.connect(config)
    obs, fo = Observations(), Failovers()
    stop = asyncio.Event()
    ingress = contextlib.ExitStack()
    if webhooks:
        url = ingress.enter_context(_ingress_process(config, tmp_path / "ingress.log"))
        sandbox.configure(webhook_url=f"{url}/webhooks", webhook_secret=WEBHOOK_SECRET)
    sampler = asyncio.create_task(
        _sample_budget(RedisLocation.from_settings(config), IDS, obs, stop)
    )
    supervisor = asyncio.create_task(_supervise(workers, lambda: start_worker(config), fo, stop))
    operator = asyncio.create_task(_operate(client, sandbox, obs, stop))
    try:
        for n, cid in enumerate(IDS):
            spec = spec_dict(cid, contacts=contacts, budget="200.00", caller_id=f"+15551230{n}20")
            spec["pacing"] = {
                "calls_per_second": 25,
                "batch_size": 20,
                "max_in_flight": 60,
                "max_concurrent_requests": 4,
            }
            await client.submit(parse_spec(spec))
        # Numbers from the back of the campaigns: not dialled yet when they are listed.
        tail = [c["to"] for c in spec_dict("x", contacts=contacts)["contacts"]][::-1]
        grower = asyncio.create_task(_grow_dnc(client, tail[: contacts // 4 : 7], fo, stop))

        async def dialling(floor: int) -> bool:
            return len(sandbox.state.ledger) >= floor  # not a snapshot of thousands

        plan = ["kill", "freeze", "kill"]
        deadline = time.monotonic() + duration
        room = len(IDS) * contacts - 400  # enough left to dial through one more failover
        while plan or (time.monotonic() < deadline and len(sandbox.state.ledger) < room):
            how = plan.pop(0) if plan else rng.choice(["kill", "freeze"])
            await wait_for(
                functools.partial(dialling, len(sandbox.state.ledger) + 40),
                timeout=60,
                what="dialling before a failover",
            )
            await _pause_and_resume(client, rng, obs, fo)
            await _fail_over(sentinel_group, how, fo)
            await _pause_and_resume(client, rng, obs, fo)
        await grower

        once = asyncio.Event()
        once.set()

        async def finished() -> bool:
            return await _operate(client, sandbox, obs, once, resume_paused=True)

        await wait_for(finished, timeout=60 + contacts / 10, interval=0.5, what="campaigns done")
    finally:
        stop.set()
        await sampler
        await supervisor
        await operator
        ingress.close()

    ledger = sandbox.ledger()
    placed = _check_calls(sandbox.calls(), IDS)
    assert not obs.unrecorded, f"placed calls neither recorded nor in doubt: {obs.unrecorded}"
    _check_ledger(ledger, IDS, obs)
    after_dnc = [
        e
        for e in ledger
        if (at := fo.dnc_added.get(json.loads(e["body"])["to"])) is not None
        and parse_rfc3339(e["received_at"]) > at
    ]
    assert not after_dnc, f"create requests after the number's dnc add returned: {after_dnc[:3]}"
    lost = 0
    for cid in IDS:
        campaign = await client.get(cid)
        assert campaign.accepted + campaign.suppressed == contacts, campaign
        assert campaign.reserved_micros == 0 and campaign.in_doubt == 0
        for call_id in placed[cid]:
            if await client.store.attempt_for_call(call_id) is None:
                lost += 1
    assert lost == 0, f"{lost} accepted calls without a recorded ID"
    assert not obs.budget_violations, obs.budget_violations[:5]
    await client.aclose()
    stalls = _stalls(fo, ledger)
    print(
        f"failover summary: seed={chaos_seed} contacts={len(IDS) * contacts} "
        f"create_requests={len(ledger)} failovers={len(fo.events)} "
        f"dispatch_stood_still_s={stalls} dnc_added={len(fo.dnc_added)} "
        f"pauses={len(obs.pause_windows)} refused_operator_writes={fo.refused_writes} "
        f"worker_restarts={fo.worker_restarts} "
        f"in_doubt_resolved={obs.resolved_in_doubt} (with a call: {obs.in_doubt_with_call}) "
        f"budget_samples={obs.budget_samples}"
    )
