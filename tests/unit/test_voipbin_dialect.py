"""The VoIPBIN adapter against httpx.MockTransport, on the platform's real shapes
(voipbin/monorepo at 2bf22fa4e; the OpenAPI shapes are in tests/fixtures/voipbin).

Create envelope, error envelope, hangup reasons, billsec from times, the
ledger, listing with pages, the hang-up request, the auth parameter, webhooks.
"""

from __future__ import annotations

import hashlib
import hmac
import io
import json
import logging
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from campaigns.domain.errors import ErrorClass, ProviderError
from campaigns.domain.inputs import SpecError
from campaigns.domain.lifecycle import HaltCode
from campaigns.logs import configure_logging, get_logger, register_secret
from campaigns.providers import check_call_section
from campaigns.providers._http import ANSWER_LIMIT, MAX_ANSWER_BYTES
from campaigns.providers.base import CreateRequest, EventError, SentCreate
from campaigns.providers.voipbin import (
    ACTION_TYPES,
    CLOCK_SKEW_MS,
    SETTLE_SECONDS,
    VoIPBIN,
    check_call,
    event_call_id,
    event_name,
    final_status,
    parse_call,
    parse_call_event,
    verify_webhook,
)
from tests.fixtures.voipbin import load_openapi

KEY = "ak_voipbin_test_key_0123456789"
BASE = "https://api.voipbin.test/v1.0"
CALL_ID = "550e8400-e29b-41d4-a716-446655440000"
FLOW = "f1a2b3c4-d5e6-7890-1234-567890abcdef"
CALLER, TO = "+15551230001", "+15551230002"

Handler = Callable[[httpx.Request], httpx.Response]


def call_object(**fields: Any) -> dict[str, Any]:
    """A call as call-manager's WebhookMessage writes it (Nil UUIDs, unset times omitted)."""
    body: dict[str, Any] = {
        "id": CALL_ID,
        "customer_id": "7c4d2f3a-1b8e-4f5c-9a6d-3e2f1a0b4c5d",
        "owner_type": "",
        "owner_id": "00000000-0000-0000-0000-000000000000",
        "flow_id": FLOW,
        "activeflow_id": "d4e5f6a7-b8c9-0123-4567-890abcdef012",
        "type": "flow",
        "master_call_id": "00000000-0000-0000-0000-000000000000",
        "source": {"type": "tel", "target": CALLER},
        "destination": {"type": "tel", "target": TO},
        "status": "dialing",
        "action": {"id": "00000000-0000-0000-0000-000000000000", "tm_execute": None},
        "direction": "outgoing",
        "tm_create": "2026-01-15T09:30:00.000000Z",
        "tm_update": "2026-01-15T09:30:00.000000Z",
    }
    body.update(fields)
    return body


def hung_up(
    reason: str, *, progressing: str | None = "2026-01-15T09:30:05.250000Z"
) -> dict[str, Any]:
    fields: dict[str, Any] = {
        "status": "hangup",
        "hangup_reason": reason,
        "hangup_by": "remote",
        "tm_ringing": "2026-01-15T09:30:01.000000Z",
        "tm_hangup": "2026-01-15T09:31:15.999999Z",
    }
    if progressing is not None:
        fields["tm_progressing"] = progressing
    return call_object(**fields)


class Script:
    """A MockTransport handler: records each request, answers by the handler given."""

    def __init__(self, answer: Handler) -> None:
        self.answer = answer
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        return self.answer(request)


def adapter(answer: Handler, **options: Any) -> tuple[VoIPBIN, Script]:
    script = Script(answer)
    provider = VoIPBIN(BASE, SecretStr(KEY), transport=httpx.MockTransport(script), **options)
    return provider, script


def request_for(call: dict[str, Any] | None = None, **variables: Any) -> CreateRequest:
    return CreateRequest(
        caller_id=CALLER,
        to=TO,
        max_duration_seconds=120,
        campaign_id="spring",
        attempt_id="spring:000001:1",
        contact_ref="c-1",
        variables=variables,
        call=call if call is not None else {"flow_id": FLOW},
    )


