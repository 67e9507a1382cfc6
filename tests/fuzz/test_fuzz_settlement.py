"""Fuzzing settlement input against a real Redis: every write is consistent.

Arbitrary ``record_call_event`` payloads (billsec, cost, currency, status, IDs of
any type and size) and arbitrary provider answers are applied to campaigns with
real accepted attempts. After each one the books must balance exactly:

- every counter is a non-negative integer within the micros ceiling;
- an attempt is settled exactly when its reservation has been released and its
  cost booked: ``reserved`` is the sum over unsettled attempts, ``spent`` the
  sum of settled costs, ``live``/``settled`` count them, and a settled attempt
  is off the poll schedule;
- ``spent + reserved`` stays within the budget, except by exactly what the
  provider charged above a reservation (flagged ``over_reservation``);
- a refusal is one dead letter whose reason names the field, and never the API key.

At the end a valid event settles every attempt the garbage left alone. One test
sends the same kind of payloads as jobs to a real ``campaigns worker``, which
must answer each and stay alive.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from hypothesis import assume, event, given, settings
from hypothesis import strategies as st

from campaigns.domain.lifecycle import Move
from campaigns.domain.money import MAX_MICROS, format_micros
from campaigns.domain.spec import parse_spec
from campaigns.engine import settlement
from campaigns.engine.settlement import Settler
from campaigns.operators.control import CampaignClient
from campaigns.providers import MAX_BILLSEC_SECONDS, CallInfo, Provider, make_provider
from campaigns.settings import Settings
from campaigns.store import Attempt, Store
from tests.conftest import API_KEY, spec_dict
from tests.fuzz.conftest import FUZZ_PROFILE
from tests.fuzz.test_fuzz_money import money_text
from tests.support import (
    WorkerProcess,
    claim_next,
    event_job_result,
    seed_event,
    submit_spec,
    wait_for,
)

PROFILE = settings.get_profile(FUZZ_PROFILE)
RESULTS = {
    "ok",
    "over_reservation",
    "duplicate",
    "dead_letter",
    "unknown_call",
    "pending",
    "awaiting_cost",
    "retry",
    "gone",
}
LETTERED = {"dead_letter", "unknown_call"}
REASON = re.compile(r"(not JSON|event|call\.[a-z_]+|unknown call|campaign rate|store refused)\b")
RATES: list[dict[str, Any]] = [
    {"per_minute": "0.01", "increments": "60/60"},
    {"per_minute": "1000000", "increments": "60/60"},  # a long billsec overflows the ceiling
    {"per_second": "0.000001", "increments": "1/1", "connect_fee": "0.10"},
]
CONTACTS = 3

# --------------------------------------------------------------------------- strategies

json_leaf = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**30), max_value=10**30),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(st.characters(exclude_categories=["Cs"]), max_size=20),
)
_keys = st.text(st.characters(exclude_categories=["Cs"]), max_size=8)
json_value = st.recursive(
    json_leaf,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_keys, inner, max_size=3),
    max_leaves=8,
)
ABSENT = object()

billsec_values = st.one_of(
    st.integers(min_value=0, max_value=600),
    st.sampled_from([10**25, -1, -(2**63), MAX_BILLSEC_SECONDS, MAX_BILLSEC_SECONDS + 1, 2**53]),
    st.integers(min_value=-(10**30), max_value=10**30),
    json_value,
)
cost_values = st.one_of(money_text, st.sampled_from(["0.01", "0.020000", "1000000"]), json_value)
currency_values = st.one_of(
    st.sampled_from(["EUR", "EUR", "USD", "eur", "EURO", "E\x00R", "", "\u20ac"]), json_value
)


GOOD: dict[str, st.SearchStrategy[Any]] = {
    "billsec_seconds": st.integers(min_value=0, max_value=600),
    "cost_amount": st.integers(min_value=0, max_value=100_000).map(lambda m: format_micros(m, 6)),
    "cost_currency": st.sampled_from(["EUR", "EUR", "USD"]),
    "status": st.sampled_from(["completed", "busy", "no_answer"]),
}
HOSTILE: dict[str, st.SearchStrategy[Any]] = {
    "billsec_seconds": billsec_values,
    "cost_amount": cost_values,
    "cost_currency": currency_values,
    "status": st.sampled_from(["in_progress", ""]) | json_value,
}


@st.composite
def call_events(draw: st.DrawFn, call_ids: list[str]) -> Any:
    """A call event of seed 000's shape, good but for the fields drawn to be hostile;
    now and then anything at all."""
    if draw(st.integers(min_value=0, max_value=9)) == 0:
        return draw(st.one_of(json_value, st.text(max_size=50)))
    hostile = draw(st.sets(st.sampled_from([*GOOD, "id", "event"])), label="hostile fields")
    fields: dict[str, Any] = {}
    for name in GOOD:
        value = draw(st.one_of(st.just(ABSENT), HOSTILE[name] if name in hostile else GOOD[name]))
        if value is not ABSENT:
            fields[name] = value
    event = seed_event("placeholder", **fields)
    good_id = st.sampled_from(call_ids)
    event["call"]["id"] = draw(good_id | json_value if "id" in hostile else good_id)
    names = ["call.completed", "call.failed", "call.busy"]
    event["event"] = (
        draw(st.sampled_from([*names, "call.ringing"]) | json_value)
        if ("event" in hostile)
        else draw(st.sampled_from(names))
    )
    return event


@st.composite
def provider_answers(draw: st.DrawFn, call_ids: list[str]) -> CallInfo:
    """A call as a provider answer could decode it: the poll road."""
    return CallInfo(
        call_id=draw(st.sampled_from(call_ids) | st.text(max_size=300)),
        status=draw(st.sampled_from(["completed", "busy", "failed", "in_progress"])),
        billsec=draw(st.none() | st.integers(min_value=-(10**30), max_value=10**30)),
        cost_micros=draw(st.none() | st.integers(min_value=-(10**20), max_value=10**20)),
        cost_currency=draw(st.none() | currency_values),
    )


# --------------------------------------------------------------------------- set-up and checks


def _encodable(payload: Any) -> bool:
    try:
        json.dumps(payload, ensure_ascii=False).encode()
    except UnicodeEncodeError:
        return False
    return True


async def accepted_campaign(
    store: Store, campaign_id: str, rate: dict[str, Any]
) -> tuple[list[Attempt], int]:
    """A running campaign with CONTACTS accepted calls, each holding its reservation."""
    data = spec_dict(campaign_id, contacts=CONTACTS, rate=rate, max_call_seconds=60)
    worst = parse_spec(data).worst_case_call_micros()
    del data["budget"]
    data["budget_micros"] = CONTACTS * worst + 1  # room for every call, and no more
    spec = parse_spec(data)
    await submit_spec(store, spec)
    await store.transition(campaign_id, Move.START)
    token = uuid.uuid4().hex
    assert await store.acquire_lease(campaign_id, token, 60)
    found = []
    for index in range(CONTACTS):
        claim = await claim_next(store, campaign_id, token)
        assert claim.attempt is not None, claim
        attempt_id = claim.attempt.attempt_id
        assert await store.record_accepted(attempt_id, f"call_{campaign_id}_{index}", 3600) == "ok"
        attempt = await store.attempt(attempt_id)
        assert attempt is not None
        found.append(attempt)
    await store.release_lease(campaign_id, token)
    return found, spec.budget_in_micros


async def check_books(store: Store, campaign_id: str, budget: int) -> list[Attempt]:
    """The invariants of the module docstring, read straight from Redis."""
    redis: Any = store.redis  # redis-py types its async replies as "T | Awaitable[T]"
    raw = await redis.hgetall(store.keys.meta(campaign_id))
    meta = {k.decode(): v.decode() for k, v in raw.items()}
    counters = {}
    for name in ("reserved", "spent", "live", "settled", "accepted"):
        assert re.fullmatch(r"[0-9]+", meta.get(name, "0")), f"{name}={meta.get(name)!r}"
        counters[name] = int(meta.get(name, "0"))
        assert counters[name] <= MAX_MICROS
    rows = [a async for a in store.attempts(campaign_id)]
    settled = [a for a in rows if a.settled]
    open_ = [a for a in rows if not a.settled]
    assert counters["reserved"] == sum(a.reserved_micros for a in open_)
    assert counters["spent"] == sum(a.cost_micros or 0 for a in settled)
    assert counters["live"] == len(open_)
    assert counters["settled"] == len(settled)
    overrun = sum(max(0, (a.cost_micros or 0) - a.reserved_micros) for a in settled)
    assert counters["spent"] + counters["reserved"] <= budget + overrun
    unsettled = {m.decode() for m in await redis.zrange(store.keys.unsettled, 0, -1)}
    for attempt in rows:
        assert attempt.status == "accepted"
        if attempt.settled:
            assert attempt.attempt_id not in unsettled
            assert attempt.final_status in {"completed", "failed", "busy", "no_answer", "canceled"}
            assert attempt.cost_micros is not None and 0 <= attempt.cost_micros <= MAX_MICROS
            assert attempt.billsec is not None and 0 <= attempt.billsec <= MAX_BILLSEC_SECONDS
            assert attempt.cost_currency == "EUR"
            assert attempt.over_reservation == (attempt.cost_micros > attempt.reserved_micros)
        else:
            assert attempt.attempt_id in unsettled, "an unsettled call is still polled"
            assert attempt.final_status is None and attempt.cost_micros is None
    return rows


async def check_letters(store: Store, before: int, result: str) -> int:
    letters = await store.dead_letters(limit=10_000)
    assert len(letters) == before + (1 if result in LETTERED else 0), result
    if result in LETTERED:
        reason = letters[0]["reason"]
        assert isinstance(reason, str) and REASON.match(reason), reason
        assert len(reason) < 500
    assert API_KEY not in json.dumps(letters)
    return len(letters)


async def settle_the_rest(settler: Settler, store: Store, campaign_id: str, budget: int) -> None:
    """A later valid event settles every attempt the garbage left alone, exactly once."""
    for attempt in await check_books(store, campaign_id, budget):
        if attempt.settled or attempt.call_id is None:
            continue
        good = seed_event(attempt.call_id, billsec_seconds=30, cost_amount="0.01")
        good["call"]["cost_currency"] = "EUR"
        assert await settler.record_event(good) in ("ok", "over_reservation")
        booked = await store.attempt(attempt.attempt_id)
        assert booked is not None and booked.settled and booked.cost_micros == 10_000
    rows = await check_books(store, campaign_id, budget)
    assert all(a.settled for a in rows)


# --------------------------------------------------------------------------- in-process


@pytest.fixture
async def provider(settings: Settings) -> AsyncIterator[Provider]:
    p = make_provider(settings)
    yield p
    await p.aclose()


@pytest.fixture
def worker(start_worker: Callable[..., WorkerProcess]) -> WorkerProcess:
    """One worker for all the examples of a test (fixtures are not per example)."""
    return start_worker()


@pytest.mark.timeout(60 + PROFILE.max_examples)
@settings(PROFILE)
@given(data=st.data(), rate=st.sampled_from(RATES))
async def test_any_event_or_answer_keeps_the_books_consistent(
    client: CampaignClient,
    provider: Provider,
    settings: Settings,
    monkeypatch: pytest.MonkeyPatch,
    data: st.DataObject,
    rate: dict[str, Any],
) -> None:
    # No grace: a cost-less final call is booked from the rate model at once,
    # so that road is fuzzed too.
    monkeypatch.setattr(settlement, "_COST_GRACE_SECONDS", 0.0)
    store = client.store
    campaign_id = f"fz_{uuid.uuid4().hex[:12]}"
    attempts, budget = await accepted_campaign(store, campaign_id, rate)
    settler = Settler(store, provider, settings)
    call_ids = [a.call_id or "" for a in attempts] + ["call_nobody_knows"]
    letters = len(await store.dead_letters(limit=10_000))

    steps = data.draw(st.integers(min_value=1, max_value=6), label="steps")
    for _ in range(steps):
        if data.draw(st.integers(min_value=0, max_value=3), label="road") == 0:
            answer = data.draw(provider_answers(call_ids), label="answer")
            attempt = await store.attempt(data.draw(st.sampled_from(attempts)).attempt_id)
            assert attempt is not None
            if attempt.settled:
                continue
            result = await settler.apply(attempt, answer)
        else:
            payload = data.draw(call_events(call_ids), label="event")
            result = await settler.record_event(payload)
        assert result in RESULTS, result
        event(result)
        await check_books(store, campaign_id, budget)
        letters = await check_letters(store, letters, result)
    await settle_the_rest(settler, store, campaign_id, budget)


# --------------------------------------------------------------------------- a real worker

WORKER_EXAMPLES = max(10, PROFILE.max_examples // 4)
"""Each example is a job round trip through a real worker: fewer of them."""
REFUSALS = ("call_event_rejected", "call_billing_refused", "call_event_unknown_call")


def refusal_lines(worker: WorkerProcess) -> int:
    count = 0
    for line in worker.log_text().splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict) and record.get("event") in REFUSALS:
            count += 1
    return count


@pytest.mark.timeout(60 + 4 * WORKER_EXAMPLES)
@settings(PROFILE, max_examples=WORKER_EXAMPLES)
@given(data=st.data())
async def test_a_real_worker_answers_every_event_job_and_stays_alive(
    client: CampaignClient,
    settings: Settings,
    worker: WorkerProcess,
    data: st.DataObject,
) -> None:
    store = client.store
    campaign_id = f"fzw_{uuid.uuid4().hex[:12]}"
    attempts, budget = await accepted_campaign(store, campaign_id, RATES[0])
    call_ids = [a.call_id or "" for a in attempts]
    letters = len(await store.dead_letters(limit=10_000))

    async def run(payload: Any) -> Any:
        return await event_job_result(client.queue, payload)

    for _ in range(data.draw(st.integers(min_value=1, max_value=3), label="steps")):
        payload = data.draw(call_events(call_ids), label="event")
        # A lone surrogate cannot be a job at all (the queue quarantines it, and
        # its own fuzzing covers that): here every payload must reach the settler.
        assume(_encodable(payload))
        logged = refusal_lines(worker)
        result = await run(payload)
        assert result in RESULTS, result
        event(result)
        assert worker.alive, worker.log_text()[-2000:]
        await check_books(store, campaign_id, budget)
        letters = await check_letters(store, letters, result)
        if result in LETTERED:
            # One log line says why, as the dead letter does.
            async def one_more(logged: int = logged) -> bool:
                return refusal_lines(worker) > logged

            await wait_for(one_more, timeout=10, what="the refusal's log line")
            assert refusal_lines(worker) == logged + 1
    assert API_KEY not in worker.log_text()
