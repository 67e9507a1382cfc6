"""``WorkerSettings`` for arq: ``arq worker.WorkerSettings`` or ``campaigns worker``."""

from __future__ import annotations

import socket
from typing import Any, ClassVar

from arq import cron, func

from campaigns.queue import json_deserializer, json_serializer
from campaigns.queue import redis_settings as _redis_settings
from campaigns.settings import Settings
from worker.jobs import (
    deliver_alert,
    dispatch_campaign,
    poll_calls,
    reconcile_campaign,
    record_call_event,
    shutdown,
    startup,
    sweep_campaigns,
)

__all__ = ["WorkerSettings"]

_settings = Settings()


class WorkerSettings:
    """Read once from ``DISPATCHER_*`` at import, as arq expects class attributes."""

    functions: ClassVar[list[Any]] = [
        # Dispatch jobs never rely on arq's retry: a dead batch is restarted by
        # the sweeper under a new sequence number.
        func(dispatch_campaign, max_tries=1, keep_result=60),
        func(record_call_event, max_tries=3, keep_result=3600),
        func(reconcile_campaign, max_tries=61, keep_result=3600),
        func(deliver_alert, max_tries=6, keep_result=3600),
    ]
    cron_jobs: ClassVar[list[Any]] = [
        cron(poll_calls, second=set(range(60)), timeout=30, run_at_startup=True),
        cron(
            sweep_campaigns,
            second=set(range(0, 60, _settings.sweep_interval_seconds)),
            timeout=30,
            run_at_startup=True,
        ),
    ]
    on_startup = startup
    on_shutdown = shutdown
    redis_settings = _redis_settings(_settings.redis_url)
    queue_name = _settings.queue_name
    job_serializer = staticmethod(json_serializer)
    job_deserializer = staticmethod(json_deserializer)
    job_timeout = _settings.job_timeout_seconds
    health_check_interval = 5
    # Per host, so `arq --check` in a replica's container tests that replica.
    health_check_key = f"{_settings.queue_name}:health-check:{socket.gethostname()}"
    max_jobs = 20
    # On SIGTERM, let running batches finish (they are short) before cancelling.
    job_completion_wait = 15
    poll_delay = 0.1
    keep_result = 300
