"""The job queue: arq, wrapped thinly so it can be swapped (arq is in maintenance).

Jobs are serialised as JSON, never pickle: anyone who can write to Redis could
otherwise run code in the worker, and producers in other languages can
enqueue JSON. Job names and arguments are a public contract (docs/jobs.md).
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Iterable, Sequence
from typing import Any

from arq.connections import ArqRedis, RedisSettings
from arq.constants import (
    in_progress_key_prefix,
    job_key_prefix,
    result_key_prefix,
    retry_key_prefix,
)

from campaigns.connection import RedisLocation
from campaigns.domain.inputs import strict_json
from campaigns.store.replicas import ReplicaAck, confirmed

__all__ = [
    "DISPATCH_JOB_PREFIX",
    "JOB_ACCOUNT_EVENT",
    "JOB_ALERT",
    "JOB_CALL_EVENT",
    "JOB_DISPATCH",
    "JOB_RECONCILE",
    "MAX_JOB_BYTES",
    "JobEnvelopeError",
    "JobQueue",
    "campaign_job_keys",
    "event_job_id",
    "json_deserializer",
    "json_serializer",
    "open_queue",
    "parse_job",
    "queue_entry_problem",
    "redis_settings",
    "settlement_queue",
]

JOB_DISPATCH = "dispatch_campaign"
JOB_CALL_EVENT = "record_call_event"
JOB_RECONCILE = "reconcile_campaign"
JOB_ALERT = "deliver_alert"
JOB_ACCOUNT_EVENT = "record_account_event"
_EVENT_JOB_PREFIX = "event:"
DISPATCH_JOB_PREFIX = "dispatch:"
"""Every dispatch run's job ID starts so (``dispatch:<campaign>:<seq>``)."""
_SETTLEMENT_SUFFIX = ":settlement"


def settlement_queue(queue_name: str) -> str:
    """The settlement queue beside the dispatch queue ``queue_name``.

    Call and account events, alerts, reconciliations and the crons are served
    there by a worker with its own job slots, so a webhook's event is never
    queued behind dispatch runs (each holds a slot for up to a job's time).
    """
    return queue_name + _SETTLEMENT_SUFFIX


def _jsonable(value: Any) -> Any:
    """Job results may be exceptions (arq stores failures): keep them readable."""
    if isinstance(value, BaseException):
        return {"error": type(value).__name__, "message": str(value)}
    return str(value)


def json_serializer(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":"), default=_jsonable).encode()


def json_deserializer(data: bytes) -> dict[str, Any]:
    """arq's deserializer: a job that is not a well-formed envelope raises, per job.

    arq turns the exception into a failed job instead of tripping over a
    ``"t": "x"`` or ``"et": 1e300`` later, outside its own error handling.
    """
    return parse_job(data)


MAX_JOB_BYTES = 1024 * 1024
"""A job this large is not one of ours (webhook bodies are capped at 64 KiB)."""

_MAX_DEPTH = 32
_MAX_FUNCTION_NAME = 200
_MAX_JOB_TRY = 2**31 - 1
_MAX_ENQUEUE_MS = 253_402_300_800_000
"""Year 10000 in ms since the epoch: arq turns ``et`` into a datetime, which ends there."""


class JobEnvelopeError(ValueError):
    """A queued job that is not a job envelope; the message names the field at fault."""


