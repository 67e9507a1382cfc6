"""Resolving an ambiguous create without idempotency keys: lookup, creation events, in doubt.

The provider is an in-process object speaking the ``Provider`` protocol with
scripted answers (what no sandbox gives on demand: a lookup that finds two
calls, a creation event that lands while the create request times out); the
store is the session's real Redis, so the scripts and the index are real.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from datetime import datetime
from typing import Any

import pytest
from arq.constants import in_progress_key_prefix

from campaigns.domain.errors import ProviderError
from campaigns.domain.spec import parse_spec
from campaigns.engine.dispatch import Dispatcher
from campaigns.engine.resolve import (
    CREATION_SKEW_MS,
    GARBAGE_BEFORE_HALT,
    choose_lookup,
    event_rerun_seconds,
    in_send_window,
    keys_effective,
    unusable_answer,
)
from campaigns.engine.settlement import Settler
from campaigns.providers import CallInfo, Capabilities, CreateRequest, SentCreate
from campaigns.queue import JobQueue, event_job_id, open_queue
from campaigns.settings import Settings
from campaigns.store import Store, now_ms
from tests.conftest import spec_dict
from tests.support import submit_spec

LOOKUP = Capabilities(
    idempotency_keys=False,
    lookup=True,
    creation_events=False,
    hangup=True,
    lookup_settle_seconds=60,
)
EVENTS = Capabilities(idempotency_keys=False, lookup=False, creation_events=True, hangup=False)
NOTHING = Capabilities(idempotency_keys=False, lookup=False, creation_events=False, hangup=False)
TIMEOUT = ProviderError(None, "timeout", "ReadTimeout: no answer in time")
Answer = CallInfo | Exception | list[CallInfo] | Callable[..., Any]


class Fake:
    """A dialect with scripted create and lookup answers; records what it was asked."""

    dialect = "fake"
    final_events: frozenset[str] = frozenset({"call.completed"})
    creation_events: frozenset[str] = frozenset({"call.created"})

    def __init__(
        self, caps: Capabilities, creates: list[Answer], lookups: list[Answer] | None = None
    ) -> None:
        self.capabilities = caps
        self.creates = creates
        self.lookups = lookups or []
        self.sent: list[tuple[str, str]] = []
        self.looked_up: list[SentCreate] = []
        self.hung_up: list[str] = []

    def parse_event(self, payload: Any) -> tuple[str, CallInfo]:
        event, call = payload
        return str(event), call

    def build_create(self, request: CreateRequest) -> str:
        return json.dumps({"to": request.to, "attempt_id": request.attempt_id})

    async def _answer(self, script: list[Answer], *args: Any) -> Any:
        answer = script.pop(0) if len(script) > 1 else script[0]
        if callable(answer):
            answer = await answer(*args)
        if isinstance(answer, Exception):
            raise answer
        return answer

    async def create_call(self, body: str, idempotency_key: str) -> CallInfo:
        self.sent.append((body, idempotency_key))
        result: CallInfo = await self._answer(self.creates, body)
        return result

    async def get_call(self, call_id: str) -> CallInfo:
        return CallInfo(call_id, "in_progress")

    async def find_calls(self, sent: SentCreate) -> list[CallInfo]:
        self.looked_up.append(sent)
        result: list[CallInfo] = await self._answer(self.lookups, sent)
        return result

    async def hang_up(self, call_id: str) -> None:
        self.hung_up.append(call_id)

    async def usage(self, start: datetime, end: datetime) -> None:
        return None

    async def balance(self) -> None:
        return None

    async def aclose(self) -> None:
        return None


@pytest.fixture
async def queue(redis_url: str) -> AsyncIterator[JobQueue]:
    q = await open_queue(redis_url, "dispatcher:unit")
    yield q
    await q.aclose()


def config(**changes: Any) -> Settings:
    values: dict[str, Any] = {
        "redis_url": "redis://unused",
        "retry_attempts": 10,
        "retry_base_seconds": 0.01,
        "retry_max_seconds": 0.02,
        "provider_timeout_seconds": 2.0,
        **changes,
    }
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


async def dispatch(
    queue: JobQueue, provider: Fake, contacts: int = 1, settings: Settings | None = None
) -> tuple[Store, str]:
    """Submit campaign ``r`` and run one dispatch batch against ``provider``."""
    store = Store(queue.redis)
    spec = spec_dict("r", contacts=contacts)
    spec["pacing"] = {**spec["pacing"], "max_concurrent_requests": 1}
    await submit_spec(store, parse_spec(spec))
    result = await Dispatcher(store, provider, queue, settings or config()).run_batch(
        "r", await store.bump_dispatch_seq("r")
    )
    return store, result.outcome


async def run_again(
    store: Store, queue: JobQueue, provider: Fake, settings: Settings | None = None
) -> str:
    """The next run: its leftover pass resolves what the last one left."""
    result = await Dispatcher(store, provider, queue, settings or config()).run_batch(
        "r", await store.bump_dispatch_seq("r")
    )
    return result.outcome


def call(call_id: str, **fields: Any) -> CallInfo:
    return CallInfo(call_id, "in_progress", to="+15551240000", caller_id="+15551230001", **fields)


# -- the decisions, without I/O -------------------------------------------------------


def test_keys_are_effective_only_when_both_say_so() -> None:
    keys = Capabilities(idempotency_keys=True, lookup=False, creation_events=False, hangup=False)
    assert keys_effective(Fake(keys, []), config())
    assert not keys_effective(Fake(keys, []), config(provider_honours_idempotency=False))
    assert not keys_effective(Fake(NOTHING, []), config(provider_honours_idempotency=True))


@pytest.mark.parametrize(
    ("error", "garbage"),
    [
        (ProviderError(201, "invalid_response", "call object: id: missing"), True),
        (ProviderError(302, "http_302", "Found"), True),
        (ProviderError(200, "invalid_response", "not JSON"), True),
        (ProviderError(503, "provider_error", "down"), False),
        (TIMEOUT, False),
    ],
)
def test_unusable_answers(error: ProviderError, garbage: bool) -> None:
    assert unusable_answer(error) is garbage


def test_lookup_one_call_is_the_call() -> None:
    verdict = choose_lookup(
        "a", [call("c1")], {"c1": None}, seconds_since_last_send=0, settle_seconds=10
    )
    assert verdict.outcome == "found" and verdict.call is not None
    assert verdict.call.call_id == "c1"


def test_lookup_nothing_before_the_settle_time_proves_nothing() -> None:
    verdict = choose_lookup("a", [], {}, seconds_since_last_send=9.9, settle_seconds=10)
    assert verdict.outcome == "wait"


def test_lookup_nothing_after_the_settle_time_proves_no_call() -> None:
    verdict = choose_lookup("a", [], {}, seconds_since_last_send=10, settle_seconds=10)
    assert verdict.outcome == "not_placed"


def test_lookup_several_calls_are_for_an_operator() -> None:
    verdict = choose_lookup(
        "a", [call("c2"), call("c1"), call("c1")], {}, seconds_since_last_send=0, settle_seconds=1
    )
    assert verdict.outcome == "several" and verdict.call_ids == ("c1", "c2")


def test_lookup_drops_calls_of_other_attempts() -> None:
    """Recorded for another attempt, or echoing another attempt's ID: not ours."""
    calls = [call("taken"), call("echo", attempt_id="b"), call("ours", attempt_id="a")]
    owners = {"taken": "b", "echo": None, "ours": None}
    verdict = choose_lookup("a", calls, owners, seconds_since_last_send=0, settle_seconds=1)
    assert verdict.outcome == "found" and verdict.call_ids == ("ours",)
    # Only other attempts' calls: none of ours, and after the settle time nothing placed.
    verdict = choose_lookup("a", calls[:2], owners, seconds_since_last_send=5, settle_seconds=1)
    assert verdict.outcome == "not_placed"


