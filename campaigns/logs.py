"""Logging: structlog, JSON by default, console on a terminal, secrets scrubbed.

Every line from this process, including arq's and httpx's through the
standard library, goes through the same processors, so a registered secret
(the provider API key, the webhook secret, a Redis password) is replaced
wherever it would appear, in any form: raw, repr, bytes repr, JSON-escaped,
URL-encoded, or escaped twice. ``scrub`` does the same for other output.
"""

from __future__ import annotations

import itertools
import json
import logging
import re
import sys
from collections.abc import MutableMapping
from typing import Any, TextIO

import structlog

__all__ = [
    "LOG_FORMATS",
    "LOG_LEVELS",
    "check_log_level",
    "configure_logging",
    "get_logger",
    "register_secret",
    "scrub",
]

LOG_LEVELS = ("CRITICAL", "ERROR", "WARNING", "INFO", "DEBUG")
LOG_FORMATS = ("auto", "json", "console")

_SECRETS: set[str] = set()
_MASK = "***"
_MIN_SECRET = 6
_compiled: tuple[frozenset[str], re.Pattern[str] | None] = (frozenset(), None)


def check_log_level(value: str) -> str:
    """The level name in upper case, or ValueError listing the valid ones."""
    level = value.strip().upper() if isinstance(value, str) else ""
    if level not in LOG_LEVELS:
        raise ValueError(f"must be one of {', '.join(LOG_LEVELS)}")
    return level


def register_secret(value: str) -> None:
    """Never log this value, in any form it can take in a message.

    A value shorter than six characters is masked only in ``Bearer <value>``
    (the Authorization header): masking it everywhere would mangle ordinary text.
    """
    if value:
        _SECRETS.add(value)


def _char_forms(char: str) -> set[str]:
    """How one character of a secret can look once written out.

    Raw; escaped by ``repr`` of a str or of bytes, or by JSON; percent-encoded
    (either case of hex, ``+`` for a space) by any URL encoder, whatever it
    considers safe; and with its backslashes and quotes escaped once more, as
    when a repr lands inside another repr or a JSON log line.
    """
    data = char.encode("utf-8", "backslashreplace")
    once = {
        char,
        repr(char)[1:-1],
        "\\" + char if char in "'\"" else char,
        repr(data)[2:-1],
        json.dumps(char)[1:-1],
        "".join(f"%{byte:02X}" for byte in data),
        "".join(f"%{byte:02x}" for byte in data),
    }
    if char == " ":
        once.add("+")
    twice: set[str] = set()
    for form in once:
        choices = [(c, "\\" + c) if c in "\\'\"" else (c,) for c in form]
        twice |= {"".join(chosen) for chosen in itertools.product(*choices)}
    return once | twice


def _secret_regex(text: str) -> str:
    """A regex matching ``text`` with each character in any of its written forms."""
    parts = []
    for char in text:
        forms = sorted(_char_forms(char), key=lambda form: (-len(form), form))
        parts.append("(?:" + "|".join(map(re.escape, forms)) + ")")
    return "".join(parts)


def _pattern() -> re.Pattern[str] | None:
    """One pattern for every registered secret, rebuilt when the secrets change.

    A secret is masked whole, padding included where it was written, else as
    its stripped core (a key padded with a newline is masked even where the
    padding was dropped). Longer alternatives come first so the longest
    written form wins.
    """
    global _compiled
    key = frozenset(_SECRETS)
    if _compiled[0] != key:
        texts: set[str] = set()
        for secret in key:
            core = secret.strip()
            if len(core) >= _MIN_SECRET:
                texts |= {secret, core}
            elif core:
                texts.add(f"Bearer {core}")
        ordered = sorted(texts, key=lambda text: (-len(text), text))
        pattern = re.compile("|".join(map(_secret_regex, ordered))) if ordered else None
        _compiled = (key, pattern)
    return _compiled[1]


def scrub(text: str) -> str:
    """``text`` with every registered secret, in any of its forms, replaced by ``***``.

    For messages that leave the process by other ways than logging (stored
    halt messages, CLI output).
    """
    pattern = _pattern()
    return pattern.sub(_mask, text) if pattern is not None else text


def _mask(match: re.Match[str]) -> str:
    return "Bearer " + _MASK if match.group().startswith("Bearer ") else _MASK


