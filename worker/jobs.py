"""arq job functions: each checks its JSON arguments and calls one function of ``campaigns``."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import os
import sys
import uuid
from collections.abc import Callable, Coroutine
from typing import Any

import httpx
import structlog
from arq import Retry
from arq.typing import WorkerCoroutine
from redis.exceptions import RedisError

from campaigns import metrics
from campaigns.domain.inputs import SpecError
from campaigns.domain.spec import is_campaign_id, parse_spec
from campaigns.engine import alerts
from campaigns.engine.account import apply_account_event
from campaigns.engine.callbacks import CallbackDeliverer
from campaigns.engine.dispatch import BatchResult, Dispatcher
from campaigns.engine.settlement import Settler
from campaigns.engine.sweeper import sweep
from campaigns.logs import configure_logging, register_secret
from campaigns.operators.control import CampaignClient
from campaigns.operators.reconcile import reconcile
from campaigns.providers import EventError, make_provider
from campaigns.providers.balance import VoxpriaBalance
from campaigns.queue import JobQueue, settlement_queue
from campaigns.settings import Settings
from campaigns.store import Store, now_ms
from campaigns.store.faults import backoff_seconds, fault_log, is_redis_fault

__all__ = [
    "deliver_alert",
    "deliver_callbacks",
    "dispatch_campaign",
    "poll_calls",
    "reconcile_campaign",
    "record_account_event",
    "record_call_event",
    "shutdown",
    "startup",
    "submit_campaign",
    "sweep_campaigns",
]

log = structlog.stdlib.get_logger("worker")


_RECONCILE_TRIES = 60
_MAX_SEQ = 2**53 - 1
_MAX_URL = 2048
_MAX_ALERT_BYTES = 64 * 1024
_EXCERPT_CHARS = 2000
_METRICS_SAMPLE_SECONDS = 2.0
_ALIVE_BEAT_SECONDS = 3.0
_ALIVE_FOR_SECONDS = 10.0
"""A worker counts as alive this long after its last beat (a beat or two may be late)."""


class BadJob(ValueError):
    """A job whose arguments are garbage: dead-letter it with one clear line, keep serving.

    The message starts with the argument at fault (``campaign_id: ...``).
    """


def _show(value: Any) -> str:
    """The offending argument in a message: its type and a short ``repr``."""
    text = repr(value)
    return f"{type(value).__name__} {text if len(text) <= 60 else text[:57] + '...'}"


def _excerpt(args: tuple[Any, ...]) -> str:
    text = json.dumps(args, default=repr)
    return text if len(text) <= _EXCERPT_CHARS else text[:_EXCERPT_CHARS] + "..."


def refuses_bad_jobs(job: Callable[..., Coroutine[Any, Any, Any]]) -> WorkerCoroutine:
    """A ``BadJob`` ends as one log line and a dead letter, never as a retry.

    Retrying cannot fix the arguments; arq's failure path would log a traceback
    and keep nothing an operator can look at. The job returns ``{"refused": why}``.
    """

    @functools.wraps(job)
    async def run(ctx: dict[Any, Any], *args: Any, **kwargs: Any) -> Any:
        try:
            return await job(ctx, *args, **kwargs)
        except BadJob as exc:
            reason = str(exc)
            store: Store = ctx["store"]
            await store.dead_letter(
                {
                    "reason": f"bad job: {reason}",
                    "job_id": ctx.get("job_id"),
                    "function": job.__name__,
                    "args": _excerpt((*args, *kwargs.values())),
                }
            )
            log.warning(
                "job_refused", job_id=ctx.get("job_id"), function=job.__name__, reason=reason
            )
            return {"refused": reason}

    return run


_NO_RETRY = object()
_FAULT_RETRY_CAP_SECONDS = 30.0


def rides_out_redis_faults(
    ended: Any = _NO_RETRY,
) -> Callable[[Callable[..., Coroutine[Any, Any, Any]]], WorkerCoroutine]:
    """A Redis fault that outlasts the connection layer's retries ends the job
    quietly (one ``redis_fault`` line per fault, no traceback per job).

    With ``ended``, the job returns it: a dispatch run (the sweeper restarts
    its campaign once the lease lapses) or a cron job (it runs again next
    tick). Without, arq runs the job again after a backoff (``Retry``): an
    event or an alert is never dropped because Redis refused it.
    """

    def wrap(job: Callable[..., Coroutine[Any, Any, Any]]) -> WorkerCoroutine:
        @functools.wraps(job)
        async def run(ctx: dict[Any, Any], *args: Any, **kwargs: Any) -> Any:
            try:
                return await job(ctx, *args, **kwargs)
            except Exception as exc:
                if not is_redis_fault(exc):
                    raise
                fault_log.failed(exc, where=job.__name__)
                if ended is not _NO_RETRY:
                    return ended
                tries = int(ctx.get("job_try", 1))
                raise Retry(
                    defer=backoff_seconds(tries, base=1.0, cap=_FAULT_RETRY_CAP_SECONDS)
                ) from exc

        return run

    return wrap


async def startup(ctx: dict[str, Any]) -> None:
    """Both workers' startup; the dispatch worker's alone serves metrics and beats.

    Which worker this is, is read from the queue its pool serves, so every way
    of starting one (``run_workers``, the test seams, ``arq`` by hand) agrees.
    """
    settings = Settings()
    serves: str = ctx["redis"].default_queue_name
    settles = serves == settlement_queue(settings.queue_name)
    configure_logging(settings.log_level, settings.log_format, stream=sys.stdout)
    for secret in settings.secret_values():
        register_secret(secret)
    if not settings.provider_api_key.get_secret_value():
        # Also for `arq worker.WorkerSettings` run by hand: every create would be
        # refused as an illegal header, which looks like a provider outage.
        raise SystemExit("DISPATCHER_PROVIDER_API_KEY: must be set")
    store = Store(ctx["redis"], replicas=settings.replica_ack)
    queue = JobQueue(ctx["redis"], settings.queue_name)
    provider = make_provider(settings)
    worker_id = f"{os.uname().nodename}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
    ctx.update(
        settings=settings,
        store=store,
        queue=queue,
        provider=provider,
        dispatcher=Dispatcher(store, provider, queue, settings, worker_id=worker_id),
        settler=Settler(store, provider, settings, queue),
        callbacks=CallbackDeliverer(store, settings),
    )
    ctx["worker_id"] = worker_id
    if settles:
        log.info("worker_started", worker_id=worker_id, queue=serves)
        return
    ctx["alive_beat"] = asyncio.create_task(_note_alive(store, settings.queue_name, worker_id))
    if settings.metrics_port is not None:
        try:
            metrics.serve(settings.metrics_port)
        except OSError as exc:  # taken since main() looked: still one line, exit 2
            print(
                f"error: invalid settings: DISPATCHER_METRICS_PORT: cannot listen on "
                f"0.0.0.0:{settings.metrics_port}: {exc.strerror or exc}",
                file=sys.stderr,
            )
            raise SystemExit(2) from None
        ctx["metrics_sampler"] = asyncio.create_task(
            _sample_metrics(store, settings.queue_name, worker_id)
        )
    log.info(
        "worker_started",
        worker_id=worker_id,
        queue=settings.queue_name,
        dialect=settings.provider_dialect,
        provider_host=httpx.URL(settings.provider_url).host,
        metrics_port=settings.metrics_port,
    )


async def _sample_metrics(store: Store, queue_name: str, worker_id: str) -> None:
    """Refresh the gauges every few seconds; a Redis hiccup skips one sample."""
    while True:
        try:
            await metrics.sample(store, queue_name, worker_id)
        except Exception as exc:
            if not is_redis_fault(exc):
                raise
            fault_log.failed(exc, where="metrics")
        await asyncio.sleep(_METRICS_SAMPLE_SECONDS)


async def _note_alive(store: Store, queue_name: str, worker_id: str) -> None:
    """Say every few seconds that this worker serves ``queue_name`` (``status``'s
    ``no_worker`` reads it: one key, where arq's per-host keys would need a SCAN).
    Here rather than in a worker class, so every arq settings class using
    ``startup`` (the chaos and clock seams, ``arq worker.WorkerSettings``) does it."""
    while True:
        try:
            until = now_ms() + int(_ALIVE_FOR_SECONDS * 1000)
            await store.note_worker_alive(queue_name, worker_id, until)
        except (RedisError, OSError) as exc:
            log.debug("worker_alive_note_failed", error=type(exc).__name__)
        await asyncio.sleep(_ALIVE_BEAT_SECONDS)


async def shutdown(ctx: dict[str, Any]) -> None:
    for name in ("metrics_sampler", "alive_beat"):
        task = ctx.get(name)
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
    if "alive_beat" in ctx:
        with contextlib.suppress(RedisError, OSError):
            await ctx["store"].note_worker_gone(ctx["settings"].queue_name, ctx["worker_id"])
    dispatcher = ctx.get("dispatcher")
    if dispatcher is not None:
        await dispatcher.gate.aclose()
    callbacks = ctx.get("callbacks")
    if callbacks is not None:
        await callbacks.aclose()
    provider = ctx.get("provider")
    if provider is not None:
        await provider.aclose()
    log.info("worker_stopped")


def _campaign_id(value: Any) -> str:
    """The spec's campaign ID rule, whole-string: ``abc\\n`` is not ``abc``."""
    if not isinstance(value, str) or not value:
        raise BadJob(f"campaign_id: expected a non-empty string, got {_show(value)}")
    if not is_campaign_id(value):
        raise BadJob(
            "campaign_id: expected 1-64 characters of letters, digits, '_', '.', '-', "
            f"got {_show(value)}"
        )
    return value


@rides_out_redis_faults({"outcome": "redis_fault", "sent": 0, "next_seq": None})
@refuses_bad_jobs
async def dispatch_campaign(ctx: dict[str, Any], campaign_id: Any, seq: Any) -> dict[str, Any]:
    """Run one dispatch batch of a campaign."""
    campaign_id = _campaign_id(campaign_id)
    if not isinstance(seq, int) or isinstance(seq, bool) or not 0 <= seq <= _MAX_SEQ:
        raise BadJob(f"seq: expected an integer 0..{_MAX_SEQ}, got {_show(seq)}")
    with structlog.contextvars.bound_contextvars(campaign_id=campaign_id):
        result: BatchResult = await ctx["dispatcher"].run_batch(campaign_id, seq)
    if result.outcome == "unknown_campaign":
        # The dispatcher has logged it; keep the job where an operator looks.
        await ctx["store"].dead_letter(
            {
                "reason": f"bad job: campaign_id: no campaign {campaign_id!r}",
                "job_id": ctx.get("job_id"),
                "function": "dispatch_campaign",
                "args": _excerpt((campaign_id, seq)),
            }
        )
    return {"outcome": result.outcome, "sent": result.sent, "next_seq": result.next_seq}


@rides_out_redis_faults()
@refuses_bad_jobs
async def submit_campaign(
    ctx: dict[str, Any], spec: Any, idempotency_key: Any = None
) -> dict[str, Any]:
    """Validate and submit a campaign (a spec as a JSON object), as ``submit_campaign()``.

    Without ``campaign_id`` the ID is derived from ``idempotency_key``; neither,
    or an invalid spec, is refused (dead letter naming the field; nothing written).
    Retrying is safe: the same ID and spec again is a no-op.
    """
    if not isinstance(spec, dict):
        raise BadJob(f"spec: expected a JSON object, got {_show(spec)}")
    if idempotency_key is not None and not isinstance(idempotency_key, str):
        raise BadJob(f"idempotency_key: expected a string, got {_show(idempotency_key)}")
    client = CampaignClient(ctx["store"], ctx["queue"], ctx["settings"])
    try:
        result = await client.submit(parse_spec(spec), idempotency_key=idempotency_key)
    except SpecError as exc:
        field = {"Idempotency-Key": "idempotency_key", "spec": "spec"}.get(
            exc.field, f"spec.{exc.field}"
        )
        raise BadJob(f"{field}: {exc.message}") from None
    log.info("campaign_submitted", campaign_id=result.campaign_id, created=result.created)
    return {
        "campaign_id": result.campaign_id,
        "created": result.created,
        "contacts": result.contacts,
        "duplicates_dropped": result.duplicates_dropped,
    }


@rides_out_redis_faults()
async def record_call_event(ctx: dict[str, Any], payload: Any) -> str:
    """Apply a provider call event (the raw ``call.completed`` webhook payload).

    Any payload is an argument here: the settler dead-letters what it cannot use.
    """
    settler: Settler = ctx["settler"]
    result: str = await settler.record_event(payload)
    return result


@rides_out_redis_faults()
@refuses_bad_jobs
async def record_account_event(ctx: dict[str, Any], payload: Any) -> str:
    """Refresh the cached account balance from a VoIPBIN ``account_updated`` webhook."""
    try:
        return await apply_account_event(ctx["store"], ctx["queue"], ctx["settings"], payload)
    except EventError as exc:
        reason = str(exc)
        raise BadJob(reason if reason.startswith("payload") else f"payload.{reason}") from None


@rides_out_redis_faults()
@refuses_bad_jobs
async def reconcile_campaign(ctx: dict[str, Any], campaign_id: Any) -> dict[str, Any]:
    """Compare a campaign's settled total with the provider's usage for its window."""
    campaign_id = _campaign_id(campaign_id)
    if await ctx["store"].campaign(campaign_id) is None:
        raise BadJob(f"campaign_id: no campaign {campaign_id!r}")
    gate_source = ctx["dispatcher"].gate.source
    credits = gate_source.client if isinstance(gate_source, VoxpriaBalance) else None
    report = await reconcile(ctx["store"], ctx["provider"], campaign_id, credits)
    if report.unsettled_calls and ctx.get("job_try", 1) < _RECONCILE_TRIES:
        # Reconcile once the calls are settled; until then look again shortly.
        raise Retry(defer=5)
    result = report.to_json()
    await ctx["store"].save_reconciliation(campaign_id, result)
    log.info(
        "campaign_reconciled",
        campaign_id=campaign_id,
        settled_micros=report.settled_micros,
        provider_micros=report.provider_micros,
        variance_micros=report.variance_micros,
    )
    return result


def _alert_url(value: Any) -> str:
    """An absolute http(s) URL with a host, that httpx will accept as it is."""
    if not isinstance(value, str) or not 0 < len(value) <= _MAX_URL:
        raise BadJob(f"url: expected an http(s) URL of at most {_MAX_URL} characters")
    try:
        url = httpx.URL(value)
    except (httpx.InvalidURL, ValueError, TypeError):
        url = None
    if url is None or url.scheme not in ("http", "https") or not url.host:
        raise BadJob(f"url: expected an http(s) URL, got {_show(value)}")
    return value


@rides_out_redis_faults()
@refuses_bad_jobs
async def deliver_alert(ctx: dict[str, Any], url: Any, payload: Any) -> int:
    """POST a budget alert to the campaign's configured webhook (retried on failure)."""
    url = _alert_url(url)
    if not isinstance(payload, dict):
        raise BadJob(f"payload: expected a JSON object, got {_show(payload)}")
    if len(json.dumps(payload)) > _MAX_ALERT_BYTES:
        raise BadJob(f"payload: larger than {_MAX_ALERT_BYTES} bytes")
    try:
        return await alerts.deliver_alert(url, payload)
    except httpx.HTTPError as exc:
        raise Retry(defer=min(60, 2 ** ctx.get("job_try", 1))) from exc


@rides_out_redis_faults(0)
async def poll_calls(ctx: dict[str, Any]) -> int:
    """Cron: read back accepted calls that are due (fallback for lost events)."""
    settler: Settler = ctx["settler"]
    return await settler.poll_due()


@rides_out_redis_faults({})
async def deliver_callbacks(ctx: dict[str, Any]) -> dict[str, int]:
    """Cron: send the callback events that are due (new ones, and retries past their backoff)."""
    deliverer: CallbackDeliverer = ctx["callbacks"]
    return (await deliverer.run_once()).to_json()


@rides_out_redis_faults([])
async def sweep_campaigns(ctx: dict[str, Any]) -> list[str]:
    """Cron: restart stalled campaigns and end provider cool-downs."""
    return await sweep(ctx["store"], ctx["queue"], ctx["settings"])
