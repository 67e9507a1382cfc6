"""Where Redis is: one URL, or the Sentinels that know the current primary.

Every process (worker, CLI, API, ingress, demo) opens Redis here, so a
Sentinel deployment works everywhere alike. With sentinels the client is
redis-py's ``redis.asyncio.sentinel.Sentinel`` (the class arq's own Sentinel
support uses), asked for the primary on every new connection: after a failover
a connection error or a ``READONLY`` answer drops the connection, and the next
one goes to the primary the sentinels promoted, in every process, without a
restart. arq's ``create_pool`` cannot pass a password or timeouts to the
sentinels themselves, so the pool is built here the way arq builds it and
handed to arq (the worker and the queue) and to the store alike.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any, cast

from arq.connections import ArqRedis, RedisSettings, create_pool
from redis.asyncio.connection import BlockingConnectionPool
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import Sentinel, SentinelConnectionPool, SentinelManagedConnection
from redis.backoff import NoBackoff

from campaigns.settings import Settings, redis_location
from campaigns.store.faults import REDIS_FAULTS, is_redis_fault, redis_retry

__all__ = ["RedisLocation"]

_RETRIES = 40
"""Commands retried with capped exponential back-off, about 30 s: a restart or a
failover (sentinel ``down-after-milliseconds`` plus the election) is ridden out."""
_SOCKET_SECONDS = 5.0
"""A primary frozen (``SIGSTOP``, a partition) answers nothing: after this a
command gives up on it, and the retry asks the sentinels again."""


class _AskEachTime(SentinelManagedConnection):
    """A sentinel-managed connection that asks the sentinels before every attempt.

    redis-py's retries each address it was given as often as the whole command
    (about 30 s) before asking again, so a client would keep knocking at a
    killed primary long after a replica was promoted. Here the socket connect
    is tried once; the retry around it asks the sentinels again.
    """

    async def connect_to(self, address: tuple[str, int]) -> None:
        retry, self.retry = self.retry, Retry(NoBackoff(), 0)
        try:
            await super().connect_to(address)  # type: ignore[no-untyped-call]
        finally:
            self.retry = retry


class _BlockingSentinelPool(SentinelConnectionPool, BlockingConnectionPool):
    """The sentinels' pool, bounded: past its connections a command waits for one."""


_POOL_WAIT_SECONDS = 60
"""A command waits this long for a free connection of a bounded pool, then fails
as a Redis fault (which every caller rides out or retries)."""


def _retry() -> Retry:
    """The connection layer's retry on every Redis fault (``store/faults.py``)."""
    return redis_retry(_RETRIES)


_RETRY_ON = list(REDIS_FAULTS)


