"""The MiniVoice client against httpx.MockTransport: request shape and answer parsing."""

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
from campaigns.providers.base import CallInfo, CreateRequest, SentCreate, Usage
from campaigns.providers.minivoice import MiniVoice

API_KEY = "sk_test_minivoice_key_42"
BASE = "https://api.minivoice.test"
CALL_201 = {
    "id": "call_123",
    "status": "queued",
    "direction": "outbound",
    "from": "+15551230001",
    "to": "+15551230002",
    "variables": {"campaign_id": "spring"},
}
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


def build_body(mv: MiniVoice) -> str:
    return mv.build_create(
        CreateRequest(
            caller_id="+15551230001",
            to="+15551230002",
            max_duration_seconds=120,
            campaign_id="spring",
            attempt_id="spring:000017:1",
            contact_ref="cust_123",
            variables={},
        )
    )


SENT = SentCreate("spring:000017:1", "+15551230001", "+15551230002", 0, 0)


# --- build_create ---------------------------------------------------------------


async def test_build_create_is_the_contract_body() -> None:
    mv = client(Recorder(httpx.Response(201, json=CALL_201)))
    body = build_body(mv)
    assert body == (
        '{"from":"+15551230001","to":"+15551230002","max_duration_seconds":120,'
        '"variables":{"campaign_id":"spring","attempt_id":"spring:000017:1",'
        '"contact_ref":"cust_123"}}'
    )
    assert json.loads(body)["max_duration_seconds"] == 120
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
    assert req.headers["Idempotency-Key"] == "spring:000017:1"
    assert req.headers["Content-Type"] == "application/json"
    assert req.content == body.encode()


async def test_create_call_passes_body_bytes_unchanged() -> None:
    rec = Recorder(httpx.Response(201, json=CALL_201))
    mv = client(rec)
    # An odd but valid body: key order, spacing and unicode must survive as is.
    body = '{ "to":"+15551230002",  "from":"+15551230001","variables":{"name":"Zoë"}}'
    await mv.create_call(body, "k1")
    await mv.aclose()
    assert rec.requests[0].content == body.encode("utf-8")


async def test_create_call_retry_resends_same_key_and_body() -> None:
    rec = Recorder(
        httpx.Response(503, json={"error": {"code": "unavailable", "message": "try later"}}),
        httpx.Response(201, json=CALL_201),
    )
    mv = client(rec)
    body = build_body(mv)
    with pytest.raises(ProviderError):
        await mv.create_call(body, "spring:000017:1")
    call = await mv.create_call(body, "spring:000017:1")
    await mv.aclose()
    assert call.call_id == "call_123"
    assert [r.headers["Idempotency-Key"] for r in rec.requests] == ["spring:000017:1"] * 2
    assert rec.requests[0].content == rec.requests[1].content == body.encode()


@pytest.mark.parametrize("status", [200, 201])
async def test_create_call_parses_the_call_object(status: int) -> None:
    mv = client(Recorder(httpx.Response(status, json=CALL_201)))
    call = await mv.create_call(build_body(mv), "k")
    await mv.aclose()
    assert call == CallInfo(
        call_id="call_123",
        status="queued",
        direction="outbound",
        to="+15551230002",
        billsec=None,
        cost_micros=None,
        cost_currency=None,
        variables={"campaign_id": "spring"},
    )
    assert call.final is False


@pytest.mark.parametrize(
    "payload",
    [
        pytest.param({"status": "queued"}, id="no-id"),
        pytest.param({"id": 123}, id="int-id"),
        pytest.param([CALL_201], id="list"),
        pytest.param(None, id="null"),
    ],
)
async def test_create_call_without_id_is_invalid_response(payload: object) -> None:
    mv = client(Recorder(httpx.Response(201, json=payload)))
    with pytest.raises(ProviderError) as info:
        await mv.create_call("{}", "k")
    await mv.aclose()
    assert info.value.code == "invalid_response"


async def test_create_call_non_json_success_is_invalid_response() -> None:
    mv = client(Recorder(httpx.Response(201, text="<html>ok</html>")))
    with pytest.raises(ProviderError) as info:
        await mv.create_call("{}", "k")
    await mv.aclose()
    assert (info.value.status, info.value.code) == (201, "invalid_response")
    # The call may exist: re-send under the same key rather than halt and re-dial.
    assert info.value.error_class is ErrorClass.TRANSIENT
    assert info.value.ambiguous


# --- errors -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "code", "message", "klass"),
    [
        (403, "spend_control_exceeded", "outbound spend limit exceeded", ErrorClass.HALT),
        (402, "insufficient_funds", "top up", ErrorClass.HALT),
        (422, "invalid_number", "bad number", ErrorClass.CONTACT),
        (500, "internal_error", "oops", ErrorClass.TRANSIENT),
        (503, "routing_unavailable", "no carrier", ErrorClass.HALT),
    ],
)
async def test_error_body_becomes_provider_error(
    status: int, code: str, message: str, klass: ErrorClass
) -> None:
    body = {"error": {"code": code, "message": message}}
    mv = client(Recorder(httpx.Response(status, json=body)))
    with pytest.raises(ProviderError) as info:
        await mv.create_call(build_body(mv), "k")
    await mv.aclose()
    exc = info.value
    assert (exc.status, exc.code, exc.message) == (status, code, message)
    assert exc.retry_after is None
    assert exc.error_class is klass


@pytest.mark.parametrize(
    ("status", "content", "code", "message"),
    [
        (502, b"<html>Bad gateway</html>", "http_502", "Bad Gateway"),
        (503, b"", "http_503", "Service Unavailable"),
        (500, b"\xff\xfe not utf-8", "http_500", "Internal Server Error"),
        (404, b"[1, 2]", "http_404", "Not Found"),
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


async def test_find_call_by_attempt_id() -> None:
    rows = {
        "data": [
            {"id": "call_1", "status": "completed", "variables": {"attempt_id": "other"}},
            "garbage",
            {"id": "call_2", "status": "ringing", "variables": None},
            {"id": "call_3", "status": "queued", "variables": {"attempt_id": "spring:000017:1"}},
        ]
    }
    rec = Recorder(httpx.Response(200, json=rows))
    mv = client(rec)
    calls = await mv.find_calls(SENT)
    await mv.aclose()
    assert [call.call_id for call in calls] == ["call_3"]
    req = rec.requests[0]
    assert req.method == "GET"
    assert req.url.path == "/v1/calls"
    assert req.url.params["attempt_id"] == "spring:000017:1"


@pytest.mark.parametrize(
    "payload",
    [
        {"data": []},
        {"data": [{"id": "c", "variables": {"attempt_id": "x"}}]},
        {},
        [],
        {"data": None},
    ],
)
async def test_find_call_not_found(payload: object) -> None:
    mv = client(Recorder(httpx.Response(200, json=payload)))
    assert await mv.find_calls(SENT) == []
    await mv.aclose()


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
