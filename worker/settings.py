"""``WorkerSettings`` and ``SettlementSettings`` for arq, and the two workers that
``campaigns worker`` runs with them in one process (``run_workers``).

Settlement never waits behind dispatch: a dispatch run holds a job slot for up to
a job's time, so events, alerts, reconciliations and the crons have a queue and
slots of their own (``<DISPATCHER_QUEUE_NAME>:settlement``).

``GuardedWorker`` is arq's worker made to survive any bytes in its queue and
any Redis fault: arq trusts what it reads, and a job it cannot read can end the
whole process; and an error from Redis outside a job (its poll loop, the
watched transaction that takes a job, a job's final write) ends it too.
"""

from __future__ import annotations

import asyncio
import base64
import functools
import inspect
import signal
import socket
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from signal import Signals
from typing import Any, ClassVar

import structlog
from arq import Worker, cron, func
from arq.constants import (
    abort_jobs_ss,
    in_progress_key_prefix,
    job_key_prefix,
    retry_key_prefix,
)
from arq.worker import async_check_health, get_kwargs

from campaigns.connection import RedisLocation
from campaigns.engine.capacity import SHARE_GRACE_SECONDS
from campaigns.logs import configure_logging, register_secret, scrub
from campaigns.ports import port_problem
from campaigns.queue import (
    DISPATCH_JOB_PREFIX,
    MAX_JOB_BYTES,
    JobEnvelopeError,
    json_deserializer,
    json_serializer,
    parse_job,
    queue_entry_problem,
    settlement_queue,
)
from campaigns.queue import redis_settings as _redis_settings
from campaigns.settings import Settings
from campaigns.store import Store, now_ms
from campaigns.store.faults import backoff_seconds, fault_log, is_redis_fault
from worker.jobs import (
    deliver_alert,
    deliver_callbacks,
    dispatch_campaign,
    poll_calls,
    reconcile_campaign,
    record_account_event,
    record_call_event,
    shutdown,
    startup,
    submit_campaign,
    sweep_campaigns,
)

__all__ = ["GuardedWorker", "SettlementSettings", "WorkerSettings", "main", "run_workers"]

log = structlog.stdlib.get_logger("worker")

_settings = Settings()
_location = RedisLocation.from_settings(_settings)

_FAULT_BACKOFF_CAP_SECONDS = 5.0
"""The longest wait between two tries of the poll loop while Redis fails."""

_DEAD_LETTER_BYTES = 64 * 1024
"""Raw bytes kept in a dead letter; jobs are far smaller, garbage may not be."""

_REASON_CHARS = 500


_SETTLEMENT_FUNCTIONS: list[Any] = [
    func(record_call_event, max_tries=3, keep_result=3600),
    func(reconcile_campaign, max_tries=61, keep_result=3600),
    func(deliver_alert, max_tries=6, keep_result=3600),
    func(record_account_event, max_tries=3, keep_result=3600),
]
_CRON_TIMEOUT = 30


def _crons() -> list[Any]:
    return [
        cron(poll_calls, second=set(range(60)), timeout=_CRON_TIMEOUT, run_at_startup=True),
        cron(deliver_callbacks, second=set(range(60)), timeout=_CRON_TIMEOUT, run_at_startup=True),
        cron(
            sweep_campaigns,
            second=set(range(0, 60, _settings.sweep_interval_seconds)),
            timeout=_CRON_TIMEOUT,
            run_at_startup=True,
        ),
    ]


def _health_check_key(queue_name: str) -> str:
    # Per host, so a check in a replica's container tests that replica.
    return f"{queue_name}:health-check:{socket.gethostname()}"


