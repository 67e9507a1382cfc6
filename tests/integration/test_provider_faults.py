"""Provider faults: retries with the same key, provider_unavailable pauses, in-doubt review.

The real dialects honour no Idempotency-Key, so the tests of the same-key re-send
run a worker whose provider object claims keys (``tests/seams.py``) against a
sandbox that honours them; the others run the dialect as it is.
"""

from __future__ import annotations

from collections.abc import Callable

from campaigns.domain.spec import parse_spec
from campaigns.operators.control import CampaignClient
from campaigns.settings import Settings
from campaigns.testbed.sandbox import SandboxServer
from tests.conftest import spec_dict
from tests.seams import HONOURS_KEYS
from tests.support import WorkerProcess, creates, wait_for


async def _state(client: CampaignClient, cid: str) -> str:
    return (await client.get(cid)).state


async def test_transient_faults_retry_the_same_attempt_with_the_same_key(
    client: CampaignClient, sandbox: SandboxServer, start_worker: Callable[..., WorkerProcess]
) -> None:
    sandbox.configure(
        idempotency_keys=True,
        script=[
            {"status": 503, "code": "provider_error"},
            {"status": 429, "code": "rate_limited", "retry_after": 0},
            {"action": "accept_then_fail"},
        ],
    )
    start_worker(settings_class=HONOURS_KEYS)
    # One request at a time, so the scripted faults all land on the first attempt.
    spec = spec_dict("flaky", contacts=3)
    spec["pacing"] = {**spec["pacing"], "max_concurrent_requests": 1}
    await client.submit(parse_spec(spec))
    await wait_for(lambda: _done(client, "flaky"), timeout=30, what="completion")
    ledger = creates(sandbox.ledger(), "flaky")
    first = [e for e in ledger if e["idempotency_key"] == "flaky:000000:1"]
    assert [e["status"] for e in first] == [503, 429, 500, 201]
    assert first[-1]["replayed"] is True, "the lost 201 was replayed, not re-dialled"
    assert len({e["call_id"] for e in ledger if e["call_id"]}) == 3
    status = await client.status("flaky")
    assert status["counts"] == {
        "contacts": 3,
        "pending": 0,
        "not_dialled": 0,
        "accepted": 3,
        "rejected": 0,
        "in_doubt": 0,
        "settled": 3,
        "suppressed": 0,
        "expired": 0,
        "capped": 0,
        "retries": 0,
    }


async def _done(client: CampaignClient, cid: str) -> bool:
    c = await client.get(cid)
    return c.state == "completed" and c.settled == c.accepted


async def test_a_provider_that_keeps_failing_pauses_then_resumes_by_itself(
    client: CampaignClient,
    sandbox: SandboxServer,
    settings: Settings,
    start_worker: Callable[..., WorkerProcess],
) -> None:
    sandbox.configure(error_rate=1.0, idempotency_keys=True)
    start_worker(settings_class=HONOURS_KEYS)
    # One request at a time: with overlap, a second attempt may start before the
    # first one's 500 arrives (then both back off, and both are re-sent later).
    spec = spec_dict("outage", contacts=4)
    spec["pacing"] = {**spec["pacing"], "max_concurrent_requests": 1}
    await client.submit(parse_spec(spec))

    async def paused() -> bool:
        return await _state(client, "outage") == "paused"

    await wait_for(paused, timeout=30, what="provider_unavailable pause")
    status = await client.status("outage")
    assert status["halt"]["code"] == "provider_unavailable"
    assert status["counts"]["rejected"] == 0, "no contact is marked failed"
    failed = creates(sandbox.ledger(), "outage")
    assert {e["idempotency_key"] for e in failed} == {"outage:000000:1"}
    assert len(failed) == settings.retry_attempts + 1
    sandbox.configure(error_rate=0.0)
    # The cool-down (3 s in tests) ends and the sweeper resumes it: no operator needed.
    await wait_for(lambda: _done(client, "outage"), timeout=30, what="automatic resume")
    accepted = [e for e in creates(sandbox.ledger(), "outage") if e["status"] == 201]
    assert len(accepted) == 4
    assert accepted[0]["idempotency_key"] == "outage:000000:1", "the unresolved attempt was re-sent"


async def test_operator_can_resume_before_the_cool_down(
    client: CampaignClient,
    sandbox: SandboxServer,
    settings: Settings,
    start_worker: Callable[..., WorkerProcess],
) -> None:
    slow = settings.model_copy(update={"provider_unavailable_cooldown_seconds": 600.0})
    sandbox.configure(error_rate=1.0, idempotency_keys=True)
    start_worker(slow, HONOURS_KEYS, DISPATCHER_PROVIDER_UNAVAILABLE_COOLDOWN_SECONDS="600")
    await client.submit(parse_spec(spec_dict("impatient", contacts=2)))
    await wait_for(lambda: _is(client, "impatient", "paused"), timeout=30, what="pause")
    sandbox.configure(error_rate=0.0)
    assert await client.resume("impatient") == "running"
    await wait_for(lambda: _done(client, "impatient"), timeout=30, what="completion")


