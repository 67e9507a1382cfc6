"""A provider's 429 hold is named for every campaign it holds (issue 18, item 5).

The sandbox answers one create with ``429`` and ``Retry-After: 45``: the
dispatcher holds the whole account (``P:account:pace_hold``), and ``status``
(the CLI's ``--json``, the API's and the page's source) must say so for both
campaigns, with the hold's end, instead of "sending at the configured pace"
or "stalled: no dispatcher heartbeat".
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable

import pytest

from campaigns.domain.spec import parse_spec
from campaigns.operators.control import CampaignClient, account_hold_until_ms
from campaigns.settings import Settings
from campaigns.testbed.sandbox import SandboxServer
from tests.conftest import spec_dict
from tests.integration.test_bad_input import _run
from tests.support import WorkerProcess, wait_for

pytestmark = pytest.mark.integration

RETRY_AFTER = 45


async def test_a_429_hold_is_the_waiting_reason_of_every_campaign_it_holds(
    client: CampaignClient,
    sandbox: SandboxServer,
    settings: Settings,
    start_worker: Callable[..., WorkerProcess],
) -> None:
    sandbox.configure(script=[{"status": 429, "code": "rate_limited", "retry_after": RETRY_AFTER}])
    start_worker()
    for cid in ("held_a", "held_b"):
        spec = spec_dict(cid, contacts=3)
        spec["pacing"] = {**spec["pacing"], "max_concurrent_requests": 1}
        await client.submit(parse_spec(spec))

    async def held() -> int | None:
        return await account_hold_until_ms(client.store)

    until = await wait_for(held, timeout=30, what="the provider's 429 hold")
    assert until is not None
    assert until > time.time() * 1000 + (RETRY_AFTER - 5) * 1000
    out = _run(settings, "status", "held_b", "--json")
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["waiting"]["reason"] == "provider_rate_limited"
    out = _run(settings, "status", "held_a")
    assert "provider_rate_limited" in out.stdout or "429" in out.stdout, out.stdout
    # Past the point where a campaign without heartbeat would read as stalled.
    stall_s = settings.lease_seconds + 5 + settings.sweep_interval_seconds
    deadline = time.monotonic() + stall_s + 1
    while time.monotonic() < deadline:
        for cid in ("held_a", "held_b"):
            waiting = (await client.status(cid))["waiting"]
            assert waiting is not None, cid
            assert waiting["reason"] == "provider_rate_limited", (cid, waiting)
            assert waiting["until"] is not None and "429" in waiting["message"]
        await asyncio.sleep(0.5)