class WorkerSettings:
    """The dispatch worker: dispatch runs and submits, on ``DISPATCHER_QUEUE_NAME``.

    Read once from ``DISPATCHER_*`` at import, as arq expects class attributes.
    The settlement jobs and the crons are registered here too, as plain jobs:
    one queued here (before the upgrade that moved them to the settlement
    queue, or by a producer following the old layout) is still served, never
    quarantined as unknown. The crons are scheduled by the settlement worker only.
    """

    functions: ClassVar[list[Any]] = [
        # Dispatch jobs never rely on arq's retry: a dead batch is restarted by
        # the sweeper under a new sequence number.
        func(dispatch_campaign, max_tries=1, keep_result=60),
        # Idempotent by campaign ID, so arq may retry it after a Redis hiccup.
        func(submit_campaign, max_tries=3, keep_result=3600),
        *_SETTLEMENT_FUNCTIONS,
        *(func(c.coroutine, name=c.name, max_tries=1, timeout=_CRON_TIMEOUT) for c in _crons()),
    ]
    cron_jobs: ClassVar[list[Any]] = []
    on_startup = startup
    on_shutdown = shutdown
    redis_settings = _redis_settings(_location)
    queue_name = _settings.queue_name
    job_serializer = staticmethod(json_serializer)
    job_deserializer = staticmethod(json_deserializer)
    job_timeout = _settings.job_timeout_seconds
    health_check_interval = 5
    health_check_key = _health_check_key(_settings.queue_name)
    # A dispatch run is a cheap task that sleeps between its campaign's slots, so
    # the worker's limits are its open requests and Redis connections
    # (DISPATCHER_WORKER_MAX_OPEN_REQUESTS, DISPATCHER_REDIS_MAX_CONNECTIONS), not
    # a number of jobs: this only keeps a runaway queue from becoming unbounded tasks.
    max_jobs = 100_000
    # On SIGTERM, dispatch runs stop claiming (GuardedWorker drains the dispatcher)
    # and finish their open requests, well within this, before arq cancels.
    job_completion_wait = 15
    poll_delay = 0.1
    keep_result = 300


class SettlementSettings:
    """The settlement worker: call and account events, alerts, reconciliations and
    the crons, on ``<DISPATCHER_QUEUE_NAME>:settlement``, with slots of its own.

    The same job timeout as the dispatch worker, so a job a killed worker left
    runs again after the same wait (``engine/resolve.py``, ``event_rerun_seconds``).
    """

    functions: ClassVar[list[Any]] = _SETTLEMENT_FUNCTIONS
    cron_jobs: ClassVar[list[Any]] = _crons()
    on_startup = startup
    on_shutdown = shutdown
    redis_settings = WorkerSettings.redis_settings
    queue_name = settlement_queue(_settings.queue_name)
    job_serializer = staticmethod(json_serializer)
    job_deserializer = staticmethod(json_deserializer)
    job_timeout = _settings.job_timeout_seconds
    health_check_interval = 5
    health_check_key = _health_check_key(settlement_queue(_settings.queue_name))
    # Jobs of milliseconds to seconds: many slots, so a burst of webhooks never queues.
    max_jobs = 50
    job_completion_wait = 15
    poll_delay = 0.1
    keep_result = 300


@dataclass(frozen=True, slots=True)
class StoredJob:
    """What a job key holds: its Redis type and, for a string, its size and first bytes."""

    kind: str
    size: int = 0
    head: bytes | None = None

    def dead_letter_fields(self) -> dict[str, Any]:
        """The raw job for the dead letter: text if it is UTF-8, else base64; clipped."""
        if self.head is None:
            return {"job_type": self.kind}
        head = self.head[:_DEAD_LETTER_BYTES]
        fields: dict[str, Any] = {"job_bytes": self.size}
        if len(head) < self.size:
            fields["job_truncated"] = True
        try:
            fields["job"] = head.decode("utf-8")
        except UnicodeDecodeError:
            fields["job_base64"] = base64.b64encode(head).decode("ascii")
        return fields


def _parameters(signature: inspect.Signature) -> str:
    return "(" + ", ".join(list(signature.parameters)[1:]) + ")"


def _printable(text: str) -> str:
    return text if text.isprintable() else ascii(text)


