"""The operator's report: one row per attempt, as JSON, CSV (streamed) or a table.

The JSON form is the flat array of DESIGN.md (tools parse it). Summaries come
from the campaign's settled totals in the store, never from summing rows.

Every value shown is data from outside (contact refs and variables from the
submitter, call IDs, codes and messages from the provider), so no output form
may interpret it:

- JSON carries values unchanged (``json.dumps`` escapes everything; ASCII out).
- CSV is opened in spreadsheets, which run a cell starting with ``=``, ``+``,
  ``-`` or ``@`` as a formula (and strip a leading tab, CR or LF, or spaces,
  first). Such a cell is written with a ``'`` in front (the OWASP advice), so
  ``=1+1``, ``+1+1``, ``-2+3``, ``@SUM(1+1)`` and `` =1+1`` are shown as text.
  Two shapes stay as they are, because a spreadsheet reads them as a plain
  number and they cannot compute anything: an E.164 number (``+`` and 2 to 15
  digits, e.g. ``+15551234567``) and a plain decimal (``-12``, ``0.5``). The
  full-width forms of the four characters are neutralised too, out of caution.
  Tools that need the exact values read the JSON form.
- The table never reads rich markup or emoji codes in data (``[/oops]`` is
  printed as is), and shows control, bidi-override and surrogate characters as
  escapes (``\\x1b``), so data cannot move the cursor or recolour the terminal.
- CSV and table output is always encodable as UTF-8: a lone surrogate left in
  old stored data is written as its ``\\udXXX`` escape.
"""

from __future__ import annotations

import csv
import json
import re
from collections.abc import AsyncIterator
from typing import IO, Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

from campaigns.domain.money import format_micros
from campaigns.store import Attempt, CampaignRecord, Store

__all__ = [
    "REPORT_FIELDS",
    "attempt_row",
    "csv_cell",
    "report_rows",
    "shown",
    "write_csv",
    "write_json",
    "write_table",
]

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


_FORMULA_TRIGGERS = frozenset("=+-@\t\r\n\uff1d\uff0b\uff0d\uff20")
_PLAIN_NUMBER = re.compile(r"\+[0-9]{2,15}|-?[0-9]+(?:\.[0-9]+)?", re.ASCII)
"""E.164 or a plain decimal: a spreadsheet reads either as a number, never a formula."""
_SURROGATE = re.compile("[\ud800-\udfff]")
_UNPRINTABLE = re.compile(
    "[\x00-\x1f\x7f-\x9f"  # C0 and C1 controls, DEL
    "\u200e\u200f\u202a-\u202e\u2066-\u2069"  # bidi marks and overrides
    "\ud800-\udfff]"  # lone surrogates
)
"""Control characters, bidi overrides and lone surrogates: escaped in the table."""


def _escape(match: re.Match[str]) -> str:
    return match.group().encode("unicode_escape").decode("ascii")


def csv_cell(value: object) -> str:
    """One CSV cell that no spreadsheet runs as a formula (see the module docstring)."""
    if value is None:
        return ""
    text = _SURROGATE.sub(_escape, str(value))
    if not text or _PLAIN_NUMBER.fullmatch(text):
        return text
    if text[0] in _FORMULA_TRIGGERS or text.lstrip()[:1] in _FORMULA_TRIGGERS:
        return "'" + text
    return text


def shown(value: object) -> Text:
    """A table cell: literal text, never markup, with invisible characters escaped."""
    return Text(_UNPRINTABLE.sub(_escape, "" if value is None else str(value)))


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
        writer.writerow({k: csv_cell(v) for k, v in row.items()})


def summary_lines(campaign: CampaignRecord) -> list[tuple[str, str]]:
    """Key and value lines; the halt text (a provider's words) has invisibles escaped."""
    cur = campaign.currency
    halt = campaign.halt
    why = _UNPRINTABLE.sub(_escape, f" ({halt['code']}: {halt['message']})") if halt else ""
    return [
        ("state", campaign.state + why),
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
    """Accepted calls, then rejected attempts apart, then the summary block.

    Every cell is a :class:`~rich.text.Text` built by :func:`shown`: data is
    never parsed as markup.
    """
    calls = Table(title=shown(f"Calls of {campaign.campaign_id}"), title_justify="left")
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
                shown(attempt.call_id),
                shown("outbound"),
                shown(attempt.to),
                shown(attempt.final_status or "(in progress)"),
                shown("-" if attempt.billsec is None else attempt.billsec),
                shown(cost),
                shown(campaign.currency),
            )
        elif attempt.status == "rejected":
            rejected.add_row(
                shown(attempt.attempt_id),
                shown(attempt.to),
                shown(attempt.error_code),
                shown(attempt.request),
            )
        else:
            doubt.add_row(
                shown(attempt.attempt_id),
                shown(attempt.to),
                shown(attempt.error_message or "answer not recorded yet"),
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
        summary.add_row(shown(key), shown(value))
    console.print(summary)
    console.print(
        shown("* cost booked by the rate model: the provider gave no cost for a final call")
    )
