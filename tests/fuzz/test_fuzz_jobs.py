"""Fuzzing the queue: job envelopes and the arguments of every job name.

The contract (issue 12): whatever bytes sit in the queue, the worker survives;
a job that is not a job is moved aside once (a dead letter whose reason names
the field, one log line) and a job with bad arguments is refused the same way,
never retried; nothing else is written; the worker goes on serving campaigns;
no secret appears in a dead letter or a log line.

Fast properties call the envelope checks and the job functions in-process
(real Redis, real stores); one test feeds generated batches to a real
``campaigns worker``.
"""

from __future__ import annotations

import inspect
import json
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import structlog
from arq.jobs import deserialize_job_raw
from arq.utils import ms_to_datetime, timestamp_ms
from hypothesis import Phase, event, given, settings
from hypothesis import strategies as st

from campaigns.domain.spec import parse_spec
from campaigns.operators.control import CampaignClient
from campaigns.queue import (
    JobEnvelopeError,
    json_deserializer,
    json_serializer,
    parse_job,
    queue_entry_problem,
)
from campaigns.settings import Settings
from tests.conftest import API_KEY, spec_dict
from tests.fuzz.conftest import FUZZ_PROFILE
from tests.support import WorkerProcess, seed_event, wait_for, worker_env

PROFILE = settings.get_profile(FUZZ_PROFILE)

JOB_NAMES = [
    "dispatch_campaign",
    "record_call_event",
    "reconcile_campaign",
    "deliver_alert",
    "record_account_event",
]
CRON_NAMES = ["cron:poll_calls", "cron:sweep_campaigns"]
PARAMETERS = {
    "dispatch_campaign": ("campaign_id", "seq"),
    "record_call_event": ("payload",),
    "reconcile_campaign": ("campaign_id",),
    "deliver_alert": ("url", "payload"),
    "record_account_event": ("payload",),
}
ENVELOPE_FIELDS = ("t:", "f:", "a:", "k:", "et:", "job:", "not JSON:")
NOW_MS = int(time.time() * 1000)

# --------------------------------------------------------------------------- strategies

json_leaf = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(st.characters(exclude_categories=["Cs"]), max_size=20),
)
_keys = st.text(st.characters(exclude_categories=["Cs"]), max_size=8)
json_value = st.recursive(
    json_leaf,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_keys, inner, max_size=3),
    max_leaves=10,
)

RAW_TOKENS = [
    b"NaN",
    b"-Infinity",
    b"1e999",
    b"1e300",
    b"-0",
    b"0.5",
    b"9" * 5000,
    b'"\\ud800"',
    b'"\\udfff x"',
    b'"x\\u0000y"',
    b"[" * 40 + b"]" * 40,
    b"[]",
    b"{}",
    b'""',
    b"null",
    b"true",
    b'"x"',
    b"[1]",
    b'["x"]',
]
"""JSON (and not-quite-JSON) that ``json.dumps`` would never write for us."""

campaign_ids = st.one_of(
    st.from_regex(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}", fullmatch=True).map(lambda s: f"fz{s}"[:64]),
    st.sampled_from(["spring\n", "a:b", "", " x", "x" * 65, "\u0661", "a\x00b", "../x"]),
    json_value,
)
seqs = st.one_of(st.integers(), st.sampled_from([-1, 0, 1, 2**53, 2**64, True, "1", 1.0]))
urls = st.one_of(
    st.text(max_size=40),
    st.builds(
        lambda s, tail: s + tail,
        st.sampled_from(["http://", "https://", "ftp://"]),
        st.text(max_size=30),
    ),
    st.sampled_from(
        ["http://", "http://[::1", "http:///x", "https://example.com:99999/", "javascript:x"]
    ),
    json_value,
)
payloads = st.one_of(json_value, st.dictionaries(_keys, json_value, max_size=4))


