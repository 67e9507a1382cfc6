"""Events from the future are dead-lettered, never stored (issue 18, item 6).

A signed ``account_updated`` dated 9999-12-31 used to become the newest
balance for a day, so every genuine event was dropped as stale. Real Redis:
its ``TIME`` is the clock an event is compared with.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from campaigns.engine.account import apply_account_event, redis_clock_ms, refuse_future
from campaigns.operators.control import CampaignClient
from campaigns.providers.base import MAX_CLOCK_AHEAD_MS, EventError, future_refusal
from campaigns.settings import Settings
from worker.jobs import record_account_event

pytestmark = pytest.mark.integration


def _event(at: datetime | str, credit: int = 15_000_000) -> dict[str, Any]:
    stamp = at if isinstance(at, str) else at.strftime("%Y-%m-%dT%H:%M:%SZ")
    return {
        "event_type": "account_updated",
        "timestamp": stamp,
        "data": {"id": "acc", "balance_credit": credit, "balance_token": 20},
    }


async def test_an_account_event_from_the_future_is_dead_lettered_and_never_stored(
    client: CampaignClient, settings: Settings
) -> None:
    store = client.store
    ctx = {"store": store, "queue": None, "settings": settings, "job_id": "future"}
    result = await record_account_event(ctx, _event("9999-12-31T23:59:59Z", 1))
    assert "timestamp" in result["refused"] and "ahead" in result["refused"], result
    assert await store.account("balance") is None, "nothing stored"
    dead = await store.dead_letters()
    assert len(dead) == 1 and "timestamp" in dead[0]["reason"]

    # A genuine event is applied, as it would not be had 9999 become "newest".
    now = datetime.now(UTC)
    assert await apply_account_event(store, None, settings, _event(now)) == "updated"
    # Skew within the bound is accepted; beyond it refused, nothing changed.
    near = now + timedelta(milliseconds=MAX_CLOCK_AHEAD_MS) - timedelta(seconds=30)
    assert await apply_account_event(store, None, settings, _event(near, 14_000_000)) == "updated"
    far = now + timedelta(milliseconds=MAX_CLOCK_AHEAD_MS) + timedelta(seconds=60)
    with pytest.raises(EventError, match=r"timestamp: .* ahead"):
        await apply_account_event(store, None, settings, _event(far, 1))
    cached = await store.account("balance")
    assert cached is not None and cached["amount"] == 14_000_000


async def test_the_call_event_check_names_each_time(client: CampaignClient) -> None:
    now = await redis_clock_ms(client.store)
    await refuse_future(client.store, ("call.ended_at", now), ("call.answered_at", None))
    with pytest.raises(EventError, match=r"call\.ended_at: .* days ahead"):
        await refuse_future(client.store, ("call.created_at", now), ("call.ended_at", now * 2))
    assert future_refusal(None, now) == ""
    assert future_refusal(now + MAX_CLOCK_AHEAD_MS, now) == ""
    assert future_refusal(now + MAX_CLOCK_AHEAD_MS + 1, now).startswith("timestamp: ")