def test_the_send_window_allows_the_skew_and_the_timeout() -> None:
    first, last = 1_000_000, 1_010_000
    assert in_send_window(first - CREATION_SKEW_MS, first, last, 2.0)
    assert not in_send_window(first - CREATION_SKEW_MS - 1, first, last, 2.0)
    assert in_send_window(last + 2_000 + CREATION_SKEW_MS, first, last, 2.0)
    assert not in_send_window(last + 2_001 + CREATION_SKEW_MS, first, last, 2.0)


# -- lookup ---------------------------------------------------------------------------


async def test_a_timeout_is_looked_up_and_the_call_recorded(queue: JobQueue) -> None:
    provider = Fake(LOOKUP, [TIMEOUT, call("unused")], [[call("c_found")]])
    store, _ = await dispatch(queue, provider)
    assert len(provider.sent) == 1, "never re-sent"
    attempt = await store.attempt("r:000000:1")
    assert attempt is not None and (attempt.status, attempt.call_id) == ("accepted", "c_found")
    [sent] = provider.looked_up
    assert (sent.attempt_id, sent.caller_id, sent.to) == ("r:000000:1", "+15551230001", attempt.to)
    assert sent.first_sent_ms == attempt.first_sent_at_ms == sent.last_sent_ms


async def test_nothing_found_before_the_settle_time_leaves_it_for_the_next_run(
    queue: JobQueue,
) -> None:
    provider = Fake(LOOKUP, [TIMEOUT], [[]])
    store, _ = await dispatch(queue, provider)
    attempt = await store.attempt("r:000000:1")
    assert attempt is not None and attempt.status == "sending"
    campaign = await store.campaign("r")
    assert campaign is not None and campaign.unresolved == 1 and campaign.in_doubt == 0
    await run_again(store, queue, provider)
    assert len(provider.sent) == 1 and len(provider.looked_up) == 2, "looked up, not re-sent"


