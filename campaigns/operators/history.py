"""The operator history as people read it (``campaigns history``): one line per action."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from campaigns.domain.money import format_money
from campaigns.operators.control import iso_time

__all__ = ["history_line"]


def _value(name: str, value: Any, currency: str) -> str:
    if name.endswith("_micros") and isinstance(value, int) and not isinstance(value, bool):
        return format_money(value, currency, exact=True)
    return str(value)


def _change(
    before: Mapping[str, Any] | None, after: Mapping[str, Any] | None, currency: str
) -> str:
    """``state: paused -> running, halt_code: budget_exhausted -> -``."""
    before, after = before or {}, after or {}
    parts = []
    for name in [*before, *(n for n in after if n not in before)]:
        label = name.removesuffix("_micros")
        old = _value(name, before[name], currency) if name in before else "-"
        new = _value(name, after[name], currency) if name in after else "-"
        parts.append(f"{label}: {new}" if name not in before else f"{label}: {old} -> {new}")
    return ", ".join(parts)


def history_line(entry: Mapping[str, Any], currency: str) -> str:
    """``2026-05-01T12:00:00Z  cli:alice  budget  budget: EUR 5.00 -> EUR 20.00``."""
    at = iso_time(entry.get("at")) or "-"
    change = _change(entry.get("before"), entry.get("after"), currency)
    return f"{at}  {entry.get('actor', '-')}  {entry.get('action', '-')}  {change}".rstrip()
