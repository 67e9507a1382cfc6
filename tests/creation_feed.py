"""MiniVoice's documented ``call.created`` webhook, fed to a settler from the test process.

The sandbox does not send creation events yet, and the MiniVoice adapter does not
read them yet (both are being rewritten beside this): until then a test feeds
each call the sandbox places, as the documented payload
(doc.minivoice.eu ``webhooks/call-created``: whole-second ``created_at``, no
attempt ID in ``variables``), to ``Settler.record_event`` of a dialect object
that reads that payload. What it exercises is the engine's side: matching an
event to its attempt by caller ID, number and send window.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

from redis.exceptions import RedisError

from campaigns.engine.settlement import Settler
from campaigns.providers import CallInfo
from campaigns.providers.base import EventError
from campaigns.providers.minivoice import MiniVoice
from campaigns.testbed.sandbox import SandboxServer, parse_rfc3339


def documented_created(call: dict[str, Any]) -> dict[str, Any]:
    """The documented ``call.created`` payload for a sandbox call (``/_sandbox/calls`` row)."""
    at = datetime.fromtimestamp(int(parse_rfc3339(call["created_at"])), UTC)
    return {
        "event": "call.created",
        "created_at": at.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "call": {
            "id": call["id"],
            "status": "in_progress",
            "direction": "outbound",
            "from": call["from"],
            "to": call["to"],
        },
        "variables": {},
        "data": {"event_key": f"{call['id']}:call.created"},
    }


class DocumentedMiniVoice(MiniVoice):
    """MiniVoice reading ``call.created`` as documented, other events as before."""

    @staticmethod
    def parse_event(payload: Any) -> tuple[str, CallInfo]:
        if isinstance(payload, dict) and payload.get("event") == "call.created":
            call = payload["call"]
            try:
                created = int(parse_rfc3339(payload["created_at"]) * 1000)
            except (KeyError, ValueError) as exc:
                raise EventError(f"created_at: {exc}") from None
            return "call.created", CallInfo(
                call["id"],
                str(call.get("status", "in_progress")),
                to=call["to"],
                caller_id=call["from"],
                created_at_ms=created,
            )
        return MiniVoice.parse_event(payload)


class CreationFeed:
    """Posts each new sandbox call's creation event ``delay`` seconds after it appears."""

    def __init__(self, sandbox: SandboxServer, settler: Settler, *, delay: float = 0.2) -> None:
        self.sandbox = sandbox
        self.settler = settler
        self.delay = delay
        self.seen: set[str] = set()
        self.results: dict[str, str] = {}
        self._task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        while True:
            for call in self.sandbox.calls():
                if call["id"] not in self.seen:
                    self.seen.add(call["id"])
                    asyncio.get_running_loop().call_later(
                        self.delay, lambda c=call: asyncio.ensure_future(self._post(c))
                    )
            await asyncio.sleep(0.05)

    async def _post(self, call: dict[str, Any]) -> None:
        """Retried while Redis is away, as MiniVoice retries a webhook on any non-2xx."""
        for _ in range(50):
            try:
                result = await self.settler.record_event(documented_created(call))
            except (RedisError, OSError):
                await asyncio.sleep(0.2)
                continue
            self.results[call["id"]] = result
            return

    async def __aenter__(self) -> CreationFeed:
        self._task = asyncio.create_task(self._run())
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._task is not None
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)
