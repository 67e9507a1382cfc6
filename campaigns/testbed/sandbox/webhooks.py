"""Outbound webhooks: MiniVoice's documented call events, VoIPBIN's as before.

A background task looks for due lifecycle events every ~100 ms. A MiniVoice
call gets ``call.created`` when it is created, ``call.answered`` when answered
(completed calls only) and ``call.completed`` / ``call.failed`` /
``call.canceled`` when it ends: the documented payload, ``data.event_key``
included, signed with ``X-MiniVoice-Timestamp`` + ``X-MiniVoice-Signature``
(webhooks/signatures) and re-delivered after a non-2xx answer or a network
error (``webhook_retries``). A VoIPBIN call gets VoIPBIN's ``call_hangup``
(``{"type", "data": call}``) signed ``X-VoIPBIN-Signature``, and with
``account_webhooks``, the VoIPBIN billing tutorial's ``account_updated`` once its hangup has been paid.
A Voxpria call gets the Webhooks API page's ``call.completed`` or
``call.failed`` signed ``X-VoxPria-Signature``.
Delivery failures are logged and recorded, never raised: a real provider's
webhooks may arrive late, twice, or never.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
from typing import Any, Literal

import httpx

from campaigns.providers.minivoice import SIGNATURE_HEADER, TIMESTAMP_HEADER, sign_webhook
from campaigns.providers.voipbin import SIGNATURE_HEADER as VOIPBIN_SIGNATURE_HEADER
from campaigns.providers.voxpria_calls import SIGNATURE_HEADER as VOXPRIA_SIGNATURE_HEADER
from campaigns.providers.voxpria_calls import sign_webhook as sign_voxpria
from campaigns.testbed.sandbox.config import SandboxConfig
from campaigns.testbed.sandbox.formats import rfc3339
from campaigns.testbed.sandbox.minivoice import minivoice_status
from campaigns.testbed.sandbox.state import Lifecycle, SandboxCall, SandboxState, WebhookDelivery
from campaigns.testbed.sandbox.voipbin import render_call, sign_voipbin
from campaigns.testbed.sandbox.voxpria_calls import voxpria_event

__all__ = [
    "WebhookNotifier",
    "account_updated_payload",
    "call_completed_payload",
    "minivoice_event",
    "minivoice_headers",
    "sign_payload",
]

log = logging.getLogger("campaigns.testbed.sandbox.webhooks")

Scheme = Literal["minivoice", "x-signature", "voipbin", "voxpria"]
_FINAL_EVENT = {"completed": "call.completed", "canceled": "call.canceled"}
"""Every other final status (failed, busy, no_answer) is a ``call.failed``."""


def sign_payload(secret: str, timestamp: int, body: bytes) -> str:
    """The contract's ``X-Signature`` value: ``t=<ts>,v1=<hex hmac-sha256 of "<ts>." + body>``."""
    digest = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"t={timestamp},v1={digest.hexdigest()}"


def minivoice_headers(secret: str, timestamp: int, body: bytes) -> dict[str, str]:
    """The documented signature headers (webhooks/signatures) for one delivery."""
    stamp = str(timestamp)
    return {TIMESTAMP_HEADER: stamp, SIGNATURE_HEADER: sign_webhook(secret, stamp, body)}


def minivoice_event(
    call: SandboxCall, what: Lifecycle, *, metadata: bool = False
) -> dict[str, Any]:
    """A documented MiniVoice call event (webhooks/call-created) for one call.

    ``created_at`` is when what the event reports happened: creation, the
    answer (stated ``billsec_seconds`` before the end, see
    ``SandboxCall.answered_at``), or the end.
    """
    if what == "created":
        event, at, status = "call.created", call.created_at, "dialing"
    elif what == "answered":
        event, at, status = "call.answered", call.answered_at, "in_progress"
    else:
        event = _FINAL_EVENT.get(call.final_status, "call.failed")
        at, status = call.ended_at, minivoice_status(call, call.ended_at)
    body: dict[str, Any] = {
        "id": call.id,
        "customer_id": call.customer_id,
        "application_id": call.application_id,
        "provider_call_id": call.provider_call_id,
        "status": status,
        "direction": "outbound",
        "from": call.from_number,
        "to": call.to_number,
        "route_mode": "webhook",
        "routing_target": call.application_id,
    }
    if metadata:
        body["metadata"] = call.variables
    return {
        "event": event,
        "created_at": rfc3339(at),
        "call": body,
        "variables": {},
        "data": {"event_key": f"{call.id}:{event}"},
    }