@st.composite
def call_events(draw: st.DrawFn) -> Any:
    """A seed-000 event with some fields replaced, dropped, or garbage instead."""
    if draw(st.booleans()):
        return draw(payloads)
    event_ = seed_event(f"call_{draw(st.text(max_size=12))}")
    for key in draw(st.lists(st.sampled_from(["event", "call", "created_at", "data"]), max_size=2)):
        if draw(st.booleans()):
            event_.pop(key, None)
        else:
            event_[key] = draw(json_value)
    return event_


@st.composite
def account_events(draw: st.DrawFn) -> Any:
    """A seed-001 ``account_updated`` with some fields replaced, dropped, or garbage instead."""
    if draw(st.booleans()):
        return draw(payloads)
    event_: dict[str, Any] = {
        "event_type": "account_updated",
        "timestamp": "2024-01-15T10:30:00Z",
        "data": {"id": "acc", "balance_credit": 15_500_000, "balance_token": 20},
    }
    for key in draw(st.lists(st.sampled_from(["event_type", "timestamp", "data"]), max_size=2)):
        if draw(st.booleans()):
            event_.pop(key, None)
        else:
            event_[key] = draw(json_value)
    for key in draw(st.lists(st.sampled_from(["balance_credit", "balance_token"]), max_size=2)):
        if isinstance(event_.get("data"), dict):
            event_["data"][key] = draw(st.one_of(json_value, st.integers()))
    return event_


ARGS: dict[str, st.SearchStrategy[tuple[Any, ...]]] = {
    "dispatch_campaign": st.tuples(campaign_ids, seqs),
    "record_call_event": st.tuples(call_events()),
    "reconcile_campaign": st.tuples(campaign_ids),
    "deliver_alert": st.tuples(urls, payloads),
    "record_account_event": st.tuples(account_events()),
}


def _token(value: Any) -> st.SearchStrategy[bytes]:
    """A field value as JSON bytes: the given value, any JSON value, or a raw token."""
    return st.one_of(
        st.just(value).map(lambda v: json.dumps(v).encode()),
        json_value.map(lambda v: json.dumps(v).encode()),
        st.sampled_from(RAW_TOKENS),
    )


@st.composite
def envelopes(draw: st.DrawFn) -> bytes:
    """Job envelopes from well-formed to hostile, as the bytes a producer would SET."""
    shape = draw(st.sampled_from(["good", "good", "mutated", "mutated", "bytes", "value"]))
    if shape == "bytes":
        return draw(st.binary(max_size=120))
    if shape == "value":
        return json.dumps(draw(json_value)).encode()
    name = draw(st.sampled_from(JOB_NAMES + CRON_NAMES) | st.text(max_size=12))
    args = list(draw(ARGS[name])) if name in ARGS else draw(st.lists(json_value, max_size=3))
    fields: dict[str, bytes] = {
        "t": json.dumps(draw(st.none() | st.integers(min_value=0, max_value=3))).encode(),
        "f": json.dumps(name).encode(),
        "a": json.dumps(args).encode(),
        "k": b"{}",
        "et": json.dumps(draw(st.integers(min_value=0, max_value=NOW_MS))).encode(),
    }
    if shape == "mutated":
        for key in draw(st.lists(st.sampled_from(sorted(fields)), min_size=1, max_size=3)):
            if draw(st.integers(min_value=0, max_value=3)) == 0:
                fields.pop(key, None)
            else:
                fields[key] = draw(_token(None))
        if draw(st.booleans()):
            fields[draw(_keys)] = draw(_token(None))
    body = b"{" + b",".join(json.dumps(k).encode() + b":" + v for k, v in fields.items()) + b"}"
    if shape == "mutated" and draw(st.integers(min_value=0, max_value=4)) == 0:
        at = draw(st.integers(min_value=0, max_value=len(body)))
        body = body[:at] + draw(st.binary(min_size=1, max_size=3)) + body[at:]
    return body


# --------------------------------------------------------------------------- helpers


