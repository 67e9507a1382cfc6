"""Error classification: the CONTRACT.md table, case by case."""

from __future__ import annotations

import pytest

from campaigns.domain.errors import ErrorClass, ProviderError, classify

HALT, CONTACT, TRANSIENT = ErrorClass.HALT, ErrorClass.CONTACT, ErrorClass.TRANSIENT

MONEY_CODES = ["insufficient_balance", "insufficient_funds"]
ROUTING_CODES = [
    "rating_failed",
    "rating_not_found",
    "rate_not_found",
    "rate_missing",
    "routing_failed",
    "routing_blocked",
    "route_not_found",
    "route_unavailable",
    "no_route",
    "no_route_available",
]
ANY_STATUS = [None, 400, 402, 403, 404, 409, 422, 429, 500, 502, 503, 504]

CASES = [
    pytest.param(403, "spend_control_exceeded", HALT, id="403-spend_control"),
    pytest.param(429, "spend_control_exceeded", HALT, id="429-spend_control"),
    pytest.param(503, "spend_control_exceeded", HALT, id="503-spend_control"),
    pytest.param(402, "payment_required", HALT, id="402-payment_required"),
    pytest.param(402, None, HALT, id="402-no-code"),
    pytest.param(402, "", HALT, id="402-empty-code"),
    pytest.param(402, "http_402", HALT, id="402-http_402"),
    pytest.param(402, "whatever", HALT, id="402-whatever"),
    *[
        pytest.param(status, code, HALT, id=f"{status}-{code}")
        for code in MONEY_CODES
        for status in ANY_STATUS
    ],
    *[
        pytest.param(status, code, HALT, id=f"{status}-{code}")
        for code in ROUTING_CODES
        for status in (None, 400, 404, 422, 500, 502, 503, 504)
    ],
    # auth
    pytest.param(401, "unauthorized", HALT, id="401-unauthorized"),
    pytest.param(401, None, HALT, id="401-no-code"),
    pytest.param(403, "forbidden", HALT, id="403-forbidden"),
    pytest.param(403, "invalid_api_key", HALT, id="403-invalid_api_key"),
    # any other 4xx
    pytest.param(404, "not_found", HALT, id="404-not_found"),
    pytest.param(404, "invalid_destination", HALT, id="404-invalid_destination"),
    pytest.param(409, "conflict", HALT, id="409-conflict"),
    pytest.param(409, "idempotency_key_reused", HALT, id="409-idempotency"),
    pytest.param(400, "bad_request", HALT, id="400-bad_request"),
    pytest.param(400, "something_new", HALT, id="400-unknown-code"),
    pytest.param(400, None, HALT, id="400-no-code"),
    pytest.param(422, "validation_error", HALT, id="422-validation_error"),
    pytest.param(405, "method_not_allowed", HALT, id="405"),
    pytest.param(413, "too_large", HALT, id="413"),
    pytest.param(415, "unsupported_media_type", HALT, id="415"),
    # contact
    *[
        pytest.param(status, code, CONTACT, id=f"{status}-{code}")
        for code in ("invalid_destination", "invalid_number", "blocked_destination")
        for status in (400, 422)
    ],
    pytest.param(422, "INVALID_NUMBER", CONTACT, id="422-INVALID_NUMBER-upper"),
    pytest.param(400, " invalid_destination ", CONTACT, id="400-padded-code"),
    # transient
    pytest.param(429, "too_many_requests", TRANSIENT, id="429-too_many_requests"),
    pytest.param(429, None, TRANSIENT, id="429-no-code"),
    pytest.param(429, "http_429", TRANSIENT, id="429-http_429"),
    pytest.param(500, "internal_error", TRANSIENT, id="500"),
    pytest.param(502, "http_502", TRANSIENT, id="502"),
    pytest.param(503, "provider_error", TRANSIENT, id="503"),
    pytest.param(504, None, TRANSIENT, id="504"),
    pytest.param(500, "invalid_number", TRANSIENT, id="500-invalid_number"),
    pytest.param(None, "timeout", TRANSIENT, id="network-timeout"),
    pytest.param(None, "network_error", TRANSIENT, id="network-connect"),
    pytest.param(None, None, TRANSIENT, id="network-no-code"),
    # unknown -> halt
    pytest.param(418, "teapot", HALT, id="418"),
    pytest.param(418, None, HALT, id="418-no-code"),
    # a redirect (never followed) may follow a placed call, like an unreadable 2xx:
    # transient one at a time, the engine halts a run of them (provider_misbehaving)
    pytest.param(301, None, TRANSIENT, id="301"),
    pytest.param(302, "moved", TRANSIENT, id="302"),
    pytest.param(303, "provider_redirect", TRANSIENT, id="303"),
    pytest.param(307, "provider_redirect", TRANSIENT, id="307"),
    # a 2xx we could not read may hide a call: re-send under the same key
    pytest.param(200, "invalid_response", TRANSIENT, id="200-invalid_response"),
    pytest.param(201, "invalid_response", TRANSIENT, id="201-invalid_response"),
    # Stripe semantics: the key's first request is still in progress
    pytest.param(409, "idempotency_key_in_use", TRANSIENT, id="409-in-use"),
    pytest.param(409, "request_in_progress", TRANSIENT, id="409-in-progress"),
    pytest.param(409, "idempotency_key_reuse", HALT, id="409-reuse"),
    pytest.param(501, "not_implemented", HALT, id="501"),
    pytest.param(505, None, HALT, id="505"),
    pytest.param(599, None, HALT, id="599"),
    # VoIPBIN dialect
    pytest.param(402, "INSUFFICIENT_BALANCE", HALT, id="voipbin-402-INSUFFICIENT_BALANCE"),
    pytest.param(400, "INSUFFICIENT_BALANCE", HALT, id="voipbin-400-INSUFFICIENT_BALANCE"),
    pytest.param(503, "INSUFFICIENT_BALANCE", HALT, id="voipbin-503-INSUFFICIENT_BALANCE"),
    pytest.param(429, "Insufficient_Funds", HALT, id="mixed-case-funds"),
    pytest.param(503, "NO_ROUTE", HALT, id="503-NO_ROUTE"),
]