@dataclass(frozen=True, slots=True)
class RedisLocation:
    """A Redis URL, or sentinels with the service name; passwords kept apart."""

    url: str = "redis://127.0.0.1:6379/0"
    sentinels: tuple[tuple[str, int], ...] = ()
    service: str | None = None
    password: str | None = field(default=None, repr=False)
    sentinel_password: str | None = field(default=None, repr=False)
    socket_seconds: float = _SOCKET_SECONDS

    @classmethod
    def from_settings(cls, settings: Settings) -> RedisLocation:
        def secret(value: Any) -> str | None:
            return None if value is None else str(value.get_secret_value())

        return cls(
            url=settings.redis_url,
            sentinels=tuple(settings.redis_sentinel_list),
            service=settings.redis_sentinel_master,
            password=secret(settings.redis_password),
            sentinel_password=secret(settings.redis_sentinel_password),
            # A WAIT for replicas must never outlast the socket timeout.
            socket_seconds=max(_SOCKET_SECONDS, settings.redis_replica_timeout_ms / 1000 + 2),
        )

    @classmethod
    def of(cls, where: RedisLocation | str) -> RedisLocation:
        """A location as given, or a single Redis at a URL."""
        return where if isinstance(where, RedisLocation) else cls(url=where)

    @property
    def uses_sentinels(self) -> bool:
        return bool(self.sentinels)

    @property
    def setting(self) -> str:
        """The setting an operator fixes when Redis cannot be reached."""
        return "DISPATCHER_REDIS_SENTINELS" if self.sentinels else "DISPATCHER_REDIS_URL"

    def describe(self) -> str:
        """Where Redis is expected, for messages: never a credential."""
        if not self.sentinels:
            return redis_location(self.url)
        hosts = ",".join(f"[{h}]:{p}" if ":" in h else f"{h}:{p}" for h, p in self.sentinels)
        return f"sentinel service {self.service!r} via {hosts}"

    def arq_settings(self) -> RedisSettings:
        """arq's settings for the same place (its health check and ``--check``)."""
        if self.sentinels:
            settings = RedisSettings(
                host=list(self.sentinels),
                sentinel=True,
                sentinel_master=self.service or "mymaster",
                password=self.password,
            )
        else:
            settings = RedisSettings.from_dsn(self.url)
            if self.password is not None:
                settings.password = self.password
        settings.retry = _retry()
        settings.retry_on_error = list(_RETRY_ON)  # type: ignore[arg-type]
        settings.retry_on_timeout = True
        settings.conn_retries = 30
        return settings

    def client(
        self,
        *,
        retries: bool = True,
        timeout: float | None = None,
        max_connections: int | None = None,
    ) -> ArqRedis:
        """A client (connections open lazily); ``retries=False`` for a one-shot check;
        ``max_connections``: a bounded pool whose commands wait for a free connection."""
        seconds = self.socket_seconds if timeout is None else timeout
        options: dict[str, Any] = {"socket_connect_timeout": seconds}
        if retries:
            options.update(retry=_retry(), retry_on_error=list(_RETRY_ON), retry_on_timeout=True)
        else:
            options.update(retry_on_timeout=False)
        if not self.sentinels:
            if not retries:
                options["socket_timeout"] = seconds
            if self.password is not None:
                options["password"] = self.password
            if max_connections is not None:
                pool = BlockingConnectionPool.from_url(
                    self.url, max_connections=max_connections, timeout=_POOL_WAIT_SECONDS, **options
                )
                return cast(ArqRedis, ArqRedis.from_pool(pool))
            return cast(ArqRedis, ArqRedis.from_url(self.url, **options))
        # Against a frozen primary a command must give up, so the retry asks again.
        options["socket_timeout"] = seconds
        sentinel_options: dict[str, Any] = {
            "socket_connect_timeout": seconds,
            "socket_timeout": seconds,
        }
        if self.sentinel_password is not None:
            sentinel_options["password"] = self.sentinel_password
        pool_options: dict[str, Any] = {}
        if max_connections is not None:
            pool_options.update(
                connection_pool_class=_BlockingSentinelPool,
                max_connections=max_connections,
                timeout=_POOL_WAIT_SECONDS,
            )
        manager = Sentinel(  # type: ignore[no-untyped-call]
            list(self.sentinels),
            sentinel_kwargs=sentinel_options,
            password=self.password,
            **options,
        )
        client = manager.master_for(
            self.service or "mymaster",
            redis_class=ArqRedis,
            connection_class=_AskEachTime,
            **pool_options,
        )
        return cast(ArqRedis, client)

    async def open(
        self,
        *,
        queue_name: str,
        job_serializer: Any = None,
        job_deserializer: Any = None,
        max_connections: int | None = None,
    ) -> ArqRedis:
        """The pool arq's ``create_pool`` makes (checked with a PING, retried for
        about 30 s, so a process started before Redis waits for it), from the
        sentinels when there are any; ``max_connections``: bounded (a worker)."""
        if not self.sentinels and max_connections is None:
            return await create_pool(
                self.arq_settings(),
                job_serializer=job_serializer,
                job_deserializer=job_deserializer,
                default_queue_name=queue_name,
            )
        attempts = 30
        for attempt in range(attempts + 1):
            pool = self.client(max_connections=max_connections)
            pool.job_serializer = job_serializer
            pool.job_deserializer = job_deserializer
            pool.default_queue_name = queue_name
            try:
                await pool.ping()
            except Exception as exc:
                await pool.aclose()
                if not is_redis_fault(exc):
                    raise
                if attempt == attempts:
                    raise
                await asyncio.sleep(1)
            else:
                return pool
        raise AssertionError("unreachable")
