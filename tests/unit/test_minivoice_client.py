"""The MiniVoice client against httpx.MockTransport: request shape and answer parsing,
as MiniVoice's documentation states them (docs/providers.md#minivoice)."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from email.utils import format_datetime

import httpx
import pytest
from pydantic import SecretStr

from campaigns.domain.errors import ErrorClass, ProviderError
from campaigns.providers._http import error_from_response, network_error, parse_retry_after
from campaigns.providers.base import CallInfo, Capabilities, CreateRequest, SentCreate, Usage
from campaigns.providers.minivoice import MiniVoice

API_KEY = "sk_test_minivoice_key_42"
BASE = "https://api.minivoice.test"
CALL_201 = {
    # calls/outbound-calls: the documented create answer.
    "id": "call_20260529T120000.000000000",
    "status": "dialing",
    "direction": "outbound",
    "from": "+15551230001",
    "to": "+15551230002",
    "application_id": "app_123",
    "customer_id": "cust_123",
    "provider_call_id": "uuid",
    "answer_url": "https://example.test/answer",
    "metadata": {"record": True},
    "created_at": "2026-05-29T12:00:00Z",
    "route_mode": "webhook",
    "routing_target": "app_123",
    "dialing_at": "2026-05-29T12:00:01Z",
}
CALL_ID = CALL_201["id"]
CREATED_MS = 1_780_056_000_000  # 2026-05-29T12:00:00Z
SEED_USAGE = {
    "application_id": "app_123",
    "from": "2026-05-01T00:00:00Z",
    "to": "2026-06-01T00:00:00Z",
    "summary": {
        "calls": 42,
        "billsec_seconds": 3600,
        "cost_amount": "12.50",
        "cost_currency": "EUR",
    },
}

Handler = Callable[[httpx.Request], httpx.Response]


class Recorder:
    """A MockTransport handler that records requests and answers from a script."""

    def __init__(self, *responses: httpx.Response | Exception | Handler) -> None:
        self.responses = list(responses)
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        answer = self.responses.pop(0) if len(self.responses) > 1 else self.responses[0]
        if isinstance(answer, Exception):
            raise answer
        if callable(answer) and not isinstance(answer, httpx.Response):
            return answer(request)
        return answer


def client(recorder: Recorder, base_url: str = BASE) -> MiniVoice:
    return MiniVoice(base_url, SecretStr(API_KEY), transport=httpx.MockTransport(recorder))


def build_body(mv: MiniVoice, **call: object) -> str:
    return mv.build_create(
        CreateRequest(
            caller_id="+15551230001",
            to="+15551230002",
            max_duration_seconds=120,
            campaign_id="spring",
            attempt_id="spring:000017:1",
            contact_ref="cust_123",
            variables={"first_name": "Ada"},
            call=call,
        )
    )


SENT = SentCreate("spring:000017:1", "+15551230001", "+15551230002", 0, 0)


# --- build_create ---------------------------------------------------------------


async def test_build_create_is_the_documented_body() -> None:
    """calls/outbound-calls: from, to, metadata; nothing MiniVoice does not document
    (no variables: call variables are set by answer_url actions; no max duration)."""
    mv = client(Recorder(httpx.Response(201, json=CALL_201)))
    body = build_body(mv)
    assert body == (
        '{"from":"+15551230001","to":"+15551230002","metadata":{"campaign_id":"spring",'
        '"attempt_id":"spring:000017:1","contact_ref":"cust_123"}}'
    )
    assert set(json.loads(body)) == {"from", "to", "metadata"}
    await mv.aclose()


@pytest.mark.parametrize(
    ("call", "record"),
    [({"record": True}, True), ({"record": False}, None), ({}, None), ({"record": "yes"}, None)],
)
async def test_build_create_sends_record_only_when_true(
    call: dict[str, object], record: bool | None
) -> None:
    mv = client(Recorder(httpx.Response(201, json=CALL_201)))
    assert json.loads(build_body(mv, **call)).get("record") is record
    await mv.aclose()


# --- create_call ------------------------------------------------------------------


async def test_create_call_request_shape() -> None:
    rec = Recorder(httpx.Response(201, json=CALL_201))
    mv = client(rec, base_url=BASE + "/")
    body = build_body(mv)
    await mv.create_call(body, "spring:000017:1")
    await mv.aclose()
    [req] = rec.requests
    assert req.method == "POST"
    assert str(req.url) == f"{BASE}/v1/calls"
    assert req.headers["Authorization"] == f"Bearer {API_KEY}"
    # Not documented by MiniVoice: sent only as a label, never relied on.
    assert req.headers["Idempotency-Key"] == "spring:000017:1"
    assert req.headers["Content-Type"] == "application/json"
    assert req.content == body.encode()


async def test_create_call_passes_body_bytes_unchanged() -> None:
    rec = Recorder(httpx.Response(201, json=CALL_201))
    mv = client(rec)
    # An odd but valid body: key order, spacing and unicode must survive as is.
    body = '{ "to":"+15551230002",  "from":"+15551230001","metadata":{"name":"Zoë"}}'
    await mv.create_call(body, "k1")
    await mv.aclose()
    assert rec.requests[0].content == body.encode("utf-8")


def test_minivoice_claims_no_keys_no_lookup_no_hangup() -> None:
    """What the documentation offers toward one call per attempt: creation webhooks."""
    assert MiniVoice.capabilities == Capabilities(
        idempotency_keys=False,
        lookup=False,
        creation_events=True,
        hangup=False,
        per_call_cost=False,
    )
    assert MiniVoice.creation_events == frozenset({"call.created"})
    assert MiniVoice.final_events == frozenset({"call.completed", "call.failed", "call.canceled"})


@pytest.mark.parametrize("status", [200, 201, 202])
async def test_create_call_parses_the_documented_answer(status: int) -> None:
    """The success status is not documented: any 2xx with an id is a call."""
    mv = client(Recorder(httpx.Response(status, json=CALL_201)))
    call = await mv.create_call(build_body(mv), "k")
    await mv.aclose()
    assert call == CallInfo(
        call_id=CALL_ID,
        status="queued",
        direction="outbound",
        to="+15551230002",
        caller_id="+15551230001",
        created_at_ms=CREATED_MS,
    )
    assert call.final is False


async def test_create_answer_echoing_our_metadata_gives_the_attempt_id() -> None:
    answer = {**CALL_201, "metadata": {"attempt_id": "spring:000017:1", "campaign_id": "spring"}}
    mv = client(Recorder(httpx.Response(201, json=answer)))
    call = await mv.create_call(build_body(mv), "k")
    await mv.aclose()
    assert call.attempt_id == "spring:000017:1"


@pytest.mark.parametrize(
    "changes",
    [
        pytest.param({"cost_amount": 0.01}, id="float-cost"),
        pytest.param({"cost_amount": "-5.00"}, id="negative-cost"),
        pytest.param({"billsec_seconds": "lots"}, id="string-billsec"),
        pytest.param({"status": 5}, id="int-status"),
        pytest.param({"status": "completed"}, id="final-status"),
        pytest.param({"created_at": "yesterday"}, id="bad-time"),
        pytest.param({"metadata": "x", "from": 7, "to": None, "direction": []}, id="odd-fields"),
        pytest.param({"variables": [1]}, id="list-variables"),
    ],
)
async def test_a_valid_id_is_kept_whatever_else_the_answer_says(changes: dict[str, object]) -> None:
    """Issue 18: a 2xx with a good id and a malformed optional field is a placed call;
    refusing it would leave the call unrecorded and the attempt re-sent."""
    mv = client(Recorder(httpx.Response(201, json={**CALL_201, **changes})))
    call = await mv.create_call(build_body(mv), "k")
    await mv.aclose()
    assert call.call_id == CALL_ID
    assert (call.billsec, call.cost_micros, call.cost_currency) == (None, None, None)


@pytest.mark.parametrize(
    "payload",
    [
        pytest.param({"status": "dialing"}, id="no-id"),
        pytest.param({"id": 123}, id="int-id"),
        pytest.param({"id": ""}, id="empty-id"),
        pytest.param({"id": "x" * 201}, id="huge-id"),
        pytest.param({"id": "call\n1"}, id="unprintable-id"),
        pytest.param([CALL_201], id="list"),
        pytest.param(None, id="null"),
    ],
)
async def test_create_call_without_a_usable_id_is_invalid_response(payload: object) -> None:
    mv = client(Recorder(httpx.Response(201, json=payload)))
    with pytest.raises(ProviderError) as info:
        await mv.create_call("{}", "k")
    await mv.aclose()
    assert (info.value.status, info.value.code) == (201, "invalid_response")
    assert info.value.ambiguous, "a 2xx without a usable id may still be a placed call"


async def test_a_redirect_is_reported_with_its_own_status() -> None:
    """Issue 18: never a made-up 200 for an answer that was a 302."""
    answer = httpx.Response(302, json={"moved": True}, headers={"Location": "https://x.test/"})
    mv = client(Recorder(answer))
    with pytest.raises(ProviderError) as info:
        await mv.create_call("{}", "k")
    await mv.aclose()
    assert (info.value.status, info.value.code) == (302, "provider_redirect")
    assert "DISPATCHER_PROVIDER_URL" in info.value.message


async def test_create_call_non_json_success_is_invalid_response() -> None:
    mv = client(Recorder(httpx.Response(201, text="<html>ok</html>")))
    with pytest.raises(ProviderError) as info:
        await mv.create_call("{}", "k")
    await mv.aclose()
    assert (info.value.status, info.value.code) == (201, "invalid_response")
    # The call may exist: resolve it (creation event, or in doubt); never a blind re-dial.
    assert info.value.error_class is ErrorClass.TRANSIENT
    assert info.value.ambiguous


# --- errors -------------------------------------------------------------------------


HALT, CONTACT, TRANSIENT = ErrorClass.HALT, ErrorClass.CONTACT, ErrorClass.TRANSIENT

# calls/outbound-calls, "Errors": every documented status and code, what the
# dispatcher does with it, whether the call may exist, and the account hold.
DOCUMENTED_ERRORS = [
    # status, code, class, ambiguous (the call may exist), hold seconds, code kept
    (400, "invalid_json", HALT, False, None, "invalid_json"),
    (400, "invalid_request", HALT, False, None, "invalid_request"),
    (400, "rate_not_found", HALT, False, None, "rate_not_found"),  # rating halt
    (400, "no_active_trunk", HALT, False, None, "no_active_trunk"),  # routing halt
    (401, "unauthorized", HALT, False, None, "provider_auth_failed"),
    (402, "insufficient_balance", HALT, False, None, "insufficient_balance"),
    (403, "spend_control_exceeded", HALT, False, None, "spend_control_exceeded"),
    (403, "spend_limit_exceeded", HALT, False, None, "spend_limit_exceeded"),
    (429, "cps_limit_reached", TRANSIENT, False, 1.0, "cps_limit_reached"),
    (429, "concurrent_call_limit_reached", TRANSIENT, False, 5.0, "concurrent_call_limit_reached"),
    (500, "reservation_failed", TRANSIENT, True, None, "reservation_failed"),
    (500, "internal_error", TRANSIENT, True, None, "internal_error"),
    (502, "originate_failed", CONTACT, False, None, "originate_failed"),
]


@pytest.mark.parametrize(
    ("status", "code", "klass", "ambiguous", "hold", "kept"),
    [pytest.param(*row, id=f"{row[0]}-{row[1]}") for row in DOCUMENTED_ERRORS],
)
async def test_documented_error_table(
    status: int,
    code: str,
    klass: ErrorClass,
    ambiguous: bool,
    hold: float | None,
    kept: str,
) -> None:
    """The documented envelope ``{"error": {"code", "message"}}``, each code classified."""
    body = {"error": {"code": code, "message": "as MiniVoice words it"}}
    mv = client(Recorder(httpx.Response(status, json=body)))
    with pytest.raises(ProviderError) as info:
        await mv.create_call(build_body(mv), "k")
    await mv.aclose()
    exc = info.value
    assert (exc.status, exc.code, exc.error_class) == (status, kept, klass)
    assert exc.ambiguous is ambiguous
    assert exc.retry_after == hold
    assert "as MiniVoice words it" in exc.message


async def test_a_limit_429_keeps_a_retry_after_the_provider_does_send() -> None:
    body = {"error": {"code": "cps_limit_reached", "message": "slow down"}}
    mv = client(Recorder(httpx.Response(429, json=body, headers={"Retry-After": "3"})))
    with pytest.raises(ProviderError) as info:
        await mv.create_call("{}", "k")
    await mv.aclose()
    assert info.value.retry_after == 3.0


@pytest.mark.parametrize(
    ("status", "content", "code", "message"),
    [
        (502, b"<html>Bad gateway</html>", "http_502", "Bad Gateway"),
        (503, b"", "http_503", "Service Unavailable"),
        (500, b"\xff\xfe not utf-8", "http_500", "Internal Server Error"),
        (
            404,
            b"[1, 2]",
            "http_404",
            "Not Found (404 from POST https://api.minivoice.test/v1/calls: check "
            "DISPATCHER_PROVIDER_URL)",
        ),
        (400, b'{"error": "bad_request"}', "bad_request", "Bad Request"),
        (409, b'{"error": {"message": "dup"}}', "http_409", "dup"),
        (418, b'{"detail": "teapot"}', "http_418", "I'm a teapot"),
    ],
)
async def test_odd_error_bodies(status: int, content: bytes, code: str, message: str) -> None:
    mv = client(Recorder(httpx.Response(status, content=content)))
    with pytest.raises(ProviderError) as info:
        await mv.create_call("{}", "k")
    await mv.aclose()
    assert (info.value.status, info.value.code, info.value.message) == (status, code, message)


async def test_non_json_502_is_transient() -> None:
    mv = client(Recorder(httpx.Response(502, text="<html>Bad gateway</html>")))
    with pytest.raises(ProviderError) as info:
        await mv.create_call("{}", "k")
    await mv.aclose()
    assert info.value.error_class is ErrorClass.TRANSIENT


async def test_retry_after_seconds() -> None:
    body = {"error": {"code": "too_many_requests", "message": "slow down"}}
    mv = client(Recorder(httpx.Response(429, json=body, headers={"Retry-After": "7"})))
    with pytest.raises(ProviderError) as info:
        await mv.create_call("{}", "k")
    await mv.aclose()
    assert info.value.retry_after == 7.0
    assert info.value.status == 429
    assert info.value.error_class is ErrorClass.TRANSIENT


async def test_retry_after_http_date() -> None:
    when = format_datetime(datetime.now(UTC) + timedelta(seconds=30), usegmt=True)
    mv = client(Recorder(httpx.Response(503, content=b"", headers={"Retry-After": when})))
    with pytest.raises(ProviderError) as info:
        await mv.create_call("{}", "k")
    await mv.aclose()
    assert info.value.retry_after is not None
    assert 27.0 <= info.value.retry_after <= 30.0


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("7", 7.0),
        ("1.5", 1.5),
        ("0", 0.0),
        ("-3", 0.0),
        ("", None),
        (None, None),
        ("soon", None),
        ("Wed, 21 Oct 2015 07:28:00 GMT", 0.0),  # a date in the past: no wait
    ],
)
def test_parse_retry_after(value: str | None, expected: float | None) -> None:
    assert parse_retry_after(value) == expected


def test_parse_retry_after_future_date_in_other_zone() -> None:
    when = (datetime.now(UTC) + timedelta(seconds=60)).astimezone(timezone(timedelta(hours=2)))
    seconds = parse_retry_after(format_datetime(when))
    assert seconds is not None
    assert 57.0 <= seconds <= 60.0


async def test_retry_after_naive_date_does_not_crash() -> None:
    headers = {"Retry-After": "Wed, 21 Oct 2015 07:28:00 -0000"}
    mv = client(Recorder(httpx.Response(503, content=b"", headers=headers)))
    with pytest.raises(ProviderError) as info:
        await mv.create_call("{}", "k")
    await mv.aclose()
    assert info.value.status == 503


# --- network failures -------------------------------------------------------------


@pytest.mark.parametrize(
    "exc",
    [
        httpx.ReadTimeout("read timed out"),
        httpx.WriteTimeout("write timed out"),
        httpx.PoolTimeout("pool timed out"),
    ],
)
async def test_timeouts_are_transient_network_errors(exc: Exception) -> None:
    mv = client(Recorder(exc))
    with pytest.raises(ProviderError) as info:
        await mv.create_call("{}", "k")
    await mv.aclose()
    assert info.value.status is None
    assert info.value.code == "timeout"
    assert type(exc).__name__ in info.value.message
    assert info.value.error_class is ErrorClass.TRANSIENT
    assert info.value.ambiguous, "the request may have reached the provider"


@pytest.mark.parametrize(
    "exc",
    [
        httpx.RemoteProtocolError("server disconnected"),
        httpx.ReadError("reset"),
    ],
)
async def test_connection_resets_are_transient_and_ambiguous(exc: Exception) -> None:
    mv = client(Recorder(exc))
    with pytest.raises(ProviderError) as info:
        await mv.get_call("call_1")
    await mv.aclose()
    assert info.value.status is None
    assert info.value.code == "network_error"
    assert info.value.error_class is ErrorClass.TRANSIENT
    assert info.value.ambiguous


@pytest.mark.parametrize(
    "exc", [httpx.ConnectError("connection refused"), httpx.ConnectTimeout("connect timed out")]
)
async def test_failed_connections_are_transient_and_not_ambiguous(exc: Exception) -> None:
    mv = client(Recorder(exc))
    with pytest.raises(ProviderError) as info:
        await mv.create_call("{}", "k")
    await mv.aclose()
    assert info.value.code == "connect_failed"
    assert info.value.error_class is ErrorClass.TRANSIENT
    assert not info.value.ambiguous, "no connection: the request never arrived"


def test_network_error_helper() -> None:
    assert network_error(httpx.ReadTimeout("x")) == ProviderError(
        None, "timeout", "ReadTimeout: no answer in time"
    )
    assert network_error(httpx.ConnectError("refused")) == ProviderError(
        None, "connect_failed", "ConnectError: refused"
    )


def test_error_from_response_helper() -> None:
    response = httpx.Response(
        429,
        json={"error": {"code": "too_many_requests", "message": "slow"}},
        headers={"Retry-After": "2"},
    )
    assert error_from_response(response) == ProviderError(429, "too_many_requests", "slow", 2.0)


# --- get_call, find_call, usage --------------------------------------------------------


async def test_get_call_settled_cost() -> None:
    payload = {
        **CALL_201,
        "status": "completed",
        "billsec_seconds": 150,
        "cost_amount": "0.03",
        "cost_currency": "EUR",
    }
    rec = Recorder(httpx.Response(200, json=payload))
    mv = client(rec)
    call = await mv.get_call("call_123")
    await mv.aclose()
    assert rec.requests[0].method == "GET"
    assert rec.requests[0].url.path == "/v1/calls/call_123"
    assert rec.requests[0].headers["Authorization"] == f"Bearer {API_KEY}"
    assert call.cost_micros == 30_000
    assert call.cost_currency == "EUR"
    assert call.billsec == 150
    assert call.status == "completed"
    assert call.final is True


@pytest.mark.parametrize(
    ("amount", "micros"), [("0.03", 30_000), ("12.50", 12_500_000), ("0.0000001", 1), ("0", 0)]
)
async def test_get_call_cost_amounts(amount: str, micros: int) -> None:
    payload = {**CALL_201, "status": "completed", "billsec_seconds": 1, "cost_amount": amount}
    mv = client(Recorder(httpx.Response(200, json=payload)))
    call = await mv.get_call("call_123")
    await mv.aclose()
    assert call.cost_micros == micros


async def test_get_call_not_final_without_cost_is_normal() -> None:
    payload = {**CALL_201, "status": "in_progress", "billsec_seconds": True}
    mv = client(Recorder(httpx.Response(200, json=payload)))
    call = await mv.get_call("call_123")
    await mv.aclose()
    assert (call.status, call.final, call.billsec, call.cost_micros) == (
        "in_progress",
        False,
        None,
        None,
    )


@pytest.mark.parametrize("amount", [0.03, "abc", "NaN"])
async def test_get_call_bad_cost_is_invalid_response(amount: object) -> None:
    payload = {**CALL_201, "status": "completed", "cost_amount": amount}
    mv = client(Recorder(httpx.Response(200, json=payload)))
    with pytest.raises(ProviderError) as info:
        await mv.get_call("call_123")
    await mv.aclose()
    assert info.value.code == "invalid_response"
    assert "cost_amount" in info.value.message


async def test_no_lookup_and_no_hang_up_are_documented() -> None:
    rec = Recorder(httpx.Response(200, json={"data": []}))
    mv = client(rec)
    with pytest.raises(NotImplementedError, match="listing"):
        await mv.find_calls(SENT)
    with pytest.raises(NotImplementedError, match="hang-up"):
        await mv.hang_up(CALL_ID)
    await mv.aclose()
    assert rec.requests == [], "nothing undocumented is ever requested"


async def test_usage_seed_000_shape() -> None:
    rec = Recorder(httpx.Response(200, json=SEED_USAGE))
    mv = client(rec)
    start = datetime(2026, 5, 1, 2, 0, tzinfo=timezone(timedelta(hours=2)))
    end = datetime(2026, 6, 1, tzinfo=UTC)
    usage = await mv.usage(start, end)
    await mv.aclose()
    assert usage == Usage(
        start="2026-05-01T00:00:00Z",
        end="2026-06-01T00:00:00Z",
        calls=42,
        billsec=3600,
        cost_micros=12_500_000,
        currency="EUR",
    )
    req = rec.requests[0]
    assert req.url.path == "/v1/usage"
    assert req.url.params["from"] == "2026-05-01T00:00:00Z"
    assert req.url.params["to"] == "2026-06-01T00:00:00Z"
    assert req.headers["Authorization"] == f"Bearer {API_KEY}"


@pytest.mark.parametrize(
    "payload",
    [
        pytest.param({"from": "a", "to": "b"}, id="no-summary"),
        pytest.param({**SEED_USAGE, "summary": {"calls": 1}}, id="partial-summary"),
        pytest.param(
            {**SEED_USAGE, "summary": {**SEED_USAGE["summary"], "cost_amount": 12.5}},
            id="float-cost",
        ),
        pytest.param([], id="list"),
    ],
)
async def test_usage_malformed_is_invalid_response(payload: object) -> None:
    mv = client(Recorder(httpx.Response(200, json=payload)))
    with pytest.raises(ProviderError) as info:
        await mv.usage(datetime(2026, 5, 1, tzinfo=UTC), datetime(2026, 6, 1, tzinfo=UTC))
    await mv.aclose()
    assert info.value.code == "invalid_response"


async def test_balance_is_none_for_minivoice() -> None:
    mv = client(Recorder(httpx.Response(500)))
    assert await mv.balance() is None
    assert mv.dialect == "minivoice"
    assert mv.capabilities.lookup is False, "GET /v1/calls?attempt_id= is not documented"
    assert mv.capabilities.idempotency_keys is False
    assert mv.capabilities.creation_events is True
    await mv.aclose()


@pytest.mark.parametrize(
    ("given", "mapped", "final"),
    [
        ("dialing", "queued", False),
        ("in_progress", "in_progress", False),
        ("completed", "completed", True),
        ("failed", "failed", True),
        ("canceled", "canceled", True),
        ("cancelled", "canceled", True),
        ("busy", "busy", True),
        ("no_answer", "no_answer", True),
        ("ringing", "ringing", False),
        ("answered", "in_progress", False),
        ("wrapping_up", "wrapping_up", False),
        (None, "", False),
    ],
)
async def test_call_object_statuses_are_mapped_conservatively(
    given: str | None, mapped: str, final: bool
) -> None:
    """The call object's schema is not documented: known words are mapped, an unknown
    one is kept and never final (the call is read again, never settled on a guess)."""
    mv = client(Recorder(httpx.Response(200, json={**CALL_201, "status": given})))
    call = await mv.get_call(CALL_ID)
    await mv.aclose()
    assert (call.status, call.final) == (mapped, final)


async def test_get_call_without_an_id_names_the_real_status() -> None:
    mv = client(Recorder(httpx.Response(203, json={"status": "completed"})))
    with pytest.raises(ProviderError) as info:
        await mv.get_call(CALL_ID)
    await mv.aclose()
    assert (info.value.status, info.value.code) == (203, "invalid_response")
