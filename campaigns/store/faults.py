"""**Redis faults**: which errors mean "Redis cannot do this now", and how they are ridden out.

One place decides it, for every process: a fault is never the job's, the
campaign's or the operator's input's fault, so nothing is halted, quarantined
or refused because of one. The connection layer retries it with a bounded
backoff (:func:`redis_retry`), the worker's loop outlasts it
(``worker/settings.py``), and :data:`fault_log` says so once per fault, not
once per attempt.

A fault is one of:

- the transport: connection refused or lost, a timeout, any ``OSError``;
- a refusal that leaves nothing done (Redis refuses these before the first
  write, inside a ``MULTI`` or a script too, so a retry is safe): ``OOM``
  (``maxmemory`` under ``noeviction``), ``LOADING`` (an AOF being read),
  ``READONLY`` (a replica, e.g. during a failover), ``MASTERDOWN`` (a replica
  that lost its primary), ``NOREPLICAS`` (``min-replicas-to-write`` not met),
  ``CLUSTERDOWN``/``TRYAGAIN``;
- a ``WatchError`` that redis-py raises *because* the connection failed while
  a key was watched (arq's ``start_jobs`` does that).

``CLIENT PAUSE`` raises nothing: commands wait until it ends.
Wrong credentials (``AuthenticationError``) are not a fault: waiting cannot fix them.
"""

from __future__ import annotations

import random
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import structlog
from redis._parsers.base import BaseParser
from redis.asyncio.retry import Retry
from redis.backoff import AbstractBackoff
from redis.exceptions import (
    AuthenticationError,
    AuthorizationError,
    BusyLoadingError,
    ClusterDownError,
    MasterDownError,
    OutOfMemoryError,
    ReadOnlyError,
    RedisError,
    ResponseError,
    TryAgainError,
    WatchError,
)
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from campaigns.logs import scrub
from campaigns.store.replicas import NotReplicated

__all__ = [
    "REDIS_FAULTS",
    "FaultLog",
    "NoReplicasError",
    "backoff_seconds",
    "fault_kind",
    "fault_log",
    "is_redis_fault",
    "redis_retry",
]

T = TypeVar("T")

log = structlog.stdlib.get_logger("campaigns.store.faults")


class NoReplicasError(ResponseError):
    """``NOREPLICAS``: the primary has fewer good replicas than ``min-replicas-to-write``."""


_TRANSPORT_FAULTS: tuple[type[BaseException], ...] = (
    RedisConnectionError,  # BusyLoadingError (LOADING) is one
    RedisTimeoutError,
    OSError,  # the builtin TimeoutError too
)
_REFUSAL_FAULTS: tuple[type[BaseException], ...] = (
    OutOfMemoryError,
    ReadOnlyError,
    MasterDownError,
    NoReplicasError,
    ClusterDownError,
    TryAgainError,
)

REDIS_FAULTS: tuple[type[BaseException], ...] = _TRANSPORT_FAULTS + _REFUSAL_FAULTS
"""Every exception class that is a Redis fault (also the connection layer's
``retry_on_error``). Extension point: a new transient condition (e.g. a write
that enough replicas did not confirm) is a class added here, and, if Redis
names it with its own error code, a line in :data:`_REFUSAL_CODES`."""

_REFUSAL_CODES: dict[str, type[ResponseError]] = {
    "OOM": OutOfMemoryError,
    "READONLY": ReadOnlyError,
    "MASTERDOWN": MasterDownError,
    "NOREPLICAS": NoReplicasError,
    "CLUSTERDOWN": ClusterDownError,
    "TRYAGAIN": TryAgainError,
}
"""Error codes Redis answers with when it refuses a command for now. redis-py
names OOM and READONLY itself; the others it leaves as a plain
``ResponseError``, so they are taught to its parser here (a retry matches by class)."""

_NOT_FAULTS: tuple[type[BaseException], ...] = (AuthenticationError, AuthorizationError)

for _code, _cls in _REFUSAL_CODES.items():
    BaseParser.EXCEPTION_CLASSES.setdefault(_code, _cls)