async def _is(client: CampaignClient, cid: str, state: str) -> bool:
    return await _state(client, cid) == state


async def test_unresolvable_attempt_goes_in_doubt_and_an_operator_resolves_it(
    client: CampaignClient,
    sandbox: SandboxServer,
    settings: Settings,
    start_worker: Callable[..., WorkerProcess],
) -> None:
    """The provider ignores Idempotency-Key; a create request failed with no trace.
    The dispatcher must not re-dial blindly: it waits for a creation event, none
    comes, and it marks the attempt in doubt; the campaign halts for review once
    the rest is done."""
    config = settings.model_copy(update={"retry_attempts": 0})
    sandbox.configure(script=[{"status": 503, "code": "provider_error"}])
    start_worker(config)
    await client.submit(parse_spec(spec_dict("doubtful", contacts=3)))

    async def review() -> bool:
        c = await client.get("doubtful")
        return c.state == "halted" and c.settled == c.accepted == 2

    await wait_for(review, timeout=40, what="halt for in-doubt review")
    status = await client.status("doubtful")
    assert status["halt"]["code"] == "in_doubt_review"
    assert status["counts"]["in_doubt"] == 1
    doubtful = await client.store.attempt("doubtful:000000:1")
    assert doubtful is not None and doubtful.status == "in_doubt"
    assert (
        len(
            [
                e
                for e in creates(sandbox.ledger(), "doubtful")
                if e["idempotency_key"] == "doubtful:000000:1"
            ]
        )
        == 1
    )

    # The operator checks the provider's records, finds no call, and says so.
    assert await client.resolve("doubtful:000000:1", call_id=None) == "requeued"
    await client.resume("doubtful")
    await wait_for(lambda: _done(client, "doubtful"), timeout=30, what="completion")
    accepted = [e for e in creates(sandbox.ledger(), "doubtful") if e["status"] == 201]
    assert sorted(e["variables"]["contact_ref"] for e in accepted) == ["cust_0", "cust_1", "cust_2"]
    assert any(e["idempotency_key"] == "doubtful:000000:2" for e in accepted), "a new attempt ID"


async def test_pause_during_retry_back_off_stops_the_retries(
    client: CampaignClient,
    sandbox: SandboxServer,
    settings: Settings,
    start_worker: Callable[..., WorkerProcess],
) -> None:
    """A retry is a create request too: none may start once pause has returned."""
    import asyncio

    patient = settings.model_copy(
        update={"retry_attempts": 8, "retry_base_seconds": 1.0, "retry_max_seconds": 2.0}
    )
    sandbox.configure(error_rate=1.0, idempotency_keys=True)
    start_worker(patient, HONOURS_KEYS)
    await client.submit(parse_spec(spec_dict("backoff", contacts=2)))

    async def retrying() -> bool:
        return len(creates(sandbox.ledger(), "backoff")) >= 2

    await wait_for(retrying, timeout=20, what="retries under way")
    # Returns (rather than timing out waiting for the worker) because the
    # back-off wakes on the pause and the batch lets go of the campaign.
    assert await client.pause("backoff") == "paused"
    seen = len(creates(sandbox.ledger(), "backoff"))
    await asyncio.sleep(3.0)
    assert len(creates(sandbox.ledger(), "backoff")) == seen, "a retry went out after pause"
    attempt = await client.store.attempt("backoff:000000:1")
    assert attempt is not None and attempt.status == "sending", "left unresolved, not failed"
    sandbox.configure(error_rate=0.0)
    await client.resume("backoff")
    await wait_for(lambda: _done(client, "backoff"), timeout=30, what="completion")
    ok = [e for e in creates(sandbox.ledger(), "backoff") if e["status"] == 201]
    assert ok[0]["idempotency_key"] == "backoff:000000:1", "re-sent under its own key"


async def test_a_retry_that_would_outlast_the_run_is_left_to_the_next_run(
    client: CampaignClient, sandbox: SandboxServer, start_worker: Callable[..., WorkerProcess]
) -> None:
    """A run ends with requests still failing over: that is the run's time, not the
    provider's outage. No cool-down; the next run re-sends under the same key."""
    sandbox.configure(idempotency_keys=True, script=[{"status": 503, "code": "provider_error"}])
    # A 5 s job leaves a 1 s run, shorter than one retry plus the 2 s provider timeout.
    start_worker(settings_class=HONOURS_KEYS, DISPATCHER_JOB_TIMEOUT_SECONDS="5")
    spec = spec_dict("tight", contacts=2)
    spec["pacing"] = {**spec["pacing"], "max_concurrent_requests": 1}
    await client.submit(parse_spec(spec))
    seen: set[str] = set()

    async def done_watching() -> bool:
        campaign = await client.get("tight")
        seen.add(campaign.state)
        return await _done(client, "tight")

    await wait_for(done_watching, timeout=30, interval=0.02, what="completion")
    assert "paused" not in seen, "the run's end is not a provider outage (no cool-down)"
    first = [
        e for e in creates(sandbox.ledger(), "tight") if e["idempotency_key"] == "tight:000000:1"
    ]
    assert [e["status"] for e in first] == [503, 201]
