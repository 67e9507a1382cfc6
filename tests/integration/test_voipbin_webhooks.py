"""Signed VoIPBIN webhooks through ``campaigns ingress``: the sandbox's VoIPBIN mode
posts ``call_hangup`` signed ``X-VoIPBIN-Signature``; the ingress queues it, a
worker settles the call from it; a forged or unsigned delivery queues nothing."""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Callable

import httpx
from arq.connections import RedisSettings, create_pool

from campaigns.domain.spec import parse_spec
from campaigns.operators.control import CampaignClient
from campaigns.operators.ingress import create_ingress_app_from_settings
from campaigns.queue import json_deserializer, settlement_queue
from campaigns.settings import Settings
from campaigns.testbed.sandbox import SandboxServer, ThreadedServer
from tests.conftest import spec_dict
from tests.support import WorkerProcess, wait_for

SECRET = "vb-whsec-0123456789abcdef"
FLOW = "f1a2b3c4-d5e6-7890-1234-567890abcdef"


def _voipbin(settings: Settings, sandbox: SandboxServer) -> Settings:
    return settings.model_copy(
        update={"provider_dialect": "voipbin", "provider_url": f"{sandbox.url}/v1.0"}
    )


async def test_call_hangup_webhooks_are_verified_queued_and_settle_the_calls(
    client: CampaignClient,
    sandbox: SandboxServer,
    settings: Settings,
    start_worker: Callable[..., WorkerProcess],
) -> None:
    vb = _voipbin(settings, sandbox)
    app = create_ingress_app_from_settings(vb, secret=SECRET)
    with ThreadedServer(app, health_path="/healthz") as ingress:
        sandbox.configure(
            balance_micros=10_000_000,
            webhook_url=f"{ingress.url}/webhooks/voipbin",
            webhook_secret=SECRET,
        )
        start_worker(vb)
        spec = spec_dict("vbhooks", contacts=3, currency="USD", call={"flow_id": FLOW})
        await client.submit(parse_spec(spec))

        async def settled() -> bool:
            return (await client.get("vbhooks")).settled == 3

        await wait_for(settled, timeout=40, what="settlement")

        async def delivered() -> list[dict[str, object]]:
            with sandbox.state.lock:
                done = [d.to_dict() for d in sandbox.state.webhook_deliveries]
            return [d for d in done if d["status_code"] == 202] if len(done) >= 3 else []

        accepted = await wait_for(delivered, timeout=20, what="three accepted deliveries")
        assert {d["event"] for d in accepted} == {"call_hangup"} and len(accepted) == 3

        async def applied() -> bool:
            jobs = await client.store.redis.keys("arq:result:event:*")
            return len(jobs) == 3

        await wait_for(applied, timeout=20, what="the three call events applied by the worker")
        assert await client.store.dead_letters(10) == [], "every call_hangup was readable"

        # A forged and an unsigned delivery are refused and queue nothing.
        body = json.dumps({"type": "call_hangup", "data": {"id": "x", "status": "hangup"}})
        wrong = "sha256=" + hmac.new(b"other", body.encode(), hashlib.sha256).hexdigest()
        pool = await create_pool(
            RedisSettings.from_dsn(settings.redis_url), job_deserializer=json_deserializer
        )
        try:
            before = len(await pool.queued_jobs(queue_name=settlement_queue(settings.queue_name)))
            async with httpx.AsyncClient(base_url=ingress.url, timeout=10) as http:
                forged = await http.post(
                    "/webhooks/voipbin", content=body, headers={"X-VoIPBIN-Signature": wrong}
                )
                unsigned = await http.post("/webhooks/voipbin", content=body)
            assert (forged.status_code, unsigned.status_code) == (401, 401)
            assert (
                len(await pool.queued_jobs(queue_name=settlement_queue(settings.queue_name)))
                == before
            )
        finally:
            await pool.aclose()