def is_redis_fault(exc: BaseException) -> bool:
    """Is ``exc`` Redis being unable to serve now (wait and retry), not a bad request?"""
    if isinstance(exc, _NOT_FAULTS):
        return False
    if isinstance(exc, WatchError):
        cause = exc.__cause__ or exc.__context__
        return cause is not None and is_redis_fault(cause)
    if isinstance(exc, REDIS_FAULTS):
        return True
    if isinstance(exc, ResponseError):
        return str(exc).split(" ", 1)[0] in _REFUSAL_CODES
    return False


def fault_kind(exc: BaseException) -> str:
    """A name an operator can read in a log line: ``out_of_memory``, ``loading``..."""
    if isinstance(exc, WatchError) and (exc.__cause__ or exc.__context__) is not None:
        return fault_kind(exc.__cause__ or exc.__context__)  # type: ignore[arg-type]
    kinds: list[tuple[type[BaseException], str]] = [
        (BusyLoadingError, "loading"),
        (OutOfMemoryError, "out_of_memory"),
        (ReadOnlyError, "read_only"),
        (MasterDownError, "master_down"),
        (NoReplicasError, "no_replicas"),
        (ClusterDownError, "cluster_down"),
        (TryAgainError, "try_again"),
        (NotReplicated, "not_replicated"),
        (RedisTimeoutError, "timeout"),
        (TimeoutError, "timeout"),
        (RedisConnectionError, "connection_lost"),
        (OSError, "connection_lost"),
    ]
    for cls, kind in kinds:
        if isinstance(exc, cls):
            return kind
    if isinstance(exc, ResponseError):
        code = str(exc).split(" ", 1)[0]
        if code in _REFUSAL_CODES:
            return code.lower()
    return type(exc).__name__


def backoff_seconds(failures: int, *, base: float = 0.05, cap: float = 2.0) -> float:
    """Capped exponential backoff with jitter (half fixed, half random): bounded, never 0."""
    step: float = min(cap, base * 2 ** min(failures, 16))
    return step / 2 + random.uniform(0, step / 2)


class FaultLog:
    """One warning when a Redis fault begins, one info line when Redis serves again.

    Many callers hit the same fault at once (every command of every job); a
    fault of the same kind seen again within ``quiet_seconds`` is the same
    fault. Redis counts as back once an operation succeeded and no fault was
    seen for ``quiet_seconds`` (a read can succeed while writes are refused).
    """

    def __init__(self, quiet_seconds: float = 5.0) -> None:
        self.quiet_seconds = quiet_seconds
        self.current: str | None = None
        self.faults = 0
        """Faults begun in this process (for tests and metrics)."""
        self._since = 0.0
        self._last = 0.0

    def failed(self, exc: BaseException, where: str = "") -> None:
        now = time.monotonic()
        kind = fault_kind(exc)
        if kind != self.current:
            if self.current is None:
                self._since = now
            self.current = kind
            self.faults += 1
            log.warning(
                "redis_fault",
                fault=kind,
                where=where or None,
                error=scrub(str(exc))[:200] or type(exc).__name__,
                action="waiting and retrying; nothing is dropped",
            )
        self._last = now

    def succeeded(self) -> None:
        if self.current is None:
            return
        now = time.monotonic()
        if now - self._last < self.quiet_seconds:
            return
        log.info(
            "redis_recovered", fault=self.current, lasted_seconds=round(self._last - self._since, 1)
        )
        self.current = None


fault_log = FaultLog()
"""The process's fault log: the connection layer, the worker and the dispatcher share it."""


class _FaultRetry(Retry):
    """redis-py's retry, reporting each failure and success to :data:`fault_log`."""

    async def call_with_retry(
        self, do: Callable[[], Awaitable[T]], fail: Callable[[RedisError], Any]
    ) -> T:
        async def observed() -> T:
            try:
                result = await do()
            except BaseException as exc:
                if is_redis_fault(exc):
                    fault_log.failed(exc)
                raise
            if fault_log.current is not None:
                fault_log.succeeded()
            return result

        return await super().call_with_retry(observed, fail)


class _Backoff(AbstractBackoff):
    def compute(self, failures: int) -> float:
        return backoff_seconds(failures, cap=1.0)


def redis_retry(retries: int = 40) -> Retry:
    """The connection layer's retry: every fault, ``retries`` times, up to 1 s apart
    (about 30 s in all); longer faults are the caller's (the worker waits on)."""
    return _FaultRetry(_Backoff(), retries, supported_errors=REDIS_FAULTS)  # type: ignore[arg-type]