def envelope(status: int, reason: str, message: str = "words") -> httpx.Response:
    names = {400: "INVALID_ARGUMENT", 401: "UNAUTHENTICATED", 402: "PAYMENT_REQUIRED"}
    names |= {403: "PERMISSION_DENIED", 404: "NOT_FOUND", 409: "FAILED_PRECONDITION"}
    body = {
        "error": {
            "status": names.get(status, "INTERNAL"),
            "reason": reason,
            "message": message,
            "request_id": "req_ABCDEF0123456789",
        }
    }
    return httpx.Response(status, json=body)


# -- create -------------------------------------------------------------------


async def test_create_reads_the_call_from_the_platform_envelope() -> None:
    answer = {"calls": [call_object()], "groupcalls": []}
    provider, script = adapter(lambda r: httpx.Response(200, json=answer))
    call = await provider.create_call(provider.build_create(request_for()), "ignored-key")
    assert call.call_id == CALL_ID and call.status == "queued" and not call.final
    assert call.caller_id == CALLER and call.to == TO and call.direction == "outbound"
    assert call.created_at_ms == 1768469400000
    sent = script.requests[0]
    assert sent.method == "POST" and sent.url.path == "/v1.0/calls"
    assert "idempotency-key" not in sent.headers, "VoIPBIN ignores it: never pretend"
    assert sent.url.params["accesskey"] == KEY and "token" not in sent.url.params


@pytest.mark.parametrize(
    "answer",
    [
        pytest.param(call_object(), id="seed-call-object"),
        pytest.param([call_object()], id="seed-list"),
        pytest.param(
            {"calls": [call_object(id="other", destination={"type": "tel", "target": "+1999"}),
                       call_object()], "groupcalls": []},
            id="ours-by-destination",
        ),
    ],
)  # fmt: skip
async def test_create_keeps_accepting_the_seed_shapes(answer: Any) -> None:
    provider, _ = adapter(lambda r: httpx.Response(200, json=answer))
    call = await provider.create_call(provider.build_create(request_for()), "k")
    assert call.call_id == CALL_ID


@pytest.mark.parametrize(
    "broken",
    [
        {"status": 7},
        {"tm_create": "yesterday-ish"},
        {"tm_create": 12345, "tm_progressing": ["x"]},
        {"source": "not an address", "destination": None},
        {"direction": {"odd": True}, "hangup_reason": 3},
    ],
)
async def test_a_usable_call_id_is_kept_whatever_else_is_malformed(broken: dict[str, Any]) -> None:
    """Issue 18 item 3: the call is placed; throwing its ID away would dial again."""
    answer = {"calls": [call_object(**broken)], "groupcalls": "garbage"}
    provider, _ = adapter(lambda r: httpx.Response(200, json=answer))
    call = await provider.create_call(provider.build_create(request_for()), "k")
    assert call.call_id == CALL_ID


@pytest.mark.parametrize(
    "answer",
    [{"calls": [], "groupcalls": []}, {"calls": [{"id": ""}]}, {"calls": [{"id": 5}]}, {}, []],
)
async def test_no_usable_id_is_an_ambiguous_unreadable_answer(answer: Any) -> None:
    provider, _ = adapter(lambda r: httpx.Response(200, json=answer))
    with pytest.raises(ProviderError) as caught:
        await provider.create_call(provider.build_create(request_for()), "k")
    assert caught.value.code == "invalid_response" and caught.value.ambiguous


def test_create_body_carries_the_flow_and_our_ids_as_strings() -> None:
    provider, _ = adapter(lambda r: httpx.Response(200))
    body = json.loads(provider.build_create(request_for(n=3, ok=True, gone=None, name="Jo")))
    assert body["source"] == {"type": "tel", "target": CALLER}
    assert body["destinations"] == [{"type": "tel", "target": TO}]
    assert body["flow_id"] == FLOW and "actions" not in body
    assert body["variables"] == {
        "campaign_id": "spring",
        "attempt_id": "spring:000001:1",
        "contact_ref": "c-1",
        "n": "3",
        "ok": "true",
        "name": "Jo",
    }
    actions = [{"type": "talk", "option": {"text": "hello"}}, {"type": "hangup"}]
    body = json.loads(provider.build_create(request_for({"actions": actions})))
    assert body["actions"] == actions and "flow_id" not in body


