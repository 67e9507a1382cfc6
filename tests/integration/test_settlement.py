"""Settlement against the sandbox over real HTTP and a real Redis.

Campaigns are dispatched in-process (a real ``Dispatcher`` with the real
MiniVoice client), then settled by driving ``Settler`` directly, so each test
decides exactly when a poll or an event happens. One test runs the
``record_call_event`` job through a real ``campaigns worker`` process.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest

from campaigns.domain.money import MAX_MICROS
from campaigns.domain.spec import parse_spec
from campaigns.engine import settlement
from campaigns.engine.dispatch import Dispatcher
from campaigns.engine.settlement import Settler
from campaigns.operators.control import CampaignClient
from campaigns.operators.reconcile import reconcile
from campaigns.providers import CallInfo, Provider, make_provider
from campaigns.settings import Settings
from campaigns.store import Attempt, CampaignRecord
from campaigns.store.scripts import load_script
from campaigns.testbed.sandbox import SandboxServer
from tests.conftest import API_KEY, spec_dict
from tests.support import WorkerProcess, event_job_result, seed_event, wait_for

WORST_CASE = 20_000  # 120 s at 0.01/min, 60/60: the reservation of one call

SETTLE = load_script("settle")
"""The settle script as the store runs it, called raw to feed it what Python never would."""


@pytest.fixture
async def provider(settings: Settings) -> AsyncIterator[Provider]:
    p = make_provider(settings)
    yield p
    await p.aclose()


@pytest.fixture
def settler(client: CampaignClient, provider: Provider, settings: Settings) -> Settler:
    return Settler(client.store, provider, settings)


async def dispatch(
    client: CampaignClient,
    provider: Provider,
    settings: Settings,
    spec: dict[str, Any],
    *,
    until: tuple[str, ...] = ("completed",),
) -> CampaignRecord:
    """Submit, then run dispatch batches in-process until an outcome in ``until``."""
    campaign_id = spec["campaign_id"]
    await client.submit(parse_spec(spec))
    dispatcher = Dispatcher(client.store, provider, client.queue, settings)
    seq = (await client.get(campaign_id)).dispatch_seq
    for _ in range(50):
        result = await dispatcher.run_batch(campaign_id, seq)
        if result.outcome in until or result.next_seq is None:
            break
        seq = result.next_seq
    return await client.get(campaign_id)


async def attempts(client: CampaignClient, campaign_id: str) -> list[Attempt]:
    return [a async for a in client.store.attempts(campaign_id)]


async def sandbox_settled(sandbox: SandboxServer, count: int) -> None:
    """Wait until the sandbox has ``count`` calls that are final and billed."""

    async def check() -> bool:
        calls = sandbox.calls()
        return len(calls) == count and all(c["settled"] for c in calls)

    await wait_for(check, timeout=10, what="sandbox calls final and billed")


async def settle_all(
    settler: Settler, client: CampaignClient, campaign_id: str, expected: int, timeout: float = 10
) -> CampaignRecord:
    async def check() -> CampaignRecord | None:
        await settler.poll_due()
        campaign = await client.get(campaign_id)
        return campaign if campaign.settled >= expected else None

    result: CampaignRecord = await wait_for(check, timeout=timeout, what="settled by polling")
    return result


# --------------------------------------------------------------------------- polling


async def test_poll_books_the_provider_cost_amount_exactly_and_releases_the_reservation(
    client: CampaignClient,
    sandbox: SandboxServer,
    provider: Provider,
    settings: Settings,
    settler: Settler,
) -> None:
    # The provider prices differently from the campaign's rate model, so the
    # booked cost can only come from the provider's cost_amount.
    sandbox.configure(rate={"per_minute": "0.012345"}, call_seconds=30)
    campaign = await dispatch(client, provider, settings, spec_dict("exact", contacts=3))
    assert campaign.state == "completed"
    assert campaign.accepted == 3
    assert campaign.reserved_micros == 3 * WORST_CASE
    assert campaign.settled == 0

    await sandbox_settled(sandbox, 3)
    call_id = (await attempts(client, "exact"))[0].call_id
    async with httpx.AsyncClient(base_url=sandbox.url) as http:
        raw = (
            await http.get(f"/v1/calls/{call_id}", headers={"Authorization": f"Bearer {API_KEY}"})
        ).json()
    assert raw["cost_amount"] == "0.012345", "the provider answers a decimal string"
    assert raw["cost_currency"] == "EUR"

    campaign = await settle_all(settler, client, "exact", 3)
    assert campaign.spent_micros == 3 * 12_345
    assert campaign.reserved_micros == 0
    assert campaign.settled == 3
    assert campaign.live == 0
    for attempt in await attempts(client, "exact"):
        assert attempt.settled
        assert attempt.cost_micros == 12_345
        assert attempt.cost_estimated is False
        assert attempt.final_status == "completed"
        assert attempt.billsec == 30
        assert attempt.cost_currency == "EUR"
        assert attempt.over_reservation is False
        assert attempt.currency_mismatch is None
    assert await client.store.unsettled_count() == 0
    # Polling again finds nothing and books nothing.
    assert await settler.poll_due() == 0
    assert (await client.get("exact")).spent_micros == 3 * 12_345


async def test_missing_cost_waits_for_the_grace_period_then_books_the_rate_model(
    client: CampaignClient,
    sandbox: SandboxServer,
    provider: Provider,
    settings: Settings,
    settler: Settler,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    grace = 0.8
    monkeypatch.setattr(settlement, "_COST_GRACE_SECONDS", grace)
    # 75 s billed, 60/60 at 0.01/min: the rate model says 2 minutes = 20,000 micros.
    sandbox.configure(omit_cost=True, call_seconds=75, rate={"per_minute": "0.05"})
    await dispatch(client, provider, settings, spec_dict("nocost", contacts=2))
    await sandbox_settled(sandbox, 2)

    for attempt in await attempts(client, "nocost"):
        assert await settler.poll_one(attempt.attempt_id) == "awaiting_cost"
    campaign = await client.get("nocost")
    assert campaign.settled == 0, "a final call without cost is not booked inside the grace"
    assert campaign.spent_micros == 0
    assert campaign.reserved_micros == 2 * WORST_CASE
    first_seen = [a.final_seen_at_ms for a in await attempts(client, "nocost")]
    assert all(first_seen)

    campaign = await settle_all(settler, client, "nocost", 2)
    assert campaign.spent_micros == 2 * 20_000
    assert campaign.reserved_micros == 0
    for attempt in await attempts(client, "nocost"):
        assert attempt.cost_micros == 20_000
        assert attempt.cost_estimated is True
        assert attempt.billsec == 75
        assert attempt.settled_at_ms is not None and attempt.final_seen_at_ms is not None
        assert attempt.settled_at_ms - attempt.final_seen_at_ms >= grace * 1000


@pytest.mark.parametrize("omit_cost", [False, True], ids=["with-cost", "omitted-cost"])
async def test_unanswered_final_statuses_settle_at_zero_cost(
    client: CampaignClient,
    sandbox: SandboxServer,
    provider: Provider,
    settings: Settings,
    settler: Settler,
    monkeypatch: pytest.MonkeyPatch,
    omit_cost: bool,
) -> None:
    monkeypatch.setattr(settlement, "_COST_GRACE_SECONDS", 0.3)
    spec = spec_dict("unanswered", contacts=4)
    numbers = [c["to"] for c in spec["contacts"]]
    sandbox.configure(
        omit_cost=omit_cost,
        call_seconds=30,
        per_number={
            numbers[0]: {"final_status": "busy"},
            numbers[1]: {"final_status": "no_answer", "billsec_seconds": 0},
            numbers[2]: {"final_status": "failed"},
        },
    )
    await dispatch(client, provider, settings, spec)
    campaign = await settle_all(settler, client, "unanswered", 4)
    by_to = {a.to: a for a in await attempts(client, "unanswered")}
    assert [by_to[n].final_status for n in numbers] == ["busy", "no_answer", "failed", "completed"]
    assert [by_to[n].billsec for n in numbers] == [0, 0, 0, 30]
    assert [by_to[n].cost_micros for n in numbers] == [0, 0, 0, 10_000]
    assert campaign.spent_micros == 10_000
    assert campaign.reserved_micros == 0
    assert campaign.settled == 4
    assert all(a.cost_estimated is omit_cost for a in by_to.values())


# --------------------------------------------------------------------------- events


async def test_seed_000_event_settles_a_real_call_once_and_the_repeat_is_a_duplicate(
    client: CampaignClient,
    sandbox: SandboxServer,
    provider: Provider,
    settings: Settings,
    settler: Settler,
) -> None:
    sandbox.configure(rate={"per_minute": "0.015"}, call_seconds=30)
    await dispatch(client, provider, settings, spec_dict("evt", contacts=1))
    await sandbox_settled(sandbox, 1)
    (attempt,) = await attempts(client, "evt")
    assert attempt.call_id is not None

    event = seed_event(attempt.call_id)  # no billing fields, exactly like seed 000
    assert await settler.record_event(event) == "ok"
    campaign = await client.get("evt")
    assert campaign.settled == 1
    assert campaign.spent_micros == 15_000, "billing read from the call, not the rate model"
    assert campaign.reserved_micros == 0
    settled = await client.store.attempt(attempt.attempt_id)
    assert settled is not None and settled.cost_estimated is False

    assert await settler.record_event(event) == "duplicate"
    assert await settler.record_event(seed_event(attempt.call_id, billsec_seconds=30)) == (
        "duplicate"
    )
    assert await settler.poll_due() == 0, "the settled call left the poll schedule"
    campaign = await client.get("evt")
    assert (campaign.settled, campaign.spent_micros, campaign.reserved_micros) == (1, 15_000, 0)


async def test_early_event_books_nothing_and_the_later_poll_settles_once(
    client: CampaignClient,
    sandbox: SandboxServer,
    provider: Provider,
    settings: Settings,
    settler: Settler,
) -> None:
    sandbox.configure(call_duration_real_seconds=1.5, call_seconds=30)
    await dispatch(client, provider, settings, spec_dict("early", contacts=1))
    (attempt,) = await attempts(client, "early")
    assert attempt.call_id is not None

    # The event overtakes the call: the provider still says it is in progress.
    assert await settler.record_event(seed_event(attempt.call_id)) == "pending"
    assert await settler.record_event(seed_event(attempt.call_id)) == "pending"
    campaign = await client.get("early")
    assert (campaign.settled, campaign.spent_micros) == (0, 0)
    assert campaign.reserved_micros == WORST_CASE

    campaign = await settle_all(settler, client, "early", 1)
    assert campaign.spent_micros == 10_000
    assert campaign.reserved_micros == 0
    assert await settler.record_event(seed_event(attempt.call_id)) == "duplicate"
    await asyncio.sleep(0.3)
    await settler.poll_due()
    campaign = await client.get("early")
    assert (campaign.settled, campaign.spent_micros) == (1, 10_000)


async def test_event_before_billing_settles_waits_for_the_provider_cost(
    client: CampaignClient,
    sandbox: SandboxServer,
    provider: Provider,
    settings: Settings,
    settler: Settler,
) -> None:
    sandbox.configure(settle_delay_seconds=1.0, rate={"per_minute": "0.015"}, call_seconds=30)
    await dispatch(client, provider, settings, spec_dict("late-bill", contacts=1))
    (attempt,) = await attempts(client, "late-bill")
    assert attempt.call_id is not None

    async def final() -> bool:
        return (await provider.get_call(attempt.call_id or "")).final

    await wait_for(final, timeout=5, what="call final")
    assert await settler.record_event(seed_event(attempt.call_id)) == "awaiting_cost"
    assert (await client.get("late-bill")).settled == 0

    campaign = await settle_all(settler, client, "late-bill", 1)
    assert campaign.spent_micros == 15_000, "the provider's cost once billed, not the estimate"
    settled = await client.store.attempt(attempt.attempt_id)
    assert settled is not None and settled.cost_estimated is False


async def test_event_for_an_unknown_call_is_dead_lettered(
    client: CampaignClient,
    sandbox: SandboxServer,
    provider: Provider,
    settings: Settings,
    settler: Settler,
) -> None:
    await dispatch(client, provider, settings, spec_dict("known", contacts=1))
    assert await settler.record_event(seed_event("call_nobody_knows")) == "unknown_call"
    letters = await client.store.dead_letters()
    assert len(letters) == 1
    assert letters[0]["call_id"] == "call_nobody_knows"
    assert "unknown" in letters[0]["reason"]
    campaign = await client.get("known")
    assert (campaign.settled, campaign.spent_micros) == (0, 0)


async def test_malformed_events_are_dead_lettered_and_book_nothing(
    client: CampaignClient,
    sandbox: SandboxServer,
    provider: Provider,
    settings: Settings,
    settler: Settler,
) -> None:
    await dispatch(client, provider, settings, spec_dict("garbage", contacts=1))
    await sandbox_settled(sandbox, 1)
    (attempt,) = await attempts(client, "garbage")
    call_id = attempt.call_id
    assert call_id is not None

    bad: list[Any] = [
        "not json at all",
        b"\xff\xfe\x00",
        "[" * 100_000,
        [],
        None,
        42,
        {},
        {"event": "call.ringing", "call": {"id": call_id}},
        {"event": "call.completed"},
        {"event": "call.completed", "call": {"id": ""}},
        {"event": "call.completed", "call": {"id": 123}},
        {"event": "call.completed", "call": {"id": call_id, "status": "in_progress"}},
        seed_event(call_id, billsec_seconds=30, cost_amount=0.01),
        seed_event(call_id, billsec_seconds=30, cost_amount="ten cents"),
        seed_event(call_id, billsec_seconds=30, cost_amount="NaN"),
    ]
    for payload in bad:
        assert await settler.record_event(payload) == "dead_letter", payload
    letters = await client.store.dead_letters(limit=100)
    assert len(letters) == len(bad)
    assert all(entry["reason"] for entry in letters)
    campaign = await client.get("garbage")
    assert (campaign.settled, campaign.spent_micros) == (0, 0)
    assert campaign.reserved_micros == WORST_CASE
    unsettled = await client.store.attempt(attempt.attempt_id)
    assert unsettled is not None and not unsettled.settled

    # The call itself was fine all along: a good event settles it.
    assert await settler.record_event(seed_event(call_id)) == "ok"
    assert (await client.get("garbage")).spent_micros == 10_000


async def test_negative_cost_in_an_event_is_refused(
    client: CampaignClient,
    sandbox: SandboxServer,
    provider: Provider,
    settings: Settings,
    settler: Settler,
) -> None:
    await dispatch(client, provider, settings, spec_dict("negative", contacts=1))
    (attempt,) = await attempts(client, "negative")
    assert attempt.call_id is not None
    event = seed_event(attempt.call_id, billsec_seconds=30, cost_amount="-1.00")
    result = await settler.record_event(event)
    campaign = await client.get("negative")
    assert campaign.spent_micros >= 0, f"spent went negative ({result})"
    assert result == "dead_letter"


async def test_record_call_event_job_through_a_real_worker(
    client: CampaignClient,
    sandbox: SandboxServer,
    provider: Provider,
    settings: Settings,
    start_worker: Callable[..., WorkerProcess],
) -> None:
    await dispatch(client, provider, settings, spec_dict("jobs", contacts=2))
    rows = await attempts(client, "jobs")
    # Keep the worker's poll cron away from these calls: only the event may settle them.
    for attempt in rows:
        await client.store.reschedule_poll(attempt.attempt_id, 3600)
    await sandbox_settled(sandbox, 2)
    worker = start_worker()

    async def run(payload: Any) -> Any:
        return await event_job_result(client.queue, payload)

    first, second = (a.call_id or "" for a in rows)
    assert await run(seed_event(first)) == "ok"
    assert await run(seed_event(first)) == "duplicate"
    assert await run(seed_event("call_unknown_to_us")) == "unknown_call"
    assert await run({"event": "call.completed", "call": {}}) == "dead_letter"
    assert await run("}{ not json") == "dead_letter"
    assert worker.alive, "garbage events never take the worker down"
    assert await run(seed_event(second)) == "ok"

    campaign = await client.get("jobs")
    assert (campaign.settled, campaign.spent_micros, campaign.reserved_micros) == (2, 20_000, 0)
    assert len(await client.store.dead_letters()) == 3


# --------------------------------------------------------------------------- money edge cases


async def test_provider_cost_in_another_currency_is_never_booked_as_actual(
    client: CampaignClient,
    sandbox: SandboxServer,
    provider: Provider,
    settings: Settings,
    settler: Settler,
) -> None:
    # The provider bills USD at 0.02/min; the campaign is EUR at 0.01/min.
    sandbox.configure(currency="USD", rate={"per_minute": "0.02"}, call_seconds=30)
    await dispatch(client, provider, settings, spec_dict("fx", contacts=2))
    campaign = await settle_all(settler, client, "fx", 2)
    assert campaign.spent_micros == 2 * 10_000, "the rate model's EUR cost, not 0.02 USD"
    assert campaign.reserved_micros == 0
    for attempt in await attempts(client, "fx"):
        assert attempt.cost_micros == 10_000
        assert attempt.cost_estimated is True
        assert attempt.cost_currency == "EUR"
        assert attempt.currency_mismatch is not None
        assert "USD" in attempt.currency_mismatch and "EUR" in attempt.currency_mismatch

    result = await reconcile(client.store, provider, "fx")
    assert result.provider_currency == "USD"
    assert result.provider_micros == 2 * 20_000
    assert result.variance_micros is None, "amounts in two currencies are not subtracted"
    text = "\n".join(result.explanation)
    assert "USD" in text and "EUR" in text
    assert result.estimated_settlements == 2


async def test_provider_cost_above_the_reservation_is_flagged_and_halts(
    client: CampaignClient,
    sandbox: SandboxServer,
    provider: Provider,
    settings: Settings,
    settler: Settler,
) -> None:
    """The provider charges 1.00/min while the campaign reserves at 0.01/min.

    The charge is booked in full (it is real money), the attempt is flagged and
    the campaign halts at once with a rating-class code: no further call is
    priced on a rate known to be too low.
    """
    sandbox.configure(rate={"per_minute": "1.00"}, call_seconds=30)
    budget = 50_000  # room for two worst cases (2 x 20,000), not three
    spec = spec_dict("overrun", contacts=3, budget="0.05")
    campaign = await dispatch(client, provider, settings, spec, until=("budget_wait",))
    assert campaign.accepted == 2
    assert campaign.reserved_micros == 2 * WORST_CASE
    assert campaign.spent_micros + campaign.reserved_micros <= budget

    await sandbox_settled(sandbox, 2)
    results = [await settler.poll_one(a.attempt_id) for a in await attempts(client, "overrun")]
    assert results == ["over_reservation", "over_reservation"]
    campaign = await client.get("overrun")
    assert campaign.spent_micros == 2 * 1_000_000, "the provider's cost is booked in full"
    assert campaign.reserved_micros == 0
    assert campaign.settled == 2
    for attempt in await attempts(client, "overrun"):
        assert attempt.over_reservation is True
        assert attempt.cost_micros == 1_000_000 > attempt.reserved_micros == WORST_CASE
        assert attempt.cost_estimated is False
    # The provider's pricing overran the budget; the dispatcher halted on the first overrun.
    assert campaign.spent_micros + campaign.reserved_micros > campaign.budget_micros == budget
    assert campaign.state == "halted"
    assert campaign.halt_code == "rating_cost_above_reservation"

    dispatcher = Dispatcher(client.store, provider, client.queue, settings)
    result = await dispatcher.run_batch("overrun", campaign.dispatch_seq)
    assert result.outcome == "not_running:halted"
    assert result.sent == 0
    assert len(sandbox.calls()) == 2, "no third call"


# --------------------------------------------------------------------------- out of range (issue #12)


async def money_state(client: CampaignClient, campaign_id: str) -> dict[str, Any]:
    """Everything a settle may write, read raw: the campaign's meta and its attempts."""
    redis: Any = client.store.redis  # redis-py types its async replies as "T | Awaitable[T]"
    meta = await redis.hgetall(client.store.keys.meta(campaign_id))
    rows = {}
    for attempt in await attempts(client, campaign_id):
        rows[attempt.attempt_id] = await redis.hgetall(
            client.store.keys.attempt(attempt.attempt_id)
        )
    meta.pop(b"heartbeat_at", None)
    return {"meta": meta, "attempts": rows}


