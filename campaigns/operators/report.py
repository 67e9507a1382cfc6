"""The operator's report: one row per attempt, as JSON, CSV (streamed) or a table.

The JSON form is a flat array of attempts (tools parse it). Summaries come
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
- The table fits the terminal: it drops the least useful columns first
  (for calls: direction, destination, billed seconds, final status; for
  rejected attempts: the request body, then the destination), never the call
  ID or the cost, nor the attempt and its error code. Written to a file or a pipe, ``--format table`` is plain text
  instead: one titled section of comma-separated rows per kind of attempt,
  cells as safe as the CSV form's, nothing cut.
- CSV and table output is always encodable as UTF-8: a lone surrogate left in
  old stored data is written as its ``\\udXXX`` escape.
"""

from __future__ import annotations

import csv
import json
import re
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import IO, Any

from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text

from campaigns.domain.lifecycle import FINAL_STATES, AttemptStatus
from campaigns.domain.money import format_money, humanize_micros
from campaigns.operators.control import Explanation, iso_time, not_dialled
from campaigns.store import Attempt, CampaignRecord, Store

__all__ = [
    "REPORT_FIELDS",
    "attempt_row",
    "csv_cell",
    "report_rows",
    "shown",
    "summary_lines",
    "write_csv",
    "write_json",
    "write_plain",
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
    "claimed_at",
    "sent_at",
    "answered_at",
    "ended_at",
)
"""Times are ISO 8601 UTC: ``claimed_at`` and ``sent_at`` (the first create
request) on our clock, ``answered_at`` and ``ended_at`` as the provider gave
them; null when unknown (never sent, never answered, not over yet)."""


