"""Outbound ``call.completed`` webhooks (and VoIPBIN ``account_updated``), fire and forget.

A background task looks for newly final calls every ~100 ms and posts the
seed-000 payload; with ``account_webhooks``, once VoIPBIN calls hung up and
paid, seed 001's ``account_updated`` with the balance after them. Delivery failures are logged and recorded, never raised:
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
from campaigns.testbed.sandbox.voipbin import hangup_webhook

__all__ = ["WebhookNotifier", "account_updated_payload", "call_completed_payload", "sign_payload"]

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


def account_updated_payload(state: SandboxState) -> dict[str, Any]:
    """Seed 001's ``account_updated``: the VoIPBIN balance after every hangup so far."""
    with state.lock:
        state.debit_hangups()
        config = state.config
        return {
            "event_type": "account_updated",
            "timestamp": rfc3339(state.clock()),
            "data": {
                "id": f"ba_{config.application_id}",
                "customer_id": config.customer_id,
                "name": "Sandbox Account",
                "plan_type": "free",
                "plan_status": "active",
                "balance_credit": state.balance_micros or 0,
                "balance_token": state.balance_tokens,
            },
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
        if config.account_webhooks and any(call.dialect == "voipbin" for call in fresh):
            payload = account_updated_payload(self.state)
            body = json.dumps(payload, separators=(",", ":")).encode()
            self._send(config.webhook_url, body, config.webhook_secret, "account_updated")
        for call in fresh:
            signed: dict[str, str] | None = None
            if call.dialect == "voipbin":
                # VoIPBIN's own call_hangup, signed its own way (X-VoIPBIN-Signature).
                body, signed = hangup_webhook(call, self.state.clock(), config.webhook_secret)
            else:
                payload = call_completed_payload(
                    call, customer_id=config.customer_id, application_id=config.application_id
                )
                body = json.dumps(payload, separators=(",", ":")).encode()
            for _ in range(copies):
                self._send(config.webhook_url, body, config.webhook_secret, call.id, signed)

    def _send(
        self,
        url: str,
        body: bytes,
        secret: str | None,
        what: str,
        signed: dict[str, str] | None = None,
    ) -> None:
        task = asyncio.create_task(self._deliver(url, body, secret, what, signed))
        self._sends.add(task)
        task.add_done_callback(self._sends.discard)

    async def _deliver(
        self,
        url: str,
        body: bytes,
        secret: str | None,
        call_id: str,
        signed: dict[str, str] | None = None,
    ) -> None:
        assert self._client is not None
        headers = {"Content-Type": "application/json"}
        now = self.state.clock()
        signature = sign_payload(secret, int(now), body) if secret else None
        if signed is not None:
            headers, signature = signed, signed.get("X-VoIPBIN-Signature")
        elif signature is not None:
            headers["X-Signature"] = signature
        delivery = WebhookDelivery(call_id=call_id, url=url, sent_at=now, signature=signature)
        try:
            response = await self._client.post(url, content=body, headers=headers)
            delivery.status_code = response.status_code
        except httpx.HTTPError as exc:
            delivery.error = f"{type(exc).__name__}: {exc}"
            log.warning("webhook for %s to %s failed: %s", call_id, url, delivery.error)
        self.state.record_delivery(delivery)