async def test_nothing_found_after_the_settle_time_is_sent_again_as_a_first_dial(
    queue: JobQueue,
) -> None:
    settled = Capabilities(idempotency_keys=False, lookup=True, creation_events=False, hangup=False)
    provider = Fake(settled, [TIMEOUT, call("c_second")], [[]])
    store, _ = await dispatch(queue, provider)
    assert len(provider.sent) == 2, "proved not placed: sent again"
    attempt = await store.attempt("r:000000:1")
    assert attempt is not None and (attempt.status, attempt.call_id) == ("accepted", "c_second")


async def test_a_resend_after_a_lookup_checks_the_do_not_call_list_again(
    queue: JobQueue,
) -> None:
    """The re-send is a first dial: a number put on the list meanwhile is not dialled."""
    settled = Capabilities(idempotency_keys=False, lookup=True, creation_events=False, hangup=False)
    store = Store(queue.redis)

    async def listed_meanwhile(sent: SentCreate) -> list[CallInfo]:
        await queue.redis.sadd(store.keys.dnc, sent.to)
        return []

    provider = Fake(settled, [TIMEOUT, call("never")], [listed_meanwhile])
    store, _ = await dispatch(queue, provider)
    assert len(provider.sent) == 1
    attempt = await store.attempt("r:000000:1")
    assert attempt is not None and attempt.status == "suppressed"


async def test_several_calls_found_put_the_attempt_in_doubt_naming_them(
    queue: JobQueue,
) -> None:
    provider = Fake(LOOKUP, [TIMEOUT], [[call("c_a"), call("c_b")]])
    store, _ = await dispatch(queue, provider)
    attempt = await store.attempt("r:000000:1")
    assert attempt is not None and attempt.status == "in_doubt"
    assert "c_a" in (attempt.error_message or "") and "c_b" in (attempt.error_message or "")
    assert len(provider.sent) == 1


