"""Callback events to producers: signed, retried with backoff, at least once.

The events are written by the store's scripts into the outbox, in the same
atomic step as the change they report (``campaigns/store/callbacks.py``); this
module turns each into its JSON body and POSTs it, through the alerts' HTTP
path, to the campaign's ``callbacks.url`` or the account's
``DISPATCHER_CALLBACK_URL``. A 2xx acknowledges it; anything else leaves it in
the outbox to be sent again after ``DISPATCHER_CALLBACK_RETRY_SECONDS``,
doubling per delivery up to :data:`MAX_BACKOFF_SECONDS`, under the same event
ID; after ``DISPATCHER_CALLBACK_MAX_ATTEMPTS`` it is kept as failed for an
operator (``campaigns callbacks``). Ordering is not promised; the event ID is
the receiver's key for dropping duplicates.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx
import structlog

from campaigns.domain.money import format_micros
from campaigns.domain.signatures import SIGNATURE_HEADER, sign_signature
from campaigns.engine.alerts import deliver_alert
from campaigns.settings import Settings
from campaigns.store import Store, now_ms
from campaigns.store.callbacks import OutboxEvent, callback_store

__all__ = [
    "EVENT_ID_HEADER",
    "MAX_BACKOFF_SECONDS",
    "CallbackDeliverer",
    "DeliveryPass",
    "backoff_ms",
    "event_payload",
]

log = structlog.stdlib.get_logger("campaigns.engine.callbacks")

MAX_BACKOFF_SECONDS = 300.0
"""The longest wait between two deliveries of one event."""
EVENT_ID_HEADER = "X-Event-ID"
"""The event ID again, as a header, for receivers that de-duplicate before parsing."""
DELIVERY_TIMEOUT_SECONDS = 5.0
"""One POST, connect to last byte; a receiver slower than this counts as failed."""
_BATCH = 32
"""Events sent at once (concurrently) within a pass."""
_PASS_SECONDS = 15.0
"""No new batch starts after this: a pass ends well inside its cron job's timeout."""
_LOCK_MS = 60_000


def backoff_ms(deliveries: int, base_seconds: float) -> int:
    """How long after its ``deliveries``-th failed delivery an event is sent again."""
    seconds = min(base_seconds * 2 ** max(0, deliveries - 1), MAX_BACKOFF_SECONDS)
    return int(seconds * 1000)


