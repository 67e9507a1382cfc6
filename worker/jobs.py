"""arq job functions: each checks its JSON arguments and calls one function of ``campaigns``."""

from __future__ import annotations

import os
import uuid
from typing import Any

import httpx
import structlog
from arq import Retry

from campaigns.engine import alerts
from campaigns.engine.dispatch import BatchResult, Dispatcher
from campaigns.engine.settlement import Settler
from campaigns.engine.sweeper import sweep
from campaigns.logs import configure_logging, register_secret
from campaigns.operators.reconcile import reconcile
from campaigns.providers import make_provider
from campaigns.queue import JobQueue
from campaigns.settings import Settings
from campaigns.store import Store

__all__ = [
    "deliver_alert",
    "dispatch_campaign",
    "poll_calls",
    "reconcile_campaign",
    "record_call_event",
    "shutdown",
    "startup",
    "sweep_campaigns",
]

log = structlog.stdlib.get_logger("worker")


_RECONCILE_TRIES = 60


class BadJob(ValueError):
    """A job whose arguments are garbage: fail it with one clear line, keep serving."""


async def startup(ctx: dict[str, Any]) -> None:
    settings = Settings()
    configure_logging(settings.log_level, settings.log_format)
    register_secret(settings.provider_api_key.get_secret_value())
    if settings.webhook_secret is not None:
        register_secret(settings.webhook_secret.get_secret_value())
    store = Store(ctx["redis"])
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
    )
    log.info(
        "worker_started",
        worker_id=worker_id,
        queue=settings.queue_name,
        dialect=settings.provider_dialect,
        provider_host=httpx.URL(settings.provider_url).host,
    )


async def shutdown(ctx: dict[str, Any]) -> None:
    provider = ctx.get("provider")
    if provider is not None:
        await provider.aclose()
    log.info("worker_stopped")


def _text(value: Any, name: str) -> str:
    if not isinstance(value, str) or not value or len(value) > 200:
        raise BadJob(f"{name}: expected a non-empty string, got {type(value).__name__}")
    return value


async def dispatch_campaign(ctx: dict[str, Any], campaign_id: Any, seq: Any) -> dict[str, Any]:
    """Run one dispatch batch of a campaign."""
    campaign_id = _text(campaign_id, "campaign_id")
    if not isinstance(seq, int) or isinstance(seq, bool) or seq < 0:
        raise BadJob(f"seq: expected a non-negative integer, got {seq!r}")
    with structlog.contextvars.bound_contextvars(campaign_id=campaign_id):
        result: BatchResult = await ctx["dispatcher"].run_batch(campaign_id, seq)
    return {"outcome": result.outcome, "sent": result.sent, "next_seq": result.next_seq}


async def record_call_event(ctx: dict[str, Any], payload: Any) -> str:
    """Apply a provider call event (the raw ``call.completed`` webhook payload)."""
    settler: Settler = ctx["settler"]
    result: str = await settler.record_event(payload)
    return result


async def reconcile_campaign(ctx: dict[str, Any], campaign_id: Any) -> dict[str, Any]:
    """Compare a campaign's settled total with the provider's usage for its window."""
    campaign_id = _text(campaign_id, "campaign_id")
    report = await reconcile(ctx["store"], ctx["provider"], campaign_id)
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


async def deliver_alert(ctx: dict[str, Any], url: Any, payload: Any) -> int:
    """POST a budget alert to the campaign's configured webhook (retried on failure)."""
    if not isinstance(url, str) or not url.startswith(("http://", "https://")):
        raise BadJob("url: expected an http(s) URL")
    if not isinstance(payload, dict):
        raise BadJob("payload: expected a JSON object")
    try:
        return await alerts.deliver_alert(url, payload)
    except httpx.HTTPError as exc:
        raise Retry(defer=min(60, 2 ** ctx.get("job_try", 1))) from exc


async def poll_calls(ctx: dict[str, Any]) -> int:
    """Cron: read back accepted calls that are due (fallback for lost events)."""
    settler: Settler = ctx["settler"]
    return await settler.poll_due()


async def sweep_campaigns(ctx: dict[str, Any]) -> list[str]:
    """Cron: restart stalled campaigns and end provider cool-downs."""
    return await sweep(ctx["store"], ctx["queue"], ctx["settings"])