async def test_lookup_errors_end_in_doubt_after_five(queue: JobQueue) -> None:
    down = ProviderError(503, "provider_error", "lookup down")
    provider = Fake(LOOKUP, [TIMEOUT], [down])
    store, _ = await dispatch(queue, provider)
    for _ in range(4):
        attempt = await store.attempt("r:000000:1")
        assert attempt is not None and attempt.status == "sending"
        await run_again(store, queue, provider)
    attempt = await store.attempt("r:000000:1")
    assert attempt is not None and attempt.status == "in_doubt"
    assert attempt.lookup_failures == 5
    assert len(provider.sent) == 1


# -- creation events ------------------------------------------------------------------


async def test_a_creation_event_during_the_timeout_records_the_call(queue: JobQueue) -> None:
    """The webhook lands while the create request is still waiting for its answer."""
    store = Store(queue.redis)
    settler = Settler(store, Fake(EVENTS, []), config())

    async def webhook_then_timeout(body: str) -> Exception:
        sent = json.loads(body)
        attempt = await store.attempt(sent["attempt_id"])
        assert attempt is not None
        event = call("c_event", created_at_ms=now_ms())
        event = CallInfo(**{**_fields(event), "to": sent["to"]})
        asyncio.get_running_loop().call_later(
            0.1, lambda: asyncio.ensure_future(settler.record_event(("call.created", event)))
        )
        return TIMEOUT

    provider = Fake(EVENTS, [webhook_then_timeout])
    store, _ = await dispatch(queue, provider)
    attempt = await store.attempt("r:000000:1")
    assert attempt is not None and (attempt.status, attempt.call_id) == ("accepted", "c_event")
    assert len(provider.sent) == 1


async def test_no_creation_event_yet_leaves_it_unresolved_then_in_doubt(
    queue: JobQueue,
) -> None:
    provider = Fake(EVENTS, [TIMEOUT])
    short = config(creation_event_wait_seconds=1.5)
    store, _ = await dispatch(queue, provider, settings=short)
    attempt = await store.attempt("r:000000:1")
    assert attempt is not None and attempt.status == "sending", "waits for the event"
    await asyncio.sleep(1.5)
    await run_again(store, queue, provider, short)
    attempt = await store.attempt("r:000000:1")
    assert attempt is not None and attempt.status == "in_doubt"
    assert "no creation event" in (attempt.error_message or "")
    assert len(provider.sent) == 1


async def test_a_creation_event_still_queued_holds_the_doubt_off_until_it_is_applied(
    queue: JobQueue,
) -> None:
    """A worker killed while applying the creation event leaves its job queued with an
    in-progress key arq honours for the longest job timeout + 10 s: the wait for the
    event is not over while such a job is queued (bounded by ``event_rerun_seconds``)."""
    provider = Fake(EVENTS, [TIMEOUT])
    short = config(creation_event_wait_seconds=0)
    store = Store(queue.redis)
    job_id = event_job_id("c_stuck", "call.created", b"{}")
    await queue.call_event({"event": "call.created"}, job_id=job_id)  # what the ingress queued
    await queue.redis.set(in_progress_key_prefix + job_id, b"1", px=70_000)  # its worker died
    assert await queue.events_pending(provider.creation_events)
    assert not await queue.events_pending(frozenset({"call.answered"}))
    store, _ = await dispatch(queue, provider, settings=short)
    attempt = await store.attempt("r:000000:1")
    assert attempt is not None and attempt.status == "sending", "the queued event may be its call"
    # arq runs the job again once the key expires: the event names this attempt.
    settler = Settler(store, provider, config())
    event = CallInfo("c_stuck", "in_progress", to=attempt.to, attempt_id=attempt.attempt_id)
    assert await settler.record_event(("call.created", event)) == "pending"
    await queue.redis.zrem(queue.settlement_queue, job_id)
    attempt = await store.attempt("r:000000:1")
    assert attempt is not None and (attempt.status, attempt.call_id) == ("accepted", "c_stuck")
    assert len(provider.sent) == 1