class GuardedWorker(Worker):
    """arq's worker, checking every job before arq runs it; a poison job is quarantined.

    Without this, an envelope with ``"t": "x"``, ``"et": "x"`` or ``"f": ["x"]``,
    a job key that is not a string, a non-UTF-8 job ID or a ``-inf`` score
    raise outside arq's per-job error handling and end the process, and since
    the job stays queued, they end each restarted worker too. Quarantine: the
    raw job goes to the dead-letter list once, with the reason, it leaves the
    queue, one log line says so, and the worker goes on.

    A Redis fault (``campaigns/store/faults.py``) is never a job's fault: the
    connection layer retries each command for about 30 s; a fault that
    outlasts that, or that redis-py reports as a ``WatchError``, ends only the
    current poll (the loop backs off, up to 5 s, and polls again) or the
    current job (left queued: arq runs it again once its in-progress key
    expires, and the sweeper restarts a campaign whose run it ended). Nothing
    is quarantined because Redis refused it, one line is logged per fault, and
    the process ends only on a signal.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._signatures = {
            name: inspect.signature(function.coroutine) for name, function in self.functions.items()
        }
        self._store: Store | None = None
        self._poll_faults = 0

    async def main(self) -> None:
        """arq's main, but Redis not answering at start is waited out, not fatal.

        With sentinels the pool is opened here: arq's own cannot give the
        sentinels a password or a socket timeout (a frozen primary would hang
        the worker)."""
        while self._pool is None:
            try:
                pool = await _location.open(
                    queue_name=self.queue_name,
                    job_serializer=self.job_serializer,
                    job_deserializer=self.job_deserializer,
                    max_connections=_settings.redis_max_connections,
                )
                pool.expires_extra_ms = self.expires_extra_ms
                self._pool = pool
            except Exception as exc:
                if not is_redis_fault(exc):
                    raise
                fault_log.failed(exc, where="start")
                self._poll_faults += 1
                await asyncio.sleep(backoff_seconds(self._poll_faults, cap=5.0))
        await super().main()

    async def _poll_iteration(self) -> None:
        """One poll of arq's loop; a Redis fault ends this poll, not the process."""
        try:
            await super()._poll_iteration()
        except Exception as exc:
            if not is_redis_fault(exc):
                raise
            fault_log.failed(exc, where="queue")
            self._poll_faults += 1
            await asyncio.sleep(backoff_seconds(self._poll_faults, cap=_FAULT_BACKOFF_CAP_SECONDS))
            return
        self._poll_faults = 0
        fault_log.succeeded()

    def handle_sig_wait_for_completion(self, signum: Signals) -> None:
        """SIGTERM: runs are long (up to a job's time), so tell them to hand over
        now rather than be cancelled mid-request when the wait runs out."""
        dispatcher = self.ctx.get("dispatcher")
        if dispatcher is not None:
            dispatcher.drain()
        super().handle_sig_wait_for_completion(signum)

    async def start_jobs(self, job_ids: list[bytes]) -> None:
        if not job_ids:
            return
        async with self.pool.pipeline(transaction=False) as pipe:
            for raw_id in job_ids:
                pipe.zscore(self.queue_name, raw_id)
            scores: Sequence[float | None] = await pipe.execute()
        runnable: list[tuple[bytes, float | None]] = []
        for raw_id, score in zip(job_ids, scores, strict=True):
            problem = queue_entry_problem(raw_id, score)
            if problem is None:
                runnable.append((raw_id, score))
            elif await self._claim(raw_id):
                # Claimed like arq claims a job, so only one worker moves it aside.
                await self._quarantine(raw_id, problem, await self.read_job(raw_id))
        for raw_id in await self._within_share(runnable):
            if self.job_counter >= self.max_jobs:
                return  # as arq does: the rest waits for the next poll
            try:
                await super().start_jobs([raw_id])
            except Exception:
                # arq counted the job and took a slot before its watched
                # transaction failed (a Redis fault: the WatchError of a lost
                # connection), and gives neither back: a worker would run one
                # job fewer per fault until it ran none. No task was started.
                self.job_counter -= 1
                self.sem.release()
                raise

    async def run_job(self, job_id: str, score: int) -> None:
        raw_id = job_id.encode()
        try:
            stored = await self.read_job(raw_id)
            problem = self.job_problem(stored)
            if problem is not None:
                await self._quarantine(raw_id, problem, stored)
                return
            await super().run_job(job_id, score)
        except Exception as exc:
            if is_redis_fault(exc):
                # Redis refused or dropped arq's own reads or writes around the
                # job: the job stays queued and runs again; it is not poison.
                fault_log.failed(exc, where="job")
                return
            # Whatever arq tripped over outside its own handling (a retry counter
            # that is not a number, a key changed under it): the job goes, not the worker.
            problem = f"the worker could not run it: {type(exc).__name__}: {exc}"
            try:
                await self._quarantine(raw_id, problem, await self.read_job(raw_id))
            except Exception as again:
                if not is_redis_fault(again):
                    raise
                fault_log.failed(again, where="job")

    async def read_job(self, raw_id: bytes) -> StoredJob:
        key = job_key_prefix.encode() + raw_id
        # Not a MULTI: Redis refuses a whole MULTI at maxmemory, reads included;
        # a job key is written once, and this worker holds its in-progress key.
        async with self.pool.pipeline(transaction=False) as pipe:
            pipe.type(key)
            pipe.strlen(key)
            pipe.getrange(key, 0, MAX_JOB_BYTES)
            kind, size, head = await pipe.execute(raise_on_error=False)
        if isinstance(kind, Exception):
            raise kind
        kind_name = kind.decode() if isinstance(kind, bytes) else str(kind)
        if kind_name != "string":
            return StoredJob(kind_name)
        return StoredJob(kind_name, int(size), bytes(head))

    def job_problem(self, stored: StoredJob) -> str | None:
        """Why this job must not reach arq, naming the field; ``None`` if arq may run it."""
        if stored.kind == "none":
            return None  # gone meanwhile or expired: arq says so itself
        if stored.head is None:
            return f"job: the key holds a Redis {stored.kind}, not a string"
        if stored.size > MAX_JOB_BYTES:
            return f"job: {stored.size} bytes, above the {MAX_JOB_BYTES} byte limit"
        try:
            envelope = parse_job(stored.head)
        except JobEnvelopeError as exc:
            return str(exc)
        name = envelope["f"]
        signature = self._signatures.get(name)
        if signature is None:
            return f"f: job {name!r} not found"
        try:
            signature.bind(None, *envelope["a"], **envelope["k"])
        except TypeError as exc:
            return f"a: {name}{_parameters(signature)} cannot take these arguments: {exc}"
        return None

    async def _within_share(self, jobs: list[tuple[bytes, float | None]]) -> list[bytes]:
        """The jobs to start: a dispatch run past this worker's fair share of the
        running campaigns is left, for a moment, to a worker with room
        (``campaigns/engine/capacity.py``)."""
        dispatcher = self.ctx.get("dispatcher")
        prefix = DISPATCH_JOB_PREFIX.encode()
        due = sum(1 for raw_id, _ in jobs if raw_id.startswith(prefix))
        if dispatcher is None or not due:
            return [raw_id for raw_id, _ in jobs]
        share = await dispatcher.capacity.share(self.queue_name, due)
        held = sum(1 for job_id in self.tasks if job_id.startswith(DISPATCH_JOB_PREFIX))
        grace_ms = SHARE_GRACE_SECONDS * 1000
        now = now_ms()
        chosen: list[bytes] = []
        for raw_id, score in jobs:
            if raw_id.startswith(prefix):
                # No score: another worker took it meanwhile; arq skips it.
                if held >= share and score is not None and now - score < grace_ms:
                    continue
                held += 1
            chosen.append(raw_id)
        return chosen

    async def _claim(self, raw_id: bytes) -> bool:
        """Take the entry as arq takes a job (its in-progress key), if it is still queued.

        Quarantine removes the key and the entry in one transaction, so a worker
        that gets the key after another moved the entry aside finds it gone.
        """
        key = in_progress_key_prefix.encode() + raw_id
        ttl_ms = int(self.in_progress_timeout_s * 1000)
        if not await self.pool.set(key, b"1", nx=True, px=ttl_ms):
            return False
        if await self.pool.zscore(self.queue_name, raw_id) is None:
            await self.pool.delete(key)
            return False
        return True

    async def _quarantine(self, raw_id: bytes, problem: str, stored: StoredJob) -> None:
        """Dead-letter the raw job, then take it out of the queue, then say so once."""
        problem = scrub(problem[:_REASON_CHARS])
        job_id = raw_id.decode("utf-8", "backslashreplace")
        if self._store is None:
            self._store = Store(self.pool)
        await self._store.dead_letter(
            {
                "reason": f"poison job: {problem}",
                "job_id": job_id,
                "queue": self.queue_name,
                **stored.dead_letter_fields(),
            }
        )
        async with self.pool.pipeline(transaction=True) as tr:
            tr.delete(
                job_key_prefix.encode() + raw_id,
                retry_key_prefix.encode() + raw_id,
                in_progress_key_prefix.encode() + raw_id,
            )
            tr.zrem(self.queue_name, raw_id)
            tr.zrem(abort_jobs_ss, raw_id)
            await tr.execute()
        self.jobs_failed += 1
        log.warning("job_quarantined", job_id=_printable(job_id), reason=problem)


