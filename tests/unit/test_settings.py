"""Settings: DISPATCHER_* variables, .env files, the API key kept secret."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from campaigns.settings import Settings


def test_reads_prefixed_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DISPATCHER_QUEUE_NAME", "q:env")
    monkeypatch.setenv("DISPATCHER_PROVIDER_DIALECT", "voipbin")
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    assert settings.queue_name == "q:env"
    assert settings.provider_dialect == "voipbin"


def test_reads_a_dotenv_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DISPATCHER_QUEUE_NAME", raising=False)
    monkeypatch.chdir(tmp_path)
    (tmp_path / ".env").write_text(
        "DISPATCHER_QUEUE_NAME=q:dotenv\nDISPATCHER_PROVIDER_API_KEY=sk_live_dotenv_secret\n"
    )
    settings = Settings()
    assert settings.queue_name == "q:dotenv"
    assert settings.provider_api_key.get_secret_value() == "sk_live_dotenv_secret"


def test_the_api_key_never_shows_in_reprs(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DISPATCHER_PROVIDER_API_KEY", "sk_live_never_print_me")
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    for text in (repr(settings), str(settings), settings.model_dump_json()):
        assert "sk_live_never_print_me" not in text


def test_bad_values_name_the_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DISPATCHER_PROVIDER_DIALECT", "carrier-pigeon")
    with pytest.raises(ValidationError, match="provider_dialect"):
        Settings(_env_file=None)  # type: ignore[call-arg]


def load(monkeypatch: pytest.MonkeyPatch, **env: str) -> Settings:
    for name, value in env.items():
        monkeypatch.setenv(f"DISPATCHER_{name.upper()}", value)
    return Settings(_env_file=None)  # type: ignore[call-arg]


def refused(monkeypatch: pytest.MonkeyPatch, name: str, value: str) -> str:
    """The first error's message; it must be about ``name``."""
    with pytest.raises(ValidationError) as raised:
        load(monkeypatch, **{name: value})
    first = raised.value.errors()[0]
    assert first["loc"] == (name,), raised.value
    return str(first["msg"])


@pytest.mark.parametrize("value", ["", " ", "\t\n"], ids=["empty", "space", "blank"])
def test_an_empty_webhook_secret_is_refused_never_unsigned(
    value: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue #12, defect 2: ``DISPATCHER_WEBHOOK_SECRET=`` used to mean "no checks"."""
    message = refused(monkeypatch, "webhook_secret", value)
    assert "must not be empty" in message


def test_webhook_secret_unset_or_set(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DISPATCHER_WEBHOOK_SECRET", raising=False)
    assert load(monkeypatch).webhook_secret is None
    secret = load(monkeypatch, webhook_secret="whsec_abc").webhook_secret
    assert secret is not None and secret.get_secret_value() == "whsec_abc"
    refused(monkeypatch, "webhook_secret", "whsec_abc\n")


@pytest.mark.parametrize(
    "url",
    [
        "redis://127.0.0.1:6379/0",
        "redis://localhost",
        "rediss://user:p%40ss@redis.internal:6380/3",
        "redis://[::1]:6379/2",
        "redis://127.0.0.1:6379?db=4",
        "unix:///run/redis.sock",
        "unix:///run/redis.sock?db=1",
    ],
)
def test_redis_urls_that_the_queue_can_open(url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from campaigns.queue import redis_settings

    assert load(monkeypatch, redis_url=url).redis_url == url
    redis_settings(url)  # what the worker and the CLI build from it


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("http://127.0.0.1:6379/0", "scheme"),
        ("127.0.0.1:6379", "scheme"),
        ("", "URL"),
        ("redis://127.0.0.1:99999/0", "port"),
        ("redis://127.0.0.1:0/0", "port"),
        ("redis://127.0.0.1:abc/0", "port"),
        ("redis://[::1/0", "valid URL"),
        ("redis://127.0.0.1:6379/", "database"),
        ("redis://127.0.0.1:6379/x", "database"),
        ("redis://127.0.0.1:6379/0/1", "database"),
        ("redis://127.0.0.1:6379/٣", "database"),
        ("redis://127.0.0.1:6379/0?socket_timeout=x", "query"),
        ("redis://127.0.0.1:6379/0\n", "whitespace"),
        ("unix://", "socket path"),
    ],
)
def test_redis_urls_that_would_crash_later_are_refused(
    url: str, why: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert why in refused(monkeypatch, "redis_url", url)


@pytest.mark.parametrize(
    "url",
    ["ftp://x", "http://", "http://user:pw@host", "http://h:70000", "http://h o"],
)
def test_bad_provider_urls_are_refused(url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    message = refused(monkeypatch, "provider_url", url)
    assert "pw" not in message


def test_log_level_is_normalised_or_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    assert load(monkeypatch, log_level="debug").log_level == "DEBUG"
    assert "must be one of" in refused(monkeypatch, "log_level", "NOPE")


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("lease_seconds", "nan"),
        ("lease_seconds", "inf"),
        ("lease_seconds", "0.0001"),
        ("provider_timeout_seconds", "-1"),
        ("provider_timeout_seconds", "1e999"),
        ("poll_interval_seconds", "NaN"),
        ("retry_attempts", "1e9"),
        ("retry_attempts", "-1"),
        ("job_timeout_seconds", "99999999999"),
        ("sweep_interval_seconds", "\u0665"),  # ARABIC-INDIC DIGIT FIVE
        ("queue_name", ""),
        ("queue_name", "dispatcher queue"),
        ("provider_dialect", "MiniVoice "),
        ("log_format", "xml"),
        ("provider_honours_idempotency", "perhaps"),
    ],
)
def test_out_of_range_numbers_and_odd_values_name_the_setting(
    name: str, value: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    refused(monkeypatch, name, value)


def test_errors_never_quote_the_input(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DISPATCHER_PROVIDER_API_KEY", "sk_live_do_not_print\n")
    monkeypatch.setenv("DISPATCHER_LEASE_SECONDS", "sk_live_also_not")
    with pytest.raises(ValidationError) as raised:
        Settings(_env_file=None)  # type: ignore[call-arg]
    assert "sk_live" not in str(raised.value)
    assert "sk_live" not in repr(raised.value.errors(include_input=False))


def test_the_frequency_cap_window_defaults_to_a_day_and_is_refused_alone() -> None:
    capped = Settings(max_calls_per_number=2, _env_file=None)  # type: ignore[call-arg]
    assert capped.frequency_cap == (2, 86_400_000)
    assert Settings(_env_file=None).frequency_cap is None  # type: ignore[call-arg]
    with pytest.raises(ValidationError, match="frequency_window_seconds"):
        Settings(frequency_window_seconds=60, _env_file=None)  # type: ignore[call-arg]


@pytest.mark.parametrize(
    ("name", "value", "why"),
    [
        ("callback_url", "ftp://hooks.example/cb", "http:// or https://"),
        ("callback_url", "/cb", "http:// or https://"),
        ("callback_secret", "", "must not be empty"),
        ("callback_secret", "cb secret", "the callback secret"),
        ("callback_max_attempts", "0", "greater than or equal to 1"),
        ("callback_retry_seconds", "inf", ""),
    ],
)
def test_bad_callback_settings_are_refused_by_name(
    name: str, value: str, why: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert why in refused(monkeypatch, name, value)


def test_the_callback_secret_is_a_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = load(monkeypatch, callback_secret="cbsec_never_print_me")
    assert "cbsec_never_print_me" in settings.secret_values()
    assert "cbsec_never_print_me" not in repr(settings)