def test_variables_stay_within_voipbin_limits_and_our_ids_always_go() -> None:
    provider, _ = adapter(lambda r: httpx.Response(200))
    many = {f"k{i}": "v" for i in range(150)}
    big = {"huge": "x" * (33 * 1024), "attempt_id": "forged", "voipbin.call.id": "x"}
    variables = json.loads(provider.build_create(request_for(**many, **big)))["variables"]
    assert len(variables) == 100 and "huge" not in variables
    assert variables["attempt_id"] == "spring:000001:1" and "voipbin.call.id" not in variables
    assert all(isinstance(v, str) for v in variables.values())
    fat = {f"f{i}": "y" * 20_000 for i in range(5)}
    variables = json.loads(provider.build_create(request_for(**fat)))["variables"]
    assert sum(len(k) + len(v) for k, v in variables.items()) <= 64 * 1024
    assert variables["campaign_id"] == "spring"


@pytest.mark.parametrize(
    ("auth", "where"),
    [("accesskey", "accesskey"), ("token", "token"), ("bearer", "header")],
)
async def test_auth_modes(auth: Any, where: str) -> None:
    provider, script = adapter(lambda r: httpx.Response(200, json={"balance_credit": 1, "balance_token": 0}), auth=auth)  # fmt: skip
    await provider.balance()
    sent = script.requests[0]
    if where == "header":
        assert sent.headers["authorization"] == f"Bearer {KEY}" and not sent.url.params
    else:
        assert dict(sent.url.params) == {where: KEY} and "authorization" not in sent.headers


# -- errors -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "reason", "code", "klass"),
    [
        (402, "INSUFFICIENT_BALANCE", "insufficient_balance", ErrorClass.HALT),
        (500, "INTERNAL", "internal", ErrorClass.TRANSIENT),
        (503, "SERVICE_UNAVAILABLE", "service_unavailable", ErrorClass.TRANSIENT),
        (429, "RATE_LIMIT_EXCEEDED", "rate_limit_exceeded", ErrorClass.TRANSIENT),
        (400, "INVALID_ACTION_TYPE", "invalid_action_type", ErrorClass.HALT),
        (401, "INVALID_CREDENTIALS", HaltCode.PROVIDER_AUTH_FAILED, ErrorClass.HALT),
        (403, "PERMISSION_DENIED", HaltCode.PROVIDER_AUTH_FAILED, ErrorClass.HALT),
    ],
)
async def test_error_envelope_is_classified_by_reason(
    status: int, reason: str, code: str, klass: ErrorClass
) -> None:
    provider, _ = adapter(lambda r: envelope(status, reason))
    with pytest.raises(ProviderError) as caught:
        await provider.create_call(provider.build_create(request_for()), "k")
    assert caught.value.status == status and caught.value.code == code
    assert caught.value.error_class is klass
    assert "req_ABCDEF0123456789" in caught.value.message
    assert caught.value.ambiguous == (status >= 500)


@pytest.mark.parametrize("reason", ["IDENTITY_VERIFICATION_REQUIRED", "ACCOUNT_FROZEN"])
async def test_account_refusals_say_what_to_do_not_check_the_key(reason: str) -> None:
    provider, _ = adapter(lambda r: envelope(403, reason, "Customer identity ..."))
    with pytest.raises(ProviderError) as caught:
        await provider.create_call(provider.build_create(request_for()), "k")
    error = caught.value
    assert error.code == reason.lower() and error.error_class is ErrorClass.HALT
    assert "API_KEY" not in error.message and "VoIPBIN" in error.message


# -- the call: statuses, reasons, billsec ---------------------------------------