def attempt_row(attempt: Attempt, currency: str) -> dict[str, Any]:
    """One attempt in the report's shape. Rejected attempts carry no cost."""
    accepted = attempt.status == "accepted"
    return {
        "attempt_id": attempt.attempt_id,
        "ref": attempt.ref,
        "to": attempt.to,
        "status": attempt.status,
        "call_id": attempt.call_id,
        "error_code": attempt.error_code,
        "request": attempt.request,
        "final_status": attempt.final_status if accepted else None,
        "billsec": attempt.billsec if accepted else None,
        "cost_micros": attempt.cost_micros if accepted and attempt.settled else None,
        "currency": currency,
        "claimed_at": iso_time(attempt.created_at_ms or None),
        "sent_at": iso_time(attempt.first_sent_at_ms),
        "answered_at": iso_time(attempt.answered_at_ms),
        "ended_at": iso_time(attempt.ended_at_ms),
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


def _when(ms: int | None, now_ms: int) -> str:
    """``13:45:02 UTC (2m 05s ago)``: a time people can place."""
    if ms is None:
        return "-"
    moment = datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    delta = (now_ms - ms) // 1000
    return f"{moment} ({_span(abs(delta))} {'ago' if delta >= 0 else 'from now'})"


def _span(seconds: int) -> str:
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h {minutes:02d}m"
    return f"{minutes}m {secs:02d}s" if minutes else f"{secs}s"


def _not_dialled_text(campaign: CampaignRecord) -> str:
    """``43 (cancelled 40, expired 3)``, or ``0``."""
    why = not_dialled(campaign)
    if not why:
        return "0"
    return f"{sum(why.values())} ({', '.join(f'{k} {n}' for k, n in why.items())})"


def summary_lines(
    campaign: CampaignRecord, explanation: Explanation | None = None
) -> list[tuple[str, str]]:
    """Key and value lines, money for people; the halt text (a provider's words)
    has invisibles escaped and stored micros written as money."""
    cur = campaign.currency
    pending = 0 if campaign.state in FINAL_STATES else campaign.pending
    halt = campaign.halt
    why = ""
    if halt:
        why = _UNPRINTABLE.sub(
            _escape, f" ({halt['code']}: {humanize_micros(halt['message'], cur)})"
        )
    lines = [("state", campaign.state + why)]
    if explanation is not None:
        now = explanation.now_ms
        waiting = explanation.waiting
        if waiting is not None:
            text = f"{waiting.reason}: {waiting.message}"
            if waiting.since_ms is not None:
                text += f"; since {_when(waiting.since_ms, now)}"
            if waiting.until_ms is not None:
                text += f"; until {_when(waiting.until_ms, now)}"
            lines.append(("waiting", text))
        elif campaign.state == "running":
            lines.append(("waiting", "no: sending at the configured pace"))
        lines += [
            (
                "progress",
                f"{explanation.percent_done:g}% "
                f"({explanation.done} of {campaign.contacts} contacts dialled or dialling"
                + (f", {explanation.not_dialled} not dialled)" if explanation.not_dialled else ")"),
            ),
            (
                "rate",
                f"{explanation.calls_last_minute} calls in the last minute "
                f"(configured {explanation.calls_per_second:g} per second, "
                f"weight {explanation.weight:g})"
                + ("" if explanation.held_by is None else f"; held by {explanation.held_by}"),
            ),
            (
                "eta",
                "-"
                if explanation.eta_ms is None
                else f"{_when(explanation.eta_ms, now)} at the configured pace",
            ),
        ]
    lines += [
        ("contacts", f"{campaign.contacts} ({pending} pending)"),
        ("not dialled", _not_dialled_text(campaign)),
        ("accepted calls", str(campaign.accepted)),
        ("rejected attempts", str(campaign.rejected)),
        ("in doubt", str(campaign.in_doubt)),
        ("suppressed", str(campaign.suppressed)),
        ("expired", str(campaign.expired)),
        ("capped", str(campaign.capped)),
        ("retries scheduled", str(campaign.retries)),
        ("settled calls", str(campaign.settled)),
        ("spent (settled)", format_money(campaign.spent_micros, cur)),
        ("reserved", format_money(campaign.reserved_micros, cur)),
        ("budget", format_money(campaign.budget_micros, cur)),
    ]
    if campaign.past_max_calls:
        lines.append(
            (
                "reservation may be exceeded",
                f"{campaign.past_max_calls} calls live past max_call_seconds "
                "(the provider offers no hang-up)",
            )
        )
    if explanation is not None:
        now = explanation.now_ms
        lines += [
            (name.replace("_at", ""), _when(ms, now)) for name, ms in explanation.times.items()
        ]
    return lines


@dataclass(frozen=True, slots=True)
class _Section:
    """One kind of attempt in the table: its title, columns and cells.

    ``drop`` orders the columns a narrow terminal loses first (0: never).
    """

    title: str
    status: AttemptStatus
    columns: tuple[tuple[str, int], ...]
    cells: Callable[[Attempt, str], tuple[object, ...]]


def _cost(attempt: Attempt, currency: str) -> str:
    if attempt.cost_micros is None:
        return "-"
    cost = format_money(attempt.cost_micros, currency, exact=True)
    return cost + "*" if attempt.cost_estimated else cost


_SECTIONS = (
    _Section(
        "Calls of {campaign}",
        AttemptStatus.ACCEPTED,
        (
            ("call ID", 0),
            ("direction", 5),
            ("destination", 4),
            ("final status", 2),
            ("billed s", 3),
            ("cost", 0),
        ),
        lambda a, cur: (
            a.call_id,
            "outbound",
            a.to,
            a.final_status or "(in progress)",
            "-" if a.billsec is None else a.billsec,
            _cost(a, cur),
        ),
    ),
    _Section(
        "Rejected attempts (not charged)",
        AttemptStatus.REJECTED,
        (("attempt", 0), ("destination", 1), ("error code", 0), ("request body", 2)),
        lambda a, cur: (a.attempt_id, a.to, a.error_code, a.request),
    ),
    _Section(
        "Being sent (the provider's answer is not recorded yet)",
        AttemptStatus.SENDING,
        (("attempt", 0), ("destination", 1), ("claimed at", 2)),
        lambda a, cur: (a.attempt_id, a.to, _clock(a.created_at_ms)),
    ),
    _Section(
        "In doubt (needs an operator: campaigns resolve)",
        AttemptStatus.IN_DOUBT,
        (("attempt", 0), ("destination", 1), ("note", 0)),
        lambda a, cur: (a.attempt_id, a.to, a.error_message or "no call recorded"),
    ),
    *(
        _Section(
            title,
            status,
            (("attempt", 0), ("destination", 1), ("why", 2)),
            lambda a, cur: (a.attempt_id, a.to, a.error_message),
        )
        for title, status in (
            ("Suppressed (do-not-call; never dialled, never charged)", AttemptStatus.SUPPRESSED),
            ("Expired (the schedule ended first; never dialled)", AttemptStatus.EXPIRED),
            ("Capped (calls-per-number cap until the end; never dialled)", AttemptStatus.CAPPED),
        )
    ),
)


def _marked(attempt: Attempt) -> bool:
    """The row's cost carries the footnote's ``*`` (:func:`_cost`)."""
    return attempt.cost_micros is not None and attempt.cost_estimated


_FOOTNOTE = "* cost booked by the rate model: the provider gave no cost for a final call"
_SUMMARY_TITLE = "Summary (from settled totals)"


def _clock(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%H:%M:%S UTC") if ms else "-"


def _fit(section: _Section, rows: list[tuple[str, ...]], width: int) -> list[int]:
    """Indexes of the columns to show in ``width``: drop the least useful first."""
    keep = list(range(len(section.columns)))
    natural = [
        max([len(name), *(len(row[i]) for row in rows)])
        for i, (name, _) in enumerate(section.columns)
    ]

    def needed() -> int:
        return sum(natural[i] for i in keep) + 2 * (len(keep) - 1)

    for i in sorted(keep, key=lambda i: -section.columns[i][1]):
        if needed() <= width or section.columns[i][1] == 0:
            break
        keep.remove(i)
    return keep


async def write_table(
    store: Store,
    campaign: CampaignRecord,
    console: Console,
    explanation: Explanation | None = None,
) -> None:
    """Accepted calls, then rejected, sending and in-doubt attempts apart, then the summary.

    Fitted to the console's width (see the module docstring). Every cell is a
    :class:`~rich.text.Text` built by :func:`shown`: data is never parsed as markup.
    """
    buckets: dict[AttemptStatus, list[tuple[str, ...]]] = {s.status: [] for s in _SECTIONS}
    by_status = {s.status: s for s in _SECTIONS}
    marked = False
    async for attempt in store.attempts(campaign.campaign_id):
        marked = marked or _marked(attempt)
        section = by_status[attempt.status]
        cells = section.cells(attempt, campaign.currency)
        buckets[attempt.status].append(tuple(str(shown(c)) for c in cells))
    for section in _SECTIONS:
        rows = buckets[section.status]
        if not rows and section.status is not AttemptStatus.ACCEPTED:
            continue
        keep = _fit(section, rows, console.width)
        table = Table(
            title=shown(section.title.format(campaign=campaign.campaign_id)),
            title_justify="left",
            box=box.SIMPLE_HEAD,
            pad_edge=False,
        )
        for i in keep:
            name, drop = section.columns[i]
            table.add_column(
                name,
                justify="right" if name in ("billed s", "cost") else "left",
                overflow="fold",
                no_wrap=drop == 0 and name != "note",
                min_width=len(name),
            )
        for row in rows:
            table.add_row(*(Text(row[i]) for i in keep))
        console.print(table)
    summary = Table(title=_SUMMARY_TITLE, title_justify="left", show_header=False)
    summary.add_column("field", no_wrap=True)
    summary.add_column("value", overflow="fold")
    for key, value in summary_lines(campaign, explanation):
        summary.add_row(shown(key), shown(value))
    console.print(summary)
    if marked:
        console.print(shown(_FOOTNOTE))


async def write_plain(
    store: Store,
    campaign: CampaignRecord,
    out: IO[str],
    explanation: Explanation | None = None,
) -> None:
    """The table for a file or a pipe: titled sections of comma-separated rows,
    every column, nothing cut; cells as safe as :func:`csv_cell` and :func:`shown`.

    One pass over the attempts per section, so nothing is held in memory.
    """

    def cell(value: object) -> str:
        # "-" (nothing yet) is an empty cell here: a lone "-" would be neutralised to "'-".
        return _UNPRINTABLE.sub(_escape, csv_cell(None if value == "-" else value))

    writer = csv.writer(out, lineterminator="\n")
    marked = False
    for section in _SECTIONS:
        title = cell(section.title.format(campaign=campaign.campaign_id))
        # Calls always have a section; the other kinds only when there are any.
        untitled = section.status is not AttemptStatus.ACCEPTED
        if not untitled:
            out.write(f"# {title}\n")
            writer.writerow([name for name, _ in section.columns])
        async for attempt in store.attempts(campaign.campaign_id):
            if attempt.status is not section.status:
                continue
            if untitled:
                out.write(f"\n# {title}\n")
                writer.writerow([name for name, _ in section.columns])
                untitled = False
            marked = marked or _marked(attempt)
            writer.writerow([cell(c) for c in section.cells(attempt, campaign.currency)])
    out.write(f"\n# {_SUMMARY_TITLE}\n")
    for key, value in summary_lines(campaign, explanation):
        writer.writerow([key, cell(value)])
    if marked:
        out.write(f"\n{_FOOTNOTE}\n")
