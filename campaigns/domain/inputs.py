"""Invalid input: the error that names its field, input text shown in it, UTF-8 files."""

from __future__ import annotations

import codecs
import json
from collections.abc import Callable
from typing import Any

__all__ = ["DuplicateKeyError", "SpecError", "decode_utf8", "show", "strict_json"]


class SpecError(ValueError):
    """Invalid input, with the field it is about. The CLI exits 2 on it."""

    def __init__(
        self, field: str, message: str, errors: list[tuple[str, str]] | None = None
    ) -> None:
        super().__init__(f"{field}: {message}" if field else message)
        self.field = field
        self.message = message
        self.errors = errors or [(field, message)]
        """Every invalid field with its message (the API's 422 lists them all)."""


def show(text: str, limit: int = 80) -> str:
    """Text from the input as it may appear in a one-line error: printable, short."""
    shown = text if text.isprintable() else repr(text)[1:-1]
    return shown if len(shown) <= limit else f"{shown[:limit]}... ({len(text)} characters)"


def decode_utf8(raw: bytes, shown: str, field: str) -> str:
    """UTF-8 (a leading BOM is dropped) or a SpecError naming the file and line."""
    body = raw[len(codecs.BOM_UTF8) :] if raw.startswith(codecs.BOM_UTF8) else raw
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError as exc:
        before = body[: exc.start]
        line = 1 + before.count(b"\n") + before.count(b"\r") - before.count(b"\r\n")
        raise SpecError(
            field,
            f"{shown} line {line}: not UTF-8 (byte 0x{body[exc.start]:02x}); save the file as UTF-8",
        ) from None


class DuplicateKeyError(ValueError):
    """A JSON object that names one key twice: which value is meant is not knowable.

    ``json.loads`` keeps the last; a reviewer, a gateway or another parser may
    read the first (``{"budget": "1.00", "budget": "900000.00"}``), so the
    document is refused instead.
    """

    def __init__(self, key: str) -> None:
        super().__init__(f"duplicate key {show(key, 60)!r}")
        self.key = key


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    document: dict[str, Any] = {}
    for key, value in pairs:
        if key in document:
            raise DuplicateKeyError(key)
        document[key] = value
    return document


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def strict_json(
    text: str | bytes | bytearray,
    *,
    parse_float: Callable[[str], Any] | None = None,
    parse_constant: Callable[[str], Any] = _no_constant,
) -> Any:
    """JSON as every input is read: duplicate keys and ``NaN``/``Infinity`` refused.

    Raises ValueError (:class:`DuplicateKeyError` naming the key, ``JSONDecodeError``)
    or RecursionError, as ``json.loads`` does; callers turn it into their own error.
    """
    return json.loads(
        text,
        object_pairs_hook=_no_duplicates,
        parse_float=parse_float,
        parse_constant=parse_constant,
    )