def _kind(value: Any) -> str:
    """JSON's name for a parsed value, for messages a producer in any language can read."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def _show(value: Any) -> str:
    """The offending value, short: its JSON kind and a clipped ``repr``."""
    text = repr(value)
    return f"{_kind(value)} {text if len(text) <= 40 else text[:37] + '...'}"


def _refuse_constant(name: str) -> Any:
    raise JobEnvelopeError(f"not JSON: {name} is not a JSON number")


def _check_tree(value: Any) -> None:
    """Bounded nesting and real Unicode, so nothing downstream recurses or fails to encode.

    JSON allows ``"\\ud800"`` (a lone surrogate) which Python keeps but cannot
    encode, so the first Redis key or log line built from it would raise.
    """
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, str):
            try:
                item.encode("utf-8")
            except UnicodeEncodeError:
                raise JobEnvelopeError("not JSON: a string holds a lone surrogate") from None
        elif isinstance(item, dict | list):
            if depth >= _MAX_DEPTH:
                raise JobEnvelopeError(f"not JSON: nested deeper than {_MAX_DEPTH} levels")
            children = [*item.keys(), *item.values()] if isinstance(item, dict) else item
            stack.extend((child, depth + 1) for child in children)


def parse_job(data: bytes) -> dict[str, Any]:
    """Parse and check a job envelope ``{"t", "f", "a", "k", "et"}``; raise naming the field.

    Only UTF-8 JSON is a job: never pickle, and none of ``NaN``/``Infinity``,
    which are not JSON and which arq's arithmetic on ``et`` cannot survive.
    """
    if len(data) > MAX_JOB_BYTES:
        raise JobEnvelopeError(f"job: {len(data)} bytes, above the {MAX_JOB_BYTES} byte limit")
    try:
        text = bytes(data).decode("utf-8")
    except UnicodeDecodeError as exc:
        raise JobEnvelopeError(f"not JSON: invalid UTF-8 at byte {exc.start}") from None
    try:
        envelope = strict_json(text, parse_constant=_refuse_constant)
    except JobEnvelopeError:
        raise
    except (ValueError, RecursionError) as exc:
        raise JobEnvelopeError(f"not JSON: {exc}") from None
    if not isinstance(envelope, dict):
        raise JobEnvelopeError(f"job: expected a JSON object, got {_kind(envelope)}")
    for key in ("t", "f", "a", "k", "et"):
        if key not in envelope:
            raise JobEnvelopeError(f"{key}: missing")
    job_try, name, enqueued = envelope["t"], envelope["f"], envelope["et"]
    if job_try is not None and (_kind(job_try) != "integer" or not 0 <= job_try <= _MAX_JOB_TRY):
        raise JobEnvelopeError(
            f"t: expected null or a try number 0..{_MAX_JOB_TRY}, got {_show(job_try)}"
        )
    if not isinstance(name, str) or not 0 < len(name) <= _MAX_FUNCTION_NAME:
        raise JobEnvelopeError(
            f"f: expected a job name of 1-{_MAX_FUNCTION_NAME} characters, got {_show(name)}"
        )
    if not isinstance(envelope["a"], list):
        raise JobEnvelopeError(f"a: expected an array of arguments, got {_show(envelope['a'])}")
    if not isinstance(envelope["k"], dict):
        raise JobEnvelopeError(f"k: expected an object of arguments, got {_show(envelope['k'])}")
    if _kind(enqueued) != "integer" or not 0 <= enqueued < _MAX_ENQUEUE_MS:
        raise JobEnvelopeError(
            f"et: expected integer milliseconds since the epoch, got {_show(enqueued)}"
        )
    _check_tree(envelope)
    return envelope


def queue_entry_problem(raw_id: bytes, score: float | None) -> str | None:
    """Why arq's poll loop would crash on (or starve behind) this queue entry, if it would.

    arq decodes every ID as UTF-8 and takes ``int(score)`` outside any error
    handling; it skips a score of 0 forever, so enough of them fill every read
    of the queue and nothing else runs.
    """
    try:
        raw_id.decode("utf-8")
    except UnicodeDecodeError:
        return "job id is not UTF-8"
    if score is not None and not (math.isfinite(score) and score > 0):
        return f"score {score!r}: expected the run-at time in milliseconds since the epoch"
    return None


def redis_settings(location: RedisLocation | str) -> RedisSettings:
    """Connection settings that ride out a Redis restart or failover instead of crashing.

    Commands are retried with capped exponential back-off for about 30 s on
    every Redis fault (``campaigns/store/faults.py``: a lost connection, a
    restart, ``LOADING``, ``OOM``, ``READONLY``...). Every script the store runs
    is safe to repeat (records and settles are idempotent; a repeated claim
    only leaves an unsent attempt that the next batch sends under its own key),
    and a refused command did nothing.
    """
    return RedisLocation.of(location).arq_settings()


def campaign_job_keys(campaign_id: str, dispatch_seq: int, thresholds: Sequence[int]) -> list[str]:
    """arq's job, retry and result keys of every job named after a campaign (its
    dispatch batches, reconciliation and budget alerts), for deleting it."""
    job_ids = [f"{DISPATCH_JOB_PREFIX}{campaign_id}:{seq}" for seq in range(dispatch_seq + 1)]
    job_ids += [f"reconcile:{campaign_id}"]
    job_ids += [f"alert:{campaign_id}:{threshold}" for threshold in thresholds]
    prefixes = (job_key_prefix, retry_key_prefix, result_key_prefix)
    return [prefix + job_id for job_id in job_ids for prefix in prefixes]


async def open_queue(
    location: RedisLocation | str,
    queue_name: str,
    *,
    replicas: ReplicaAck | tuple[int, int] | None = None,
) -> JobQueue:
    """The queue's pool (a URL string is a single Redis); the store shares it.

    ``replicas``: events are enqueued only once replicas have them (the ingress).
    """
    pool = await RedisLocation.of(location).open(
        queue_name=queue_name,
        job_serializer=json_serializer,
        job_deserializer=json_deserializer,
    )
    return JobQueue(pool, queue_name, replicas=replicas)


def event_job_id(call_id: str, event: str, body: bytes, key: str | None = None) -> str:
    """Deterministic job id: the same delivery twice becomes one arq job.

    With the provider's own event key (MiniVoice's ``data.event_key``) every
    delivery of that event is one job, even if a retry's body differs; without
    one, the same body is.
    """
    digest = hashlib.sha256(f"key:{key}".encode() if key is not None else body)
    return f"{_EVENT_JOB_PREFIX}{call_id}:{event}:{digest.hexdigest()[:16]}"


class JobQueue:
    """Enqueue the dispatcher's jobs with deterministic IDs, so duplicates collapse.

    Dispatch runs go to ``queue_name``; everything that settles (events,
    alerts, reconciliations) to its settlement queue (:func:`settlement_queue`).
    """

    def __init__(
        self,
        redis: ArqRedis,
        queue_name: str,
        *,
        replicas: ReplicaAck | tuple[int, int] | None = None,
    ) -> None:
        self.redis = redis
        self.queue_name = queue_name
        self.settlement_queue = settlement_queue(queue_name)
        self.replicas = ReplicaAck.of(replicas)

    async def _replicated(self) -> None:
        """Return once replicas have everything written so far (with ``replicas``).

        arq's enqueue runs on a connection of its own; a marker write and ``WAIT``
        on one connection, after it, cover it (replicas apply writes in order).
        A provider's webhook acknowledged on a write a failover took back would
        never be delivered again; refused (``NotReplicated``), it is.
        """
        if self.replicas is not None:
            marker = f"{self.queue_name}:replicated"
            await confirmed(self.redis, self.replicas, lambda p: p.set(marker, 1, px=60_000))

    async def dispatch(self, campaign_id: str, seq: int, defer_seconds: float = 0.0) -> None:
        await self.redis.enqueue_job(
            JOB_DISPATCH,
            campaign_id,
            seq,
            _job_id=f"{DISPATCH_JOB_PREFIX}{campaign_id}:{seq}",
            _queue_name=self.queue_name,
            _defer_by=defer_seconds if defer_seconds > 0 else None,
        )

    async def dispatch_waiting(self, campaign_id: str, seq: int) -> bool:
        """Is this dispatch job queued (or deferred) and not yet started?

        A backlog is not a stall: the sweeper leaves such a campaign alone. A job
        that started and lost its worker is "in progress" with no lease holder.
        """
        job_id = f"{DISPATCH_JOB_PREFIX}{campaign_id}:{seq}"
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.exists(job_key_prefix + job_id)
            pipe.exists(in_progress_key_prefix + job_id)
            queued, running = await pipe.execute()
        return bool(queued) and not running

    async def events_pending(self, event_names: Iterable[str]) -> bool:
        """Whether a call event of these names is still queued or running.

        A worker killed while applying one leaves it to arq, which runs it again
        only once the job's in-progress key expires (the longest job timeout plus
        10 s): until then, "no creation event came" is not yet proven. Both
        queues: events go to the settlement queue, but one enqueued on the
        dispatch queue (before an upgrade, or by a producer following the old
        layout) is served there and counts too.
        """
        for name in event_names:
            pattern = f"{_EVENT_JOB_PREFIX}*:{name}:*"
            for queue in (self.settlement_queue, self.queue_name):
                async for _ in self.redis.zscan_iter(queue, match=pattern, count=1000):
                    return True
        return False

    async def call_event(self, payload: dict[str, Any], job_id: str | None = None) -> None:
        await self.redis.enqueue_job(
            JOB_CALL_EVENT, payload, _job_id=job_id, _queue_name=self.settlement_queue
        )
        await self._replicated()

    async def account_event(self, payload: dict[str, Any], job_id: str) -> None:
        await self.redis.enqueue_job(
            JOB_ACCOUNT_EVENT, payload, _job_id=job_id, _queue_name=self.settlement_queue
        )
        await self._replicated()

    async def alert(self, url: str, payload: dict[str, Any], job_id: str) -> None:
        await self.redis.enqueue_job(
            JOB_ALERT, url, payload, _job_id=job_id, _queue_name=self.settlement_queue
        )

    async def reconcile(self, campaign_id: str, defer_seconds: float = 0.0) -> None:
        await self.redis.enqueue_job(
            JOB_RECONCILE,
            campaign_id,
            _job_id=f"reconcile:{campaign_id}",
            _queue_name=self.settlement_queue,
            _defer_by=defer_seconds if defer_seconds > 0 else None,
        )

    async def aclose(self) -> None:
        await self.redis.aclose()
