"""Paged, filtered campaign lists (``GET /v1/campaigns``): the query and its pages.

Campaigns come in creation order (ties by ID) from the ``P:campaigns`` index
that submit maintains, never from a scan of the keyspace. A page reads at most
:data:`MAX_EXAMINED` index entries: with a filter that matches few campaigns it
may hold fewer than ``limit`` (even none) and still a ``next_cursor``; the list
ends when ``next_cursor`` is null. The cursor is opaque (the position of the last
campaign examined, and a digest of the filters, so it cannot be used with others).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from campaigns.domain.lifecycle import State
from campaigns.domain.policy import parse_instant
from campaigns.store import CampaignRecord, Store

__all__ = [
    "DEFAULT_LIMIT",
    "MAX_EXAMINED",
    "MAX_LIMIT",
    "PARAMETERS",
    "CampaignQuery",
    "QueryError",
    "campaign_page",
    "decode_cursor",
    "encode_cursor",
    "parameter_errors",
    "parse_limit",
    "parse_query",
]

DEFAULT_LIMIT = 50
MAX_LIMIT = 500
MAX_EXAMINED = 2000
"""Index entries one page reads at most, so a page answers in bounded time."""
PARAMETERS = ("limit", "cursor", "state", "name", "created_after", "created_before")


class QueryError(ValueError):
    """Every invalid parameter of a list query, each with its message."""

    def __init__(self, errors: list[tuple[str, str]]) -> None:
        super().__init__("; ".join(f"{field}: {message}" for field, message in errors))
        self.errors = errors


@dataclass(frozen=True, slots=True)
class CampaignQuery:
    """What to list: at most ``limit`` campaigns after ``after``, filtered."""

    limit: int = DEFAULT_LIMIT
    after: tuple[int, str] | None = None
    states: frozenset[str] = frozenset()
    name_prefix: str = ""
    created_after_ms: int | None = None
    """Exclusive, as ``created_before_ms``."""
    created_before_ms: int | None = None

    @property
    def filters(self) -> str:
        """A digest of the filters, carried in the cursor."""
        shape = [
            sorted(self.states),
            self.name_prefix,
            self.created_after_ms,
            self.created_before_ms,
        ]
        return hashlib.sha256(json.dumps(shape).encode()).hexdigest()[:16]

    def cursor(self, position: tuple[int, str]) -> str:
        return encode_cursor([position[0], position[1], self.filters])


def parse_query(params: Mapping[str, str], given: list[str]) -> CampaignQuery:
    """The query from request parameters (``given``: every name as sent, repeats
    included); :class:`QueryError` lists every bad or unknown one."""
    errors = parameter_errors(given, PARAMETERS)
    limit = parse_limit(params.get("limit"), DEFAULT_LIMIT, MAX_LIMIT, errors)
    states: set[str] = set()
    for state in filter(None, params.get("state", "").split(",")):
        if state in State.__members__.values():
            states.add(state)
        else:
            known = ", ".join(s.value for s in State)
            errors.append(("state", f"unknown state {state[:40]!r}; known: {known}"))
    name = params.get("name", "")
    if len(name) > 200:
        errors.append(("name", "a prefix of at most 200 characters"))
    instants: dict[str, int | None] = {}
    for field in ("created_after", "created_before"):
        value = params.get(field)
        try:
            instants[field] = (
                None if value is None else int(parse_instant(value).timestamp() * 1000)
            )
        except ValueError as exc:
            instants[field] = None
            errors.append((field, str(exc)))
    query = CampaignQuery(
        limit, None, frozenset(states), name, instants["created_after"], instants["created_before"]
    )
    cursor = params.get("cursor")
    after: tuple[int, str] | None = None
    if cursor is not None:
        after = _position(cursor, query.filters)
        if after is None:
            errors.append(("cursor", "not a cursor of this list with these filters"))
    if errors:
        raise QueryError(errors)
    return CampaignQuery(
        limit,
        after,
        query.states,
        query.name_prefix,
        query.created_after_ms,
        query.created_before_ms,
    )


def parameter_errors(given: list[str], known: tuple[str, ...]) -> list[tuple[str, str]]:
    """An error for each unknown parameter and each known one given more than once."""
    errors = [
        (name, f"unknown parameter; known: {', '.join(known)}")
        for name in sorted(set(given) - set(known))
    ]
    errors += [
        (name, "given more than once")
        for name in sorted({n for n in given if given.count(n) > 1} & set(known))
    ]
    return errors


def parse_limit(raw: str | None, default: int, maximum: int, errors: list[tuple[str, str]]) -> int:
    """``limit`` from 1 to ``maximum`` (``default`` when absent); a bad one joins ``errors``."""
    if raw is None:
        return default
    if raw.isascii() and raw.isdigit() and 1 <= int(raw) <= maximum:
        return int(raw)
    errors.append(("limit", f"must be an integer from 1 to {maximum}"))
    return default


def encode_cursor(values: list[Any]) -> str:
    """An opaque cursor: the JSON of ``values``, URL-safe base64 without padding."""
    raw = json.dumps(values, separators=(",", ":"))
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_cursor(cursor: str, size: int) -> list[Any] | None:
    """The ``size`` values of :func:`encode_cursor`'s cursor (None: not such a cursor)."""
    try:
        values = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    except (ValueError, TypeError, RecursionError, binascii.Error):
        return None
    return values if isinstance(values, list) and len(values) == size else None


def _position(cursor: str, filters: str) -> tuple[int, str] | None:
    values = decode_cursor(cursor, 3)
    if values is None:
        return None
    score, member, digest = values
    if not (isinstance(score, int) and isinstance(member, str) and digest == filters):
        return None
    return score, member


async def campaign_page(
    store: Store, query: CampaignQuery
) -> tuple[list[CampaignRecord], str | None]:
    """One page of campaigns and the cursor of the next (None: the list ends)."""
    low = None if query.created_after_ms is None else query.created_after_ms + 1
    high = None if query.created_before_ms is None else query.created_before_ms - 1
    found: list[str] = []
    after, examined = query.after, 0
    filtered = bool(query.states or query.name_prefix)
    while len(found) < query.limit and examined < MAX_EXAMINED:
        batch = min(MAX_EXAMINED - examined, max(query.limit - len(found), 100 if filtered else 1))
        positions = await store.campaigns_in_order(after, batch, low_ms=low, high_ms=high)
        if not positions:
            return await _records(store, found), None
        ids = [cid for _, cid in positions]
        labels = await store.campaign_labels(ids) if filtered else [("", "")] * len(ids)
        for position, (state, name) in zip(positions, labels, strict=True):
            examined += 1
            after = position
            if query.states and state not in query.states:
                continue
            if not name.startswith(query.name_prefix):
                continue
            found.append(position[1])
            if len(found) == query.limit:
                break
        if len(positions) < batch and len(found) < query.limit:
            return await _records(store, found), None
    assert after is not None
    more = await store.campaigns_in_order(after, 1, low_ms=low, high_ms=high)
    return await _records(store, found), query.cursor(after) if more else None


async def _records(store: Store, campaign_ids: list[str]) -> list[CampaignRecord]:
    found = await store.campaigns(*campaign_ids) if campaign_ids else []
    return [c for c in found if c is not None]
