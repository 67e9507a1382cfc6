"""Secrets in every form (issue #12, defect 4): refused when malformed, masked when written.

The API key ``$'sandbox-key\\n'`` used to reach an HTTP header, where h11 refused
it with ``Illegal header value b'Bearer sandbox-key\\n'``: the escaped form
slipped past a scrubber that only knew the raw value, into worker logs, Redis
and ``campaigns status``. Now settings refuse such a key, and the scrubber
masks a secret raw, as ``repr``, as bytes repr, JSON-escaped, URL-encoded and
escaped twice.
"""

from __future__ import annotations

import io
import json
import logging
import re
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote, quote_plus

import h11
import httpx
import pytest
import structlog
from pydantic import ValidationError

from campaigns import logs
from campaigns.logs import configure_logging, get_logger, register_secret, scrub
from campaigns.settings import Settings

KEY = "sandbox-key\n"
CORE = "sandbox-key"
ODD = "sk_live/9+Qz=\"q'ü"  # every escaper writes this one differently


@pytest.fixture(autouse=True)
def secrets() -> Iterator[None]:
    """Start without registered secrets; restore the process's afterwards."""
    saved = set(logs._SECRETS)
    logs._SECRETS.clear()
    try:
        yield
    finally:
        logs._SECRETS.clear()
        logs._SECRETS.update(saved)


@pytest.fixture
def stream() -> Iterator[io.StringIO]:
    root = logging.getLogger()
    saved_handlers, saved_level = root.handlers[:], root.level
    saved_structlog = structlog.get_config()
    out = io.StringIO()
    configure_logging("DEBUG", fmt="json", stream=out)
    try:
        yield out
    finally:
        structlog.configure(**saved_structlog)
        root.handlers[:] = saved_handlers
        root.setLevel(saved_level)


def h11_refusal(value: bytes) -> h11.LocalProtocolError:
    """The exception httpx's transport raised for the padded key, made the same way."""
    try:
        h11.Request(method="POST", target="/v1/calls", headers=[("Host", "x"), ("A", value)])
    except h11.LocalProtocolError as exc:
        return exc
    raise AssertionError("h11 accepted an illegal header value")


