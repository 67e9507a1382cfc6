"""Poison jobs are quarantined, never fatal (issue 12, defect 1).

Real Redis, real ``campaigns worker`` processes. Each poison job must leave the
queue, land in the dead-letter list once with a reason naming the field, be
reported by one log line, and the worker must stay up and complete a campaign.
"""

from __future__ import annotations

import json
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import pytest
from redis.asyncio import Redis

from campaigns.domain.spec import parse_spec
from campaigns.operators.control import CampaignClient
from campaigns.settings import Settings
from tests.conftest import spec_dict
from tests.support import WorkerProcess, wait_for

JOB = "arq:job:"


def _now_ms() -> int:
    return int(time.time() * 1000)


def _envelope(**fields: Any) -> bytes:
    job: dict[str, Any] = {"t": 1, "f": "record_call_event", "a": [{}], "k": {}, "et": _now_ms()}
    job.update(fields)
    return json.dumps(job).encode()


@dataclass(frozen=True)
class Poison:
    """A queue entry that must be moved aside: ``reason`` is what the dead letter says."""

    name: str
    job_id: bytes
    reason: str
    write: Callable[[Redis, str, bytes], Awaitable[None]]


def _raw(data: bytes, score: float | None = None) -> Callable[[Redis, str, bytes], Awaitable[None]]:
    async def write(r: Redis, queue: str, job_id: bytes) -> None:
        await r.set(JOB.encode() + job_id, data, px=86_400_000)
        await r.zadd(queue, {job_id: _now_ms() if score is None else score})

    return write


def _poison(name: str, reason: str, data: bytes, score: float | None = None) -> Poison:
    return Poison(name, f"poison-{name}".encode(), reason, _raw(data, score))


async def _list_job(r: Redis, queue: str, job_id: bytes) -> None:
    await r.rpush(JOB.encode() + job_id, b"not a string")
    await r.zadd(queue, {job_id: _now_ms()})


async def _corrupt_retry_counter(r: Redis, queue: str, job_id: bytes) -> None:
    await r.set(JOB.encode() + job_id, _envelope(f="reconcile_campaign", a=["spring"]))
    await r.rpush(b"arq:retry:" + job_id, b"x")
    await r.zadd(queue, {job_id: _now_ms()})


# The five envelopes of the issue: each ended every worker that read it.
ISSUE_REPRO: list[Poison] = [
    _poison("et-string", "et: expected integer milliseconds", _envelope(et="x")),
    _poison("et-huge", "et: expected integer milliseconds", _envelope(et=1e300)),
    _poison("t-string", "t: expected null or a try number", _envelope(t="x")),
    _poison("t-array", "t: expected null or a try number", _envelope(t=[1])),
    _poison("f-array", "f: expected a job name", _envelope(f=["x"])),
]

CATALOGUE: list[Poison] = [
    _poison("not-utf8", "not JSON: invalid UTF-8", b"\x80\x04\x95pickle?"),
    _poison("not-json", "not JSON", b"{oops"),
    _poison("empty", "not JSON", b""),
    _poison("array", "job: expected a JSON object, got array", b"[1, 2]"),
    _poison("number", "job: expected a JSON object, got integer", b"42"),
    _poison("string", "job: expected a JSON object, got string", b'"hello"'),
    _poison("missing-et", "et: missing", b'{"t":1,"f":"record_call_event","a":[{}],"k":{}}'),
    _poison("missing-a", "a: missing", b'{"t":1,"f":"record_call_event","k":{},"et":1}'),
    _poison("a-object", "a: expected an array", _envelope(a={"x": 1})),
    _poison("k-array", "k: expected an object", _envelope(k=[1])),
    _poison("t-bool", "t: expected null or a try number", _envelope(t=True)),
    _poison("t-negative", "t: expected null or a try number", _envelope(t=-1)),
    _poison("t-huge", "t: expected null or a try number", _envelope(t=10**30)),
    _poison("et-negative", "et: expected integer milliseconds", _envelope(et=-1)),
    _poison("et-year-10000", "et: expected integer milliseconds", _envelope(et=10**17)),
    _poison("et-nan", "not JSON: NaN", _envelope(et=float("nan"))),
    _poison(
        "int-5000-digits",
        "not JSON: Exceeds the limit",
        b'{"t":' + b"9" * 5000 + b',"f":"record_call_event","a":[{}],"k":{},"et":1}',
    ),
    _poison("f-empty", "f: expected a job name", _envelope(f="")),
    _poison("f-unknown", "f: job 'launch_missiles' not found", _envelope(f="launch_missiles")),
    _poison("f-startup", "f: job 'startup' not found", _envelope(f="startup")),
    _poison("lone-surrogate", "lone surrogate", b'{"t":1,"f":"x\\ud800","a":[],"k":{},"et":1}'),
    _poison("deep", "nested deeper than", _envelope(a=[json.loads("[" * 40 + "]" * 40)])),
    _poison(
        "too-many-args",
        "a: dispatch_campaign(campaign_id, seq) cannot take",
        _envelope(f="dispatch_campaign", a=["spring", 1, 2]),
    ),
    _poison(
        "missing-arg",
        "a: reconcile_campaign(campaign_id) cannot take",
        _envelope(f="reconcile_campaign", a=[]),
    ),
    _poison(
        "unknown-kwarg",
        "a: record_call_event(payload) cannot take",
        _envelope(a=[{}], k={"colour": "red"}),
    ),
    _poison(
        "kwarg-ctx",
        "a: record_call_event(payload) cannot take",
        _envelope(a=[], k={"ctx": {}, "payload": {}}),
    ),
    _poison("too-big", "above the 1048576 byte limit", _envelope(a=["x" * (1024 * 1024)])),
    Poison("job-key-list", b"poison-job-key-list", "the key holds a Redis list", _list_job),
    Poison(
        "retry-counter",
        b"poison-retry-counter",
        "the worker could not run it: ResponseError",
        _corrupt_retry_counter,
    ),
    # Queue entries arq's poll loop itself trips over (or starves behind).
    Poison("id-not-utf8", b"\xff\xfepoison", "job id is not UTF-8", _raw(_envelope())),
    _poison("score-minus-inf", "score -inf", _envelope(), score=float("-inf")),
    _poison("score-zero", "score 0.0", _envelope(), score=0),
]