async def test_a_creation_event_queued_longer_than_arq_could_hold_it_proves_nothing(
    queue: JobQueue,
) -> None:
    provider = Fake(EVENTS, [TIMEOUT])
    store = Store(queue.redis)
    await queue.call_event({}, job_id=event_job_id("c_other", "call.created", b"{}"))
    # Past the wait and the longest time arq can hold an event whose worker died.
    short = config(creation_event_wait_seconds=0, job_timeout_seconds=5)
    store, _ = await dispatch(queue, provider, settings=short)
    attempt = await store.attempt("r:000000:1")
    assert attempt is not None and attempt.status == "sending"
    await store.redis.hset(
        store.keys.attempt("r:000000:1"),
        "sent_at",
        now_ms() - int(event_rerun_seconds(short) * 1000) - 1,
    )
    await run_again(store, queue, provider, short)
    attempt = await store.attempt("r:000000:1")
    assert attempt is not None and attempt.status == "in_doubt"
    assert len(provider.sent) == 1


async def test_a_creation_event_after_the_doubt_still_records_the_call(
    queue: JobQueue,
) -> None:
    provider = Fake(EVENTS, [TIMEOUT])
    store, _ = await dispatch(queue, provider, settings=config(creation_event_wait_seconds=0))
    attempt = await store.attempt("r:000000:1")
    assert attempt is not None and attempt.status == "in_doubt"
    settler = Settler(store, provider, config())
    late = CallInfo("c_late", "in_progress", to=attempt.to, attempt_id=attempt.attempt_id)
    assert await settler.record_event(("call.created", late)) == "pending"
    attempt = await store.attempt("r:000000:1")
    assert attempt is not None and (attempt.status, attempt.call_id) == ("accepted", "c_late")
    campaign = await store.campaign("r")
    assert campaign is not None and campaign.in_doubt == 0


async def test_without_any_mechanism_an_ambiguous_failure_is_in_doubt(queue: JobQueue) -> None:
    provider = Fake(NOTHING, [TIMEOUT, call("never")])
    store, _ = await dispatch(queue, provider)
    attempt = await store.attempt("r:000000:1")
    assert attempt is not None and attempt.status == "in_doubt"
    assert len(provider.sent) == 1


async def test_a_refused_connection_is_retried_without_keys(queue: JobQueue) -> None:
    """Nothing reached the provider: retrying cannot double-dial."""
    refused = ProviderError(None, "connect_failed", "ConnectError: refused")
    provider = Fake(NOTHING, [refused, call("c_ok")])
    store, _ = await dispatch(queue, provider)
    attempt = await store.attempt("r:000000:1")
    assert attempt is not None and attempt.status == "accepted"
    assert len(provider.sent) == 2


# -- garbage --------------------------------------------------------------------------


async def test_garbage_in_a_row_halts_provider_misbehaving_and_redials_nothing(
    queue: JobQueue,
) -> None:
    garbage = ProviderError(201, "invalid_response", 'call object: id: missing {"status":"q"}')
    provider = Fake(NOTHING, [garbage])
    store, outcome = await dispatch(queue, provider, contacts=GARBAGE_BEFORE_HALT + 3)
    assert outcome == "halt"
    assert len(provider.sent) == GARBAGE_BEFORE_HALT, "one send per attempt, then the halt"
    campaign = await store.campaign("r")
    assert campaign is not None and campaign.state == "halted"
    assert campaign.halt_code == "provider_misbehaving"
    assert "HTTP 201" in (campaign.halt_message or "")
    assert "id: missing" in (campaign.halt_message or "")
    assert campaign.in_doubt == GARBAGE_BEFORE_HALT
    assert campaign.pending == 3


