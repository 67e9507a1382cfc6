"""A hostile provider never hangs, bloats or blinds a request (tests/hostile_provider.py).

Each misbehaviour is served on a real loopback socket and met through the real
``MiniVoice`` adapter (or ``_http.request``). The deadline is a bound the code
guarantees (the whole request, whatever the provider trickles), measured with
``time.monotonic``; the memory bound is the test process's own RSS while a
200 MB answer is refused.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import AsyncIterator, Callable

import pytest
from pydantic import SecretStr

from campaigns.domain.errors import INVALID_RESPONSE, PROVIDER_REDIRECT, ErrorClass, ProviderError
from campaigns.domain.spec import parse_spec
from campaigns.operators.control import CampaignClient
from campaigns.providers import CreateRequest, MiniVoice, VoIPBIN
from campaigns.providers._http import (
    MAX_ANSWER_BYTES,
    MAX_PAGE_BYTES,
    provider_client,
    request,
)
from campaigns.settings import Settings
from tests.conftest import spec_dict
from tests.hostile_provider import HostileProvider, gzip_bomb, hostile_provider
from tests.support import WorkerProcess, wait_for

pytestmark = pytest.mark.integration

DEADLINE = 1.5
MARGIN = 1.0
"""Scheduling slack on a loaded 2-core machine; the trickle alone would run for minutes."""
KEY = "k_hostile_secret"


def _create_body(provider: MiniVoice) -> str:
    return provider.build_create(
        CreateRequest(
            caller_id="+15551230001",
            to="+15551240000",
            max_duration_seconds=60,
            campaign_id="c",
            attempt_id="c:000000:1",
            contact_ref="r",
            variables={},
        )
    )


async def _create(hostile: HostileProvider) -> tuple[ProviderError, float]:
    provider = MiniVoice(hostile.url, SecretStr(KEY), timeout=DEADLINE)
    started = time.monotonic()
    try:
        with pytest.raises(ProviderError) as info:
            await provider.create_call(_create_body(provider), "c:000000:1")
    finally:
        await provider.aclose()
    return info.value, time.monotonic() - started


@pytest.fixture
async def trickled_headers() -> AsyncIterator[HostileProvider]:
    with hostile_provider(mode="trickle_headers") as hostile:
        yield hostile


@pytest.mark.parametrize("mode", ["trickle_headers", "trickle_body"])
async def test_a_trickling_provider_never_holds_a_request_past_its_deadline(mode: str) -> None:
    with hostile_provider(mode=mode, trickle_seconds=0.5) as hostile:
        error, elapsed = await _create(hostile)
    assert error.code == "timeout", error
    assert error.status is None
    assert error.ambiguous, "the request was sent: the call may exist"
    assert error.error_class is ErrorClass.TRANSIENT
    assert elapsed <= DEADLINE + MARGIN, f"{mode}: held {elapsed:.2f}s past a {DEADLINE}s deadline"
    assert len(hostile.creates()) == 1


async def test_every_request_kind_has_the_deadline(trickled_headers: HostileProvider) -> None:
    """Read-back, balance and usage share one client and one deadline (MiniVoice
    has no look-up: that request kind is the VoIPBIN dialect's, tested below)."""
    provider = MiniVoice(trickled_headers.url, SecretStr(KEY), timeout=DEADLINE)
    voipbin = VoIPBIN(trickled_headers.url, SecretStr(KEY), timeout=DEADLINE)
    from datetime import UTC, datetime

    from campaigns.providers import SentCreate

    calls = [
        provider.get_call("call_1"),
        voipbin.find_calls(SentCreate("c:000000:1", "+15551230001", "+15551240000", 0, 0)),
        provider.usage(datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 1, 2, tzinfo=UTC)),
    ]
    try:
        started = time.monotonic()
        results = await asyncio.gather(*calls, return_exceptions=True)
        elapsed = time.monotonic() - started
    finally:
        await provider.aclose()
        await voipbin.aclose()
    assert [getattr(r, "code", r) for r in results] == ["timeout"] * 3
    assert elapsed <= DEADLINE + MARGIN


