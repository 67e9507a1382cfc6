"""The contact policy's scripts against real Redis, one rule at a time, on a fixed clock
(the claim takes ``now`` from its caller): schedule, do-not-call at claim and at the
stamp, frequency cap, retries booked by settle, chunked expiry."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis

from campaigns.domain.contacts import Contacts
from campaigns.domain.lifecycle import BUDGET_EXHAUSTED_MESSAGE, REVIEW_MESSAGE, Move
from campaigns.domain.pacing import pace_rule
from campaigns.domain.policy import parse_instant
from campaigns.domain.spec import parse_spec
from campaigns.store import Claim, Store, now_ms
from campaigns.store.dnc import DoNotCallList
from tests.conftest import spec_dict
from tests.support import submit_spec

pytestmark = pytest.mark.integration

T0 = int(parse_instant("2026-12-01T12:00:00Z").timestamp() * 1000)


@pytest.fixture
async def store(redis_url: str) -> AsyncIterator[Store]:
    client = aioredis.Redis.from_url(redis_url)
    yield Store(client)
    await client.aclose()


async def _running(store: Store, cid: str, contacts: int = 3, **spec: Any) -> None:
    await submit_spec(store, parse_spec(spec_dict(cid, contacts=contacts, **spec)))
    await store.transition(cid, Move.START)
    assert await store.acquire_lease(cid, "t", 60)


async def _claim(store: Store, cid: str, now: int, **kwargs: Any) -> Claim:
    return await store.claim(
        cid,
        "t",
        review_message=REVIEW_MESSAGE,
        budget_message=BUDGET_EXHAUSTED_MESSAGE,
        now=now,
        **kwargs,
    )


async def _dnc(store: Store, *numbers: str) -> None:
    """Put numbers on the account's do-not-call list (the store's own list module)."""
    await DoNotCallList(store.redis, store.keys).add(numbers)


async def _final(store: Store, attempt_id: str, status: str) -> str:
    """Settle a call with a final status (a busy call bills nothing)."""
    billsec = 30 if status == "completed" else 0
    return await store.settle(
        attempt_id,
        final_status=status,
        billsec=billsec,
        cost_micros=billsec * 100,
        estimated=False,
        currency="EUR",
    )


async def test_nothing_is_claimed_before_start_at(store: Store) -> None:
    await _running(store, "later", schedule={"start_at": "2026-12-01T12:00:10Z"})
    claim = await _claim(store, "later", T0)
    assert (claim.outcome, claim.wait_reason, claim.due_ms) == ("wait", "not_started", T0 + 10_000)
    assert (await _claim(store, "later", T0 + 10_000)).outcome == "claimed"


async def test_numbers_on_a_do_not_call_list_are_passed_over_in_the_same_claim(
    store: Store,
) -> None:
    spec = spec_dict("dnc", contacts=4)
    numbers = [c["to"] for c in spec["contacts"]]
    await _running(store, "dnc", contacts=4, suppress=[numbers[1]])
    await _dnc(store, numbers[0])
    claim = await _claim(store, "dnc", T0)
    assert claim.attempt is not None and claim.attempt.to == numbers[2]
    campaign = await store.campaign("dnc")
    assert campaign is not None
    assert campaign.suppressed == 2 and campaign.live == 1
    assert campaign.reserved_micros == campaign.worst_case_micros

    rows = [a async for a in store.attempts("dnc")]
    assert [(a.to, a.status) for a in rows] == [
        (numbers[0], "suppressed"),
        (numbers[1], "suppressed"),
        (numbers[2], "sending"),
    ]
    assert [a.error_message for a in rows[:2]] == [
        "on the account do-not-call list",
        "on the campaign's suppress list",
    ]


async def test_a_claim_passes_over_a_bounded_number_then_says_skipped(store: Store) -> None:
    spec = spec_dict("many", contacts=5)
    await _running(store, "many", contacts=5)
    await _dnc(store, *(c["to"] for c in spec["contacts"][:4]))
    assert (await _claim(store, "many", T0, skip_limit=3)).outcome == "skipped"
    claim = await _claim(store, "many", T0, skip_limit=3)
    assert claim.attempt is not None and claim.attempt.to == spec["contacts"][4]["to"]


async def test_a_number_listed_after_its_claim_is_never_sent(store: Store) -> None:
    await _running(store, "late-dnc", contacts=2)
    first = (await _claim(store, "late-dnc", T0)).attempt
    second = (await _claim(store, "late-dnc", T0)).attempt
    assert first is not None and second is not None
    assert await store.stamp_send(second.attempt_id, "{}", "t") == "ok"
    await _dnc(store, first.to, second.to)
    assert await store.stamp_send(first.attempt_id, "{}", "t") == "suppressed"
    # A re-send of an attempt that may already be a call is not a new dial (same
    # Idempotency-Key): it goes out, to find that call.
    assert await store.stamp_send(second.attempt_id, "{}", "t", may_be_placed=True) == "ok"
    campaign = await store.campaign("late-dnc")
    assert campaign is not None
    assert (campaign.suppressed, campaign.live, campaign.unresolved) == (1, 1, 1)
    assert campaign.reserved_micros == campaign.worst_case_micros


async def test_the_frequency_cap_parks_a_number_until_its_window_frees_it(store: Store) -> None:
    await _running(store, "a", contacts=1)
    await _running(store, "b", contacts=1)
    cap = (1, 60_000)
    assert (await _claim(store, "a", T0, cap=cap)).outcome == "claimed"
    # Parked, then nothing else to try: skipped, and the next claim says until when.
    assert (await _claim(store, "b", T0 + 5, cap=cap)).outcome == "skipped"
    parked = await _claim(store, "b", T0 + 5, cap=cap)
    assert (parked.outcome, parked.wait_reason, parked.due_ms) == ("wait", "capped", T0 + 60_001)
    campaign = await store.campaign("b")
    assert campaign is not None and (campaign.pending, campaign.parked) == (1, 1)
    assert (await _claim(store, "b", T0 + 60_000, cap=cap)).outcome == "wait"
    assert (await _claim(store, "b", T0 + 60_001, cap=cap)).outcome == "claimed"


async def test_settle_schedules_a_retry_by_final_status_up_to_max_attempts(store: Store) -> None:
    retry = {"busy": {"after_seconds": 30, "max_attempts": 2}}
    await _running(store, "retry", contacts=1, retry=retry)
    for try_no in (1, 2):
        claim = await _claim(store, "retry", now_ms())
        assert claim.attempt is not None
        assert claim.attempt.attempt_id == f"retry:000000:{try_no}"
        assert await store.record_accepted(claim.attempt.attempt_id, f"call-{try_no}", 60) == "ok"
        # With a retry policy, a live call that may come back busy keeps it open.
        assert (await _claim(store, "retry", now_ms())).outcome == "empty"
        assert await _final(store, claim.attempt.attempt_id, "busy") == "ok"
        if try_no == 1:
            waiting = await _claim(store, "retry", now_ms())
            assert waiting.outcome == "wait" and waiting.wait_reason == "retry"
            assert waiting.due_ms is not None and waiting.due_ms >= now_ms() + 29_000
            # Due: it comes back under its next try number.
            await store.redis.zadd("dsp:c:retry:retry", {"0|0": 0})
    campaign = await store.campaign("retry")
    assert campaign is not None and campaign.retries == 1
    assert (await _claim(store, "retry", now_ms())).outcome == "completed"


async def test_a_completed_call_is_never_retried(store: Store) -> None:
    await _running(
        store, "done", contacts=1, retry={"busy": {"after_seconds": 1, "max_attempts": 3}}
    )
    claim = await _claim(store, "done", now_ms())
    assert claim.attempt is not None
    await store.record_accepted(claim.attempt.attempt_id, "call-1", 60)
    assert await _final(store, claim.attempt.attempt_id, "completed") == "ok"
    assert (await _claim(store, "done", now_ms())).outcome == "completed"


async def test_at_end_at_every_contact_left_expires_in_chunks(store: Store) -> None:
    await _running(store, "ends", contacts=2500, schedule={"end_at": "2026-12-01T12:00:00Z"})
    before = await _claim(store, "ends", T0 - 1)
    assert before.outcome == "claimed"
    assert (await _claim(store, "ends", T0)).outcome == "expire"
    assert await store.expire("ends", "t", limit=1000, now=T0) == 1499
    assert await store.expire("ends", "t", limit=1000, now=T0) == 499
    assert await store.expire("ends", "t", limit=1000, now=T0) == 0
    assert await store.expire("ends", "other-token", now=T0) == -1
    # The one claimed before the end is still unresolved: not completed yet.
    assert (await _claim(store, "ends", T0)).outcome == "empty"
    assert before.attempt is not None
    await store.record_rejected(before.attempt.attempt_id, "contact", "invalid_number", "x")
    assert (await _claim(store, "ends", T0)).outcome == "completed"
    campaign = await store.campaign("ends")
    assert campaign is not None
    assert (campaign.expired, campaign.pending, campaign.reserved_micros) == (2499, 0, 0)
    # No hash per expired contact: one short entry each, read back as report rows.
    assert await store.redis.llen("dsp:c:ends:unsent") == 2499
    rows = [a async for a in store.attempts("ends")]
    assert [a.status for a in rows] == ["rejected"] + ["expired"] * 2499
    assert rows[1].attempt_id == "ends:000001:1" and rows[1].to == "+15551240001"
    assert rows[1].reserved_micros == 0 and rows[1].request is None
    assert rows[1].error_message == "the schedule's end_at came before this attempt"


RECIPIENT_WINDOW = {
    "start": "09:00",
    "end": "20:00",
    "timezone": "recipient",
    "default_timezone": "Europe/Paris",
}
NUMBERS = ["+12125550100", "+13105550100", "+15551240001", "+12125550101"]


async def _zoned(store: Store, cid: str, tmp_path: Path | None = None) -> None:
    """Submit the four NUMBERS with a recipient window: inline, or from a CSV file."""
    spec = spec_dict(cid, contacts=0, calling_window=RECIPIENT_WINDOW)
    if tmp_path is None:
        spec["contacts"] = [{"to": n, "ref": f"r{i}"} for i, n in enumerate(NUMBERS)]
        await submit_spec(store, parse_spec(spec))
    else:
        path = tmp_path / "contacts.csv"
        path.write_text("to,ref\n" + "".join(f"{n},r{i}\n" for i, n in enumerate(NUMBERS)))
        valid = parse_spec(spec)
        await store.submit(
            Contacts(valid, path),
            worst_case_micros=valid.worst_case_call_micros(),
            estimated_micros_per_contact=0,
        )
    await store.transition(cid, Move.START)
    assert await store.acquire_lease(cid, "t", 60)


@pytest.mark.parametrize("from_csv", [False, True], ids=["inline", "csv"])
async def test_contacts_are_claimed_only_from_zone_groups_whose_window_is_open(
    store: Store, tmp_path: Path, from_csv: bool
) -> None:
    await _zoned(store, "zones", tmp_path if from_csv else None)
    campaign = await store.campaign("zones")
    assert campaign is not None
    assert campaign.zone_groups == (
        ("America/New_York",),
        ("America/Los_Angeles",),
        ("Europe/Paris",),  # the fictional +1555 number maps to no zone
    )
    assert campaign.pending == 4
    los_angeles = await _claim(store, "zones", T0, open_groups=(1,))
    assert los_angeles.attempt is not None and los_angeles.attempt.to == NUMBERS[1]
    closed = await _claim(store, "zones", T0, open_groups=(1,))
    assert (closed.outcome, closed.wait_reason, closed.closed_groups) == ("wait", "window", (0, 2))
    # A halt-class refusal puts the contact back at the head of its own group's list.
    await store.record_rejected(los_angeles.attempt.attempt_id, "halt", "no_route", "x")
    assert await store.redis.lrange("dsp:c:zones:pending:1", 0, -1) == [b"1"]
    await store.transition("zones", Move.RESUME)
    claimed = [await _claim(store, "zones", T0, open_groups=(0,)) for _ in range(2)]
    assert [c.attempt.to for c in claimed if c.attempt] == [NUMBERS[0], NUMBERS[3]]
    campaign = await store.campaign("zones")
    assert campaign is not None and campaign.pending == 2


async def test_a_pace_slot_is_taken_only_for_the_contact_claimed(store: Store) -> None:
    """Passed-over contacts cost no slot; a contact that must wait for one goes back
    to the head of its list, so the order and the count stay whole."""
    spec = spec_dict("paced", contacts=3)
    numbers = [c["to"] for c in spec["contacts"]]
    await _running(store, "paced", contacts=3)
    await _dnc(store, numbers[0])
    slow = pace_rule(0.01)  # one request per 100 s
    first = await _claim(store, "paced", now_ms(), pace=slow)
    assert first.attempt is not None and first.attempt.to == numbers[1]
    held = await _claim(store, "paced", now_ms(), pace=slow)
    assert held.outcome == "pace_wait" and held.wait_seconds > 90
    campaign = await store.campaign("paced")
    assert campaign is not None
    assert (campaign.pending, campaign.suppressed, campaign.live) == (1, 1, 1)
    assert await store.redis.lrange("dsp:c:paced:pending", 0, -1) == [b"2"]


async def test_a_retry_of_a_send_that_placed_nothing_is_checked_again(store: Store) -> None:
    """Sent once, refused in a way that proves no call (a refused connection, a
    429), then the number is listed: the retry would be its first dial."""
    await _running(store, "retry-dnc", contacts=1)
    attempt = (await _claim(store, "retry-dnc", T0)).attempt
    assert attempt is not None
    assert await store.stamp_send(attempt.attempt_id, "{}", "t") == "ok"
    await _dnc(store, attempt.to)
    assert await store.stamp_send(attempt.attempt_id, "{}", "t") == "suppressed"
