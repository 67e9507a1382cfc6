"""Idempotency-Key records of the HTTP API: the first answer to a key, kept a day.

A POST with a key first takes the key (``SET NX``, with a short TTL while it
runs); a retry meanwhile waits for that answer; a 2xx answer is then kept for
:data:`KEEP_SECONDS` and given again, status and body, to every retry with the
same request. The same key with another request is a conflict. An answer that
changed nothing (4xx, 5xx) is not kept: the key is let go, so a corrected retry
may use it. Which request a key was first used with is a digest the caller makes
(for a create: the spec's value fingerprint, so spellings do not matter).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable
from dataclasses import dataclass, field
from typing import Any, cast

from redis.asyncio import Redis

from campaigns.store.keys import Keys

__all__ = ["KEEP_SECONDS", "IdempotencyBusy", "IdempotencyConflict", "IdempotencyRecords", "Replay"]

KEEP_SECONDS = 24 * 3600
"""How long a kept answer is given again (at least a day, as clients retry for hours)."""
_RUNNING_MS = 120_000
"""A request holding its key lets go after this even if its process died."""
_POLL_SECONDS = 0.05


class IdempotencyConflict(Exception):
    """The key was first used with another request."""


class IdempotencyBusy(Exception):
    """The first request with this key is still running."""


@dataclass(frozen=True, slots=True)
class Replay:
    """A kept answer."""

    status: int
    body: str
    headers: dict[str, str] = field(default_factory=dict)


class IdempotencyRecords:
    """Take, keep and read back answers by idempotency key."""

    def __init__(self, redis: Redis, keys: Keys) -> None:
        self.redis = redis
        self.keys = keys

    async def begin(self, key: str, request: str, *, wait_seconds: float) -> Replay | None:
        """Take ``key`` for ``request`` (None: go ahead), or the kept answer to replay.

        Raises :class:`IdempotencyConflict` when the key belongs to another
        request, :class:`IdempotencyBusy` when its first request is still
        running after ``wait_seconds``.
        """
        name = self.keys.idempotency(key)
        deadline = time.monotonic() + wait_seconds
        while True:
            taken = await cast(
                Awaitable[bool | None],
                self.redis.set(name, json.dumps({"request": request}), nx=True, px=_RUNNING_MS),
            )
            if taken:
                return None
            raw = await cast(Awaitable[bytes | str | None], self.redis.get(name))
            if raw is None:
                continue  # let go meanwhile: take it
            record: dict[str, Any] = json.loads(raw)
            if record.get("request") != request:
                raise IdempotencyConflict(key)
            if "status" in record:
                return Replay(int(record["status"]), str(record["body"]), record.get("headers", {}))
            if time.monotonic() >= deadline:
                raise IdempotencyBusy(key)
            await asyncio.sleep(_POLL_SECONDS)

    async def keep(self, key: str, request: str, answer: Replay) -> None:
        """Keep the answer to ``request`` under ``key`` for :data:`KEEP_SECONDS`."""
        record = {
            "request": request,
            "status": answer.status,
            "body": answer.body,
            "headers": answer.headers,
        }
        await cast(
            Awaitable[Any],
            self.redis.set(self.keys.idempotency(key), json.dumps(record), ex=KEEP_SECONDS),
        )

    async def release(self, key: str) -> None:
        """Let go of a key taken by :meth:`begin` whose answer is not kept."""
        await cast(Awaitable[Any], self.redis.delete(self.keys.idempotency(key)))
