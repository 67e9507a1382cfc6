"""Fuzz every ``DISPATCHER_*`` setting with hostile values, from the environment and ``.env``.

The contract: a value is either refused at load with one error naming the
setting (``DISPATCHER_<NAME>: why``, exit 2 at the CLI, never quoting the
value: it may be a secret), or it is accepted and then works where it is used:
the queue and redis-py open the Redis URL, httpx and h11 send the provider URL
and the API key, the ingress takes the webhook secret, logging takes the level
and format, and every duration is finite and usable as a Redis expiry.
"""

from __future__ import annotations

import io
import logging
import math
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from unittest import mock

import h11
import httpx
import pytest
import structlog
from hypothesis import given, note, settings
from hypothesis import strategies as st
from pydantic import ValidationError
from redis.asyncio import Redis

from campaigns import logs
from campaigns.logs import configure_logging
from campaigns.operators import cli
from campaigns.operators.ingress import create_ingress_app_from_settings
from campaigns.queue import redis_settings
from campaigns.settings import Settings, redis_location
from tests.fuzz.conftest import FUZZ_PROFILE

FIELDS = sorted(Settings.model_fields)

NASTY = [
    "",
    " ",
    "\t",
    "\n",
    "nan",
    "NaN",
    "inf",
    "-inf",
    "1e999",
    "-1",
    "0",
    "0.0",
    "1e-9",
    "1_000",
    "\u0665",
    "0x10",
    "true",
    "None",
    "null",
    "[]",
    "{}",
    '{"a": 1}',
    "$(id)",
    "%s%s%n",
    "x" * 5000,
    "redis://",
    "redis://:@/",
    "redis://h:0",
    "redis://h/-1",
    "redis://[::1",
    "unix://",
    "http://",
    "http://h:99999",
    "https://u:p@h",
    "sandbox-key\n",
    " sandbox-key",
    "sandbox key",
    "key\x7f",
    "key\u200b",
    "kéy",
    "DEBUG",
    "debug",
    "json",
    "voipbin",
    "redis://127.0.0.1:6379/0",
    "http://127.0.0.1:8089",
]


def env_safe(value: str) -> bool:
    """What an environment variable can hold at all (no NUL, encodable)."""
    try:
        os.fsencode(value)
    except UnicodeEncodeError:
        return False
    return "\x00" not in value


numbers = st.one_of(
    st.integers().map(str),
    st.floats().map(str),
    st.decimals().map(str),
    st.floats(0, 1e6).map(lambda f: f"{f:.3e}"),
)
urls = st.builds(
    lambda scheme, auth, host, port, path: f"{scheme}://{auth}{host}{port}{path}",
    st.sampled_from(["redis", "rediss", "unix", "http", "https", "REDIS", "ftp", ""]),
    st.sampled_from(["", "user:pw@", ":p%40ss@", "@", "u@"]),
    st.sampled_from(["127.0.0.1", "localhost", "[::1]", "", "h o", "ex\u00e4mple.com", "%zz"]),
    st.sampled_from(["", ":6379", ":0", ":65536", ":-1", ":x", ":"]),
    st.sampled_from(["", "/", "/0", "/15", "/x", "/0/1", "?db=2", "?db=x", "?timeout=1", "#f"]),
)
hostile = st.one_of(
    st.sampled_from(NASTY),
    st.text(max_size=30),
    st.text(st.characters(codec="ascii"), max_size=30),
    numbers,
    urls,
).filter(env_safe)


@contextmanager
def environment(values: dict[str, str]) -> Iterator[None]:
    """Only these DISPATCHER_* variables, and the scrubber's secrets as they were."""
    saved_secrets = set(logs._SECRETS)
    with mock.patch.dict(os.environ):
        for key in [k for k in os.environ if k.startswith("DISPATCHER_")]:
            del os.environ[key]
        os.environ.update(values)
        try:
            yield
        finally:
            logs._SECRETS.clear()
            logs._SECRETS.update(saved_secrets)


@contextmanager
def logging_restored() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    saved = structlog.get_config()
    try:
        yield
    finally:
        structlog.configure(**saved)
        root.handlers[:] = handlers
        root.setLevel(level)


def check_refusal(exc: ValidationError, values: dict[str, str]) -> None:
    """One error first, naming a setting we set, quoting none of the values (pydantic
    quotes as ``input_value=...`` unless told not to)."""
    first = exc.errors(include_input=False)[0]
    name = f"DISPATCHER_{str(first['loc'][0]).upper()}"
    assert name in values, (name, list(values))
    assert "input_value" not in str(exc), "the error quotes a value"
    with pytest.raises(cli._Failed) as failed:
        cli._settings()
    assert failed.value.exit_code == 2
    message = failed.value.message
    assert message.startswith(f"invalid settings: {name}: "), message
    assert "\n" not in message


def check_usable(loaded: Settings) -> None:
    """An accepted value works where the dispatcher uses it."""
    redis_settings(loaded.redis_url)
    Redis.from_url(loaded.redis_url)
    assert "@" not in redis_location(loaded.redis_url)

    key = loaded.provider_api_key.get_secret_value() or "unset-key"  # the CLI requires one
    request = httpx.Request(
        "POST",
        httpx.URL(loaded.provider_url).join("/v1/calls"),
        headers={"Authorization": f"Bearer {key}", "Idempotency-Key": "spring:000001:1"},
        params={"token": key},
    )
    h11.Request(
        method=request.method,
        target=request.url.raw_path,
        headers=request.headers.raw,
    )

    secret = loaded.webhook_secret
    create_ingress_app_from_settings(
        loaded, secret=None if secret is None else secret.get_secret_value()
    )

    with logging_restored():
        configure_logging(loaded.log_level, loaded.log_format, stream=io.StringIO())

    for name, value in loaded.model_dump().items():
        if isinstance(value, float):
            assert math.isfinite(value), name
    assert int(loaded.lease_seconds * 1000) >= 1
    assert loaded.queue_name.strip() == loaded.queue_name != ""


@pytest.fixture(autouse=True)
def no_dotenv(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)


PROFILE = settings.get_profile(FUZZ_PROFILE)


@settings(PROFILE, max_examples=PROFILE.max_examples * 5)  # a few ms each
@given(values=st.dictionaries(st.sampled_from(FIELDS), hostile, min_size=1, max_size=3))
def test_fuzz_environment_settings(values: dict[str, str]) -> None:
    env = {f"DISPATCHER_{name.upper()}": value for name, value in values.items()}
    note(repr(env))
    with environment(env):
        try:
            loaded = Settings()
        except ValidationError as exc:
            check_refusal(exc, env)
            return
        check_usable(loaded)
        assert cli._settings() == loaded


@settings(PROFILE, max_examples=PROFILE.max_examples * 5)
@given(
    lines=st.lists(
        st.tuples(st.sampled_from(FIELDS), hostile).map(
            lambda kv: f"DISPATCHER_{kv[0].upper()}={kv[1]}".encode("utf-8", "surrogateescape")
        )
        | st.binary(max_size=40),
        max_size=4,
    )
)
def test_fuzz_dotenv_file(lines: list[bytes], tmp_path: Path) -> None:
    """Whatever bytes sit in ``.env``: settings load, or one line and exit 2."""
    (tmp_path / ".env").write_bytes(b"\n".join(lines))
    with environment({}):
        try:
            loaded = cli._settings()
        except cli._Failed as failed:
            assert failed.exit_code == 2
            assert failed.message.startswith("invalid settings: ")
            assert "\n" not in failed.message
            return
        check_usable(loaded)