SettingsLike = type | Mapping[str, Any]
"""An arq settings class, or a dict of its attributes (``tests/support.arq_settings``)."""


def _worker(settings: SettingsLike, **changes: Any) -> GuardedWorker:
    own = settings if isinstance(settings, Mapping) else vars(settings)
    return GuardedWorker(**{**get_kwargs(dict(own)), **changes})


def run_workers(
    dispatch: SettingsLike = WorkerSettings,
    settlement: SettingsLike = SettlementSettings,
    *,
    burst: bool = False,
) -> None:
    """Run the dispatch and the settlement worker in this process until a signal.

    They start together and stop together: SIGTERM or SIGINT stops the dispatch
    worker first (its runs hand over, waiting for their creation events, which
    the settlement worker goes on applying), then the settlement worker. Either
    ending on its own (an error) stops the other; the first error is raised.
    With ``burst``, the settlement worker drains its queue after the dispatch
    worker has drained its own (dispatch runs enqueue settlement jobs).
    """
    first = _worker(dispatch, burst=burst)
    second = _worker(settlement)
    loop = first.loop
    stopping: list[Signals] = []

    def on_signal(signum: Signals) -> None:
        if not stopping:
            first.handle_sig_wait_for_completion(signum)
        stopping.append(signum)

    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, functools.partial(on_signal, signum))

    async def run() -> None:
        first.main_task = asyncio.ensure_future(first.main())
        second.main_task = asyncio.ensure_future(second.main())
        done, _ = await asyncio.wait(
            [first.main_task, second.main_task], return_when=asyncio.FIRST_COMPLETED
        )
        if first.main_task in done:
            if burst and not first.main_task.cancelled() and first.main_task.exception() is None:
                second.burst = True
            else:
                second.handle_sig_wait_for_completion(stopping[0] if stopping else Signals.SIGTERM)
        else:
            first.handle_sig_wait_for_completion(Signals.SIGTERM)
        await asyncio.gather(first.main_task, second.main_task, return_exceptions=True)
        for task in (first.main_task, second.main_task):
            if not task.cancelled() and task.exception() is not None:
                raise task.exception()  # type: ignore[misc]

    try:
        loop.run_until_complete(run())
    finally:
        try:
            loop.run_until_complete(first.close())
        finally:
            loop.run_until_complete(second.close())