async def _dead_letters(client: CampaignClient) -> list[dict[str, Any]]:
    return await client.store.dead_letters(limit=10_000)


async def _complete_a_campaign(client: CampaignClient, campaign_id: str) -> None:
    """The worker is not just alive but serving: a fresh campaign runs to the end."""
    await client.submit(parse_spec(spec_dict(campaign_id, contacts=3)))

    async def done() -> bool:
        return (await client.get(campaign_id)).state == "completed"

    await wait_for(done, timeout=60, what=f"campaign {campaign_id} to complete")


async def _assert_quarantined_once(
    client: CampaignClient, settings: Settings, poison: Poison, log: str
) -> None:
    r = client.queue.redis
    assert await r.zscore(settings.queue_name, poison.job_id) is None, poison.name
    for prefix in (b"arq:job:", b"arq:retry:", b"arq:in-progress:"):
        assert not await r.exists(prefix + poison.job_id), (poison.name, prefix)
    shown = poison.job_id.decode("utf-8", "backslashreplace")
    letters = [d for d in await _dead_letters(client) if d.get("job_id") == shown]
    assert len(letters) == 1, (poison.name, letters)
    assert letters[0]["reason"].startswith("poison job: "), letters[0]
    assert poison.reason in letters[0]["reason"], (poison.name, letters[0]["reason"])
    lines = [
        json.loads(line)
        for line in log.splitlines()
        if line.startswith("{") and '"job_quarantined"' in line
    ]
    mine = [line for line in lines if line["job_id"] in (shown, ascii(shown))]
    assert len(mine) == 1, (poison.name, mine)
    assert poison.reason in mine[0]["reason"]


async def _wait_quarantined(
    client: CampaignClient, poisons: list[Poison], workers: list[WorkerProcess]
) -> None:
    wanted = {p.job_id.decode("utf-8", "backslashreplace") for p in poisons}

    async def all_moved() -> bool:
        assert all(w.alive for w in workers), "a poison job killed a worker"
        return wanted <= {d.get("job_id") for d in await _dead_letters(client)}

    await wait_for(all_moved, timeout=60, what="every poison job in the dead-letter list")


@pytest.mark.parametrize("poison", ISSUE_REPRO, ids=[p.name for p in ISSUE_REPRO])
async def test_the_issue_repro_is_quarantined_and_the_worker_lives(
    client: CampaignClient,
    settings: Settings,
    start_worker: Callable[..., WorkerProcess],
    poison: Poison,
) -> None:
    worker = start_worker()
    await poison.write(client.queue.redis, settings.queue_name, poison.job_id)
    await _wait_quarantined(client, [poison], [worker])
    await _complete_a_campaign(client, "after-poison")
    assert worker.alive
    await _assert_quarantined_once(client, settings, poison, worker.log_text())