def _rss_bytes() -> int:
    with open(f"/proc/{os.getpid()}/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


async def _peak_rss_during(work: asyncio.Future[object] | asyncio.Task[object]) -> int:
    peak = _rss_bytes()
    while not work.done():
        peak = max(peak, _rss_bytes())
        await asyncio.sleep(0.005)
    return peak


@pytest.mark.parametrize("announced", [False, True], ids=["streamed", "content-length"])
async def test_a_200_mb_answer_is_refused_unread_and_memory_stays_flat(announced: bool) -> None:
    with hostile_provider(mode="huge_body", huge_length=announced) as hostile:
        provider = MiniVoice(hostile.url, SecretStr(KEY), timeout=30)
        before = _rss_bytes()
        work = asyncio.ensure_future(provider.create_call(_create_body(provider), "c:000000:1"))
        peak = await _peak_rss_during(work)
        await provider.aclose()
        with pytest.raises(ProviderError) as info:
            await work
        await asyncio.sleep(0.2)  # the server notices the client went away
        sent = sum(hostile.body_bytes_sent)
    error = info.value
    assert (error.status, error.code) == (201, INVALID_RESPONSE), error
    assert f"more than {MAX_ANSWER_BYTES} bytes" in error.message
    assert error.ambiguous and error.error_class is ErrorClass.TRANSIENT
    assert peak - before < 32 * 1024 * 1024, f"RSS grew by {(peak - before) >> 20} MiB"
    assert sent < 64 * 1024 * 1024, f"the client read on: the server got {sent >> 20} MiB out"


async def test_a_compressed_answer_is_never_inflated() -> None:
    """64 KiB of gzip inflates to 64 MB after a byte limit was checked: the
    client asks for 'identity' and refuses any other encoding unread."""
    size = 48 * 1024 * 1024  # inflated; under MAX_ANSWER_BYTES compressed
    assert len(gzip_bomb(size)) < MAX_ANSWER_BYTES  # made before the clock starts
    with hostile_provider(mode="gzip_bomb", huge_bytes=size) as hostile:
        before = _rss_bytes()
        error, _ = await _create(hostile)
        grown = _rss_bytes() - before
    assert hostile.creates()[0].headers["accept-encoding"] == "identity"
    assert (error.status, error.code) == (201, INVALID_RESPONSE), error
    assert "'gzip'-encoded" in error.message
    assert grown < 32 * 1024 * 1024


@pytest.mark.parametrize("status", [429, 500])
async def test_a_huge_error_answer_keeps_its_status_and_retry_after(status: int) -> None:
    with hostile_provider(mode="huge_error", huge_error_status=status) as hostile:
        error, _ = await _create(hostile)
    assert (error.status, error.code) == (status, f"http_{status}"), error
    assert error.retry_after == 7
    assert error.error_class is ErrorClass.TRANSIENT


async def test_a_usage_client_reads_pages_up_to_the_page_limit() -> None:
    """A client that names no limit (the billing-insights source) gets MAX_PAGE_BYTES."""
    with hostile_provider(mode="huge_body", huge_bytes=MAX_PAGE_BYTES + 1) as hostile:
        client = provider_client(timeout=30)
        async with client:
            with pytest.raises(Exception) as info:
                await client.get(hostile.url + "/v1/usage")
    assert f"more than {MAX_PAGE_BYTES} bytes" in str(info.value)
    with hostile_provider(mode="huge_body", huge_bytes=MAX_PAGE_BYTES) as hostile:
        client = provider_client(timeout=30)
        async with client:
            response = await client.get(hostile.url + "/v1/usage")
    assert len(response.content) == MAX_PAGE_BYTES


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
async def test_a_redirect_is_reported_with_its_status_and_never_followed(status: int) -> None:
    with hostile_provider(mode="redirect", redirect_status=status) as hostile:
        hostile.redirect_to = hostile.url + "/elsewhere?token=tok_leak"
        error, _ = await _create(hostile)
    assert (error.status, error.code) == (status, PROVIDER_REDIRECT), error
    assert "set DISPATCHER_PROVIDER_URL to the final address" in error.message
    assert "/elsewhere" in error.message and "tok_leak" not in error.message
    assert error.ambiguous, "a 303 may follow a call that was placed"
    assert error.error_class is ErrorClass.TRANSIENT
    assert [r.path for r in hostile.received] == ["/v1/calls"], "the redirect was not followed"
    assert KEY not in str(error)


@pytest.mark.parametrize(
    ("mode", "status", "words"),
    [
        ("invalid_json", 200, "not JSON"),
        ("duplicate_id", 201, "duplicate key 'id'"),
        ("no_id", 200, "id"),
    ],
)
async def test_garbage_is_an_invalid_response_with_its_real_status(
    mode: str, status: int, words: str
) -> None:
    with hostile_provider(mode=mode) as hostile:
        error, _ = await _create(hostile)
    assert (error.status, error.code) == (status, INVALID_RESPONSE), error
    assert words in error.message
    assert error.ambiguous and error.error_class is ErrorClass.TRANSIENT


async def test_a_good_answer_still_creates_the_call() -> None:
    with hostile_provider(mode="ok") as hostile:
        provider = MiniVoice(hostile.url, SecretStr(KEY), timeout=DEADLINE)
        try:
            call = await provider.create_call(_create_body(provider), "c:000000:1")
        finally:
            await provider.aclose()
        client = provider_client(timeout=DEADLINE)
        async with client:
            payload = await request(client, "POST", hostile.url + "/v1/calls", content=b"{}")
    assert call.call_id == "call_hostile_1"
    assert payload["id"] == "call_hostile_2"
    assert hostile.creates()[0].headers["authorization"] == f"Bearer {KEY}"


# ------------------------------------------------------------ through a real worker


@pytest.mark.parametrize("verb", ["pause", "cancel"])
async def test_pause_and_cancel_return_within_their_bound_while_the_provider_trickles(
    verb: str,
    settings: Settings,
    client: CampaignClient,
    start_worker: Callable[..., WorkerProcess],
) -> None:
    """The trickle alone would hold a create for about a minute; the run must let
    go within the provider deadline, so the operator's command returns in time."""
    with hostile_provider(mode="trickle_headers", trickle_seconds=0.5) as hostile:
        hostile_settings = settings.model_copy(update={"provider_url": hostile.url})
        start_worker(hostile_settings)
        spec = spec_dict(f"trickled_{verb}", contacts=3)
        spec["pacing"] = {**spec["pacing"], "max_concurrent_requests": 1}
        await client.submit(parse_spec(spec))

        async def sent() -> bool:
            return bool(hostile.creates())

        await wait_for(sent, timeout=30, what="a create request at the hostile provider")
        started = time.monotonic()
        action = getattr(client, verb)
        await action(spec["campaign_id"])  # raises ControlError past its bound
        elapsed = time.monotonic() - started
        bound = max(settings.lease_seconds, settings.provider_timeout_seconds) + 1
        assert elapsed <= bound, f"{verb} took {elapsed:.2f}s (bound {bound}s)"
        assert (await client.get(spec["campaign_id"])).state == (
            "paused" if verb == "pause" else "cancelled"
        )
        attempts = await client.store.unresolved_attempts(spec["campaign_id"])
        assert len(hostile.creates()) >= 1
        assert all(a.call_id is None for a in attempts), "no call was ever answered"


@pytest.mark.parametrize(
    ("mode", "status"), [("no_id", "200"), ("redirect", "302"), ("invalid_json", "200")]
)
async def test_garbage_answers_halt_the_campaign_and_no_attempt_is_sent_twice(
    mode: str,
    status: str,
    settings: Settings,
    client: CampaignClient,
    start_worker: Callable[..., WorkerProcess],
) -> None:
    """A provider answering garbage is never retried blind and never cooled down
    forever: after GARBAGE_BEFORE_HALT such answers in a row the campaign halts
    ``provider_misbehaving``, naming the status; each request carried a different
    attempt (MiniVoice keeps no keys: a re-send could be a second call)."""
    from campaigns.engine.resolve import GARBAGE_BEFORE_HALT

    with hostile_provider(mode=mode) as hostile:
        start_worker(settings.model_copy(update={"provider_url": hostile.url}))
        spec = spec_dict(f"garbage_{mode}", contacts=12)
        spec["pacing"] = {**spec["pacing"], "calls_per_second": 20, "max_concurrent_requests": 1}
        await client.submit(parse_spec(spec))

        async def halted() -> bool:
            return (await client.get(spec["campaign_id"])).state == "halted"

        await wait_for(halted, timeout=60, what="the provider_misbehaving halt")
        halt = (await client.status(spec["campaign_id"]))["halt"]
        assert halt["code"] == "provider_misbehaving"
        assert status in halt["message"]
        bodies = [json.loads(r.body) for r in hostile.creates()]
        attempts = [b["metadata"]["attempt_id"] for b in bodies]
        assert len(attempts) == GARBAGE_BEFORE_HALT, attempts
        assert len(set(attempts)) == len(attempts), "an ambiguous attempt was sent again"