async def test_out_of_range_event_is_dead_lettered_and_nothing_is_booked(
    client: CampaignClient,
    sandbox: SandboxServer,
    provider: Provider,
    settings: Settings,
    settler: Settler,
) -> None:
    """Issue #12 defect 3: billsec 10^25 with a mismatched currency used to make the
    settle script fail after its first writes: settled, reservation gone, spent 0."""
    await dispatch(client, provider, settings, spec_dict("huge", contacts=1))
    await sandbox_settled(sandbox, 1)
    (attempt,) = await attempts(client, "huge")
    call_id = attempt.call_id
    assert call_id is not None
    await client.store.reschedule_poll(attempt.attempt_id, 3600)  # only events settle it here
    before = await money_state(client, "huge")

    bad = [
        seed_event(call_id, billsec_seconds=10**25, cost_amount="0.01", cost_currency="USD"),
        seed_event(call_id, billsec_seconds=10**25),
        seed_event(call_id, billsec_seconds=-30, cost_amount="0.01", cost_currency="EUR"),
        seed_event(call_id, billsec_seconds=30, cost_amount="0.01", cost_currency="eur\n"),
        seed_event(call_id, billsec_seconds=30, cost_amount="0.01", cost_currency=["EUR"]),
        seed_event(call_id, billsec_seconds=30, cost_amount="9007199254.740992"),
        seed_event(call_id, billsec_seconds=30, cost_amount="1e-7"),
        '{"event": "call.completed", "call": {"id": "x", "billsec_seconds": 1' + "0" * 5000 + "}}",
    ]
    for payload in bad:
        assert await settler.record_event(payload) == "dead_letter", payload
        assert await money_state(client, "huge") == before, f"a refused event wrote: {payload}"

    letters = await client.store.dead_letters(limit=100)
    assert len(letters) == len(bad)
    reasons = [entry["reason"] for entry in reversed(letters)]
    assert reasons[0].startswith("call.billsec_seconds:") and "out of range" in reasons[0]
    assert reasons[2].startswith("call.billsec_seconds:")
    assert reasons[3].startswith("call.cost_currency:")
    assert reasons[5].startswith("call.cost_amount:") and "out of range" in reasons[5]
    assert reasons[6].startswith("call.cost_amount:") and "exponent" in reasons[6]

    campaign = await client.get("huge")
    assert (campaign.settled, campaign.spent_micros, campaign.live) == (0, 0, 1)
    assert campaign.reserved_micros == WORST_CASE
    unsettled = await client.store.attempt(attempt.attempt_id)
    assert unsettled is not None and not unsettled.settled
    assert await client.store.unsettled_count() == 1, "still polled: a poll can settle it"

    # A later valid event settles it once, correctly.
    good = seed_event(call_id, billsec_seconds=30, cost_amount="0.01", cost_currency="EUR")
    assert await settler.record_event(good) == "ok"
    campaign = await client.get("huge")
    assert (campaign.settled, campaign.spent_micros, campaign.reserved_micros) == (1, 10_000, 0)
    assert campaign.live == 0
    assert await settler.record_event(good) == "duplicate"
    assert await settler.record_event(bad[0]) == "dead_letter", "still garbage, still refused"
    campaign = await client.get("huge")
    assert (campaign.settled, campaign.spent_micros, campaign.reserved_micros) == (1, 10_000, 0)