async def test_an_answer_with_an_id_ends_the_run_of_garbage(queue: JobQueue) -> None:
    garbage = ProviderError(200, "invalid_response", "not JSON")
    script: list[Answer] = [garbage] * (GARBAGE_BEFORE_HALT - 1)
    script += [call("c_ok"), *[garbage] * (GARBAGE_BEFORE_HALT - 1), call("c_ok2")]
    provider = Fake(NOTHING, script)
    store, _ = await dispatch(queue, provider, contacts=2 * GARBAGE_BEFORE_HALT)
    campaign = await store.campaign("r")
    assert campaign is not None and campaign.halt_code != "provider_misbehaving"


# -- the per-number index and matching events -----------------------------------------


async def test_the_index_follows_stamp_record_reject_and_doubt(queue: JobQueue) -> None:
    store, _ = await dispatch(queue, Fake(NOTHING, [TIMEOUT]), contacts=1)
    attempt = await store.attempt("r:000000:1")
    assert attempt is not None and attempt.status == "in_doubt"
    assert await store.sent_to(attempt.to) == ["r:000000:1"], "in doubt stays matchable"
    assert await store.record_accepted("r:000000:1", "c_x", 60) == "ok"
    assert await store.sent_to(attempt.to) == []
    ttl = await queue.redis.pttl(store.keys.sent_to(attempt.to))
    assert ttl == -2, "an emptied index is gone"


async def test_an_event_without_our_id_is_matched_by_number_and_time(queue: JobQueue) -> None:
    store, _ = await dispatch(queue, Fake(EVENTS, [TIMEOUT]), contacts=2)
    first = await store.attempt("r:000000:1")
    assert first is not None and first.status == "sending"
    assert await queue.redis.pttl(store.keys.sent_to(first.to)) > 0
    settler = Settler(store, Fake(EVENTS, []), config())
    created = (first.first_sent_at_ms or 0) + 300
    outside = CallInfo("c_old", "in_progress", to=first.to, created_at_ms=created - 60_000)
    assert await settler.record_event(("call.created", outside)) == "unknown_call"
    [letter] = await store.dead_letters()
    assert "matches no attempt" in letter["reason"]
    other_caller = CallInfo(
        "c_other", "in_progress", to=first.to, caller_id="+15559999999", created_at_ms=created
    )
    assert await settler.record_event(("call.created", other_caller)) == "unknown_call"
    match = CallInfo(
        "c_match", "in_progress", to=first.to, caller_id="+15551230001", created_at_ms=created
    )
    assert await settler.record_event(("call.created", match)) == "pending"
    first = await store.attempt("r:000000:1")
    assert first is not None and (first.status, first.call_id) == ("accepted", "c_match")


async def test_an_event_matching_two_attempts_is_dead_lettered(queue: JobQueue) -> None:
    """Two campaigns called one number from one caller ID in one window: never guess."""
    store = Store(queue.redis)
    for cid in ("p", "q"):
        spec = spec_dict(cid, contacts=1)
        await submit_spec(store, parse_spec(spec))
        await Dispatcher(store, Fake(EVENTS, [TIMEOUT]), queue, config()).run_batch(
            cid, await store.bump_dispatch_seq(cid)
        )
    p = await store.attempt("p:000000:1")
    assert p is not None
    assert sorted(await store.sent_to(p.to)) == ["p:000000:1", "q:000000:1"]
    # It waits up to the request timeout for one of them to get its own answer.
    settler = Settler(store, Fake(EVENTS, []), config(provider_timeout_seconds=0.3))
    event = CallInfo("c_two", "in_progress", to=p.to, created_at_ms=now_ms())
    assert await settler.record_event(("call.created", event)) == "unknown_call"
    [letter] = await store.dead_letters()
    assert "several attempts" in letter["reason"]
    for aid in ("p:000000:1", "q:000000:1"):
        attempt = await store.attempt(aid)
        assert attempt is not None and attempt.status == "sending", "nothing else changed"


