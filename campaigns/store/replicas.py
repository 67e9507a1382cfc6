"""Writes a failover cannot take back: a write, then ``WAIT`` on the same connection.

Redis replicates asynchronously: a primary lost a moment after it answered may
take the write with it, and the replica the sentinels promote never saw it.
A write the dispatcher acts on (a claim or stamp before a create request, a
recorded call ID, a settlement, an operator's pause or ``dnc add``) is sent in
one pipeline with ``WAIT numreplicas timeout``, on one connection, one round
trip. Fewer replicas than asked for by the timeout: :class:`NotReplicated`,
and the caller treats the write as not done (docs/operations.md).

``WAIT`` alone is not enough with Sentinel: a primary frozen (or cut off) while
a replica is promoted answers again before the sentinels demote it, with a
replica not yet moved to the new primary still attached and acknowledging.
A write it takes then is thrown away when it is demoted (split brain). So with
sentinels the write is confirmed only if, after its ``WAIT``, a majority of the
sentinels answer and every one that answers names the connection's node as the
primary with no failover under way (:func:`still_primary`).
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.client import Pipeline
from redis.asyncio.sentinel import SentinelConnectionPool
from redis.exceptions import TimeoutError as RedisTimeoutError
from redis.utils import str_if_bytes

__all__ = ["NotReplicated", "ReplicaAck", "confirmed", "still_primary"]


class NotReplicated(RedisTimeoutError):
    """A write reached the primary but not enough replicas in time: treat it as not
    done. A timeout, so everything that rides out a Redis fault rides this out too."""


@dataclass(frozen=True, slots=True)
class ReplicaAck:
    """How many replicas must acknowledge a confirmed write, within how many ms."""

    replicas: int
    timeout_ms: int

    @classmethod
    def of(cls, value: ReplicaAck | tuple[int, int] | None) -> ReplicaAck | None:
        if value is None or isinstance(value, ReplicaAck):
            return value
        replicas, timeout_ms = value
        return cls(replicas, timeout_ms) if replicas > 0 else None

    def check(self, acknowledged: int) -> None:
        if acknowledged < self.replicas:
            raise NotReplicated(
                f"the write was acknowledged by {acknowledged} of the "
                f"{self.replicas} replicas DISPATCHER_REDIS_MIN_REPLICAS asks for within "
                f"{self.timeout_ms} ms: treated as not done (a failover could take it back)"
            )


async def confirmed(
    redis: Redis, ack: ReplicaAck | None, write: Callable[[Pipeline], object]
) -> list[Any]:
    """Run the commands ``write`` queues, then ``WAIT`` for ``ack``; their results.

    Without ``ack`` (``DISPATCHER_REDIS_MIN_REPLICAS=0``) no ``WAIT`` is sent.
    An error answer to a command is raised, as an unpipelined call would.
    With sentinels, the node that took the write must still be the primary
    they name once it is acknowledged (:func:`still_primary`).
    """
    async with redis.pipeline(transaction=False) as pipe:
        write(pipe)
        if ack is not None:
            pipe.execute_command("WAIT", ack.replicas, ack.timeout_ms)
        # Our own connection, so we know which node the write went to (a retry
        # reconnects this same object). The pipeline gives it back to the pool.
        connection = pipe.connection = await redis.connection_pool.get_connection()
        results: list[Any] = await pipe.execute()
        node = (connection.host, int(connection.port)) if hasattr(connection, "host") else None
    if ack is not None:
        ack.check(int(results.pop()))
        if node is not None:
            await still_primary(redis, node, ack.timeout_ms / 1000)
    return results


_FAILING_OVER = frozenset({"s_down", "o_down", "failover_in_progress"})
"""Sentinel flags of a primary that may be replaced, its writes thrown away."""

_AGREE_SECONDS = 3.0
"""Right after a failover the sentinels learn the new primary one by one (about a
second): a write to it is confirmed once they agree, refused if they do not by then."""


async def still_primary(redis: Redis, node: tuple[str, int], seconds: float) -> None:
    """Raise :class:`NotReplicated` unless the sentinels name ``node`` as the primary.

    A majority of the sentinels must answer (each within ``seconds``), and every
    one that answers must name ``node`` and not see it down or being replaced; asked
    again for up to :data:`_AGREE_SECONDS`. Refused: idle connections are dropped,
    so the next write asks the sentinels for the primary. Without sentinels
    (one Redis URL) there is nothing to ask.
    """
    pool = redis.connection_pool
    if not isinstance(pool, SentinelConnectionPool):
        return
    sentinels: list[Redis] = pool.sentinel_manager.sentinels
    view = _views.setdefault(pool, _SentinelView(sentinels, pool.service_name))
    deadline = asyncio.get_running_loop().time() + _AGREE_SECONDS
    while True:
        answers = await view.asked_after_now(seconds)
        named = [a for a in answers if isinstance(a, tuple)]
        doubts = [f"{where} {flags}" for where, flags in named if where != node or flags]
        if not doubts and len(named) > len(sentinels) // 2:
            return
        if asyncio.get_running_loop().time() >= deadline:
            break
        await asyncio.sleep(0.1)
    await pool.disconnect(inuse_connections=False)
    seen = "; ".join(map(str, doubts)) or f"{len(named)} of {len(sentinels)} sentinels answered"
    raise NotReplicated(
        f"the write went to {node[0]}:{node[1]}, which the sentinels do not confirm as "
        f"the primary ({seen}): treated as not done (a failover could take it back)"
    )


class _SentinelView:
    """The sentinels' answers, asked once for every write waiting when the asking began.

    A write's check must be asked after its ``WAIT`` returned; a round already
    under way may have been sent before, so a writer joins the next one. Under
    load that is one round in flight per process instead of one per write.
    """

    def __init__(self, sentinels: list[Redis], service: str) -> None:
        self._sentinels = sentinels
        self._service = service
        self._next: asyncio.Future[list[Any]] | None = None
        self._round: asyncio.Task[None] | None = None

    async def asked_after_now(self, seconds: float) -> list[Any]:
        loop = asyncio.get_running_loop()
        if self._round is not None and self._round.get_loop() is not loop:
            self._next = self._round = None  # a pool reused on a new event loop
        if self._next is None:
            self._next = loop.create_future()
        waiting = self._next
        if self._round is None or self._round.done():
            self._round = asyncio.create_task(self._ask(seconds))
        return await asyncio.shield(waiting)

    async def _ask(self, seconds: float) -> None:
        while (waiting := self._next) is not None:
            self._next = None
            try:
                answers = await asyncio.gather(
                    *(asyncio.wait_for(_named(s, self._service), seconds) for s in self._sentinels),
                    return_exceptions=True,
                )
            except BaseException as exc:
                waiting.set_exception(NotReplicated(f"the sentinels were not asked: {exc!r}"))
                raise
            waiting.set_result(answers)


_views: weakref.WeakKeyDictionary[SentinelConnectionPool, _SentinelView] = (
    weakref.WeakKeyDictionary()
)


async def _named(sentinel: Redis, service: str) -> tuple[tuple[str, int], list[str]]:
    """What one sentinel says: the primary's address, and its failing-over flags if
    that address is the one the sentinel watches (the leader of a failover already
    names the promoted replica while its record still describes the old primary)."""
    async with sentinel.pipeline(transaction=False) as pipe:
        pipe.execute_command("SENTINEL GET-MASTER-ADDR-BY-NAME", service)
        pipe.execute_command("SENTINEL MASTER", service)
        address, master = await pipe.execute()
    where = (str_if_bytes(address[0]), int(address[1]))
    flags = set(str(master.get("flags", "")).split(","))
    same = (str_if_bytes(master.get("ip")), int(master.get("port", 0))) == where
    return where, sorted(flags & _FAILING_OVER) if same else []