async def test_provider_answer_out_of_range_is_dead_lettered_and_polled_again(
    client: CampaignClient,
    sandbox: SandboxServer,
    provider: Provider,
    settings: Settings,
    settler: Settler,
) -> None:
    """The poll road: a call read back from the provider is trusted no more than an event."""
    await dispatch(client, provider, settings, spec_dict("huge-poll", contacts=1))
    (attempt,) = await attempts(client, "huge-poll")
    assert attempt.call_id is not None
    before = await money_state(client, "huge-poll")
    answers = [
        CallInfo(attempt.call_id, "completed", billsec=10**25, cost_micros=10_000),
        CallInfo(attempt.call_id, "completed", billsec=30, cost_micros=MAX_MICROS + 1),
        CallInfo(attempt.call_id, "completed", billsec=30, cost_micros=10, cost_currency="€"),
        CallInfo(attempt.call_id, "busy", billsec=-1),
        CallInfo("call\x00" + "x" * 300, "completed", billsec=30),
    ]
    for answer in answers:
        assert await settler.apply(attempt, answer) == "dead_letter", answer
        assert await money_state(client, "huge-poll") == before
    assert len(await client.store.dead_letters()) == len(answers)
    ok = CallInfo(attempt.call_id, "completed", billsec=30, cost_micros=12_345, cost_currency="EUR")
    assert await settler.apply(attempt, ok) == "ok"
    campaign = await client.get("huge-poll")
    assert (campaign.settled, campaign.spent_micros, campaign.reserved_micros) == (1, 12_345, 0)