async def test_a_final_event_first_records_and_settles(queue: JobQueue) -> None:
    """The final event can be the first to arrive: recorded, then booked from its times."""
    store, _ = await dispatch(queue, Fake(EVENTS, [TIMEOUT]), contacts=1)
    attempt = await store.attempt("r:000000:1")
    assert attempt is not None
    settler = Settler(store, Fake(EVENTS, []), config())
    answered = now_ms()
    final = CallInfo(
        "c_final",
        "completed",
        to=attempt.to,
        attempt_id=attempt.attempt_id,
        answered_at_ms=answered,
        ended_at_ms=answered + 61_001,
    )
    assert await settler.record_event(("call.completed", final)) == "ok"
    attempt = await store.attempt("r:000000:1")
    assert attempt is not None and attempt.settled and attempt.call_id == "c_final"
    assert attempt.billsec == 62, "ceil((ended - answered) / 1000)"
    assert attempt.cost_estimated is True
    assert attempt.cost_micros == 20_000, "two started minutes at 0.01"


async def test_an_answer_time_from_an_earlier_event_is_kept_for_billing(
    queue: JobQueue,
) -> None:
    store, _ = await dispatch(queue, Fake(EVENTS, [TIMEOUT]), contacts=1)
    attempt = await store.attempt("r:000000:1")
    assert attempt is not None
    settler = Settler(store, Fake(EVENTS, []), config())
    answered = now_ms()
    ours = {"to": attempt.to, "attempt_id": attempt.attempt_id}
    live = CallInfo("c_t", "in_progress", answered_at_ms=answered, **ours)
    assert await settler.record_event(("call.answered", live)) == "pending"
    ended = CallInfo("c_t", "completed", ended_at_ms=answered + 5_000, **ours)
    assert await settler.record_event(("call.completed", ended)) == "ok"
    attempt = await store.attempt("r:000000:1")
    assert attempt is not None and attempt.billsec == 5 and attempt.cost_estimated


def _fields(info: CallInfo) -> dict[str, Any]:
    return {name: getattr(info, name) for name in info.__dataclass_fields__}


# -- max_call_seconds -----------------------------------------------------------------


class LongCall(Fake):
    """Every call reads back live, answered ``seconds`` ago."""

    def __init__(self, caps: Capabilities, seconds: float) -> None:
        super().__init__(caps, [call("c_long")])
        self.seconds = seconds

    async def get_call(self, call_id: str) -> CallInfo:
        return CallInfo(call_id, "in_progress", answered_at_ms=now_ms() - int(self.seconds * 1000))


@pytest.mark.parametrize("can_hang_up", [True, False], ids=["hang-up", "no-hang-up"])
async def test_a_call_past_max_call_seconds_is_hung_up_once_or_flagged(
    queue: JobQueue, can_hang_up: bool
) -> None:
    caps = LOOKUP if can_hang_up else EVENTS
    past = LongCall(caps, 120 + 6)  # spec_dict's max_call_seconds, plus more than the grace
    store, _ = await dispatch(queue, past)
    settler = Settler(store, past, config())
    assert await settler.poll_one("r:000000:1") == "pending"
    assert await settler.poll_one("r:000000:1") == "pending"
    attempt = await store.attempt("r:000000:1")
    campaign = await store.campaign("r")
    assert attempt is not None and campaign is not None
    if can_hang_up:
        assert past.hung_up == ["c_long"], "once"
        assert attempt.hung_up_at_ms is not None and campaign.past_max_calls == 0
    else:
        assert past.hung_up == []
        assert attempt.past_max_at_ms is not None and campaign.past_max_calls == 1


async def test_a_call_inside_max_call_seconds_is_left_alone(queue: JobQueue) -> None:
    inside = LongCall(LOOKUP, 120)
    store, _ = await dispatch(queue, inside)
    assert await Settler(store, inside, config()).poll_one("r:000000:1") == "pending"
    assert inside.hung_up == []