def _iso(ms: str) -> str:
    moment = datetime.fromtimestamp(int(ms or 0) / 1000, UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def event_payload(fields: dict[str, str]) -> dict[str, Any]:
    """The JSON body of one event, from the fields the script wrote (docs/callbacks.md).

    Built the same way on every delivery, so a re-sent event is the same body.
    """
    kind = fields.get("type", "")
    payload: dict[str, Any] = {
        "event_id": fields.get("event_id"),
        "type": kind,
        "campaign_id": fields.get("campaign_id"),
        "at": _iso(fields.get("at", "0")),
    }
    if kind == "campaign.state_changed":
        code = fields.get("halt_code") or None
        halted = fields.get("to") in ("halted", "paused") and code is not None
        payload.update(
            {
                "from": fields.get("from") or None,
                "to": fields.get("to"),
                "halt": {"code": code, "message": fields.get("halt_message", "")}
                if halted
                else None,
            }
        )
    else:
        cost = int(fields.get("cost") or 0)
        payload.update(
            {
                "attempt_id": fields.get("attempt_id"),
                "call_id": fields.get("call_id") or None,
                "status": fields.get("status"),
                "billsec": int(fields.get("billsec") or 0),
                "cost_micros": cost,
                "cost": {"amount": format_micros(cost, 6), "currency": fields.get("currency")},
                "cost_estimated": fields.get("cost_estimated") == "1",
                "error_code": fields.get("error_code") or None,
                "error_message": fields.get("error_message") or None,
            }
        )
    return payload


@dataclass(slots=True)
class DeliveryPass:
    """What one pass did, by event count."""

    delivered: int = 0
    retrying: int = 0
    failed: int = 0
    no_url: int = 0

    def to_json(self) -> dict[str, Any]:
        return {
            "delivered": self.delivered,
            "retrying": self.retrying,
            "failed": self.failed,
            "no_url": self.no_url,
        }


class CallbackDeliverer:
    """Runs delivery passes (the worker's ``deliver_callbacks`` cron job)."""

    def __init__(self, store: Store, settings: Settings) -> None:
        self.store = store
        self.callbacks = callback_store(store)
        self.settings = settings
        self._client: httpx.AsyncClient | None = None
        self._warned_unsigned = False

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    def _backoff(self, deliveries: int) -> int:
        return backoff_ms(deliveries, self.settings.callback_retry_seconds)

    async def run_once(self) -> DeliveryPass:
        """Deliver what is due: retries whose backoff is over, then new events."""
        result = DeliveryPass()
        if not await self.callbacks.waiting():
            return result
        token = uuid.uuid4().hex
        if not await self.callbacks.take_lock(token, _LOCK_MS):
            return result  # another worker's pass is running
        if self._client is None:
            self._client = httpx.AsyncClient(timeout=DELIVERY_TIMEOUT_SECONDS)
        urls: dict[str, str | None] = {}
        deadline = time.monotonic() + _PASS_SECONDS
        try:
            while time.monotonic() < deadline:
                batch = await self.callbacks.claim_due(self._backoff, _BATCH)
                if len(batch) < _BATCH:
                    batch += await self.callbacks.read_new(_BATCH - len(batch))
                if not batch:
                    break
                await asyncio.gather(*(self._deliver(e, urls, result) for e in batch))
        finally:
            await self.callbacks.release_lock(token)
        return result

    async def _url(self, campaign_id: str, urls: dict[str, str | None]) -> str | None:
        if campaign_id not in urls:
            campaign = await self.store.campaign(campaign_id)
            own = campaign.spec.callbacks.url if campaign is not None else None
            urls[campaign_id] = own or self.settings.callback_url
        return urls[campaign_id]

    def _headers(self, event_id: str) -> Any:
        secret = self.settings.callback_secret

        def headers(body: bytes) -> dict[str, str]:
            found = {EVENT_ID_HEADER: event_id}
            if secret is not None:
                stamp = int(time.time())
                found[SIGNATURE_HEADER] = sign_signature(
                    secret.get_secret_value(), body, timestamp=stamp
                )
            return found

        if secret is None and not self._warned_unsigned:
            self._warned_unsigned = True
            log.warning("callbacks_unsigned", detail="DISPATCHER_CALLBACK_SECRET is not set")
        return headers

    async def _deliver(
        self, event: OutboxEvent, urls: dict[str, str | None], result: DeliveryPass
    ) -> None:
        url = await self._url(event.campaign_id, urls)
        if url is None:
            await self.callbacks.delivered(event, status_code=0, at_ms=now_ms(), result="no_url")
            result.no_url += 1
            return
        try:
            status = await deliver_alert(
                url,
                event_payload(event.fields),
                DELIVERY_TIMEOUT_SECONDS,
                headers=self._headers(event.event_id),
                client=self._client,
            )
        except httpx.HTTPStatusError as exc:
            error = f"HTTP {exc.response.status_code}"
        except httpx.HTTPError as exc:
            error = f"{type(exc).__name__}: {exc}"[:300]
        else:
            await self.callbacks.delivered(event, status_code=status, at_ms=now_ms())
            result.delivered += 1
            return
        fields = {"event_id": event.event_id, "delivery": event.deliveries, "error": error}
        if event.deliveries >= self.settings.callback_max_attempts:
            await self.callbacks.give_up(event, error=error, at_ms=now_ms())
            result.failed += 1
            log.warning("callback_failed", campaign_id=event.campaign_id, **fields)
        else:
            await self.callbacks.will_retry(event, error=error, at_ms=now_ms())
            result.retrying += 1
            log.info("callback_retrying", campaign_id=event.campaign_id, **fields)
