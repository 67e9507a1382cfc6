"""The operator's report: one row per attempt, as JSON, CSV (streamed) or a table.

The JSON form is the flat array of DESIGN.md (tools parse it). Summaries come
from the campaign's settled totals in the store, never from summing rows.
"""

from __future__ import annotations

import csv
import json
from collections.abc import AsyncIterator
from typing import IO, Any

from rich.console import Console
from rich.table import Table

from campaigns.domain.money import format_micros
from campaigns.store import Attempt, CampaignRecord, Store

__all__ = ["REPORT_FIELDS", "attempt_row", "report_rows", "write_csv", "write_json", "write_table"]

REPORT_FIELDS = (
    "attempt_id",
    "ref",
    "to",
    "status",
    "call_id",
    "error_code",
    "request",
    "final_status",
    "billsec",
    "cost_micros",
    "currency",
)


def attempt_row(attempt: Attempt, currency: str) -> dict[str, Any]:
    """One attempt in the report's shape. Rejected attempts carry no cost."""
    accepted = attempt.status == "accepted"
    return {
        "attempt_id": attempt.attempt_id,
        "ref": attempt.ref,
        "to": attempt.to,
        "status": attempt.status if attempt.status != "sending" else "in_doubt",
        "call_id": attempt.call_id,
        "error_code": attempt.error_code,
        "request": attempt.request,
        "final_status": attempt.final_status if accepted else None,
        "billsec": attempt.billsec if accepted else None,
        "cost_micros": attempt.cost_micros if accepted and attempt.settled else None,
        "currency": currency,
    }


async def report_rows(store: Store, campaign: CampaignRecord) -> AsyncIterator[dict[str, Any]]:
    async for attempt in store.attempts(campaign.campaign_id):
        yield attempt_row(attempt, campaign.currency)


async def write_json(store: Store, campaign: CampaignRecord, out: IO[str]) -> None:
    """Stream the JSON array row by row: large campaigns never sit in memory."""
    out.write("[")
    first = True
    async for row in report_rows(store, campaign):
        out.write(("\n" if first else ",\n") + json.dumps(row, separators=(",", ":")))
        first = False
    out.write("\n]\n" if not first else "]\n")


async def write_csv(store: Store, campaign: CampaignRecord, out: IO[str]) -> None:
    writer = csv.DictWriter(out, fieldnames=REPORT_FIELDS, extrasaction="ignore")
    writer.writeheader()
    async for row in report_rows(store, campaign):
        writer.writerow({k: "" if v is None else v for k, v in row.items()})


def summary_lines(campaign: CampaignRecord) -> list[tuple[str, str]]:
    cur = campaign.currency
    halt = campaign.halt
    return [
        ("state", campaign.state + (f" ({halt['code']}: {halt['message']})" if halt else "")),
        ("contacts", f"{campaign.contacts} ({campaign.pending} pending)"),
        ("accepted calls", str(campaign.accepted)),
        ("rejected attempts", str(campaign.rejected)),
        ("in doubt", str(campaign.in_doubt)),
        ("settled calls", str(campaign.settled)),
        ("spent (settled)", f"{format_micros(campaign.spent_micros, 6)} {cur}"),
        ("reserved", f"{format_micros(campaign.reserved_micros, 6)} {cur}"),
        ("budget", f"{format_micros(campaign.budget_micros, 6)} {cur}"),
    ]


async def write_table(store: Store, campaign: CampaignRecord, console: Console) -> None:
    """Accepted calls, then rejected attempts apart, then the summary block."""
    calls = Table(title=f"Calls of {campaign.campaign_id}", title_justify="left")
    for name in ("call ID", "direction", "destination", "final status", "billed s", "cost", "cur"):
        calls.add_column(
            name,
            justify="right" if name in ("billed s", "cost") else "left",
            overflow="fold",
            no_wrap=name in ("call ID", "destination"),
            min_width=len(name),
        )
    rejected = Table(title="Rejected attempts (not charged)", title_justify="left")
    for name in ("attempt", "destination", "error code", "request body"):
        rejected.add_column(name, overflow="fold")
    doubt = Table(title="In doubt (needs an operator: campaigns resolve)", title_justify="left")
    for name in ("attempt", "destination", "note"):
        doubt.add_column(name, overflow="fold")
    async for attempt in store.attempts(campaign.campaign_id):
        if attempt.status == "accepted":
            cost = "-" if attempt.cost_micros is None else format_micros(attempt.cost_micros, 6)
            if attempt.cost_estimated and attempt.cost_micros is not None:
                cost += "*"
            calls.add_row(
                attempt.call_id or "",
                "outbound",
                attempt.to,
                attempt.final_status or "(in progress)",
                "-" if attempt.billsec is None else str(attempt.billsec),
                cost,
                campaign.currency,
            )
        elif attempt.status == "rejected":
            rejected.add_row(
                attempt.attempt_id, attempt.to, attempt.error_code or "", attempt.request or ""
            )
        else:
            doubt.add_row(
                attempt.attempt_id, attempt.to, attempt.error_message or "answer not recorded yet"
            )
    console.print(calls)
    if rejected.row_count:
        console.print(rejected)
    if doubt.row_count:
        console.print(doubt)
    summary = Table(title="Summary (from settled totals)", title_justify="left", show_header=False)
    summary.add_column("field")
    summary.add_column("value")
    for key, value in summary_lines(campaign):
        summary.add_row(key, value)
    console.print(summary)
    console.print("* cost booked by the rate model: the provider gave no cost for a final call")
