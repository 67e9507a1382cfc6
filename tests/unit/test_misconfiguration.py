"""A provider we are configured wrongly for halts with our own code (issue #13, point 1).

A 401 (or a 403 that is not about money or routing) is ``provider_auth_failed``;
a request the HTTP client refuses to send (``Authorization: Bearer `` with an
empty key) is ``request_unsendable``. Both halt, neither is ambiguous, neither
loops as a transient provider outage. Unknown ``DISPATCHER_*`` names are found
with a suggestion.
"""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from campaigns.domain.errors import ErrorClass, ProviderError, classify, provider_error
from campaigns.domain.lifecycle import HaltCode
from campaigns.providers._http import error_from_response, network_error
from campaigns.settings import setting_names, unknown_settings


@pytest.mark.parametrize(
    ("status", "code"),
    [(401, "unauthorized"), (401, "http_401"), (403, "forbidden"), (403, "invalid_api_key")],
)
def test_an_auth_failure_gets_our_code_and_keeps_the_providers_words(
    status: int, code: str
) -> None:
    response = httpx.Response(status, json={"error": {"code": code, "message": "bad key"}})
    error = error_from_response(response)
    assert error.code == HaltCode.PROVIDER_AUTH_FAILED
    assert error.error_class is ErrorClass.HALT
    assert not error.ambiguous
    assert f"HTTP {status} {code}: bad key" in error.message
    assert "DISPATCHER_PROVIDER_API_KEY" in error.message


@pytest.mark.parametrize("code", ["spend_control_exceeded", "no_route", "rating_missing"])
def test_a_403_about_money_or_routing_keeps_the_providers_code(code: str) -> None:
    error = provider_error(403, code, "refused")
    assert (error.code, error.message) == (code, "refused")
    assert error.error_class is ErrorClass.HALT


@pytest.mark.parametrize(
    "exc",
    [
        httpx.LocalProtocolError("Illegal header value b'Bearer '"),
        httpx.UnsupportedProtocol("Request URL has an unsupported protocol 'ftp://'"),
    ],
)
def test_a_request_the_client_cannot_send_halts_and_was_never_sent(exc: httpx.HTTPError) -> None:
    error = network_error(exc)
    assert error.code == HaltCode.REQUEST_UNSENDABLE
    assert error.error_class is ErrorClass.HALT
    assert not error.ambiguous  # nothing left the process: no call can exist
    assert "DISPATCHER_PROVIDER_API_KEY" in error.message


def test_our_configuration_codes_halt_with_any_status() -> None:
    for code in (HaltCode.PROVIDER_AUTH_FAILED, HaltCode.REQUEST_UNSENDABLE):
        for status in (None, 401, 403, 429, 500, 503):
            assert classify(status, code) is ErrorClass.HALT


def test_a_network_failure_is_still_transient() -> None:
    assert network_error(httpx.ReadTimeout("slow")).error_class is ErrorClass.TRANSIENT
    assert ProviderError(None, "network_error").error_class is ErrorClass.TRANSIENT


def test_unknown_settings_are_named_with_a_suggestion(tmp_path: Path) -> None:
    env_file = tmp_path / ".env"
    env_file.write_text("export DISPATCHER_PROVIDER_APIKEY=x\nDISPATCHER_LOG_LEVEL=INFO\n")
    environ = {
        "DISPATCHER_REDIS_URI": "redis://x",
        "DISPATCHER_QUEUE_NAME": "q",
        "dispatcher_log_format": "json",
        "DISPATCHER_SOMETHING_ELSE": "1",
        "HOME": "/root",
    }
    assert unknown_settings(environ, env_file) == [
        "DISPATCHER_REDIS_URI (did you mean DISPATCHER_REDIS_URL?)",
        "DISPATCHER_SOMETHING_ELSE",
        "DISPATCHER_PROVIDER_APIKEY (did you mean DISPATCHER_PROVIDER_API_KEY?)",
    ]
    assert unknown_settings({name: "" for name in setting_names()}, None) == []
