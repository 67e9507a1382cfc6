"""Invalid input: the error that names its field, input text shown in it, UTF-8 files."""

from __future__ import annotations

import codecs

__all__ = ["SpecError", "decode_utf8", "show"]


class SpecError(ValueError):
    """Invalid input, with the field it is about. The CLI exits 2 on it."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}" if field else message)
        self.field = field
        self.message = message


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
