"""The account-wide do-not-call list in Redis: one set of canonical E.164 numbers.

The claim script reads the same set (``SISMEMBER`` on :attr:`Keys.dnc`), so a
number is suppressed for every campaign the moment the command that added it
is answered: ``SADD`` is one atomic command, and an import is merged by a
script (in bounded steps when it is large). Numbers arrive here already
canonical (``normalize_number``); the store makes no decision about what a
number is.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Sequence
from dataclasses import dataclass
from typing import TypeVar, cast

from redis.asyncio import Redis

from campaigns.store.keys import Keys
from campaigns.store.records import text
from campaigns.store.replicas import ReplicaAck, confirmed
from campaigns.store.scripts import load_script

__all__ = ["DoNotCallList", "MergeResult", "StagedImport"]

STAGING_TTL_MS = 3_600_000
"""An import that dies half-way leaves a staging set that expires by itself."""
MERGE_STEP = 20_000
"""Numbers moved into the list per merge script call: an import of at most this
many merges in one atomic step (about 50 ms of Redis time, measured at 50k per
130 ms); a larger one into a non-empty list in several, so no call holds Redis
for seconds (one step for a million would take about 2.5 s)."""

T = TypeVar("T")


def _aw(result: Awaitable[T] | T) -> Awaitable[T]:
    return cast(Awaitable[T], result)


@dataclass(frozen=True, slots=True)
class MergeResult:
    """What one import did: distinct numbers in it, how many were new, the list's size."""

    numbers: int
    added: int
    listed: int


class DoNotCallList:
    """Reads and atomic writes of the do-not-call set."""

    def __init__(self, redis: Redis, keys: Keys, replicas: ReplicaAck | None = None) -> None:
        self.redis = redis
        self.keys = keys
        # An addition a failover took back would let a listed number be dialled.
        self.replicas = replicas
        self._merge = load_script("dnc_merge").bind(redis, replicas)

    async def add(self, numbers: Sequence[str]) -> int:
        """Add canonical numbers in one ``SADD``; how many were not listed before."""
        if not numbers:
            return 0
        [added] = await confirmed(
            self.redis, self.replicas, lambda pipe: pipe.sadd(self.keys.dnc, *numbers)
        )
        return int(added)

    async def remove(self, numbers: Sequence[str]) -> int:
        """Remove numbers in one ``SREM``; how many were listed."""
        if not numbers:
            return 0
        [removed] = await confirmed(
            self.redis, self.replicas, lambda pipe: pipe.srem(self.keys.dnc, *numbers)
        )
        return int(removed)

    async def listed(self, numbers: Sequence[str]) -> list[bool]:
        """For each number, whether it is on the list (one ``SMISMEMBER``)."""
        if not numbers:
            return []
        found = await _aw(self.redis.smismember(self.keys.dnc, list(numbers)))
        return [bool(f) for f in found]

    async def count(self) -> int:
        return int(await _aw(self.redis.scard(self.keys.dnc)))

    async def numbers(self, page: int = 1000) -> AsyncIterator[str]:
        """Every listed number, in no particular order, ``page`` at a time (``SSCAN``)."""
        cursor = 0
        while True:
            cursor, found = await _aw(self.redis.sscan(self.keys.dnc, cursor, count=page))
            for number in found:
                yield cast(str, text(number))
            if cursor == 0:
                return

    def staged_import(self) -> StagedImport:
        """A new staging set for one import (``async with``; deleted unless merged)."""
        return StagedImport(self, self.keys.dnc_staging(uuid.uuid4().hex))

    async def _commit(self, staging: str) -> MergeResult:
        numbers = int(await _aw(self.redis.scard(staging)))
        added = 0
        while True:
            step, left, listed = await self._merge(
                dnc=self.keys.dnc, staging=staging, step=MERGE_STEP
            )
            added += int(step)
            if int(left) == 0:
                return MergeResult(numbers, added, int(listed))


class StagedImport:
    """Numbers collected in a private set, invisible to the claim until :meth:`commit`.

    Leaving the ``async with`` block without committing (a bad row, an
    interrupted command) deletes the staging set, so an import that fails
    before its merge writes nothing. The merge is one atomic step into an empty
    list or for up to :data:`MERGE_STEP` numbers; a larger one that dies between
    steps leaves part of the file listed (never anything else), and running the
    import again completes it.
    """

    def __init__(self, dnc: DoNotCallList, key: str) -> None:
        self._dnc = dnc
        self.key = key
        self._committed = False

    async def __aenter__(self) -> StagedImport:
        return self

    async def __aexit__(self, *exc: object) -> None:
        if not self._committed:
            await _aw(self._dnc.redis.delete(self.key))

    async def stage(self, numbers: Sequence[str]) -> None:
        """Add one chunk of canonical numbers to the staging set (one round trip)."""
        if not numbers:
            return
        async with self._dnc.redis.pipeline(transaction=False) as pipe:
            pipe.sadd(self.key, *numbers)
            pipe.pexpire(self.key, STAGING_TTL_MS)
            await pipe.execute()

    async def commit(self) -> MergeResult:
        """Merge everything staged into the list in one script (all or nothing)."""
        result = await self._dnc._commit(self.key)
        self._committed = True
        return result
