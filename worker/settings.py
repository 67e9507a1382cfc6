"""``WorkerSettings`` for arq: ``arq worker.WorkerSettings`` or ``campaigns worker``."""

from __future__ import annotations

import socket
from typing import Any, ClassVar

from arq import cron, func
from arq.connections import RedisSettings

from campaigns.queue import json_deserializer, json_serializer
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
        func(reconcile_campaign, max_tries=3, keep_result=3600),
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
    redis_settings = RedisSettings.from_dsn(_settings.redis_url)
    queue_name = _settings.queue_name
    job_serializer = staticmethod(json_serializer)
    job_deserializer = staticmethod(json_deserializer)
    job_timeout = _settings.job_timeout_seconds
    health_check_interval = 5
    # Per host, so `arq --check` in a replica's container tests that replica.
    health_check_key = f"{_settings.queue_name}:health-check:{socket.gethostname()}"
    max_jobs = 20
    poll_delay = 0.1
    keep_result = 300
