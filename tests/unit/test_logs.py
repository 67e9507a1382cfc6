"""Logging: JSON lines with bound context, and registered secrets never printed."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest
import structlog

from campaigns import logs
from campaigns.logs import configure_logging, get_logger, register_secret

SECRET = "sk_test_secret_value_123"


@pytest.fixture
def stream() -> Iterator[io.StringIO]:
    """Configure JSON logging into a StringIO; restore every global afterwards."""
    root = logging.getLogger()
    saved_handlers = root.handlers[:]
    saved_level = root.level
    saved_levels = {
        name: logging.getLogger(name).level for name in ("httpx", "httpcore", "arq", "campaigns")
    }
    saved_structlog = structlog.get_config()
    saved_secrets = set(logs._SECRETS)
    out = io.StringIO()
    configure_logging("DEBUG", fmt="json", stream=out)
    try:
        yield out
    finally:
        structlog.contextvars.clear_contextvars()
        structlog.configure(**saved_structlog)
        root.handlers[:] = saved_handlers
        root.setLevel(saved_level)
        for name, level in saved_levels.items():
            logging.getLogger(name).setLevel(level)
        logs._SECRETS.clear()
        logs._SECRETS.update(saved_secrets)


def lines(out: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in out.getvalue().splitlines() if line.strip()]


def test_bound_logger_renders_json_with_context(stream: io.StringIO) -> None:
    log = get_logger("campaigns.engine.dispatch", campaign_id="spring")
    log.info("call_accepted", attempt_id="spring:000001:1", call_id="call_1")
    [line] = lines(stream)
    assert line["event"] == "call_accepted"
    assert line["campaign_id"] == "spring"
    assert line["attempt_id"] == "spring:000001:1"
    assert line["call_id"] == "call_1"
    assert line["level"] == "info"
    assert line["logger"] == "campaigns.engine.dispatch"
    assert line["timestamp"].endswith("Z")


def test_get_logger_without_bound_values(stream: io.StringIO) -> None:
    get_logger().warning("plain")
    [line] = lines(stream)
    assert line["event"] == "plain"
    assert line["logger"] == "campaigns"
    assert line["level"] == "warning"


def test_contextvars_are_merged(stream: io.StringIO) -> None:
    structlog.contextvars.bind_contextvars(campaign_id="ctx-campaign")
    get_logger("campaigns.x").info("hello", attempt_id="a1")
    [line] = lines(stream)
    assert line["campaign_id"] == "ctx-campaign"
    assert line["attempt_id"] == "a1"


def test_stdlib_lines_are_json_too(stream: io.StringIO) -> None:
    logging.getLogger("arq.worker").warning("job %s failed", "j1")
    [line] = lines(stream)
    assert line["event"] == "job j1 failed"
    assert line["level"] == "warning"
    assert line["logger"] == "arq.worker"


def test_level_filters(stream: io.StringIO) -> None:
    configure_logging("WARNING", fmt="json", stream=stream)
    log = get_logger("campaigns.x")
    log.info("hidden")
    log.warning("shown")
    assert [line["event"] for line in lines(stream)] == ["shown"]


def _assert_scrubbed(out: io.StringIO) -> None:
    text = out.getvalue()
    assert text, "nothing was logged"
    assert SECRET not in text
    assert "***" in text


def test_secret_in_event_is_masked(stream: io.StringIO) -> None:
    register_secret(SECRET)
    get_logger("campaigns.x").info(f"using key {SECRET}")
    _assert_scrubbed(stream)
    assert lines(stream)[0]["event"] == "using key ***"


def test_secret_in_bound_value_is_masked(stream: io.StringIO) -> None:
    register_secret(SECRET)
    get_logger("campaigns.x", api_key=SECRET).info("configured", header=f"Bearer {SECRET}")
    _assert_scrubbed(stream)
    [line] = lines(stream)
    assert line["api_key"] == "***"
    assert line["header"] == "Bearer ***"


def test_secret_in_nested_dict_and_list_is_masked(stream: io.StringIO) -> None:
    register_secret(SECRET)
    get_logger("campaigns.x").info(
        "request",
        request={"headers": {"Authorization": f"Bearer {SECRET}"}, "keys": [SECRET, "ok"]},
        pair=(SECRET, 1),
    )
    _assert_scrubbed(stream)
    [line] = lines(stream)
    assert line["request"] == {"headers": {"Authorization": "Bearer ***"}, "keys": ["***", "ok"]}
    assert line["pair"] == ["***", 1]


def test_secret_in_exception_message_is_masked(stream: io.StringIO) -> None:
    register_secret(SECRET)
    log = get_logger("campaigns.x", campaign_id="spring")
    try:
        raise RuntimeError(f"provider said: bad key {SECRET}")
    except RuntimeError:
        log.exception("create_failed")
    _assert_scrubbed(stream)
    [line] = lines(stream)
    assert line["event"] == "create_failed"
    assert line["level"] == "error"
    assert "RuntimeError: provider said: bad key ***" in line["exception"]


def test_secret_in_exception_repr_value_is_masked(stream: io.StringIO) -> None:
    register_secret(SECRET)
    try:
        raise ValueError({"token": SECRET})
    except ValueError as exc:
        get_logger("campaigns.x").error("failed", error=str(exc), exc_info=True)
    _assert_scrubbed(stream)


def test_secret_through_stdlib_logger_is_masked(stream: io.StringIO) -> None:
    register_secret(SECRET)
    arq = logging.getLogger("arq")
    arq.warning("redis url redis://:%s@localhost/0", SECRET)
    arq.warning(f"direct {SECRET}")
    try:
        raise ConnectionError(f"auth {SECRET}")
    except ConnectionError:
        arq.exception("job failed")
    _assert_scrubbed(stream)
    events = [line["event"] for line in lines(stream)]
    assert events == ["redis url redis://:***@localhost/0", "direct ***", "job failed"]
    assert "ConnectionError: auth ***" in lines(stream)[2]["exception"]


def test_several_secrets(stream: io.StringIO) -> None:
    register_secret(SECRET)
    register_secret("another_secret_456")
    get_logger("campaigns.x").info("two", a=SECRET, b="x another_secret_456 y")
    text = stream.getvalue()
    assert SECRET not in text
    assert "another_secret_456" not in text
    [line] = lines(stream)
    assert (line["a"], line["b"]) == ("***", "x *** y")


def test_short_secrets_are_ignored(stream: io.StringIO) -> None:
    register_secret("abc")
    get_logger("campaigns.x").info("abcdef")
    assert lines(stream)[0]["event"] == "abcdef"


def test_secret_masked_in_console_format(stream: io.StringIO) -> None:
    out = io.StringIO()
    configure_logging("INFO", fmt="console", stream=out)
    register_secret(SECRET)
    get_logger("campaigns.x", key=SECRET).info(f"event {SECRET}")
    _assert_scrubbed(out)


def test_httpx_logs_only_warnings_after_configure(stream: io.StringIO) -> None:
    assert logging.getLogger("httpx").level == logging.WARNING
    assert logging.getLogger("httpcore").level == logging.WARNING
    logging.getLogger("httpx").info('HTTP Request: GET https://x/v1.0/calls?token=abc "200 OK"')
    logging.getLogger("httpcore.http11").debug("send_request_headers")
    assert stream.getvalue() == ""
    logging.getLogger("httpx").warning("something odd")
    assert [line["event"] for line in lines(stream)] == ["something odd"]


def test_configure_twice_keeps_one_handler(stream: io.StringIO) -> None:
    configure_logging("INFO", fmt="json", stream=stream)
    configure_logging("INFO", fmt="json", stream=stream)
    assert len(logging.getLogger().handlers) == 1
    get_logger().info("once")
    assert len(lines(stream)) == 1


def test_auto_format_on_a_non_tty_is_json(stream: io.StringIO) -> None:
    out = io.StringIO()
    configure_logging("INFO", fmt="auto", stream=out)
    get_logger().info("auto")
    assert json.loads(out.getvalue())["event"] == "auto"


@pytest.mark.parametrize("level", ["NOPE", "", "10", "warn ing"])
def test_an_unknown_level_is_refused_before_anything_changes(
    level: str, stream: io.StringIO
) -> None:
    handlers = logging.getLogger().handlers[:]
    with pytest.raises(ValueError, match="log level must be one of CRITICAL, ERROR, WARNING"):
        configure_logging(level, fmt="json", stream=io.StringIO())
    assert logging.getLogger().handlers == handlers
    get_logger().info("still configured")
    assert lines(stream)[0]["event"] == "still configured"


def test_an_unknown_format_is_refused(stream: io.StringIO) -> None:
    with pytest.raises(ValueError, match="log format must be one of auto, json, console"):
        configure_logging("INFO", fmt="xml", stream=io.StringIO())


def test_level_names_are_case_insensitive(stream: io.StringIO) -> None:
    configure_logging(" warning ", fmt="json", stream=stream)
    assert logging.getLogger().level == logging.WARNING
