"""Store edge cases found by the state machine, pinned as plain tests."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis

from campaigns.domain.lifecycle import Move
from campaigns.domain.spec import parse_spec
from campaigns.store import Store
from tests.conftest import spec_dict
from tests.support import claim_next, submit_spec


@pytest.fixture
async def store(redis_url: str) -> AsyncIterator[Store]:
    client = aioredis.Redis.from_url(redis_url)
    yield Store(client)
    await client.aclose()


async def _running(store: Store, cid: str, contacts: int = 3) -> None:
    await submit_spec(store, parse_spec(spec_dict(cid, contacts=contacts)))
    await store.transition(cid, Move.START)
    assert await store.acquire_lease(cid, "t", 60)


async def test_halt_class_rejection_while_paused_still_halts(store: Store) -> None:
    await _running(store, "c")
    claim = await claim_next(store, "c", "t")
    assert claim.attempt is not None
    # The operator pauses while the request is in flight; then the provider refuses.
    assert (await store.transition("c", Move.PAUSE))[0]
    assert (
        await store.record_rejected(
            claim.attempt.attempt_id, "halt", "spend_control_exceeded", "limit"
        )
        == "ok"
    )
    campaign = await store.campaign("c")
    assert campaign is not None
    assert campaign.state == "halted"
    assert campaign.halt == {"code": "spend_control_exceeded", "message": "limit"}
    assert campaign.pending == 3, "the contact went back to pending"


async def test_a_call_id_is_never_moved_to_another_attempt(store: Store) -> None:
    await _running(store, "c")
    first = (await claim_next(store, "c", "t")).attempt
    second = (await claim_next(store, "c", "t")).attempt
    assert first is not None and second is not None
    assert await store.record_accepted(first.attempt_id, "call-X", 0) == "ok"
    assert await store.record_accepted(second.attempt_id, "call-X", 0) == "call_id_taken"
    assert await store.attempt_for_call("call-X") == first.attempt_id
    again = await store.attempt(second.attempt_id)
    assert again is not None and again.status == "sending", "left for the dispatcher to resolve"


async def test_in_doubt_attempts_filling_every_slot_halt_for_review(store: Store) -> None:
    """Nothing else will free the slot: waiting would be forever."""
    spec = spec_dict("c", contacts=3)
    spec["pacing"] = {"calls_per_second": 5, "batch_size": 10, "max_in_flight": 1}
    await submit_spec(store, parse_spec(spec))
    await store.transition("c", Move.START)
    assert await store.acquire_lease("c", "t", 60)
    first = (await claim_next(store, "c", "t")).attempt
    assert first is not None
    assert await store.mark_in_doubt(first.attempt_id, "answer lost") == "ok"
    claim = await claim_next(store, "c", "t")
    assert claim.outcome == "needs_review"
    campaign = await store.campaign("c")
    assert campaign is not None and campaign.halt_code == "in_doubt_review"


async def test_a_late_acceptance_of_a_rejected_attempt_is_recorded(store: Store) -> None:
    """The provider's answer to an earlier send arrives after a rejection: the call
    is real, so it is recorded, reserved for again, and the contact leaves pending."""
    await _running(store, "c", contacts=2)
    attempt = (await claim_next(store, "c", "t")).attempt
    assert attempt is not None
    await store.record_rejected(attempt.attempt_id, "halt", "spend_control_exceeded", "x")
    assert await store.record_accepted(attempt.attempt_id, "call-late", 0) == "late"
    campaign = await store.campaign("c")
    assert campaign is not None
    assert (campaign.accepted, campaign.rejected, campaign.pending) == (1, 0, 1)
    assert campaign.reserved_micros == attempt.reserved_micros
    assert await store.attempt_for_call("call-late") == attempt.attempt_id