async def _check(settings: type) -> int:
    own = vars(settings)
    return await async_check_health(
        own["redis_settings"], own["health_check_key"], own["queue_name"]
    )


def check() -> int:
    """Exit status of the health check: 0 when both workers of this host recorded
    their health within their interval (arq's ``--check``, for each queue)."""

    async def both() -> int:
        return max([await _check(WorkerSettings), await _check(SettlementSettings)])

    return asyncio.run(both())


def main(argv: Sequence[str] | None = None) -> None:
    """Run ``run_workers`` (``campaigns worker`` execs this); ``--check`` checks them.

    Logging is configured before arq starts, so its own lines go through the
    same JSON formatting and secret scrubbing as everything else, on stdout.
    """
    args = list(sys.argv[1:] if argv is None else argv)
    unknown = [a for a in args if a not in ("--burst", "--check")]
    if unknown:
        print(
            f"worker: unknown arguments {unknown}; the options are --burst and --check",
            file=sys.stderr,
        )
        raise SystemExit(2)
    if "--check" in args:
        raise SystemExit(check())
    if _settings.metrics_port is not None:
        problem = port_problem("0.0.0.0", _settings.metrics_port)
        if problem is not None:
            print(f"error: invalid settings: DISPATCHER_METRICS_PORT: {problem}", file=sys.stderr)
            raise SystemExit(2)
    configure_logging(_settings.log_level, _settings.log_format, stream=sys.stdout)
    register_secret(_settings.provider_api_key.get_secret_value())
    run_workers(burst="--burst" in args)