def call_completed_payload(
    call: SandboxCall, *, customer_id: str, application_id: str
) -> dict[str, Any]:
    """The contract's ``call.completed`` (the MiniVoice spend-controls page's shape), as VoIPBIN calls still get it."""
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
    """The VoIPBIN billing tutorial's ``account_updated``: the VoIPBIN balance after every hangup so far."""
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


def _encode(payload: dict[str, Any]) -> bytes:
    return json.dumps(payload, separators=(",", ":")).encode()


class WebhookNotifier:
    """Polls the state for due lifecycle events and posts them."""

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
        """Schedule deliveries for the events that fell due since the last tick."""
        due = self.state.take_webhook_events()
        config = self.state.config
        if not due or not config.webhook_url:
            return
        url = config.webhook_url
        if config.account_webhooks and any(
            what == "final" and call.dialect == "voipbin" for what, call in due
        ):
            body = _encode(account_updated_payload(self.state))
            self._send(config, url, body, "x-signature", "account_updated", "account_updated")
        copies = 2 if config.webhook_duplicates else 1
        for what, call in due:
            if call.dialect == "minivoice":
                payload = minivoice_event(call, what, metadata=config.webhook_metadata)
                scheme: Scheme = "minivoice"
                event = str(payload["event"])
            elif call.dialect == "voxpria" and what == "final":
                # The Webhooks API page's call.completed / call.failed, X-VoxPria-Signature.
                payload = voxpria_event(call)
                scheme, event = "voxpria", str(payload["event"])
            elif what == "final":
                # VoIPBIN's own call_hangup, signed its own way (X-VoIPBIN-Signature).
                payload = {"type": "call_hangup", "data": render_call(call, call.ended_at)}
                scheme, event = "voipbin", "call_hangup"
            else:
                continue
            body = _encode(payload)
            for _ in range(copies):
                self._send(config, url, body, scheme, call.id, event)

    def _send(
        self, config: SandboxConfig, url: str, body: bytes, scheme: Scheme, what: str, event: str
    ) -> None:
        task = asyncio.create_task(self._deliver(config, url, body, scheme, what, event))
        self._sends.add(task)
        task.add_done_callback(self._sends.discard)

    async def _deliver(
        self, config: SandboxConfig, url: str, body: bytes, scheme: Scheme, what: str, event: str
    ) -> None:
        """Post, and post again after a non-2xx or a network error (each try recorded)."""
        delay = config.webhook_retry_seconds
        for try_no in range(config.webhook_retries + 1):
            if try_no:
                await asyncio.sleep(delay)
                delay *= 2
            if await self._post(config.webhook_secret, url, body, scheme, what, event):
                return

    async def _post(
        self, secret: str | None, url: str, body: bytes, scheme: Scheme, what: str, event: str
    ) -> bool:
        assert self._client is not None
        headers = {"Content-Type": "application/json"}
        now = self.state.clock()
        signature: str | None = None
        if secret:
            if scheme == "minivoice":
                signed = minivoice_headers(secret, int(now), body)
                signature = signed[SIGNATURE_HEADER]
            elif scheme == "voipbin":
                signature = sign_voipbin(secret, body)
                signed = {VOIPBIN_SIGNATURE_HEADER: signature}
            elif scheme == "voxpria":
                signature = sign_voxpria(secret, body)
                signed = {VOXPRIA_SIGNATURE_HEADER: signature}
            else:
                signature = sign_payload(secret, int(now), body)
                signed = {"X-Signature": signature}
            headers.update(signed)
        delivery = WebhookDelivery(
            call_id=what, url=url, sent_at=now, signature=signature, event=event
        )
        try:
            response = await self._client.post(url, content=body, headers=headers)
            delivery.status_code = response.status_code
        except httpx.HTTPError as exc:
            delivery.error = f"{type(exc).__name__}: {exc}"
            log.warning("webhook %s for %s to %s failed: %s", event, what, url, delivery.error)
        self.state.record_delivery(delivery)
        return delivery.status_code is not None and 200 <= delivery.status_code < 300
