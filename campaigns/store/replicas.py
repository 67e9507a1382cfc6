"""Writes a failover cannot take back: a write, then ``WAIT`` on the same connection.

Redis replicates asynchronously: a primary lost a moment after it answered may
take the write with it, and the replica the sentinels promote never saw it.
A write the dispatcher acts on (a claim or stamp before a create request, a
recorded call ID, a settlement, an operator's pause or ``dnc add``) is sent in
one pipeline with ``WAIT numreplicas timeout``, on one connection, one round
trip. Fewer replicas than asked for by the timeout: :class:`NotReplicated`,
and the caller treats the write as not done (docs/operations.md).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.client import Pipeline
from redis.exceptions import TimeoutError as RedisTimeoutError

__all__ = ["NotReplicated", "ReplicaAck", "confirmed"]


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
    """
    async with redis.pipeline(transaction=False) as pipe:
        write(pipe)
        if ack is not None:
            pipe.execute_command("WAIT", ack.replicas, ack.timeout_ms)
        results: list[Any] = await pipe.execute()
    if ack is not None:
        ack.check(int(results.pop()))
    return results