async def test_billsec_the_rate_cannot_price_is_refused(
    client: CampaignClient,
    sandbox: SandboxServer,
    provider: Provider,
    settings: Settings,
    settler: Settler,
) -> None:
    """A year-long call at a price whose worst case fits but whose year does not."""
    spec = spec_dict("pricey", contacts=1, budget="9007199254.740991", max_call_seconds=60)
    spec["rate"] = {"per_minute": "1000000000", "increments": "60/60"}
    await dispatch(client, provider, settings, spec)
    (attempt,) = await attempts(client, "pricey")
    assert attempt.call_id is not None
    before = await money_state(client, "pricey")
    year = CallInfo(attempt.call_id, "completed", billsec=365 * 86_400, cost_currency="USD")
    assert await settler.apply(attempt, year) == "dead_letter"
    assert await money_state(client, "pricey") == before
    (letter,) = await client.store.dead_letters()
    assert letter["reason"].startswith("call.billsec_seconds:")
    assert "9007199254740991 micros" in letter["reason"] and "e+" not in letter["reason"]


async def test_settle_script_checks_every_argument_before_its_first_write(
    client: CampaignClient,
    sandbox: SandboxServer,
    provider: Provider,
    settings: Settings,
) -> None:
    """Redis keeps the writes of a script that errors half-way: the script must refuse
    first. Called past Store.settle's own checks, as a caller with a bug would."""
    await dispatch(client, provider, settings, spec_dict("script", contacts=1))
    (attempt,) = await attempts(client, "script")
    store = client.store
    redis: Any = store.redis
    keys = [f"{store.prefix}:c:script:meta", f"{store.prefix}:a:{attempt.attempt_id}"]
    keys.append(f"{store.prefix}:unsettled")
    keys.append(f"{store.prefix}:account:live")
    good: list[Any] = [
        "completed",
        30,
        10_000,
        "0",
        "EUR",
        1_700_000_000_000,
        attempt.attempt_id,
        "",
    ]

    def args(**changes: Any) -> list[Any]:
        names = ["status", "billsec", "cost", "estimated", "currency", "now", "id", "mismatch"]
        return [changes.get(name, value) for name, value in zip(names, good, strict=True)]

    cases = {
        "invalid:billsec": [args(billsec=10**25), args(billsec=-1), args(billsec="1e3")],
        "invalid:cost": [
            args(cost=2**53),
            args(cost="9007199254740993"),
            args(cost=10**25),
            args(cost="nan"),
            args(cost="0x10"),
            args(cost=""),
        ],
        "invalid:currency": [args(currency="USDX"), args(currency="eur"), args(currency="")],
        "invalid:final_status": [args(status="in_progress"), args(status="")],
        "invalid:estimated": [args(estimated="yes")],
        "invalid:now": [args(now="soon")],
        "invalid:currency_mismatch": [args(mismatch="x" * 300)],
    }
    before = await money_state(client, "script")
    for expected, attempts_args in cases.items():
        for argv in attempts_args:
            result = await redis.eval(SETTLE.source, len(keys), *keys, *argv)
            assert result.decode() == expected, argv
            assert await money_state(client, "script") == before, argv

    # Corrupt stored counters are refused too, before any write.
    await redis.hset(keys[0], "spent", "1.5")
    before = await money_state(client, "script")
    result = await redis.eval(SETTLE.source, len(keys), *keys, *args())
    assert result == b"invalid:campaign_counters"
    assert await money_state(client, "script") == before
    await redis.hset(keys[0], "spent", str(MAX_MICROS - 9_999))
    result = await redis.eval(SETTLE.source, len(keys), *keys, *args())
    assert result == b"invalid:spent_overflow"
    await redis.hset(keys[0], "spent", "0")
    live = await redis.get(keys[3])
    await redis.set(keys[3], "many")
    before = await money_state(client, "script")
    result = await redis.eval(SETTLE.source, len(keys), *keys, *args())
    assert result == b"invalid:account_live"
    assert await money_state(client, "script") == before
    await redis.set(keys[3], live or b"0")

    # Store.settle refuses the same values in Python, without a round trip.
    assert (
        await store.settle(
            attempt.attempt_id,
            final_status="completed",
            billsec=10**25,
            cost_micros=10**25,
            estimated=True,
            currency="EUR",
        )
        == "invalid:billsec"
    )
    # And a good settle at the very ceiling books exactly.
    result = await redis.eval(SETTLE.source, len(keys), *keys, *args(cost=MAX_MICROS))
    assert result == b"over_reservation"
    campaign = await client.get("script")
    assert campaign.spent_micros == MAX_MICROS
    assert (campaign.reserved_micros, campaign.live, campaign.settled) == (0, 0, 1)