def assert_names_a_field(reason: str, fields: tuple[str, ...]) -> None:
    assert reason.startswith(fields), reason
    assert "\n" not in reason and len(reason) <= 600, reason
    assert API_KEY not in reason


def what_arq_does_outside_its_error_handling(data: bytes) -> None:
    """The steps of ``Worker.run_job`` that are not inside its ``try``: a crash there
    used to end the worker. For an envelope the checks let through, none may raise."""
    name, args, kwargs, job_try, enqueue_ms = deserialize_job_raw(
        data, deserializer=json_deserializer
    )
    _ = {"known": 1}.get(name)  # self.functions[function_name]
    if job_try and job_try > 1:  # enqueue_job_try > job_try
        str(job_try)
    _ = f"{(timestamp_ms() - enqueue_ms) / 1000:6.2f}"  # arq's log line
    ms_to_datetime(enqueue_ms)
    json_serializer({"t": job_try, "f": name, "a": args, "k": kwargs, "et": enqueue_ms})


# --------------------------------------------------------------------------- envelope checks


@settings(PROFILE, max_examples=PROFILE.max_examples * 10)
@given(data=envelopes())
def test_any_bytes_are_a_checked_envelope_or_refused_naming_the_field(data: bytes) -> None:
    try:
        envelope = parse_job(data)
    except JobEnvelopeError as exc:
        event("refused")
        assert_names_a_field(str(exc), ENVELOPE_FIELDS)
        return
    event("accepted")
    assert isinstance(envelope["f"], str) and envelope["f"]
    assert isinstance(envelope["a"], list) and isinstance(envelope["k"], dict)
    assert envelope["t"] is None or (type(envelope["t"]) is int and envelope["t"] >= 0)
    assert type(envelope["et"]) is int
    what_arq_does_outside_its_error_handling(data)
    # What we serialise, we read back the same.
    assert parse_job(json_serializer(envelope)) == envelope


@settings(PROFILE, max_examples=PROFILE.max_examples * 10)
@given(
    raw_id=st.binary(max_size=12) | st.text(max_size=12).map(str.encode),
    score=st.none() | st.floats(allow_nan=False) | st.integers(min_value=-5, max_value=5),
)
def test_a_queue_entry_is_runnable_by_arq_or_named_as_poison(
    raw_id: bytes, score: float | None
) -> None:
    problem = queue_entry_problem(raw_id, score)
    if problem is not None:
        assert_names_a_field(problem, ("job id", "score"))
        return
    raw_id.decode()  # arq's start_jobs
    if score is not None:
        assert score > 0, score  # arq skips a zero score forever (`not score`)
        int(score)  # arq's start_jobs


# --------------------------------------------------------------------------- the worker, in process


