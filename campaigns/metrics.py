"""Prometheus metrics: a thin recording API, so engine code never sees prometheus_client.

The engine calls :func:`create`, :func:`halt`, :func:`settlement` and
:func:`timed` where things happen; the worker samples the gauges (queue depth,
leases, per-campaign money) with :func:`sample` and serves them all with
:func:`serve` on ``DISPATCHER_METRICS_PORT``. Without a server, recording is a
few dictionary updates in memory and nothing else.

Labels are bounded: outcomes and lifecycle codes are fixed sets, provider error
codes are clipped to a known shape, and ``campaign_id`` appears only on the
gauges of campaigns that are running right now.
"""

from __future__ import annotations

import re
import time
from collections.abc import Awaitable
from typing import TypeVar

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

from campaigns.domain.errors import ProviderError
from campaigns.domain.lifecycle import HaltCode, State
from campaigns.queue import settlement_queue
from campaigns.store import Store

__all__ = [
    "REGISTRY",
    "create",
    "halt",
    "held_runs",
    "sample",
    "serve",
    "settlement",
    "timed",
    "worker_capacity_wait",
]

T = TypeVar("T")

REGISTRY = CollectorRegistry(auto_describe=True)
"""Ours alone: the default registry's process collectors are left out of tests' scrapes."""

_CODE = re.compile(r"[a-z0-9_.]{1,64}", re.ASCII)

CREATE_REQUESTS = Counter(
    "dispatcher_create_requests",
    "Create-call requests sent to the provider, by outcome (accepted, contact, halt, "
    "transient) and the provider's error code ('' when accepted).",
    ["outcome", "code"],
    registry=REGISTRY,
)
HALTS = Counter(
    "dispatcher_campaign_halts",
    "Campaigns this worker halted or paused on its own, by halt code.",
    ["code"],
    registry=REGISTRY,
)
SETTLEMENTS = Counter(
    "dispatcher_settlements",
    "Settle attempts on final calls, by result (ok, duplicate, over_reservation, ...).",
    ["result"],
    registry=REGISTRY,
)
WORKER_CAPACITY_WAITS = Counter(
    "dispatcher_worker_capacity_waits",
    "Requests that waited for one of the worker's open-request permits "
    "(DISPATCHER_WORKER_MAX_OPEN_REQUESTS): the worker, not the pace, held them.",
    registry=REGISTRY,
)
HELD_RUNS = Gauge(
    "dispatcher_held_runs",
    "Campaign runs this worker holds now (each sleeping until its next slot or sending).",
    registry=REGISTRY,
)
PROVIDER_LATENCY = Histogram(
    "dispatcher_provider_request_seconds",
    "Provider HTTP request latency, by operation (create, get_call).",
    ["operation"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
    registry=REGISTRY,
)
QUEUE_DEPTH = Gauge(
    "dispatcher_queue_depth",
    "Jobs in the arq queues, dispatch and settlement (due and deferred).",
    registry=REGISTRY,
)
LEASES = Gauge(
    "dispatcher_leases_held",
    "Campaign leases held, by whose: this worker or any worker.",
    ["holder"],
    registry=REGISTRY,
)
RESERVED = Gauge(
    "dispatcher_campaign_reserved_micros",
    "Worst-case reservations held by a running campaign, in micros of its currency.",
    ["campaign_id", "currency"],
    registry=REGISTRY,
)
SPENT = Gauge(
    "dispatcher_campaign_spent_micros",
    "Settled spend of a running campaign, in micros of its currency.",
    ["campaign_id", "currency"],
    registry=REGISTRY,
)
BUDGET = Gauge(
    "dispatcher_campaign_budget_micros",
    "Budget of a running campaign, in micros of its currency.",
    ["campaign_id", "currency"],
    registry=REGISTRY,
)
RUNNING = Gauge(
    "dispatcher_campaigns_running",
    "Campaigns in state running.",
    registry=REGISTRY,
)


def _code(code: str | None) -> str:
    """A provider's code as a label, or ``other``: a hostile provider cannot blow up cardinality."""
    if not code:
        return ""
    return code if _CODE.fullmatch(code) else "other"


async def create(request: Awaitable[T]) -> T:
    """Await one create request, counting its outcome and timing it."""
    start = time.perf_counter()
    try:
        result = await request
    except ProviderError as exc:
        CREATE_REQUESTS.labels(outcome=exc.error_class.value, code=_code(exc.code)).inc()
        raise
    finally:
        PROVIDER_LATENCY.labels(operation="create").observe(time.perf_counter() - start)
    CREATE_REQUESTS.labels(outcome="accepted", code="").inc()
    return result


async def timed(operation: str, request: Awaitable[T]) -> T:
    """Await one other provider request, timing it."""
    start = time.perf_counter()
    try:
        return await request
    finally:
        PROVIDER_LATENCY.labels(operation=operation).observe(time.perf_counter() - start)


_CLAIM_HALTS = {"needs_review": HaltCode.IN_DOUBT_REVIEW.value}
"""A claim refusal that halts is named by its outcome; count it under its halt code."""


def halt(code: str) -> None:
    """A halt (or cool-down pause) by its code, or by the claim outcome that caused it."""
    HALTS.labels(code=_code(_CLAIM_HALTS.get(code, code))).inc()


def held_runs(count: int) -> None:
    HELD_RUNS.set(count)


def worker_capacity_wait() -> None:
    WORKER_CAPACITY_WAITS.inc()


def settlement(result: str) -> None:
    SETTLEMENTS.labels(result=_code(result)).inc()


_shown: set[tuple[str, str]] = set()


async def sample(store: Store, queue_name: str, worker_id: str) -> None:
    """Read the gauges from Redis: queue depth, leases, and each running campaign's money.

    Only running campaigns are read (the store's running set), so the cost follows
    the campaigns in flight, not every campaign ever submitted; a lease is only
    taken on a running campaign. Campaigns that stopped running since the last
    sample lose their series.
    """
    depths = [await store.redis.zcard(q) for q in (queue_name, settlement_queue(queue_name))]
    QUEUE_DEPTH.set(sum(depths))
    mine = held = 0
    seen: set[tuple[str, str]] = set()
    for campaign_id in await store.running_campaigns():
        holder = await store.lease_holder(campaign_id)
        if holder is not None:
            held += 1
            mine += holder.startswith(f"{worker_id}:")
        campaign = await store.campaign(campaign_id)
        if campaign is None or campaign.state is not State.RUNNING:
            continue
        labels = (campaign_id, campaign.currency)
        seen.add(labels)
        RESERVED.labels(*labels).set(campaign.reserved_micros)
        SPENT.labels(*labels).set(campaign.spent_micros)
        BUDGET.labels(*labels).set(campaign.budget_micros)
    for labels in _shown - seen:
        for gauge in (RESERVED, SPENT, BUDGET):
            gauge.remove(*labels)
    _shown.clear()
    _shown.update(seen)
    RUNNING.set(len(seen))
    LEASES.labels(holder="this_worker").set(mine)
    LEASES.labels(holder="any_worker").set(held)


def serve(port: int, host: str = "0.0.0.0") -> None:
    """Serve ``/metrics`` on ``port`` from a background thread."""
    start_http_server(port, addr=host, registry=REGISTRY)