async def test_every_kind_of_poison_is_moved_aside_once_by_one_of_two_workers(
    client: CampaignClient, settings: Settings, start_worker: Callable[..., WorkerProcess]
) -> None:
    """Two workers race for each entry: exactly one dead letter and one log line each."""
    poisons = ISSUE_REPRO + CATALOGUE
    for poison in poisons:
        await poison.write(client.queue.redis, settings.queue_name, poison.job_id)
    workers = [start_worker(), start_worker()]
    await _wait_quarantined(client, poisons, workers)
    await _complete_a_campaign(client, "after-catalogue")
    assert all(w.alive for w in workers)
    log = "".join(w.log_text() for w in workers)
    for poison in poisons:
        await _assert_quarantined_once(client, settings, poison, log)
    # The dead letter keeps the raw job: text when it is UTF-8, base64 when not.
    letters = {d["job_id"]: d for d in await _dead_letters(client)}
    assert json.loads(letters["poison-et-string"]["job"])["et"] == "x"
    assert letters["poison-not-utf8"]["job_base64"]
    assert letters["poison-too-big"]["job_truncated"] is True
    assert letters["poison-job-key-list"]["job_type"] == "list"


# (job name, args, field the refusal names): arguments that are well-formed JSON
# but wrong for the job. Each ends as a dead letter and one "job_refused" line.
BAD_ARGS: list[tuple[str, list[Any], str]] = [
    ("dispatch_campaign", [42, 1], "campaign_id: expected a non-empty string"),
    ("dispatch_campaign", ["", 1], "campaign_id: expected a non-empty string"),
    ("dispatch_campaign", ["spring\n", 1], "campaign_id: expected 1-64 characters"),
    ("dispatch_campaign", ["a:b", 1], "campaign_id: expected 1-64 characters"),
    ("dispatch_campaign", ["x" * 65, 1], "campaign_id: expected 1-64 characters"),
    ("dispatch_campaign", ["spring", -1], "seq: expected an integer"),
    ("dispatch_campaign", ["spring", "1"], "seq: expected an integer"),
    ("dispatch_campaign", ["spring", True], "seq: expected an integer"),
    ("dispatch_campaign", ["spring", 2**64], "seq: expected an integer"),
    ("dispatch_campaign", ["no-such-campaign", 1], "campaign_id: no campaign"),
    ("reconcile_campaign", [None], "campaign_id: expected a non-empty string"),
    ("reconcile_campaign", ["spring\n"], "campaign_id: expected 1-64 characters"),
    ("reconcile_campaign", ["no-such-campaign"], "campaign_id: no campaign"),
    ("deliver_alert", ["ftp://example.com/hook", {}], "url: expected an http(s) URL"),
    ("deliver_alert", ["http://", {}], "url: expected an http(s) URL"),
    ("deliver_alert", ["http://[::1", {}], "url: expected an http(s) URL"),
    ("deliver_alert", [["http://x"], {}], "url: expected an http(s) URL"),
    ("deliver_alert", ["http://127.0.0.1:9/", []], "payload: expected a JSON object"),
]


async def test_bad_arguments_for_every_job_name_are_dead_lettered_not_retried(
    client: CampaignClient, settings: Settings, start_worker: Callable[..., WorkerProcess]
) -> None:
    r = client.queue.redis
    jobs: dict[str, tuple[str, str]] = {}
    for i, (name, args, field) in enumerate(BAD_ARGS):
        job_id = f"bad-args-{i}"
        jobs[job_id] = (name, field)
        await _raw(
            json.dumps({"t": None, "f": name, "a": args, "k": {}, "et": _now_ms()}).encode()
        )(r, settings.queue_name, job_id.encode())
    worker = start_worker()

    async def all_refused() -> bool:
        assert worker.alive, "a bad-argument job killed the worker"
        return set(jobs) <= {d.get("job_id") for d in await _dead_letters(client)}

    await wait_for(all_refused, timeout=60, what="every bad-argument job dead-lettered")
    await _complete_a_campaign(client, "after-bad-args")
    assert worker.alive
    letters = await _dead_letters(client)
    log = worker.log_text()
    for job_id, (name, field) in jobs.items():
        mine = [d for d in letters if d.get("job_id") == job_id]
        assert len(mine) == 1, (job_id, mine)
        assert mine[0]["reason"] == f"bad job: {field}" or mine[0]["reason"].startswith(
            f"bad job: {field}"
        ), (job_id, mine[0])
        assert mine[0]["function"] == name
        assert not await r.exists(f"arq:job:{job_id}"), job_id
        assert await r.zscore(settings.queue_name, job_id) is None, job_id
        assert f"{job_id}:{name} try=2" not in log, f"{job_id} was retried"
    refused = [line for line in log.splitlines() if '"job_refused"' in line]
    # The dispatcher itself reports an unknown campaign ("dispatch_unknown_campaign").
    assert len(refused) == len(jobs) - 1, refused
