"""The job queue: arq, wrapped thinly so it can be swapped (arq is in maintenance).

Jobs are serialised as JSON, never pickle: anyone who can write to Redis could
otherwise run code in the worker, and producers in other languages can
enqueue JSON. Job names and arguments are a public contract (docs/jobs.md).
"""

from __future__ import annotations

import json
from typing import Any

from arq.connections import ArqRedis, RedisSettings, create_pool
from arq.constants import in_progress_key_prefix, job_key_prefix
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

__all__ = [
    "JOB_ALERT",
    "JOB_CALL_EVENT",
    "JOB_DISPATCH",
    "JOB_RECONCILE",
    "JobQueue",
    "json_deserializer",
    "json_serializer",
    "open_queue",
    "redis_settings",
]

JOB_DISPATCH = "dispatch_campaign"
JOB_CALL_EVENT = "record_call_event"
JOB_RECONCILE = "reconcile_campaign"
JOB_ALERT = "deliver_alert"


def _jsonable(value: Any) -> Any:
    """Job results may be exceptions (arq stores failures): keep them readable."""
    if isinstance(value, BaseException):
        return {"error": type(value).__name__, "message": str(value)}
    return str(value)


def json_serializer(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":"), default=_jsonable).encode()


def json_deserializer(data: bytes) -> Any:
    return json.loads(data)


def redis_settings(redis_url: str) -> RedisSettings:
    """Connection settings that ride out a Redis restart instead of crashing.

    Commands are retried with capped exponential back-off for about 30 s on
    connection errors. Every script the store runs is safe to repeat (records
    and settles are idempotent; a repeated claim only leaves an unsent attempt
    that the next batch sends under its own key).
    """
    settings = RedisSettings.from_dsn(redis_url)
    settings.retry = Retry(ExponentialBackoff(cap=1.0, base=0.05), retries=40)
    settings.retry_on_error = [RedisConnectionError, RedisTimeoutError, OSError]
    settings.retry_on_timeout = True
    settings.conn_retries = 30
    return settings


async def open_queue(redis_url: str, queue_name: str) -> JobQueue:
    pool = await create_pool(
        redis_settings(redis_url),
        job_serializer=json_serializer,
        job_deserializer=json_deserializer,
        default_queue_name=queue_name,
    )
    return JobQueue(pool, queue_name)


class JobQueue:
    """Enqueue the dispatcher's jobs with deterministic IDs, so duplicates collapse."""

    def __init__(self, redis: ArqRedis, queue_name: str) -> None:
        self.redis = redis
        self.queue_name = queue_name

    async def dispatch(self, campaign_id: str, seq: int, defer_seconds: float = 0.0) -> None:
        await self.redis.enqueue_job(
            JOB_DISPATCH,
            campaign_id,
            seq,
            _job_id=f"dispatch:{campaign_id}:{seq}",
            _queue_name=self.queue_name,
            _defer_by=defer_seconds if defer_seconds > 0 else None,
        )

    async def dispatch_waiting(self, campaign_id: str, seq: int) -> bool:
        """Is this dispatch job queued (or deferred) and not yet started?

        A backlog is not a stall: the sweeper leaves such a campaign alone. A job
        that started and lost its worker is "in progress" with no lease holder.
        """
        job_id = f"dispatch:{campaign_id}:{seq}"
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.exists(job_key_prefix + job_id)
            pipe.exists(in_progress_key_prefix + job_id)
            queued, running = await pipe.execute()
        return bool(queued) and not running

    async def call_event(self, payload: dict[str, Any], job_id: str | None = None) -> None:
        await self.redis.enqueue_job(
            JOB_CALL_EVENT, payload, _job_id=job_id, _queue_name=self.queue_name
        )

    async def alert(self, url: str, payload: dict[str, Any], job_id: str) -> None:
        await self.redis.enqueue_job(
            JOB_ALERT, url, payload, _job_id=job_id, _queue_name=self.queue_name
        )

    async def reconcile(self, campaign_id: str, defer_seconds: float = 0.0) -> None:
        await self.redis.enqueue_job(
            JOB_RECONCILE,
            campaign_id,
            _job_id=f"reconcile:{campaign_id}",
            _queue_name=self.queue_name,
            _defer_by=defer_seconds if defer_seconds > 0 else None,
        )

    async def aclose(self) -> None:
        await self.redis.aclose()
