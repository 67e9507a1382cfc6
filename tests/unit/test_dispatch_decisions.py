"""The dispatcher's decisions when an answer is ambiguous, with a scripted provider.

The provider is ``httpx.MockTransport`` (answers no sandbox gives: an unreadable
201, a timeout followed by a refusal); the store is the session's real Redis.
Re-sends under the same key are tested with a MiniVoice object whose
capabilities claim keys (the real dialect does not: ``tests/unit/test_resolve.py``
holds the decisions without them).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from campaigns.domain.lifecycle import Move
from campaigns.domain.spec import parse_spec
from campaigns.engine.dispatch import Dispatcher
from campaigns.providers import Capabilities
from campaigns.providers.minivoice import MiniVoice
from campaigns.queue import JobQueue, open_queue
from campaigns.settings import Settings
from campaigns.store import Store
from tests.conftest import spec_dict
from tests.support import claim_next, submit_spec

Answer = httpx.Response | Exception | Callable[[httpx.Request], httpx.Response]


class Provider:
    """Scripted answers per request kind; records every request."""

    def __init__(self, creates: list[Answer], lookups: list[Answer] | None = None) -> None:
        self.creates = creates
        self.lookups = lookups or []
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        script = self.creates if request.method == "POST" else self.lookups
        answer = script.pop(0) if len(script) > 1 else script[0]
        if isinstance(answer, Exception):
            raise answer
        if callable(answer) and not isinstance(answer, httpx.Response):
            return answer(request)
        return answer

    @property
    def posts(self) -> list[httpx.Request]:
        return [r for r in self.requests if r.method == "POST"]


def accepted(request: httpx.Request) -> httpx.Response:
    body = json.loads(request.content)
    key = request.headers["Idempotency-Key"]
    return httpx.Response(201, json={"id": f"call_{key}", "status": "queued", "to": body["to"]})


def refused(status: int, code: str) -> httpx.Response:
    return httpx.Response(status, json={"error": {"code": code, "message": code}})


@pytest.fixture
async def queue(redis_url: str) -> AsyncIterator[JobQueue]:
    q = await open_queue(redis_url, "dispatcher:unit")
    yield q
    await q.aclose()


KEYS = Capabilities(idempotency_keys=True, lookup=False, creation_events=False, hangup=False)
"""A provider that honours Idempotency-Key (Stripe semantics)."""


async def run(
    queue: JobQueue,
    provider: Provider,
    contacts: int = 1,
    caps: Capabilities = KEYS,
    **settings: Any,
) -> tuple[Store, Dispatcher]:
    config = Settings(
        redis_url="redis://unused",
        retry_attempts=2,
        retry_base_seconds=0.01,
        retry_max_seconds=0.02,
        _env_file=None,  # type: ignore[call-arg]
        **settings,
    )
    store = Store(queue.redis)
    mv = MiniVoice("https://mv.test", SecretStr("k" * 12), transport=httpx.MockTransport(provider))
    mv.capabilities = caps  # type: ignore[misc]
    dispatcher = Dispatcher(store, mv, queue, config)
    await submit_spec(store, parse_spec(spec_dict("d", contacts=contacts)))
    seq = await store.bump_dispatch_seq("d")
    await dispatcher.run_batch("d", seq)
    return store, dispatcher


async def test_unreadable_201_is_resent_under_the_same_key_not_halted(queue: JobQueue) -> None:
    provider = Provider([httpx.Response(201, json={"status": "queued"}), accepted])
    store, _ = await run(queue, provider)
    attempt = await store.attempt("d:000000:1")
    assert attempt is not None and attempt.status == "accepted"
    assert attempt.call_id == "call_d:000000:1"
    keys = [r.headers["Idempotency-Key"] for r in provider.posts]
    assert keys == ["d:000000:1", "d:000000:1"]
    campaign = await store.campaign("d")
    assert campaign is not None and campaign.state == "completed"


async def test_refusal_after_a_timeout_halts_but_keeps_the_contact_in_doubt(
    queue: JobQueue,
) -> None:
    """The first send may have placed the call: the refusal to the second must not
    send the contact back to pending (a new attempt would dial it again)."""
    provider = Provider([httpx.ReadTimeout("slow"), refused(403, "spend_control_exceeded")])
    store, _ = await run(queue, provider, contacts=2)
    attempt = await store.attempt("d:000000:1")
    assert attempt is not None and attempt.status == "in_doubt"
    assert attempt.error_code == "spend_control_exceeded"
    campaign = await store.campaign("d")
    assert campaign is not None
    assert campaign.state == "halted" and campaign.halt_code == "spend_control_exceeded"
    assert campaign.pending == 1, "only the untouched contact is pending"
    assert campaign.reserved_micros == attempt.reserved_micros, (
        "the maybe-call keeps its reservation"
    )
    assert len(provider.posts) == 2


async def test_a_clean_refusal_sends_the_contact_back(queue: JobQueue) -> None:
    provider = Provider([refused(403, "spend_control_exceeded")])
    store, _ = await run(queue, provider, contacts=2)
    attempt = await store.attempt("d:000000:1")
    assert attempt is not None and attempt.status == "rejected"
    campaign = await store.campaign("d")
    assert campaign is not None and campaign.pending == 2 and campaign.reserved_micros == 0


async def test_keys_claimed_but_lowered_by_the_setting_are_not_used(queue: JobQueue) -> None:
    """The setting can only lower the dialect's claim: no re-send, no other way: in doubt."""
    provider = Provider([httpx.ReadTimeout("slow"), accepted])
    store, _ = await run(queue, provider, provider_honours_idempotency=False)
    assert len(provider.posts) == 1, "a second send could be a second call"
    attempt = await store.attempt("d:000000:1")
    assert attempt is not None and attempt.status == "in_doubt"
    campaign = await store.campaign("d")
    assert campaign is not None and campaign.halt_code == "in_doubt_review"


