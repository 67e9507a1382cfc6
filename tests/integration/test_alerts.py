"""Budget alerts fire once per threshold crossing, with a webhook to a real receiver."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from campaigns.domain.spec import parse_spec
from campaigns.operators.control import CampaignClient
from campaigns.testbed.sandbox import SandboxServer, ThreadedServer
from tests.conftest import spec_dict
from tests.support import WorkerProcess, wait_for


async def test_thresholds_fire_once_each_with_a_webhook(
    client: CampaignClient, sandbox: SandboxServer, start_worker: Callable[..., WorkerProcess]
) -> None:
    received: list[dict[str, Any]] = []

    async def hook(request: Request) -> JSONResponse:
        received.append(await request.json())
        return JSONResponse({"ok": True})

    receiver = ThreadedServer(Starlette(routes=[Route("/alerts", hook, methods=["POST"])]))
    receiver.start()
    try:
        worker = start_worker()
        # 10 calls of 10,000 micros settled against a 0.12 budget: 83% spent at the end,
        # and reservations (20,000 each) push "spent + reserved" past 50% early.
        spec = spec_dict("alerted", contacts=10, budget="0.12", max_call_seconds=61)
        spec["alerts"] = {
            "thresholds_percent": [50, 80, 100],
            "webhook_url": f"{receiver.url}/alerts",
        }
        spec["pacing"] = {"calls_per_second": 50, "batch_size": 10, "max_in_flight": 3}
        await client.submit(parse_spec(spec))

        async def finished() -> bool:
            c = await client.get("alerted")
            return c.state in ("completed", "halted") and c.settled == c.accepted

        await wait_for(finished, timeout=40, what="campaign finished and settled")
        await wait_for(lambda: _at_least(received, 2), timeout=15, what="alert webhooks")
        await asyncio.sleep(1.0)
        thresholds = sorted(a["threshold_percent"] for a in received)
        assert len(thresholds) == len(set(thresholds)), "a threshold fired twice"
        assert 50 in thresholds and 80 in thresholds
        assert all(a["campaign_id"] == "alerted" and a["currency"] == "EUR" for a in received)
        assert worker.log_text().count('"budget_alert"') == len(thresholds)
    finally:
        receiver.stop()


async def _at_least(items: list[Any], n: int) -> bool:
    return len(items) >= n