@pytest.mark.parametrize(
    ("reason", "answered", "status"),
    [
        ("normal", True, "completed"),
        ("normal", False, "no_answer"),
        ("timeout", True, "completed"),
        ("amd", True, "completed"),
        ("failed", False, "failed"),
        ("busy", False, "busy"),
        ("cancel", False, "canceled"),
        ("noanswer", False, "no_answer"),
        ("dialout", False, "no_answer"),
        ("", False, "failed"),
        ("something_new", True, "completed"),
    ],
)
def test_hangup_reasons_map_onto_final_statuses(reason: str, answered: bool, status: str) -> None:
    assert final_status(reason, answered) == status
    call = parse_call(hung_up(reason, progressing="2026-01-15T09:30:05Z" if answered else None))
    assert call.status == status and call.final
    assert call.billsec == (70 if answered else 0)


def test_every_documented_hangup_reason_and_status_is_mapped() -> None:
    schemas = load_openapi()["schemas"]
    for reason in schemas["CallManagerCallHangupReason"]["enum"]:
        assert final_status(reason, False) != "completed", reason
    for status in schemas["CallManagerCallStatus"]["enum"]:
        call = parse_call(call_object(status=status))
        assert call.status in {"queued", "ringing", "in_progress", "failed"}, status
    assert set(schemas["FlowManagerActionType"]["enum"]) == ACTION_TYPES


def test_billsec_is_hangup_minus_progressing_in_whole_seconds() -> None:
    call = parse_call(hung_up("normal"))
    # 09:30:05.250000 to 09:31:15.999999: 70.749999 s, truncated as billing does.
    assert call.billsec == 70
    assert call.answered_at_ms == 1768469405250 and call.ended_at_ms == 1768469475999
    legacy = parse_call(
        hung_up("normal", progressing="2026-01-15 09:30:05.250000")
        | {"tm_hangup": "2026-01-15 09:30:35.250000", "tm_delete": "9999-01-01 00:00:000000"}
    )
    assert legacy.billsec == 30
    never = parse_call(call_object(tm_progressing="9999-01-01T00:00:00Z"))
    assert never.answered_at_ms is None


def test_live_statuses() -> None:
    assert parse_call(call_object(status="dialing")).status == "queued"
    assert parse_call(call_object(status="ringing")).status == "ringing"
    up = {"tm_progressing": "2026-01-15T09:30:05Z"}
    assert parse_call(call_object(status="progressing", **up)).status == "in_progress"
    assert parse_call(call_object(status="terminating", **up)).status == "in_progress"
    assert parse_call(call_object(status="terminating")).status == "ringing"
    assert parse_call(call_object(status="canceling")).status == "ringing"


# -- the ledger -----------------------------------------------------------------


