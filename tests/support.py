"""Helpers shared by integration and chaos tests: real worker processes, waiting."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from arq.jobs import Job

from campaigns.domain.lifecycle import BUDGET_EXHAUSTED_MESSAGE, REVIEW_MESSAGE
from campaigns.domain.spec import CampaignSpec
from campaigns.queue import JobQueue, json_deserializer
from campaigns.settings import Settings
from campaigns.store import Claim, Store

ROOT = Path(__file__).resolve().parent.parent
CAMPAIGNS_BIN = str(Path(sys.executable).with_name("campaigns"))


def fast_settings(redis_url: str, provider_url: str, api_key: str, queue: str) -> Settings:
    """Settings with short leases, polls and back-offs, so tests and benchmarks
    see recovery in seconds rather than the production defaults' tens."""
    return Settings(
        redis_url=redis_url,
        provider_url=provider_url,
        provider_api_key=api_key,  # type: ignore[arg-type]
        queue_name=queue,
        lease_seconds=3.0,
        poll_interval_seconds=0.2,
        poll_max_interval_seconds=1.0,
        retry_base_seconds=0.05,
        retry_max_seconds=0.2,
        retry_attempts=3,
        provider_timeout_seconds=2.0,
        provider_unavailable_cooldown_seconds=3.0,
        sweep_interval_seconds=1,
        creation_event_wait_seconds=3.0,
        _env_file=None,  # type: ignore[call-arg]
    )


def arq_settings(base: type, **changes: Any) -> dict[str, Any]:
    """A worker settings object for ``python -m arq``: ``base``'s settings with changes.

    arq reads only a settings class's *own* ``__dict__``, so a subclass that
    overrides ``on_startup`` would lose every inherited setting (its functions
    first: such a worker refuses to start). A dict keeps them all.
    """
    own = {k: v for k, v in vars(base).items() if not k.startswith("__")}
    return {**own, **changes}


def worker_env(settings: Settings, **extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        DISPATCHER_REDIS_URL=settings.redis_url,
        DISPATCHER_PROVIDER_URL=settings.provider_url,
        DISPATCHER_PROVIDER_API_KEY=settings.provider_api_key.get_secret_value(),
        DISPATCHER_PROVIDER_DIALECT=settings.provider_dialect,
        DISPATCHER_QUEUE_NAME=settings.queue_name,
        DISPATCHER_LOG_FORMAT="json",
        DISPATCHER_LOG_LEVEL="INFO",
        DISPATCHER_LEASE_SECONDS=str(settings.lease_seconds),
        DISPATCHER_POLL_INTERVAL_SECONDS=str(settings.poll_interval_seconds),
        DISPATCHER_RETRY_BASE_SECONDS=str(settings.retry_base_seconds),
        DISPATCHER_RETRY_MAX_SECONDS=str(settings.retry_max_seconds),
        DISPATCHER_RETRY_ATTEMPTS=str(settings.retry_attempts),
        DISPATCHER_PROVIDER_TIMEOUT_SECONDS=str(settings.provider_timeout_seconds),
        DISPATCHER_PROVIDER_HONOURS_IDEMPOTENCY=str(settings.provider_honours_idempotency).lower(),
        DISPATCHER_PROVIDER_UNAVAILABLE_COOLDOWN_SECONDS=str(
            settings.provider_unavailable_cooldown_seconds
        ),
        DISPATCHER_SWEEP_INTERVAL_SECONDS=str(settings.sweep_interval_seconds),
        DISPATCHER_CREATION_EVENT_WAIT_SECONDS=str(settings.creation_event_wait_seconds),
        DISPATCHER_PACE_MARGIN_PERCENT=str(settings.pace_margin_percent),
        DISPATCHER_WORKER_MAX_OPEN_REQUESTS=str(settings.worker_max_open_requests),
        DISPATCHER_REDIS_MAX_CONNECTIONS=str(settings.redis_max_connections),
    )
    if settings.redis_sentinels is not None:
        del env["DISPATCHER_REDIS_URL"]
        env["DISPATCHER_REDIS_SENTINELS"] = settings.redis_sentinels
        env["DISPATCHER_REDIS_SENTINEL_MASTER"] = str(settings.redis_sentinel_master)
    env["DISPATCHER_REDIS_MIN_REPLICAS"] = str(settings.redis_min_replicas)
    env["DISPATCHER_REDIS_REPLICA_TIMEOUT_MS"] = str(settings.redis_replica_timeout_ms)
    if settings.provider_calls_per_second is not None:
        env["DISPATCHER_PROVIDER_CALLS_PER_SECOND"] = str(settings.provider_calls_per_second)
    if settings.provider_max_live_calls is not None:
        env["DISPATCHER_PROVIDER_MAX_LIVE_CALLS"] = str(settings.provider_max_live_calls)
    env.update(extra)
    return env