@pytest.fixture
def worker_environment(
    settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[None]:
    """The worker's DISPATCHER_* environment, no stray .env, logging restored after."""
    for key, value in worker_env(settings).items():
        if key.startswith("DISPATCHER_"):
            monkeypatch.setenv(key, value)
    monkeypatch.chdir(tmp_path)
    import logging

    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    config = structlog.get_config()
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
    structlog.configure(**config)


@pytest.fixture
async def ctx(
    client: CampaignClient, worker_environment: None, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[dict[str, Any]]:
    """The job context ``startup`` builds: real store, provider (the sandbox), dispatcher.

    Alerts are recorded instead of sent: generated URLs must never reach the network.
    """
    from worker import jobs

    sent: list[tuple[str, dict[str, Any]]] = []

    async def record_alert(url: str, payload: dict[str, Any], timeout_seconds: float = 10.0) -> int:
        sent.append((url, payload))
        return 200

    monkeypatch.setattr(jobs.alerts, "deliver_alert", record_alert)
    context: dict[str, Any] = {"redis": client.queue.redis, "alerts_sent": sent}
    await jobs.startup(context)
    yield context
    await jobs.shutdown(context)


async def _keyspace(client: CampaignClient) -> set[bytes]:
    letters = client.store.keys.deadletter.encode()
    return {k for k in await client.queue.redis.keys("*") if k != letters}


@settings(PROFILE)
@given(data=st.data())
async def test_job_arguments_for_every_job_name_run_or_are_refused_naming_the_argument(
    client: CampaignClient, ctx: dict[str, Any], data: st.DataObject
) -> None:
    from worker import jobs

    name = data.draw(st.sampled_from(JOB_NAMES), label="job")
    args = data.draw(ARGS[name], label="args")
    job = getattr(jobs, name)
    job_id = f"fuzz-args:{uuid.uuid4().hex}"
    before_keys = await _keyspace(client)
    before = len(await client.store.dead_letters(limit=10_000))
    sent = len(ctx["alerts_sent"])

    result = await job({**ctx, "job_id": job_id, "job_try": 1}, *args)

    letters = await client.store.dead_letters(limit=10_000)
    new = letters[: len(letters) - before]
    changed = await _keyspace(client) ^ before_keys
    if name == "record_account_event" and result in ("updated", "stale"):
        # An applied balance is the account's cached balance (and its newest time).
        account = client.store.keys.account("").encode()
        changed = {k for k in changed if not k.startswith(account)}
    assert changed == set(), "only the dead-letter list may change"
    assert API_KEY not in json.dumps(new)
    if isinstance(result, dict) and "refused" in result:
        event(f"{name}: refused")
        assert_names_a_field(result["refused"], PARAMETERS[name])
        assert [d["reason"] for d in new] == [f"bad job: {result['refused']}"]
        assert new[0]["job_id"] == job_id and new[0]["function"] == name
        assert len(ctx["alerts_sent"]) == sent, "a refused alert is not sent"
        return
    event(f"{name}: {result if isinstance(result, str) else 'ran'}")
    if name == "dispatch_campaign":
        # No campaign by that name: stood down, and kept where an operator looks.
        assert result["outcome"] == "unknown_campaign"
        assert len(new) == 1 and new[0]["job_id"] == job_id
        assert new[0]["reason"].startswith("bad job: campaign_id: no campaign")
    elif name == "record_call_event":
        assert result in {"dead_letter", "unknown_call"}, result
        assert len(new) == 1
    elif name == "record_account_event":
        assert result in {"updated", "stale"} and not new, result
    elif name == "deliver_alert":
        url, payload = ctx["alerts_sent"][-1]
        assert len(ctx["alerts_sent"]) == sent + 1 and not new
        assert url.startswith(("http://", "https://")) and isinstance(payload, dict)
    else:  # pragma: no cover - every valid reconcile names a missing campaign here
        raise AssertionError(f"{name}{args} ran: {result!r}")


@settings(PROFILE, max_examples=PROFILE.max_examples * 4)
@given(data=envelopes())
async def test_the_worker_lets_arq_run_only_what_arq_can_run(
    worker_environment: None, data: bytes
) -> None:
    """``GuardedWorker.job_problem`` against the real functions: a reason naming the
    field, or an envelope arq can run whose arguments bind to the function."""
    from worker.settings import GuardedWorker, StoredJob, WorkerSettings

    worker = GuardedWorker(
        functions=WorkerSettings.functions,
        cron_jobs=WorkerSettings.cron_jobs,
        queue_name="fuzz",
        handle_signals=False,
    )
    problem = worker.job_problem(StoredJob("string", len(data), data))
    if problem is not None:
        event("quarantined")
        assert_names_a_field(problem, ENVELOPE_FIELDS)
        return
    event("runs")
    what_arq_does_outside_its_error_handling(data)
    envelope = parse_job(data)
    coroutine_function = worker.functions[envelope["f"]].coroutine
    # The call arq makes, short of running it: the arguments fit the function
    # (the one under the refusing wrapper, which takes anything).
    call = getattr(coroutine_function, "__wrapped__", coroutine_function)
    call({}, *envelope["a"], **envelope["k"]).close()


# --------------------------------------------------------------------------- a real worker


@pytest.fixture
def worker(start_worker: Any) -> WorkerProcess:
    process: WorkerProcess = start_worker()
    return process


def _log_records(worker: WorkerProcess) -> list[dict[str, Any]]:
    records = []
    for line in worker.log_text().splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict):
            records.append(record)
    return records


@settings(
    PROFILE,
    max_examples=max(3, PROFILE.max_examples // 20),
    # Each example is a batch through a real worker: report the first failing
    # batch rather than spend minutes shrinking and explaining it.
    phases=[Phase.explicit, Phase.reuse, Phase.generate],
)
@given(batch=st.lists(envelopes(), min_size=5, max_size=25))
async def test_a_real_worker_quarantines_a_generated_batch_and_keeps_serving(
    client: CampaignClient, settings: Settings, worker: WorkerProcess, batch: list[bytes]
) -> None:
    from worker.jobs import BadJob, _alert_url, deliver_alert

    alert_signature = inspect.signature(deliver_alert)

    r = client.queue.redis
    run = uuid.uuid4().hex[:8]
    ids: dict[str, bytes] = {}
    for i, data in enumerate(batch):
        try:
            envelope = parse_job(data)
        except JobEnvelopeError:
            envelope = None
        if envelope and envelope["f"] == "deliver_alert":
            try:
                bound = alert_signature.bind(None, *envelope["a"], **envelope["k"])
                _alert_url(bound.arguments["url"])
            except (TypeError, BadJob):
                pass
            else:
                continue  # a valid URL would be POSTed to: not from a test
        job_id = f"fuzz-{run}-{i}"
        ids[job_id] = data
        await r.set(f"arq:job:{job_id}", data, px=600_000)
        await r.zadd(settings.queue_name, {job_id: timestamp_ms()})

    async def drained() -> bool:
        assert worker.alive, worker.log_text()[-3000:]
        async with r.pipeline(transaction=False) as pipe:
            for job_id in ids:
                pipe.exists(f"arq:job:{job_id}")
            return not any(await pipe.execute())

    await wait_for(drained, timeout=60, what="the batch to leave the queue")
    campaign_id = f"serve-{run}"
    await client.submit(parse_spec(spec_dict(campaign_id, contacts=2)))

    async def served() -> bool:
        assert worker.alive
        return (await client.get(campaign_id)).state == "completed"

    await wait_for(served, timeout=60, what="a campaign after the batch")

    letters = await client.store.dead_letters(limit=10_000)
    records = _log_records(worker)
    for job_id in ids:
        mine = [d for d in letters if d.get("job_id") == job_id]
        assert len(mine) <= 1, mine
        quarantined = [
            rec
            for rec in records
            if rec.get("event") == "job_quarantined" and rec["job_id"] == job_id
        ]
        if mine and mine[0]["reason"].startswith("poison job: "):
            event("quarantined")
            assert_names_a_field(mine[0]["reason"].removeprefix("poison job: "), ENVELOPE_FIELDS)
            assert len(quarantined) == 1, (job_id, ids[job_id], quarantined)
            assert not await r.exists(f"arq:result:{job_id}"), (job_id, ids[job_id])
        else:
            # It was a job: arq ran it (a refusal is a result and a dead letter).
            event("ran")
            assert not quarantined
            if parse_job(ids[job_id])["f"] not in CRON_NAMES:  # arq keeps no cron results
                assert await r.exists(f"arq:result:{job_id}"), (job_id, ids[job_id])
            if mine:
                assert mine[0]["reason"].startswith("bad job: ")
    assert API_KEY not in worker.log_text() and API_KEY not in json.dumps(letters)
    # No job ended in arq's failure path with a traceback: every refusal is ours.
    failed = [rec for rec in records if "exception" in rec]
    assert not failed, failed
