"""Outbound ``call.completed`` webhooks, fire and forget.

A background task looks for newly final calls every ~100 ms and posts the
seed-000 payload. Delivery failures are logged and recorded, never raised:
a real provider's webhooks may arrive late, twice, or never.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
from typing import Any

import httpx

from campaigns.testbed.sandbox.formats import rfc3339
from campaigns.testbed.sandbox.state import SandboxCall, SandboxState, WebhookDelivery

__all__ = ["WebhookNotifier", "call_completed_payload", "sign_payload"]

log = logging.getLogger("campaigns.testbed.sandbox.webhooks")


def sign_payload(secret: str, timestamp: int, body: bytes) -> str:
    """The ``X-Signature`` value: ``t=<ts>,v1=<hex hmac-sha256 of "<ts>." + body>``."""
    digest = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"t={timestamp},v1={digest.hexdigest()}"


def call_completed_payload(
    call: SandboxCall, *, customer_id: str, application_id: str
) -> dict[str, Any]:
    return {
        "event": "call.completed",
        "created_at": rfc3339(call.ended_at),
        "call": {
            "id": call.id,
            "customer_id": customer_id,
            "application_id": application_id,
            "status": call.final_status,
            "direction": "outbound",
            "from": call.from_number,
            "to": call.to_number,
        },
        "variables": call.variables,
        "data": {},
    }


class WebhookNotifier:
    """Polls the state for newly final calls and posts one event per call."""

    def __init__(self, state: SandboxState, *, interval: float = 0.1) -> None:
        self.state = state
        self.interval = interval
        self._client: httpx.AsyncClient | None = None
        self._loop_task: asyncio.Task[None] | None = None
        self._sends: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        self._client = httpx.AsyncClient(timeout=5.0)
        self._loop_task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        tasks = [t for t in (self._loop_task, *self._sends) if t is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._client is not None:
            await self._client.aclose()

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            self.tick()

    def tick(self) -> None:
        """Schedule deliveries for calls that became final since the last tick."""
        fresh = self.state.take_newly_final()
        config = self.state.config
        if not fresh or not config.webhook_url:
            return
        copies = 2 if config.webhook_duplicates else 1
        for call in fresh:
            payload = call_completed_payload(
                call, customer_id=config.customer_id, application_id=config.application_id
            )
            body = json.dumps(payload, separators=(",", ":")).encode()
            for _ in range(copies):
                task = asyncio.create_task(
                    self._deliver(config.webhook_url, body, config.webhook_secret, call.id)
                )
                self._sends.add(task)
                task.add_done_callback(self._sends.discard)

    async def _deliver(self, url: str, body: bytes, secret: str | None, call_id: str) -> None:
        assert self._client is not None
        headers = {"Content-Type": "application/json"}
        now = self.state.clock()
        signature = sign_payload(secret, int(now), body) if secret else None
        if signature is not None:
            headers["X-Signature"] = signature
        delivery = WebhookDelivery(call_id=call_id, url=url, sent_at=now, signature=signature)
        try:
            response = await self._client.post(url, content=body, headers=headers)
            delivery.status_code = response.status_code
        except httpx.HTTPError as exc:
            delivery.error = f"{type(exc).__name__}: {exc}"
            log.warning("webhook for %s to %s failed: %s", call_id, url, delivery.error)
        self.state.record_delivery(delivery)