# --- settings refuse the key --------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    [KEY, " sandbox-key", "sandbox key", "sandbox-key\r", "sandbox\tkey", "key\x00x", "kéy-abcdef"],
    ids=["trailing-newline", "leading-space", "inner-space", "cr", "tab", "nul", "non-ascii"],
)
def test_settings_refuse_an_api_key_with_whitespace_or_controls(
    value: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DISPATCHER_PROVIDER_API_KEY", value.replace("\x00", "\x01"))
    with pytest.raises(ValidationError) as raised:
        Settings(_env_file=None)  # type: ignore[call-arg]
    [error] = raised.value.errors()
    assert error["loc"] == ("provider_api_key",)
    text = str(raised.value)
    assert CORE not in text and "kéy" not in text, "the error quotes the key"


def test_a_clean_api_key_is_kept_exactly(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DISPATCHER_PROVIDER_API_KEY", "sk_live_7f3a-9c2e.5b1d~4f6a+/=")
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    assert settings.provider_api_key.get_secret_value() == "sk_live_7f3a-9c2e.5b1d~4f6a+/="


def test_settings_list_every_secret_for_the_scrubber() -> None:
    settings = Settings(
        provider_api_key="sk_live_abcdef",  # type: ignore[arg-type]
        webhook_secret="whsec_abcdef",  # type: ignore[arg-type]
        redis_url="redis://user:p%40ss-word@127.0.0.1:6379/0",
        _env_file=None,  # type: ignore[call-arg]
    )
    assert set(settings.secret_values()) == {
        "sk_live_abcdef",
        "whsec_abcdef",
        "p%40ss-word",
        "p@ss-word",
    }


# --- the scrubber masks every form ----------------------------------------------------


def _forms(secret: str) -> dict[str, str]:
    once = {
        "raw": secret,
        "repr": repr(secret),
        "bytes-repr": repr(secret.encode()),
        "json": json.dumps(secret),
        "json-unicode": json.dumps(secret, ensure_ascii=False),
        "url": quote(secret, safe=""),
        "url-lower-hex": re.sub(r"%[0-9A-F]{2}", lambda m: m.group().lower(), quote(secret)),
        "url-plus": quote_plus(secret),
        "httpx-query": str(httpx.URL("https://x/v1.0/calls", params={"token": secret})),
    }
    twice = {f"json-of-{name}": json.dumps(text) for name, text in once.items()}
    twice |= {f"repr-of-{name}": repr(text) for name, text in once.items()}
    return once | twice


@pytest.mark.parametrize("secret", [KEY, ODD], ids=["padded", "odd-characters"])
def test_every_form_of_a_secret_is_masked(secret: str) -> None:
    register_secret(secret)
    core = secret.strip()
    for name, form in _forms(secret).items():
        masked = scrub(f"before {form} after")
        assert masked.startswith("before ") and masked.endswith(" after"), name
        assert "***" in masked, name
        for leak in (core, core[:-2], quote(core, safe="")):
            assert leak not in masked, f"{name}: {masked!r}"


def test_the_h11_refusal_of_a_padded_key_is_masked_in_every_rendering() -> None:
    register_secret(KEY)
    exc = h11_refusal(f"Bearer {KEY}".encode())
    for text in (str(exc), repr(exc), json.dumps(str(exc)), json.dumps(repr(exc))):
        assert CORE in text  # the leak the issue reported
        assert CORE not in scrub(text), text


def test_the_h11_refusal_is_masked_in_a_worker_style_log_line(stream: io.StringIO) -> None:
    register_secret(KEY)
    log = get_logger("campaigns.engine.dispatch", campaign_id="spring")
    exc = h11_refusal(f"Bearer {KEY}".encode())
    message = f"LocalProtocolError: {exc}"
    log.warning("campaign_halted", code="network_error", message=message, error=repr(exc))
    try:
        raise httpx.LocalProtocolError(str(exc))
    except httpx.LocalProtocolError:
        log.exception("create_failed")
    logging.getLogger("arq.worker").error("job failed: %r", exc)
    text = stream.getvalue()
    assert len(text.splitlines()) == 3
    assert CORE not in text
    halted = json.loads(text.splitlines()[0])
    assert halted["message"] == "LocalProtocolError: Illegal header value b'Bearer ***'"


def test_the_secret_is_masked_in_the_console_renderer_too() -> None:
    register_secret(KEY)
    out = io.StringIO()
    saved = structlog.get_config()
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    try:
        configure_logging("INFO", fmt="console", stream=out)
        exc = h11_refusal(f"Bearer {KEY}".encode())
        get_logger("campaigns.x").warning("halted", error=exc, text=str(exc))
    finally:
        structlog.configure(**saved)
        root.handlers[:] = handlers
        root.setLevel(level)
    assert "halted" in out.getvalue()
    assert CORE not in out.getvalue()


def test_bytes_and_containers_are_masked(stream: io.StringIO) -> None:
    register_secret(ODD)
    value: Any = {
        "raw": ODD.encode(),
        "set": {ODD},
        "tuple": (f"Bearer {ODD}",),
        ODD: "as a key",
    }
    get_logger("campaigns.x").info("nested", value=value)
    text = stream.getvalue()
    assert "sk_live" not in text
    [line] = [json.loads(x) for x in text.splitlines()]
    assert line["value"]["tuple"] == ["Bearer ***"]


def test_a_short_key_is_masked_only_after_bearer() -> None:
    register_secret("k3y")
    assert scrub("Authorization: Bearer k3y") == "Authorization: Bearer ***"
    assert scrub("k3y is also a word inside mok3y") == "k3y is also a word inside mok3y"


def test_masking_prefers_the_longest_form() -> None:
    """The escaped padded form is masked whole, not as the core plus a stray ``\\n``."""
    register_secret(KEY)
    assert scrub("b'Bearer sandbox-key\\n'") == "b'Bearer ***'"
    assert scrub("token=sandbox-key%0A&x=1") == "token=***&x=1"


def test_registering_more_secrets_takes_effect_at_once() -> None:
    register_secret("first_secret_1")
    assert scrub("first_secret_1 second_secret_2") == "*** second_secret_2"
    register_secret("second_secret_2")
    assert scrub("first_secret_1 second_secret_2") == "*** ***"


def test_nothing_registered_leaves_text_alone() -> None:
    assert scrub("Bearer sandbox-key\\n") == "Bearer sandbox-key\\n"
    register_secret("")
    register_secret("   ")
    assert scrub("Bearer    x") == "Bearer    x"
