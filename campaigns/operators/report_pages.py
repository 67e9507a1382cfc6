"""The report a page at a time (``GET /v1/campaigns/{id}/report?limit=``) and the
outcome statistics that used to be summed from every row in the browser.

A page holds at most ``limit`` rows in report order (claim order, then the
contacts the schedule's end left undialled) and an opaque ``next_cursor``; null
when no row is left now. Reading a page reads only its own attempts from Redis.
The cursor carries the position in the campaign's two append-only lists and
the campaign ID, so it cannot be used on another campaign. Without ``limit``
and ``cursor`` the report is the full export (JSON array or CSV, streamed).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from campaigns.domain.lifecycle import FINAL_CALL_STATUSES
from campaigns.operators.listing import (
    QueryError,
    decode_cursor,
    encode_cursor,
    parameter_errors,
    parse_limit,
)
from campaigns.operators.report import attempt_row
from campaigns.store import CampaignRecord, Store

__all__ = [
    "DEFAULT_LIMIT",
    "MAX_LIMIT",
    "PARAMETERS",
    "ReportQuery",
    "outcomes",
    "parse_report_query",
    "report_page",
]

DEFAULT_LIMIT = 100
MAX_LIMIT = 1000
PARAMETERS = ("format", "limit", "cursor")


@dataclass(frozen=True, slots=True)
class ReportQuery:
    """``paged``: a page of ``limit`` rows from ``position`` (else the full export)."""

    format: str | None
    paged: bool
    limit: int = DEFAULT_LIMIT
    position: tuple[int, int] = (0, 0)


def parse_report_query(
    campaign_id: str, params: Mapping[str, str], given: list[str]
) -> ReportQuery:
    """The query from request parameters (``given``: every name as sent);
    :class:`~campaigns.operators.listing.QueryError` lists every bad or unknown one."""
    errors = parameter_errors(given, PARAMETERS)
    fmt = params.get("format")
    if fmt not in (None, "json", "csv"):
        errors.append(("format", "must be json or csv"))
    paged = "limit" in params or "cursor" in params
    limit = parse_limit(params.get("limit"), DEFAULT_LIMIT, MAX_LIMIT, errors)
    if paged and fmt == "csv":
        name = "limit" if "limit" in params else "cursor"
        errors.append((name, "pages are JSON; the CSV form is the full export"))
    position = (0, 0)
    cursor = params.get("cursor")
    if cursor is not None:
        values = decode_cursor(cursor, 3)
        if (
            values is None
            or values[2] != campaign_id
            or not all(
                isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in values[:2]
            )
        ):
            errors.append(("cursor", "not a cursor of this campaign's report"))
        else:
            position = (values[0], values[1])
    if errors:
        raise QueryError(errors)
    return ReportQuery(fmt, paged, limit, position)


async def report_page(store: Store, campaign: CampaignRecord, query: ReportQuery) -> dict[str, Any]:
    """``{"attempts": [...], "next_cursor": ...}``: one page of report rows."""
    found, after, more = await store.attempts_page(
        campaign.campaign_id, query.position, query.limit
    )
    cursor = encode_cursor([after[0], after[1], campaign.campaign_id]) if more else None
    return {
        "attempts": [attempt_row(a, campaign.currency) for a in found],
        "next_cursor": cursor,
    }


async def outcomes(store: Store, campaign: CampaignRecord) -> dict[str, Any]:
    """How the campaign's calls ended, from one pass over its attempts (five hash
    fields each, a thousand to a round trip): counts by final status, average
    billed seconds of the ended calls, and settled spend per answered call."""
    counts = dict.fromkeys(sorted(FINAL_CALL_STATUSES), 0)
    billed = spent = 0
    async for final, billsec, cost in store.final_calls(campaign.campaign_id):
        counts[final] = counts.get(final, 0) + 1
        billed += billsec
        spent += cost or 0
    ended = sum(counts.values())
    answered = counts.get("completed", 0)
    return {
        "campaign_id": campaign.campaign_id,
        "currency": campaign.currency,
        "calls_ended": ended,
        "final_status": counts,
        "answered": answered,
        "average_billsec": round(billed / ended, 1) if ended else None,
        "spent_on_ended_micros": spent,
        "spend_per_answered_call_micros": math.ceil(spent / answered) if answered else None,
    }
