"""The worker's own guard, for faults that outlast the connection layer's retries.

Real Redis; arq's real worker loop (``GuardedWorker``), run in-process on a pool
whose retries are cut to one, so a fault reaches the guard at once instead of
after the ~30 s the connection layer retries in production. A worker must come
out of every call below without an exception (the process would end), with no
job quarantined and arq's job slots all given back.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from arq import func
from arq.connections import ArqRedis, create_pool
from redis.exceptions import NoPermissionError

from campaigns.queue import json_deserializer, json_serializer, redis_settings
from campaigns.store import Store
from campaigns.store.faults import fault_log, redis_retry
from campaigns.testbed.redis_server import RedisServer
from worker.settings import GuardedWorker, WorkerSettings

QUEUE = "dispatcher:faults"


async def fill_memory(ctx: dict[str, Any]) -> None:
    """A job that meets OOM: Redis reaches maxmemory while it runs."""
    redis: ArqRedis = ctx["redis"]
    await redis.config_set("maxmemory", "1")
    await redis.set("written-at-oom", "x")


@pytest.fixture
async def pool(redis_url: str) -> AsyncIterator[ArqRedis]:
    settings = redis_settings(redis_url)
    settings.retry = redis_retry(retries=1)
    pool = await create_pool(
        settings,
        job_serializer=json_serializer,
        job_deserializer=json_deserializer,
        default_queue_name=QUEUE,
    )
    fault_log.current = None
    yield pool
    await pool.config_set("maxmemory", "0")
    await pool.aclose()


def _worker(pool: ArqRedis) -> GuardedWorker:
    worker = GuardedWorker(
        functions=[func(fill_memory, name="fill_memory", max_tries=3)],
        redis_pool=pool,
        queue_name=QUEUE,
        job_serializer=WorkerSettings.job_serializer,
        job_deserializer=WorkerSettings.job_deserializer,
        health_check_interval=0,
        handle_signals=False,
        poll_delay=0.01,
        max_jobs=4,
    )
    worker.ctx["redis"] = pool  # arq's main() does this; the tests drive its loop by hand
    return worker


def _slots_free(worker: GuardedWorker) -> bool:
    return worker.job_counter == 0 and worker.sem._value == worker.max_jobs + 1  # type: ignore[attr-defined]


async def test_a_job_refused_by_oom_is_not_quarantined_and_the_loop_goes_on(
    pool: ArqRedis,
) -> None:
    worker = _worker(pool)
    job = await pool.enqueue_job("fill_memory", _job_id="oom-job", _queue_name=QUEUE)
    assert job is not None

    await worker._poll_iteration()  # starts the job; the job meets OOM, so does arq's finish
    for task in list(worker.tasks.values()):
        await task
        assert task.exception() is None, "a fault escaped the job's task"
    # Health check write refused too, past the retries: the poll ends, not the process.
    await worker._poll_iteration()
    assert fault_log.current == "out_of_memory"
    assert worker._poll_faults >= 1

    assert await Store(pool).dead_letters() == [], "a job was quarantined because Redis refused it"
    assert await pool.zscore(QUEUE, "oom-job") is not None, "the job left the queue"

    await pool.config_set("maxmemory", "0")
    worker.tasks.clear()
    await worker._poll_iteration()  # Redis serves again: the loop carries on
    assert worker._poll_faults == 0
    assert _slots_free(worker)


async def test_redis_gone_ends_a_poll_not_the_worker(
    pool: ArqRedis, redis_server: RedisServer
) -> None:
    worker = _worker(pool)
    redis_server.stop()
    try:
        await worker._poll_iteration()
        await worker._poll_iteration()
        assert fault_log.current == "connection_lost"
        assert worker._poll_faults == 2
    finally:
        redis_server.start()
    await worker._poll_iteration()
    assert worker._poll_faults == 0
    assert _slots_free(worker)


async def test_a_job_arq_could_not_take_gives_its_slot_back(redis_server: RedisServer) -> None:
    """arq's watched transaction failing (here WATCH refused outright, as a lost
    connection makes it fail) must not cost the worker one of its job slots."""
    admin = await create_pool(redis_settings(redis_server.url))
    await admin.execute_command(
        "ACL", "SETUSER", "nowatch", "on", ">pw", "~*", "&*", "+@all", "-watch"
    )
    url = f"redis://nowatch:pw@127.0.0.1:{redis_server.port}/0"
    pool = await create_pool(
        redis_settings(url),
        job_serializer=json_serializer,
        job_deserializer=json_deserializer,
        default_queue_name=QUEUE,
    )
    try:
        worker = _worker(pool)
        await admin.enqueue_job("fill_memory", _job_id="untakeable", _queue_name=QUEUE)
        for _ in range(worker.max_jobs + 2):
            with pytest.raises(NoPermissionError):
                await worker.start_jobs([b"untakeable"])
            assert _slots_free(worker)
    finally:
        await pool.aclose()
        await admin.execute_command("ACL", "DELUSER", "nowatch")
        await admin.aclose()
