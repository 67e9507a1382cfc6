"""Redis restarted mid-campaign: the worker reconnects and carries on."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from campaigns.domain.spec import parse_spec
from campaigns.operators.control import CampaignClient
from campaigns.testbed.redis_server import RedisServer
from campaigns.testbed.sandbox import SandboxServer
from tests.conftest import spec_dict
from tests.support import WorkerProcess, creates, wait_for

pytestmark = pytest.mark.chaos


@pytest.mark.parametrize("graceful", [True, False], ids=["restart", "sigkill"])
async def test_worker_carries_on_after_redis_restart(
    client: CampaignClient,
    sandbox: SandboxServer,
    start_worker: Callable[..., WorkerProcess],
    redis_server: RedisServer,
    graceful: bool,
) -> None:
    sandbox.configure(latency_seconds=0.01)
    worker = start_worker()
    spec = spec_dict("survivor", contacts=80)
    spec["pacing"] = {"calls_per_second": 20, "batch_size": 10, "max_in_flight": 80}
    await client.submit(parse_spec(spec))

    async def some_sent() -> bool:
        return len(creates(sandbox.ledger(), "survivor")) >= 20

    await wait_for(some_sent, timeout=20, what="calls going out")
    redis_server.restart(graceful=graceful)

    async def done() -> bool:
        try:
            c = await client.get("survivor")
        except Exception:  # the client's own connection reconnects on next use
            return False
        return c.state == "completed" and c.settled == c.accepted

    await wait_for(done, timeout=90, interval=0.5, what="completion after the restart")
    assert worker.alive, "the worker died with Redis"
    ledger = creates(sandbox.ledger(), "survivor")
    per_contact: dict[str, set[str]] = {}
    for e in ledger:
        if e["status"] in (200, 201):
            per_contact.setdefault(e["variables"]["contact_ref"], set()).add(e["call_id"])
    assert len(per_contact) == 80
    assert all(len(ids) == 1 for ids in per_contact.values()), "a contact got two calls"
    for ids in per_contact.values():
        assert await client.store.attempt_for_call(next(iter(ids))) is not None