def _scrub(value: Any) -> Any:
    if isinstance(value, str):
        return scrub(value)
    if isinstance(value, bytes | bytearray):
        return scrub(repr(bytes(value)))
    if isinstance(value, dict):
        return {_scrub(k): _scrub(v) for k, v in value.items()}
    if isinstance(value, tuple):
        return tuple(_scrub(v) for v in value)
    if isinstance(value, list | set | frozenset):
        return [_scrub(v) for v in value]
    return value


def _redact(_: Any, __: str, event_dict: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    if _pattern() is None:
        return event_dict
    for key, value in list(event_dict.items()):
        event_dict[key] = _scrub(value)
    return event_dict


def _render_then_redact(renderer: Any) -> Any:
    """Scrub the final rendered line too: exceptions are formatted late."""

    def render(logger: Any, name: str, event_dict: MutableMapping[str, Any]) -> str:
        return str(_scrub(renderer(logger, name, event_dict)))

    return render


_JOB_CHATTER = ("%6.2fs → ", "%6.2fs ← ", "recording health")
"""arq's INFO lines for every job start and finish (two cron runs a second per
worker) and its health record every few seconds: routine, so DEBUG."""
_CAMPAIGN_JOB = re.compile(r"(?:dispatch|reconcile):([A-Za-z0-9][A-Za-z0-9_.-]{0,63})[:(]")


class _ArqChatter(logging.Filter):
    """Demote arq's per-job chatter to DEBUG, and name the job's campaign where its ID has one.

    A filter on arq's logger runs after the logger's INFO check, so it drops a
    demoted record itself unless DEBUG is on.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.msg if isinstance(record.msg, str) else ""
        if isinstance(record.args, tuple) and len(record.args) > 1:
            found = _CAMPAIGN_JOB.match(str(record.args[1]))
            if found:
                record.campaign_id = found.group(1)
        if record.levelno == logging.INFO and message.startswith(_JOB_CHATTER):
            record.levelno, record.levelname = logging.DEBUG, "DEBUG"
            return logging.getLogger(record.name).isEnabledFor(logging.DEBUG)
        return True


def configure_logging(level: str = "INFO", fmt: str = "auto", stream: TextIO | None = None) -> None:
    """Configure structlog and the standard library together. Safe to call again.

    ``stream`` defaults to stderr (the CLI's output is stdout); the worker logs
    to stdout, one JSON object per line unless the stream is a terminal. An
    unknown level or format is a ValueError naming it, before anything changes.
    """
    try:
        level = check_log_level(level)
    except ValueError as exc:
        raise ValueError(f"log level {exc}") from None
    if fmt not in LOG_FORMATS:
        raise ValueError(f"log format must be one of {', '.join(LOG_FORMATS)}")
    stream = stream or sys.stderr
    if fmt == "auto":
        fmt = "console" if stream.isatty() else "json"
    renderer: Any = (
        structlog.dev.ConsoleRenderer(colors=stream.isatty())
        if fmt == "console"
        else structlog.processors.JSONRenderer()
    )
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        # campaign_id / attempt_id set on a stdlib record (arq's job lines).
        structlog.stdlib.ExtraAdder(allow=("campaign_id", "attempt_id")),
    ]
    if fmt == "json":
        # Format exceptions before scrubbing, so a secret in a message is caught
        # before JSON escaping could hide it from the final pass.
        shared.append(structlog.processors.format_exc_info)
    shared.append(_redact)
    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=False,
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared,
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            _render_then_redact(renderer),
        ],
    )
    handler = logging.StreamHandler(stream)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # httpx logs full URLs at INFO; a VoIPBIN token travels in the query string.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    logging.getLogger("httpcore").setLevel(logging.WARNING)
    # arq's own CLI gives its logger a plain-text handler; ours formats every line.
    logging.getLogger("arq").handlers[:] = []
    logging.getLogger("arq").propagate = True
    arq = logging.getLogger("arq.worker")
    arq.filters[:] = [f for f in arq.filters if not isinstance(f, _ArqChatter)]
    arq.addFilter(_ArqChatter())


def get_logger(name: str = "campaigns", **bound: Any) -> structlog.stdlib.BoundLogger:
    logger: structlog.stdlib.BoundLogger = structlog.stdlib.get_logger(name)
    return logger.bind(**bound) if bound else logger
