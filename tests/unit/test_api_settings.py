"""DISPATCHER_API_TOKENS and DISPATCHER_METRICS_PORT: refused naming the setting, never
quoting a token; accepted tokens are registered with the log scrubber."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from unittest import mock

import pytest

from campaigns import logs
from campaigns.operators import cli
from campaigns.settings import Settings

TOKEN = "tok-0123456789abcdef"


@pytest.fixture(autouse=True)
def clean_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.chdir(tmp_path)  # no .env
    saved = set(logs._SECRETS)
    with mock.patch.dict(os.environ):
        for key in [k for k in os.environ if k.startswith("DISPATCHER_")]:
            del os.environ[key]
        yield
    logs._SECRETS.clear()
    logs._SECRETS.update(saved)


@pytest.mark.parametrize(
    ("value", "why"),
    [
        ("", "JSON object"),
        ("not json", "JSON object"),
        ("[]", "non-empty JSON object"),
        ("{}", "non-empty JSON object"),
        (json.dumps({TOKEN: "admin"}), "token 1: role must be one of viewer, operator"),
        (json.dumps({TOKEN: "viewer", "short-secret": "operator"}), "token 2: must be at least 16"),
        (json.dumps({TOKEN + " x": "viewer"}), "token 1 must not contain whitespace"),
        (json.dumps({TOKEN + "é": "viewer"}), "token 1 must be ASCII"),
        (json.dumps({TOKEN: 1}), "token 1: role"),
    ],
)
def test_bad_api_tokens_name_the_setting_and_quote_no_token(value: str, why: str) -> None:
    os.environ["DISPATCHER_API_TOKENS"] = value
    with pytest.raises(cli._Failed) as failed:
        cli._settings()
    assert failed.value.exit_code == 2
    message = failed.value.message
    assert message.startswith("invalid settings: DISPATCHER_API_TOKENS: "), message
    assert why in message, message
    assert TOKEN not in message and "short-secret" not in message


@pytest.mark.parametrize("value", ["0", "65536", "-1", "x", "80.5"])
def test_bad_metrics_port_names_the_setting(value: str) -> None:
    os.environ["DISPATCHER_METRICS_PORT"] = value
    with pytest.raises(cli._Failed) as failed:
        cli._settings()
    assert failed.value.message.startswith("invalid settings: DISPATCHER_METRICS_PORT: ")


def test_tokens_are_roles_and_secrets() -> None:
    os.environ["DISPATCHER_API_TOKENS"] = json.dumps({TOKEN: "viewer", TOKEN.upper(): "operator"})
    os.environ["DISPATCHER_METRICS_PORT"] = "9108"
    settings = cli._settings()
    assert settings.api_roles() == {TOKEN: "viewer", TOKEN.upper(): "operator"}
    assert settings.metrics_port == 9108
    assert logs.scrub(f"x {TOKEN} y {TOKEN.upper()}") == "x *** y ***"
    assert TOKEN not in repr(settings) and TOKEN not in str(settings.model_dump())


def test_unset_means_no_api_and_no_metrics() -> None:
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    assert settings.api_roles() == {}
    assert settings.metrics_port is None