async def test_out_of_range_event_through_a_real_worker(
    client: CampaignClient,
    sandbox: SandboxServer,
    provider: Provider,
    settings: Settings,
    start_worker: Callable[..., WorkerProcess],
) -> None:
    """The issue's repro, as the record_call_event job a worker runs."""
    await dispatch(client, provider, settings, spec_dict("huge-job", contacts=1))
    (attempt,) = await attempts(client, "huge-job")
    call_id = attempt.call_id
    assert call_id is not None
    await client.store.reschedule_poll(attempt.attempt_id, 3600)
    await sandbox_settled(sandbox, 1)
    before = await money_state(client, "huge-job")
    worker = start_worker()

    async def run(payload: Any) -> Any:
        return await event_job_result(client.queue, payload)

    bad = seed_event(call_id, billsec_seconds=10**25, cost_amount="0.01", cost_currency="USD")
    assert await run(bad) == "dead_letter"
    assert worker.alive
    assert await money_state(client, "huge-job") == before
    (letter,) = await client.store.dead_letters()
    assert letter["reason"].startswith("call.billsec_seconds:")
    assert "call_billing_refused" in worker.log_text() or "call_event_rejected" in (
        worker.log_text()
    )

    good = seed_event(call_id, billsec_seconds=30, cost_amount="0.01", cost_currency="EUR")
    assert await run(good) == "ok"
    campaign = await client.get("huge-job")
    assert (campaign.settled, campaign.spent_micros, campaign.reserved_micros) == (1, 10_000, 0)