@pytest.mark.parametrize(("status", "code", "expected"), CASES)
def test_classify(status: int | None, code: str | None, expected: ErrorClass) -> None:
    assert classify(status, code) is expected


@pytest.mark.parametrize("code", ["rate_limited", "rate_limit_exceeded"])
def test_429_rate_limited_is_transient(code: str) -> None:
    assert classify(429, code) is TRANSIENT


def test_provider_error_class_and_text() -> None:
    exc = ProviderError(403, "spend_control_exceeded", "outbound spend limit exceeded")
    assert exc.error_class is HALT
    assert str(exc) == "HTTP 403 spend_control_exceeded: outbound spend limit exceeded"
    assert exc.retry_after is None
    net = ProviderError(None, "timeout", "ReadTimeout: no answer in time")
    assert net.error_class is TRANSIENT
    assert str(net) == "network timeout: ReadTimeout: no answer in time"
    assert ProviderError(429, "too_many_requests", retry_after=2.0).retry_after == 2.0


def test_provider_error_is_raisable() -> None:
    with pytest.raises(ProviderError) as info:
        raise ProviderError(422, "invalid_number", "bad")
    assert info.value.error_class is CONTACT
    assert info.value.status == 422
    assert info.value.code == "invalid_number"


def test_error_class_values() -> None:
    assert [c.value for c in ErrorClass] == ["halt", "contact", "transient"]


@pytest.mark.parametrize(
    ("status", "code", "ambiguous"),
    [
        (None, "connect_failed", False),
        (None, "timeout", True),
        (None, "network_error", True),
        (429, "rate_limited", False),
        (403, "spend_control_exceeded", False),
        (500, "provider_error", True),
        (503, "provider_error", True),
        (201, "invalid_response", True),
        (302, "provider_redirect", True),
        (303, "provider_redirect", True),
    ],
)
def test_ambiguous_answers_may_hide_a_call(status: int | None, code: str, ambiguous: bool) -> None:
    assert ProviderError(status, code).ambiguous is ambiguous