def billing(
    call_id: str, *, credit: int, seconds: int, status: str = "end", at: str
) -> dict[str, Any]:
    return {
        "id": "b-" + call_id,
        "reference_type": "call",
        "reference_id": call_id,
        "status": status,
        "usage_duration": seconds,
        "billable_units": -(-seconds // 60),
        "amount_credit": -credit,
        "amount_token": 0,
        "tm_create": at,
    }


def ledger_provider(
    pages: list[list[dict[str, Any]]], call: dict[str, Any]
) -> tuple[VoIPBIN, Script]:
    def answer(request: httpx.Request) -> httpx.Response:
        if request.url.path.startswith("/v1.0/calls/"):
            return httpx.Response(200, json=call)
        token = request.url.params.get("page_token")
        number = 0 if token is None else int(token)
        rows = pages[number] if number < len(pages) else []
        following = str(number + 1) if number + 1 < len(pages) else ""
        return httpx.Response(200, json={"result": rows, "next_page_token": following})

    return adapter(answer)


async def test_a_final_answered_call_is_booked_with_the_ledgers_amount() -> None:
    newer = [billing("x", credit=5, seconds=1, at="2026-01-15T10:00:00.000000Z")]
    ours = [billing(CALL_ID, credit=20_000, seconds=71, at="2026-01-15T09:30:05.250000Z")]
    provider, script = ledger_provider([newer, ours], hung_up("normal"))
    call = await provider.get_call(CALL_ID)
    assert call.status == "completed" and call.cost_micros == 20_000
    assert call.cost_currency == "USD" and call.billsec == 71
    paths = [(r.url.path, r.url.params.get("page_token")) for r in script.requests]
    assert paths == [
        (f"/v1.0/calls/{CALL_ID}", None),
        ("/v1.0/billings", None),
        ("/v1.0/billings", "1"),
    ]
    assert script.requests[1].url.params["page_size"] == "100"


async def test_an_open_or_missing_ledger_row_leaves_the_cost_to_the_rate_model() -> None:
    open_row = [
        billing(CALL_ID, credit=0, seconds=0, status="progressing", at="2026-01-15T09:30:05Z")
    ]
    provider, script = ledger_provider([open_row], hung_up("normal"))
    call = await provider.get_call(CALL_ID)
    assert call.cost_micros is None and call.billsec == 70
    # Paging stops once the ledger is older than the call's answer.
    older = [billing("y", credit=1, seconds=1, at="2026-01-14T00:00:00Z")]
    provider, script = ledger_provider([older, older, older], hung_up("normal"))
    assert (await provider.get_call(CALL_ID)).cost_micros is None
    assert len(script.requests) == 2


async def test_a_ledger_the_key_may_not_read_leaves_the_call_to_the_rate_model() -> None:
    """``GET /billings`` needs customer admin; a manager's key still settles calls."""

    def answer(request: httpx.Request) -> httpx.Response:
        if request.url.path.startswith("/v1.0/calls/"):
            return httpx.Response(200, json=hung_up("normal"))
        return envelope(403, "PERMISSION_DENIED")

    provider, script = adapter(answer)
    for _ in range(2):
        call = await provider.get_call(CALL_ID)
        assert (call.status, call.billsec, call.cost_micros) == ("completed", 70, None)
    assert [r.url.path for r in script.requests].count("/v1.0/billings") == 1
    flaky, _ = adapter(lambda r: answer(r) if "calls" in r.url.path else envelope(503, "X"))
    assert (await flaky.get_call(CALL_ID)).cost_micros is None


async def test_an_unanswered_final_call_costs_nothing_without_reading_the_ledger() -> None:
    provider, script = ledger_provider([], hung_up("noanswer", progressing=None))
    call = await provider.get_call(CALL_ID)
    assert (call.status, call.billsec, call.cost_micros) == ("no_answer", 0, 0)
    assert len(script.requests) == 1


# -- listing and hang-up --------------------------------------------------------


def listed(call_id: str, to: str, created_ms: int) -> dict[str, Any]:
    from datetime import UTC, datetime

    at = datetime.fromtimestamp(created_ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return call_object(id=call_id, destination={"type": "tel", "target": to}, tm_create=at)


async def test_find_calls_pages_back_through_the_window_and_matches_the_destination() -> None:
    sent_ms = 1_768_469_400_000
    sent = SentCreate("spring:000001:1", CALLER, TO, sent_ms, sent_ms + 2_000)
    pages = [
        [listed("after-window", TO, sent_ms + 3_600_000), listed("other-number", "+1999", sent_ms + 500)],
        [listed("ours", TO, sent_ms + 800), listed("source-replaced", TO, sent_ms + 1_500) | {"source": {"type": "tel", "target": "+1888"}}],
        [listed("before-window", TO, sent_ms - CLOCK_SKEW_MS - 1)],
        [listed("never-read", TO, sent_ms)],
    ]  # fmt: skip

    def answer(request: httpx.Request) -> httpx.Response:
        token = request.url.params.get("page_token")
        number = 0 if token is None else int(token)
        return httpx.Response(
            200, json={"result": pages[number], "next_page_token": str(number + 1)}
        )

    provider, script = adapter(answer, timeout=5.0)
    found = await provider.find_calls(sent)
    assert [c.call_id for c in found] == ["ours", "source-replaced"]
    assert [r.url.params.get("page_token") for r in script.requests] == [None, "1", "2"]
    assert all(r.url.path == "/v1.0/calls" for r in script.requests)
    assert VoIPBIN.capabilities.lookup_settle_seconds == SETTLE_SECONDS


async def test_find_calls_that_cannot_read_the_whole_window_fails_instead_of_saying_none() -> None:
    sent_ms = 1_768_469_400_000
    crowd = [listed(f"c{i}", "+1999", sent_ms + 1_000) for i in range(3)]
    provider, _ = adapter(
        lambda r: httpx.Response(200, json={"result": crowd, "next_page_token": "n"})
    )
    with pytest.raises(ProviderError) as caught:
        await provider.find_calls(SentCreate("a", CALLER, TO, sent_ms, sent_ms))
    assert caught.value.code == "lookup_incomplete"
    provider, _ = adapter(lambda r: httpx.Response(200, json={"oops": []}))
    with pytest.raises(ProviderError):
        await provider.find_calls(SentCreate("a", CALLER, TO, sent_ms, sent_ms))


async def test_a_full_page_of_calls_is_read_past_the_64_kib_answer_limit() -> None:
    """100 real call rows weigh more than 64 KiB: a lookup must still read them
    (it failed once the account had ~90 calls: every ambiguous create in doubt)."""
    sent_ms = 1_768_469_400_000
    more = {"chained_call_ids": [], "recording_ids": [], "tm_ringing": "2026-01-15T09:30:01Z"}
    rows = [listed(f"c{i:03d}", "+1999", sent_ms + 1_000) | more for i in range(99)]
    rows.append(listed("ours", TO, sent_ms + 500) | more)
    page = {"result": rows, "next_page_token": ""}
    size = len(json.dumps(page))
    assert size > MAX_ANSWER_BYTES

    def answer(request: httpx.Request) -> httpx.Response:
        # What the production transport does with a request's limit (_http.py).
        if size > request.extensions[ANSWER_LIMIT]:
            raise AssertionError(f"a {size}-byte page asked with a smaller limit")
        return httpx.Response(200, json=page)

    provider, _ = adapter(answer)
    found = await provider.find_calls(SentCreate("a", CALLER, TO, sent_ms, sent_ms))
    assert [c.call_id for c in found] == ["ours"]


async def test_hang_up_posts_to_the_calls_hangup_endpoint() -> None:
    provider, script = adapter(lambda r: httpx.Response(200, json=hung_up("normal")))
    await provider.hang_up(CALL_ID)
    sent = script.requests[0]
    assert (sent.method, sent.url.path) == ("POST", f"/v1.0/calls/{CALL_ID}/hangup")
    over, _ = adapter(lambda r: envelope(409, "STATE_INVALID"))
    await over.hang_up(CALL_ID)  # already over: nothing to do
    broken, _ = adapter(lambda r: envelope(500, "INTERNAL"))
    with pytest.raises(ProviderError):
        await broken.hang_up(CALL_ID)


# -- the key never leaves in a log or an error -----------------------------------


async def test_the_access_key_is_never_in_a_log_line_or_an_error() -> None:
    register_secret(KEY)
    stream = io.StringIO()
    configure_logging("DEBUG", "json", stream=stream)
    log = get_logger("test")

    def fail(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError(f"cannot connect to {request.url}")

    for answer in (fail, lambda r: envelope(401, "INVALID_CREDENTIALS", f"bad {r.url}")):
        provider, _ = adapter(answer)
        with pytest.raises(ProviderError) as caught:
            await provider.create_call(provider.build_create(request_for()), "k")
        log.error("create_failed", error=str(caught.value), url=str(_.requests[0].url))
        assert KEY not in str(caught.value)
    logging.getLogger("httpx").info("HTTP Request: POST %s", _.requests[0].url)
    assert KEY not in stream.getvalue() and "accesskey" in stream.getvalue()


# -- webhooks -------------------------------------------------------------------


def test_webhook_signature() -> None:
    body = json.dumps({"type": "call_hangup", "data": hung_up("normal")}).encode()
    good = "sha256=" + hmac.new(b"s3cret", body, hashlib.sha256).hexdigest()

    def check(headers: dict[str, str], raw: bytes = body, secret: str = "s3cret") -> str | None:
        return verify_webhook(headers, raw, secret, now=0.0, tolerance_seconds=300)

    assert check({"X-VoIPBIN-Signature": good}) is None
    assert check({"x-voipbin-signature": "SHA256=" + good[7:].upper()}) is None
    assert check({}) == "missing signature"
    assert check({"X-VoIPBIN-Signature": good[7:]}) == "garbled signature"
    assert check({"X-Signature": good}) == "missing signature"
    assert check({"X-VoIPBIN-Signature": good}, body + b" ") == "signature mismatch"
    assert check({"X-VoIPBIN-Signature": good}, secret="other") == "signature mismatch"


def test_call_hangup_event_is_a_final_call() -> None:
    event, call = parse_call_event(
        {"type": "call_hangup", "data": hung_up("busy", progressing=None)}
    )
    assert event == "call_hangup" and call.status == "busy" and call.billsec == 0
    assert event_call_id({"type": "call_hangup", "data": {"id": CALL_ID}}) == CALL_ID
    assert event_name({"type": "call_hangup"}) == "call_hangup"
    assert event_name({"event_type": "account_updated"}) == "account_updated"
    assert event_call_id({"data": {"id": ""}}) is None and event_name([]) is None
    assert VoIPBIN.parse_event(json.dumps({"type": "call_hangup", "data": hung_up("normal")}))[1].billsec == 70  # fmt: skip
    for bad, field in [
        ({"type": "call_progressing", "data": call_object()}, "type"),
        ({"type": "call_hangup", "data": call_object()}, "data.status"),
        ({"type": "call_hangup", "data": {"id": ""}}, "data.id"),
        ({"type": "call_hangup"}, "data"),
        ("{", "not JSON"),
    ]:
        with pytest.raises(EventError, match=field):
            parse_call_event(bad)


# -- the spec's call section ------------------------------------------------------


@pytest.mark.parametrize(
    ("call", "field"),
    [
        ({}, "call.flow_id"),
        ({"record": False}, "call.flow_id"),
        ({"actions": []}, "call.flow_id"),
        ({"flow_id": "not-a-uuid"}, "call.flow_id"),
        ({"flow_id": FLOW, "actions": [{"type": "talk"}]}, "call.actions"),
        ({"actions": [{"type": "tlak"}]}, "call.actions[0].type"),
        ({"actions": [{"type": "talk"}, "hangup"]}, "call.actions[1]"),
        ({"actions": [{"type": "talk", "option": "hi"}]}, "call.actions[0].option"),
        ({"actions": [{"type": "talk", "next_id": "x"}]}, "call.actions[0].next_id"),
        ({"flow_id": FLOW, "record": True}, "call.record"),
        ({"flow_id": FLOW, "agent_id": "a"}, "call.agent_id"),
    ],
)
def test_a_voipbin_call_section_is_checked_naming_the_field(
    call: dict[str, Any], field: str
) -> None:
    with pytest.raises(SpecError) as caught:
        check_call(call)
    assert caught.value.field == field
    with pytest.raises(SpecError):
        check_call_section("voipbin", call)


def test_a_good_call_section_passes_and_other_dialects_are_not_judged_by_voipbin() -> None:
    check_call({"flow_id": FLOW, "record": False})
    check_call({"actions": [{"type": "talk", "option": {"text": "hi"}}, {"type": "hangup"}]})
    check_call_section("minivoice", {})


async def test_a_404_names_the_url_tried_without_the_access_key() -> None:
    """A DISPATCHER_PROVIDER_URL without /v1.0 answers 404 on every path: say which."""
    seen: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return envelope(404, "NOT_FOUND", "page not found")

    provider = VoIPBIN(
        "https://api.voipbin.test",
        SecretStr("k_secret_access"),
        transport=httpx.MockTransport(answer),
    )
    with pytest.raises(ProviderError) as info:
        await provider.get_call("call-1")
    await provider.aclose()
    assert "404 from GET https://api.voipbin.test/calls/call-1" in info.value.message
    assert "DISPATCHER_PROVIDER_URL" in info.value.message
    assert "k_secret_access" not in info.value.message and "accesskey" in str(seen[0].url)