class WorkerProcess:
    """``campaigns worker`` as users start it, in its own process group."""

    def __init__(
        self,
        settings: Settings,
        log_path: Path,
        *,
        settings_class: str | None = None,
        **extra_env: str,
    ) -> None:
        """``settings_class``: a test's own settings for the dispatch worker, run
        with the settlement worker as ``campaigns worker`` runs them
        (``python -m tests.worker_main CLASS``), such as the chaos suite's fault
        seam; else ``campaigns worker``."""
        self.log_path = log_path
        self._log = log_path.open("ab")
        command = [CAMPAIGNS_BIN, "worker"]
        if settings_class is not None:
            command = [sys.executable, "-m", "tests.worker_main", settings_class]
        self.proc = subprocess.Popen(
            command,
            env=worker_env(settings, **extra_env),
            stdout=self._log,
            stderr=subprocess.STDOUT,
            cwd=ROOT,
            start_new_session=True,
        )

    @property
    def alive(self) -> bool:
        return self.proc.poll() is None

    def kill(self) -> None:
        if self.alive:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)

    def terminate(self, timeout: float = 15) -> int:
        if self.alive:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()
        if not self._log.closed:
            self._log.close()
        return self.proc.returncode

    def log_text(self) -> str:
        if not self._log.closed:
            self._log.flush()
        return self.log_path.read_text(errors="replace")


async def wait_for(
    check: Callable[[], Awaitable[Any]],
    timeout: float = 30.0,
    interval: float = 0.1,
    what: str = "",
) -> Any:
    """Poll an async check until it returns something truthy."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = await check()
        if last:
            return last
        await asyncio.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what or check}: last={last!r}")


def seed_event(
    call_id: str = "call_123", event: str = "call.completed", **call_fields: Any
) -> dict[str, Any]:
    """The ``call.completed`` webhook of seed 000 (a fresh copy), for one call."""
    call: dict[str, Any] = {
        "id": call_id,
        "customer_id": "cust_123",
        "application_id": "app_123",
        "status": "completed",
        "direction": "outbound",
        "from": "+15551230001",
        "to": "+15551230002",
    }
    call.update(call_fields)
    return {
        "event": event,
        "created_at": "2026-05-29T12:10:00Z",
        "call": call,
        "variables": {},
        "data": {},
    }


def busiest_window(times: list[float], seconds: float) -> int:
    """The most requests in any window of ``seconds`` (sliding, from each request)."""
    ordered = sorted(times)
    most, first = 0, 0
    for last, at in enumerate(ordered):
        while at - ordered[first] >= seconds:
            first += 1
        most = max(most, last - first + 1)
    return most


def creates(ledger: list[dict[str, Any]], campaign_id: str) -> list[dict[str, Any]]:
    """The sandbox's create requests that belong to one campaign."""
    return [e for e in ledger if (e.get("variables") or {}).get("campaign_id") == campaign_id]


async def submit_spec(store: Store, spec: CampaignSpec) -> str:
    """``Store.submit`` with the worst case and estimate the operator API computes."""
    rate = spec.rate_model()
    outcome, _ = await store.submit(
        spec,
        worst_case_micros=spec.worst_case_call_micros(),
        estimated_micros_per_contact=rate.cost_micros(spec.max_call_seconds),
    )
    return outcome


async def claim_next(store: Store, campaign_id: str, token: str) -> Claim:
    """``Store.claim`` with the dispatcher's operator wording."""
    return await store.claim(
        campaign_id, token, review_message=REVIEW_MESSAGE, budget_message=BUDGET_EXHAUSTED_MESSAGE
    )


async def event_job_result(queue: JobQueue, payload: Any, *, timeout: float = 30) -> Any:
    """Enqueue ``record_call_event`` under a fresh job id and wait for a worker's answer."""
    job_id = f"test-event:{uuid.uuid4().hex}"
    await queue.call_event(payload, job_id=job_id)
    job = Job(
        job_id, queue.redis, _queue_name=queue.settlement_queue, _deserializer=json_deserializer
    )
    return await job.result(timeout=timeout, poll_delay=0.05)
