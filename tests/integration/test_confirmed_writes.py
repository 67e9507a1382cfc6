"""Writes a failover cannot take back: with DISPATCHER_REDIS_MIN_REPLICAS and no
replica to acknowledge them, nothing is sent and every operator command exits 1.

The session's Redis has no replica, so every ``WAIT`` answers 0: exactly what a
primary cut off from its replicas (or about to lose them) answers.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
import redis.asyncio as aioredis
from click.testing import CliRunner

from campaigns import parse_spec
from campaigns.domain.lifecycle import Move
from campaigns.operators.cli import main
from campaigns.operators.control import CampaignClient
from campaigns.operators.ingress import create_ingress_app_from_settings
from campaigns.settings import Settings
from campaigns.store import NotReplicated, Store
from campaigns.testbed.sandbox import SandboxServer, ThreadedServer, minivoice_headers
from tests.conftest import spec_dict
from tests.support import WorkerProcess, claim_next, seed_event, submit_spec, wait_for

SECRET = "whsec_4b9e2f7a1c6d8e3f0a5b"
NOT_DONE = "not done: the write was acknowledged by 0 of the 1 replicas"


def cli(settings: Settings, *args: str, replicas: int = 1) -> tuple[int, str]:
    env = {
        "DISPATCHER_REDIS_URL": settings.redis_url,
        "DISPATCHER_QUEUE_NAME": settings.queue_name,
        "DISPATCHER_REDIS_MIN_REPLICAS": str(replicas),
        "DISPATCHER_REDIS_REPLICA_TIMEOUT_MS": "50",
    }
    result = CliRunner().invoke(main, list(args), env=env)
    return result.exit_code, result.output


@pytest.fixture
def spec_file(tmp_path: Path) -> Path:
    path = tmp_path / "spec.json"
    path.write_text(json.dumps(spec_dict("confirmed", contacts=5)))
    return path


def test_every_operator_command_exits_1_when_no_replica_acknowledges(
    settings: Settings, spec_file: Path, tmp_path: Path
) -> None:
    code, out = cli(settings, "submit", str(spec_file))
    assert code == 1 and NOT_DONE in out, out
    # The same commands with no replica asked for go through (the write is idempotent).
    assert cli(settings, "submit", str(spec_file), replicas=0)[0] == 0
    for command in (["pause"], ["resume"], ["cancel"]):
        code, out = cli(settings, *command, "confirmed")
        assert code == 1 and NOT_DONE in out and "run the command again" in out, (command, out)
        assert "Traceback" not in out
    csv = tmp_path / "dnc.csv"
    csv.write_text("number\n+15551240001\n")
    for command in (["dnc", "add", "+15551240000"], ["dnc", "remove", "+15551240000"]):
        code, out = cli(settings, *command)
        assert code == 1 and NOT_DONE in out, (command, out)
    code, out = cli(settings, "dnc", "import", str(csv))
    assert code == 1 and NOT_DONE in out, out
    # Reads need no replica.
    assert cli(settings, "status", "confirmed")[0] == 0


async def test_a_worker_sends_nothing_a_replica_has_not_acknowledged(
    settings: Settings,
    client: CampaignClient,
    sandbox: SandboxServer,
    start_worker: Callable[..., WorkerProcess],
) -> None:
    await client.submit(parse_spec(spec_dict("unconfirmed", contacts=3)))
    unconfirmed = settings.model_copy(
        update={"redis_min_replicas": 1, "redis_replica_timeout_ms": 50}
    )
    worker = start_worker(unconfirmed)

    async def refused() -> bool:
        return "not_replicated" in worker.log_text()

    await wait_for(refused, timeout=30, what="a claim refused for want of a replica")
    assert sandbox.ledger() == [], "a create request went out on an unacknowledged write"
    # The same campaign with no replica asked for is dialled: the test can fail.
    worker.terminate()
    start_worker(settings)

    async def dialled() -> bool:
        return len(sandbox.ledger()) == 3

    await wait_for(dialled, timeout=30, what="the campaign dialled once WAIT is off")


async def test_an_unacknowledged_stamp_is_taken_back(redis_url: str) -> None:
    """Nothing was sent on it: the attempt reads as never sent (the next run sends
    it under its own ID), not as a send whose answer was lost (in doubt)."""
    client = aioredis.Redis.from_url(redis_url)
    plain, confirmed = Store(client), Store(client, replicas=(1, 20))
    try:
        await submit_spec(plain, parse_spec(spec_dict("stamp", contacts=2)))
        await plain.transition("stamp", Move.START)
        assert await plain.acquire_lease("stamp", "t", 60)
        with pytest.raises(NotReplicated):
            await claim_next(confirmed, "stamp", "t")
        claim = await claim_next(plain, "stamp", "t")
        assert claim.attempt is not None
        attempt_id = claim.attempt.attempt_id
        with pytest.raises(NotReplicated):
            await confirmed.stamp_send(attempt_id, "{}", "t")
        attempt = await plain.attempt(attempt_id)
        assert attempt is not None and attempt.request is None and attempt.status == "sending"
        assert await plain.sent_to(claim.attempt.to) == []
        # A stamp that went through is kept: a second one is a re-send, never undone.
        assert await plain.stamp_send(attempt_id, "{}", "t") == "ok"
        with pytest.raises(NotReplicated):
            await confirmed.stamp_send(attempt_id, "{}", "t", may_be_placed=True)
        attempt = await plain.attempt(attempt_id)
        assert attempt is not None and attempt.request == "{}"
    finally:
        await client.aclose()


async def test_the_ingress_refuses_a_webhook_no_replica_has(settings: Settings) -> None:
    """503, so the provider delivers it again; accepted once no replica is asked for."""
    body = json.dumps(seed_event(), separators=(",", ":")).encode()
    headers = {
        "Content-Type": "application/json",
        **minivoice_headers(SECRET, int(time.time()), body),
    }
    answers = []
    for replicas in (1, 0):
        config = settings.model_copy(
            update={"redis_min_replicas": replicas, "redis_replica_timeout_ms": 20}
        )
        app = create_ingress_app_from_settings(config, secret=SECRET)
        server = ThreadedServer(app, health_path="/healthz")
        server.start()
        try:
            async with httpx.AsyncClient() as http:
                response = await http.post(f"{server.url}/webhooks", content=body, headers=headers)
            answers.append(response.status_code)
        finally:
            server.stop()
    assert answers == [503, 202]
