"""Wire formats shared by every route: timestamps and money strings.

Providers speak RFC 3339 and decimal strings; the sandbox keeps epoch floats
and integer micros inside and converts only at the edge.
"""

from __future__ import annotations

from datetime import UTC, datetime

from campaigns.domain.money import MICROS_PER_UNIT, format_micros

__all__ = ["amount_string", "parse_rfc3339", "rfc3339"]


def rfc3339(ts: float) -> str:
    """Epoch seconds as RFC 3339 UTC with milliseconds, e.g. ``2026-05-29T12:10:00.123Z``."""
    text = datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds")
    return text.replace("+00:00", "Z")


def parse_rfc3339(text: str) -> float:
    """RFC 3339 text to epoch seconds; a timestamp without an offset is refused.

    A ``+`` in a query string arrives as a space (form decoding), so a space
    before the offset is read back as ``+``.
    """
    candidate = text.strip().replace(" ", "+")
    if "T" not in candidate and "t" not in candidate:
        raise ValueError(f"not an RFC 3339 timestamp: {text!r}")
    parsed = datetime.fromisoformat(candidate)
    if parsed.tzinfo is None:
        raise ValueError(f"timestamp needs a UTC offset: {text!r}")
    return parsed.timestamp()


def amount_string(micros: int) -> str:
    """Exact decimal string with at least two places: 10000 -> ``0.01``, 5000 -> ``0.005``."""
    if micros % (MICROS_PER_UNIT // 100) == 0:
        return format_micros(micros, 2)
    whole, frac = format_micros(micros, 6).split(".")
    return f"{whole}.{frac.rstrip('0')}"