async def test_without_idempotency_a_refused_connection_is_retried(queue: JobQueue) -> None:
    """No connection means the request never arrived: retrying cannot double-dial."""
    provider = Provider([httpx.ConnectError("refused"), accepted])
    store, _ = await run(queue, provider, provider_honours_idempotency=False)
    assert len(provider.posts) == 2
    attempt = await store.attempt("d:000000:1")
    assert attempt is not None and attempt.status == "accepted"


async def test_a_pause_between_the_state_read_and_the_lease_sends_nothing(
    queue: JobQueue,
) -> None:
    """The batch reads `running`, an operator pauses (no lease is held yet, so
    pause returns at once), then the batch takes the lease: it must send nothing."""
    provider = Provider([accepted])
    store = Store(queue.redis)
    await submit_spec(store, parse_spec(spec_dict("d", contacts=2)))
    await store.transition("d", Move.START)
    # A leftover from a dead worker, to tempt the re-send path.
    assert await store.acquire_lease("d", "dead", 60)
    claim = await claim_next(store, "d", "dead")
    assert claim.attempt is not None
    assert await store.stamp_send(claim.attempt.attempt_id, "{}", "dead") == "ok"
    await store.release_lease("d", "dead")

    config = Settings(redis_url="redis://unused", _env_file=None)  # type: ignore[call-arg]
    mv = MiniVoice("https://mv.test", SecretStr("k" * 12), transport=httpx.MockTransport(provider))
    dispatcher = Dispatcher(store, mv, queue, config)
    real_acquire = store.acquire_lease

    async def pause_then_acquire(campaign_id: str, token: str, ttl: float) -> bool:
        await store.transition(campaign_id, Move.COOL_DOWN)
        return await real_acquire(campaign_id, token, ttl)

    store.acquire_lease = pause_then_acquire  # type: ignore[method-assign]
    result = await dispatcher.run_batch("d", await store.bump_dispatch_seq("d"))
    assert result.outcome == "stopped"
    assert provider.requests == []


async def test_a_lapsed_lease_is_not_taken_back_by_its_old_holder(queue: JobQueue) -> None:
    store = Store(queue.redis)
    await submit_spec(store, parse_spec(spec_dict("d", contacts=1)))
    assert await store.acquire_lease("d", "old", 60)
    await queue.redis.delete("dsp:c:d:lease")  # lapsed
    assert not await store.renew_lease("d", "old", 60)
    assert await store.lease_holder("d") is None


async def test_a_request_that_fails_with_an_exception_fails_the_run_loudly(
    queue: JobQueue,
) -> None:
    """A send task that raises (here between the answer and its record) must not end
    the run as a quiet stop: the job fails with the error (arq logs it), the other
    open requests finish first, and the attempt stays unresolved for the next run."""
    provider = Provider([accepted, accepted])
    config = Settings(redis_url="redis://unused", _env_file=None)  # type: ignore[call-arg]
    store = Store(queue.redis)
    mv = MiniVoice("https://mv.test", SecretStr("k" * 12), transport=httpx.MockTransport(provider))
    dispatcher = Dispatcher(store, mv, queue, config)

    def boom(attempt: Any, call: Any) -> None:
        raise RuntimeError(f"no record for {attempt.attempt_id}")

    dispatcher.before_record = boom
    await submit_spec(store, parse_spec(spec_dict("d", contacts=1)))
    seq = await store.bump_dispatch_seq("d")
    with pytest.raises(RuntimeError, match="no record for d:000000:1"):
        await dispatcher.run_batch("d", seq)
    campaign = await store.campaign("d")
    assert campaign is not None and campaign.unresolved == 1
    assert await store.lease_holder("d") is None, "the lease is let go"
