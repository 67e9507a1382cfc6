"""The Voxpria calls dialect against httpx.MockTransport, on the shapes of
voxpria.com's Calls API and Webhooks API pages (docs/providers.md#voxpria-calls).

Create body and envelope, statuses, duration, listing and its matching, 429
with X-RateLimit-Reset, the spec's agent_id, webhooks and their signature.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from campaigns.domain.errors import ErrorClass, ProviderError
from campaigns.domain.inputs import SpecError
from campaigns.providers import check_call_section, make_provider
from campaigns.providers._http import parse_rate_limit_reset
from campaigns.providers.base import CreateRequest, EventError, SentCreate
from campaigns.providers.voxpria_calls import (
    DEFAULT_CALLS_PER_SECOND,
    PAGE_LIMIT,
    SETTLE_SECONDS,
    VoxpriaCalls,
    event_call_id,
    map_status,
    parse_call,
    parse_call_event,
    sign_webhook,
    verify_webhook,
)
from campaigns.settings import Settings

KEY = "vx_test_key_0123456789"
BASE = "https://app.voxpria.test/api/v1"
TO = "+14155551234"
Handler = Callable[[httpx.Request], httpx.Response]


def client(handler: Handler, timeout: float = 1.0) -> VoxpriaCalls:
    return VoxpriaCalls(
        BASE, SecretStr(KEY), timeout=timeout, transport=httpx.MockTransport(handler)
    )


def request(**call: Any) -> CreateRequest:
    return CreateRequest(
        caller_id="+15551230001",
        to=TO,
        max_duration_seconds=300,
        campaign_id="cmp_1",
        attempt_id="cmp_1:c1:1",
        contact_ref="cust_1",
        variables={"customerName": "John Doe", "visits": 3, "vip": True, "note": None},
        call=call or {"agent_id": "agent_abc123"},
    )


def test_create_body_is_the_documented_one_with_our_ids_in_variables() -> None:
    body = json.loads(client(lambda r: httpx.Response(500)).build_create(request()))
    assert body == {
        "agentId": "agent_abc123",
        "toNumber": TO,
        "variables": {
            "campaign_id": "cmp_1",
            "attempt_id": "cmp_1:c1:1",
            "contact_ref": "cust_1",
            "customerName": "John Doe",
            "visits": "3",
            "vip": "true",
        },
    }


async def test_create_sends_bearer_and_reads_the_documented_answer() -> None:
    seen: list[httpx.Request] = []

    def handler(req: httpx.Request) -> httpx.Response:
        seen.append(req)
        data = {
            "callId": "call_xyz789",
            "status": "queued",
            "toNumber": TO,
            "agentId": "agent_abc123",
            "createdAt": "2025-02-09T12:00:00Z",
        }
        return httpx.Response(200, json={"success": True, "data": data})

    dialect = client(handler)
    call = await dialect.create_call(dialect.build_create(request()), "cmp_1:c1:1")
    assert (call.call_id, call.status, call.to) == ("call_xyz789", "queued", TO)
    assert call.created_at_ms == 1739102400000
    sent = seen[0]
    assert (sent.method, str(sent.url)) == ("POST", f"{BASE}/calls")
    assert sent.headers["Authorization"] == f"Bearer {KEY}"
    assert "Idempotency-Key" not in sent.headers


@pytest.mark.parametrize(
    "answer",
    [
        {"success": True, "data": {"status": "queued"}},
        {"success": False, "data": {"callId": "call_1"}},
        {"success": True},
        {"callId": "call_1"},
    ],
)
async def test_a_2xx_without_a_usable_call_is_an_ambiguous_unreadable_answer(answer: Any) -> None:
    dialect = client(lambda r: httpx.Response(201, json=answer))
    with pytest.raises(ProviderError) as caught:
        await dialect.create_call(dialect.build_create(request()), "k")
    assert caught.value.code == "invalid_response" and caught.value.ambiguous


async def test_a_usable_call_id_is_kept_whatever_else_is_malformed() -> None:
    data = {"callId": "call_1", "status": 7, "createdAt": "yesterday", "duration": "long"}
    dialect = client(lambda r: httpx.Response(200, json={"success": True, "data": data}))
    call = await dialect.create_call(dialect.build_create(request()), "k")
    assert (call.call_id, call.status, call.to, call.created_at_ms) == ("call_1", "", TO, None)


def test_documented_statuses_map_and_an_unknown_one_is_never_final() -> None:
    for status in ("queued", "ringing", "in_progress"):
        assert not parse_call({"callId": "c", "status": status}).final
    for status in ("completed", "failed", "no_answer", "busy"):
        assert parse_call({"callId": "c", "status": status}).final
    assert map_status("voicemail") == "voicemail"
    assert not parse_call({"callId": "c", "status": "voicemail"}).final


def test_the_documented_call_details_give_duration_and_times() -> None:
    call = parse_call(
        {
            "callId": "call_xyz789",
            "status": "completed",
            "duration": 127,
            "recording": "https://...",
            "transcript": "...",
            "outcome": "successful",
            "startedAt": "2025-02-09T12:00:00Z",
            "completedAt": "2025-02-09T12:02:07Z",
        }
    )
    assert (call.billsec, call.final) == (127, True)
    assert call.ended_at_ms is not None and call.answered_at_ms is not None
    assert call.ended_at_ms - call.answered_at_ms == 127_000
    # Without a duration, an answered call is billed end minus start, rounded up.
    times = {"startedAt": "2025-02-09T12:00:00Z", "completedAt": "2025-02-09T12:00:10.2Z"}
    assert parse_call({"callId": "c", "status": "completed", **times}).billsec == 11
    # Never answered: nothing billed, and its startedAt is no answer time.
    unanswered = parse_call({"callId": "c", "status": "no_answer", **times})
    assert (unanswered.billsec, unanswered.answered_at_ms) == (0, None)


async def test_get_call_reads_the_envelope() -> None:
    def handler(req: httpx.Request) -> httpx.Response:
        assert req.url.raw_path == b"/api/v1/calls/call%2F1"
        return httpx.Response(200, json={"success": True, "data": {"callId": "call/1"}})

    assert (await client(handler).get_call("call/1")).call_id == "call/1"


def _row(call_id: str, created_ms: int, to: str = TO, **extra: Any) -> dict[str, Any]:
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(created_ms / 1000))
    return {
        "callId": call_id,
        "status": "queued",
        "toNumber": to,
        "createdAt": f"{stamp}Z",
        **extra,
    }


def _sent(at_ms: int) -> SentCreate:
    return SentCreate("cmp_1:c1:1", "+15551230001", TO, at_ms, at_ms)


async def test_find_calls_matches_destination_and_window_newest_first() -> None:
    now = 1_739_102_400_000
    pages = {
        1: [_row(f"new_{i}", now + 60_000 - i) for i in range(PAGE_LIMIT - 2)]
        + [_row("ours", now + 500), _row("other_number", now + 400, to="+14155550000")],
        2: [_row("old_same_number", now - 3_600_000)] * PAGE_LIMIT,
        3: [],
    }
    asked: list[str] = []

    def handler(req: httpx.Request) -> httpx.Response:
        asked.append(str(req.url.params))
        page = int(req.url.params["page"])
        return httpx.Response(200, json={"success": True, "data": pages[page]})

    found = await client(handler).find_calls(_sent(now))
    assert [c.call_id for c in found] == ["ours"]
    # The second page was older than the window throughout: paging stopped there.
    assert asked == ["page=1&limit=100", "page=2&limit=100"]


async def test_find_calls_matches_by_echoed_variables_first() -> None:
    now = 1_739_102_400_000
    rows = [
        _row("theirs", now, variables={"attempt_id": "cmp_1:c1:2"}),
        _row("ours_late", now + 3_600_000, variables={"attempt_id": "cmp_1:c1:1"}),
    ]
    dialect = client(lambda r: httpx.Response(200, json={"success": True, "data": rows}))
    found = await dialect.find_calls(_sent(now))
    assert [(c.call_id, c.attempt_id) for c in found] == [("ours_late", "cmp_1:c1:1")]


async def test_find_calls_reads_data_calls_and_an_unordered_listing_to_its_end() -> None:
    now = 1_739_102_400_000
    first = [_row(f"a{i}", now - 7_200_000 + i * 1000) for i in range(PAGE_LIMIT)]  # oldest first
    second = [_row("ours", now + 1000)]
    pages = {1: first, 2: second}

    def handler(req: httpx.Request) -> httpx.Response:
        data = {"calls": pages[int(req.url.params["page"])]}
        return httpx.Response(200, json={"success": True, "data": data})

    assert [c.call_id for c in await client(handler).find_calls(_sent(now))] == ["ours"]


async def test_a_row_to_the_number_that_cannot_be_placed_in_time_fails_the_lookup() -> None:
    rows = [{"callId": "undated", "status": "completed", "toNumber": TO}]
    dialect = client(lambda r: httpx.Response(200, json={"success": True, "data": rows}))
    with pytest.raises(ProviderError, match="no createdAt") as caught:
        await dialect.find_calls(_sent(1_739_102_400_000))
    assert caught.value.code == "lookup_incomplete"


async def test_find_calls_that_cannot_read_the_window_fails_instead_of_saying_none() -> None:
    now = 1_739_102_400_000
    full = [_row(f"r{i}", now + 1) for i in range(PAGE_LIMIT)]
    dialect = client(lambda r: httpx.Response(200, json={"success": True, "data": full}))
    with pytest.raises(ProviderError) as caught:
        await dialect.find_calls(_sent(now - 10_000_000))
    assert caught.value.code == "lookup_incomplete"
    bad = client(lambda r: httpx.Response(200, json={"success": True, "data": {"x": 1}}))
    with pytest.raises(ProviderError, match="no list of calls"):
        await bad.find_calls(_sent(now))


def test_capabilities_are_what_voxpria_documents() -> None:
    caps = VoxpriaCalls.capabilities
    assert (caps.idempotency_keys, caps.lookup, caps.creation_events, caps.hangup) == (
        False,
        True,
        False,
        False,
    )
    assert caps.lookup_settle_seconds == SETTLE_SECONDS


@pytest.mark.parametrize(
    ("header", "wait"),
    [("1739102460", 60.0), ("1739102460000", 60.0), ("42", 42.0), ("2025-02-09T12:00:30Z", 30.0)],
)
def test_x_ratelimit_reset_is_read_as_epoch_or_seconds(header: str, wait: float) -> None:
    assert parse_rate_limit_reset(header, now=1_739_102_400.0) == pytest.approx(wait)


async def test_a_429_holds_until_x_ratelimit_reset() -> None:
    reset = str(int(time.time()) + 30)

    def handler(req: httpx.Request) -> httpx.Response:
        body = {"success": False, "error": {"code": "rate_limit_exceeded", "message": "slow"}}
        headers = {
            "X-RateLimit-Limit": "100",
            "X-RateLimit-Remaining": "0",
            "X-RateLimit-Reset": reset,
        }
        return httpx.Response(429, json=body, headers=headers)

    dialect = client(handler)
    with pytest.raises(ProviderError) as caught:
        await dialect.create_call(dialect.build_create(request()), "k")
    error = caught.value
    assert error.status == 429 and error.error_class is ErrorClass.TRANSIENT
    assert error.retry_after is not None and 25 <= error.retry_after <= 30


def test_the_spec_must_name_the_agent() -> None:
    with pytest.raises(SpecError, match=r"call\.agent_id"):
        check_call_section("voxpria", {})
    with pytest.raises(SpecError, match=r"call\.flow_id"):
        check_call_section("voxpria", {"agent_id": "a", "flow_id": "f"})
    with pytest.raises(SpecError, match=r"call\.record"):
        check_call_section("voxpria", {"agent_id": "a", "record": True})
    check_call_section("voxpria", {"agent_id": "agent_abc123"})


def test_settings_default_the_account_ceiling_to_voxprias_limit() -> None:
    settings = Settings(provider_dialect="voxpria", provider_url=BASE)
    assert settings.provider_calls_per_second == pytest.approx(100 / 60) == DEFAULT_CALLS_PER_SECOND
    assert (
        Settings(provider_dialect="voxpria", provider_calls_per_second=5).provider_calls_per_second
        == 5
    )
    assert Settings(provider_dialect="minivoice").provider_calls_per_second is None
    assert isinstance(make_provider(settings), VoxpriaCalls)
    with pytest.raises(ValueError, match="bearer"):
        Settings(provider_dialect="voxpria", provider_auth="accesskey")


DOCUMENTED_EVENT = {
    "event": "call.completed",
    "timestamp": "2025-02-09T12:00:00Z",
    "data": {
        "callId": "call_xyz789",
        "status": "completed",
        "duration": 127,
        "toNumber": TO,
        "recording": "https://...",
        "transcript": "...",
    },
}


def test_the_documented_call_completed_is_a_final_call() -> None:
    event, call = parse_call_event(json.dumps(DOCUMENTED_EVENT))
    assert (event, call.call_id, call.status, call.billsec, call.to) == (
        "call.completed",
        "call_xyz789",
        "completed",
        127,
        TO,
    )
    assert call.ended_at_ms == 1739102400000  # no completedAt: the event's timestamp
    assert event_call_id(DOCUMENTED_EVENT) == "call_xyz789"


def test_the_webhooks_guide_shape_and_call_failed_statuses() -> None:
    guide = {"event": "call.failed", "data": {"id": "call_abc", "phoneNumber": TO}}
    _, call = parse_call_event(guide)
    assert (call.call_id, call.status, call.to, call.billsec) == ("call_abc", "failed", TO, 0)
    busy = {"event": "call.failed", "data": {"callId": "c", "status": "busy"}}
    assert parse_call_event(busy)[1].status == "busy"
    with pytest.raises(EventError, match=r"data\.status"):
        parse_call_event({"event": "call.completed", "data": {"callId": "c", "status": "ringing"}})
    with pytest.raises(EventError, match="event"):
        parse_call_event({"event": "call.started", "data": {"callId": "c"}})
    with pytest.raises(EventError, match=r"data\.duration"):
        parse_call_event({"event": "call.completed", "data": {"callId": "c", "duration": -1}})


def test_webhook_signature_over_the_raw_body_or_its_json_stringify_form() -> None:
    secret = "whsec_xyz789"
    compact = json.dumps(DOCUMENTED_EVENT, separators=(",", ":")).encode()
    signature = "sha256=" + hmac.new(secret.encode(), compact, hashlib.sha256).hexdigest()
    verify = dict(secret=secret, now=0.0, tolerance_seconds=300)
    assert verify_webhook({"X-VoxPria-Signature": signature}, compact, **verify) is None
    assert sign_webhook(secret, compact) == signature
    # The page signs JSON.stringify(payload): a body sent pretty-printed still holds.
    pretty = json.dumps(DOCUMENTED_EVENT, indent=2).encode()
    assert verify_webhook({"x-voxpria-signature": signature}, pretty, **verify) is None
    tampered = compact.replace(b"127", b"12")
    assert verify_webhook({"X-VoxPria-Signature": signature}, tampered, **verify) == (
        "signature mismatch"
    )
    assert verify_webhook({}, compact, **verify) == "missing signature"
    assert verify_webhook({"X-VoxPria-Signature": "v1=abc"}, compact, **verify) == (
        "garbled signature"
    )
    # The Webhooks guide's other header is not enough on its own.
    assert verify_webhook({"X-Webhook-Signature": signature}, compact, **verify) == (
        "missing signature"
    )
