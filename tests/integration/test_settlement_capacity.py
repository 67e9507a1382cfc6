"""Settlement never waits behind dispatch: a real ``campaigns worker`` whose
dispatch runs are all held by a slow provider still applies a call event at once.

The proof is an ordering, not a timing: the event's job is answered while the
very dispatch jobs that were all running when it was enqueued are still
running.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

import pytest
from redis.asyncio import Redis

from campaigns.domain.spec import parse_spec
from campaigns.operators.control import CampaignClient
from campaigns.providers import Provider, make_provider
from campaigns.settings import Settings
from campaigns.testbed.sandbox import SandboxServer
from tests.conftest import spec_dict
from tests.integration.test_settlement import attempts, dispatch, sandbox_settled
from tests.support import WorkerProcess, event_job_result, seed_event, wait_for

SLOW_CREATE_SECONDS = 20.0
"""How long the sandbox holds each create request: a dispatch run waits it out in its slot."""


@pytest.fixture
async def provider(settings: Settings) -> AsyncIterator[Provider]:
    p = make_provider(settings)
    yield p
    await p.aclose()


async def _running_dispatch_jobs(redis: Redis) -> set[bytes]:
    return set(await redis.keys("arq:in-progress:dispatch:*"))


async def test_a_call_event_is_applied_while_every_dispatch_slot_is_busy(
    client: CampaignClient,
    sandbox: SandboxServer,
    provider: Provider,
    settings: Settings,
    start_worker: Callable[..., WorkerProcess],
) -> None:
    campaigns = 23
    # A call placed and finished before the worker starts; only its event may settle it.
    await dispatch(client, provider, settings, spec_dict("probe", contacts=1))
    (probe,) = await attempts(client, "probe")
    assert probe.call_id is not None
    await client.store.reschedule_poll(probe.attempt_id, 3600)
    await sandbox_settled(sandbox, 1)

    # Campaigns whose runs all wait on a slow create (more than the 20 job slots
    # a worker once had for everything).
    sandbox.configure(latency_seconds=SLOW_CREATE_SECONDS)
    patient = settings.model_copy(update={"provider_timeout_seconds": SLOW_CREATE_SECONDS + 5})
    for i in range(campaigns):
        await client.submit(parse_spec(spec_dict(f"busy{i}", contacts=1)))
    worker = start_worker(patient)
    redis = client.store.redis

    async def all_running() -> set[bytes] | None:
        running = await _running_dispatch_jobs(redis)
        return running if len(running) == campaigns else None

    busy: set[bytes] = await wait_for(
        all_running, timeout=30, what=f"all {campaigns} dispatch runs waiting on a slow create"
    )

    event = seed_event(probe.call_id, billsec_seconds=30, cost_amount="0.01", cost_currency="EUR")
    assert await event_job_result(client.queue, event) == "ok"
    still = await _running_dispatch_jobs(redis)
    assert busy <= still, "applied while every dispatch run still waited on the provider"
    campaign = await client.get("probe")
    assert (campaign.settled, campaign.reserved_micros) == (1, 0)
    assert worker.alive
    sandbox.configure(latency_seconds=0)
