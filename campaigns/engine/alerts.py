"""Budget alerts: a warning (and an optional webhook) once per threshold crossing.

A threshold counts spent plus reserved against the budget, since reserved
money is already committed to calls in flight. ``SADD`` in the store makes
"once" hold across workers and restarts; delivery of the webhook is a job of
its own (``deliver_alert``) so a slow receiver never holds up dispatch.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

import httpx
import structlog

from campaigns.queue import JobQueue
from campaigns.store import Store

__all__ = ["check_budget_alerts", "deliver_alert"]


async def check_budget_alerts(store: Store, queue: JobQueue | None, campaign_id: str) -> list[int]:
    """Fire every threshold the campaign has crossed and not fired yet."""
    campaign = await store.campaign(campaign_id)
    if campaign is None or campaign.budget_micros <= 0:
        return []
    alerts = campaign.spec.alerts
    used = campaign.spent_micros + campaign.reserved_micros
    fired: list[int] = []
    for threshold in alerts.thresholds_percent:
        if used * 100 < int(threshold) * campaign.budget_micros:
            continue
        if not await store.mark_alert_fired(campaign_id, int(threshold)):
            continue
        fired.append(int(threshold))
        payload: dict[str, Any] = {
            "event": "campaign.budget_threshold",
            "campaign_id": campaign_id,
            "threshold_percent": int(threshold),
            "spent_micros": campaign.spent_micros,
            "reserved_micros": campaign.reserved_micros,
            "budget_micros": campaign.budget_micros,
            "currency": campaign.currency,
            "state": campaign.state,
            "at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        }
        structlog.stdlib.get_logger("campaigns.engine.alerts").warning(
            "budget_alert", **{k: v for k, v in payload.items() if k != "event"}
        )
        url = alerts.webhook_url
        if url and queue is not None:
            await queue.alert(str(url), payload, job_id=f"alert:{campaign_id}:{threshold}")
    return fired


async def deliver_alert(
    url: str,
    payload: dict[str, Any],
    timeout_seconds: float = 10.0,
    *,
    headers: Callable[[bytes], Mapping[str, str]] | None = None,
    client: httpx.AsyncClient | None = None,
) -> int:
    """POST the alert (or a callback event); any non-2xx raises so it is retried.

    ``headers`` adds headers computed from the exact body sent (a signature);
    ``client`` reuses connections across many deliveries.
    """
    body = json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode()
    sent = {"Content-Type": "application/json", **(headers(body) if headers else {})}
    if client is None:
        async with httpx.AsyncClient(timeout=timeout_seconds) as own:
            response = await own.post(url, content=body, headers=sent)
    else:
        response = await client.post(url, content=body, headers=sent, timeout=timeout_seconds)
    response.raise_for_status()
    return response.status_code
