"""Fuzzing the report: any strings stored in an attempt render in every format.

Attempts are written straight into the real Redis the way the store's scripts lay
them out, with hostile strings in every text field: the contact's ``to``, ``ref``
and variables (inside ``contact_json``, where a JSON escape can even carry a lone
surrogate), the provider's call ID, codes, messages and status, the request body,
and the campaign's halt message. Then:

- JSON is ASCII and gives back every stored value unchanged;
- CSV is valid UTF-8, reads back to the stored values, and no cell starts with a
  formula trigger (``= + - @``, tab, CR, LF, their full-width forms, or any of
  those after leading spaces) unless it is a plain number; a neutralised cell is
  the value with a ``'`` in front;
- the table never raises, prints rich markup and emoji codes in data literally,
  and never emits a control character (other than newline) or a bidi override;
- at the real CLI, ``campaigns report`` exits 0 in all three formats.
"""

from __future__ import annotations

import asyncio
import csv
import io
import itertools
import json
import re
import subprocess
import unicodedata
from typing import Any

from hypothesis import example, given, settings
from hypothesis import strategies as st
from redis.asyncio import Redis
from rich.console import Console

from campaigns.domain.lifecycle import AttemptStatus
from campaigns.domain.money import humanize_micros
from campaigns.domain.spec import parse_spec
from campaigns.operators.report import (
    REPORT_FIELDS,
    write_csv,
    write_json,
    write_plain,
    write_table,
)
from campaigns.settings import Settings
from campaigns.store import Store
from tests.conftest import API_KEY, spec_dict
from tests.fuzz.conftest import FUZZ_PROFILE
from tests.support import CAMPAIGNS_BIN, ROOT, submit_spec, worker_env

PROFILE = settings.get_profile(FUZZ_PROFILE)
CLI_PROFILE = settings(PROFILE, max_examples=max(4, PROFILE.max_examples // 15))

TRIGGERS = tuple("=+-@\t\r\n\uff1d\uff0b\uff0d\uff20")
PLAIN_NUMBER = re.compile(r"\+[0-9]{2,15}|-?[0-9]+(?:\.[0-9]+)?", re.ASCII)
BIDI = set("\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")
SURROGATE = re.compile("[\ud800-\udfff]")

# --- strategies -------------------------------------------------------------------

_fragments = st.sampled_from(
    [
        "[/oops]",
        "[bold red]",
        "[/]",
        "[link=https://x]",
        "[",
        "]",
        "\\[",
        ":smile:",
        ":thumbs_up:",
        "=1+1",
        "+1+1",
        "-2+3",
        "@SUM(1+1)",
        "=cmd|' /C calc'!A0",
        "\uff1d1",
        "+15551234567",
        "-12.5",
        "\x1b[2J",
        "\x1b]0;title\x07",
        "\r",
        "\n",
        "\t",
        "\x00",
        "\x85",
        "\u202e",
        "\u2066",
        "\u200b",
        "\ufeff",
        "\u4e2d\u6587",
        "e\u0301",
        "\U0001f600",
        " ",
        ",",
        '"',
        "'",
    ]
)
_storable_chars = st.characters(codec="utf-8")  # redis-py encodes as strict UTF-8
storable_text = st.one_of(
    st.text(_storable_chars, max_size=20),
    st.lists(st.one_of(_fragments, st.text(_storable_chars, max_size=4)), max_size=6).map("".join),
)
json_text = st.one_of(  # inside contact_json a JSON escape carries even a lone surrogate
    storable_text,
    st.text(st.characters(categories=["Cs", "Cc", "Cf"]), max_size=4),
)
statuses = st.sampled_from([s.value for s in AttemptStatus])
"""Only the store's scripts write a status; a status they never write is damage,
which the store reports as such (tests/integration/test_report.py)."""
maybe = st.one_of(st.none(), storable_text)


@st.composite
def stored_attempts(draw: st.DrawFn) -> dict[str, Any]:
    return {
        "to": draw(st.one_of(st.just("+15551230002"), json_text)),
        "ref": draw(json_text),
        "variables": draw(st.dictionaries(json_text, json_text, max_size=3)),
        "status": draw(statuses),
        "call_id": draw(maybe),
        "error_code": draw(maybe),
        "error_message": draw(maybe),
        "request": draw(maybe),
        "final_status": draw(maybe),
        "billsec": draw(st.one_of(st.none(), st.integers(0, 10**6))),
        "cost": draw(st.one_of(st.none(), st.integers(0, 2**53 - 1))),
        "cost_estimated": draw(st.booleans()),
        "settled": draw(st.booleans()),
    }


halts = st.one_of(st.none(), st.tuples(storable_text, storable_text))

# --- writing hostile data the way the store lays it out --------------------------------

_ids = itertools.count()


async def seed(
    store: Store, campaign_id: str, attempts: list[dict[str, Any]], halt: tuple[str, str] | None
) -> list[str]:
    """A real submitted campaign, then attempts written as the store's scripts write them."""
    await submit_spec(store, parse_spec(spec_dict(campaign_id, contacts=1)))
    r = store.redis
    if halt is not None:
        await r.hset(
            f"dsp:c:{campaign_id}:meta", mapping={"halt_code": halt[0], "halt_message": halt[1]}
        )
    ids = []
    for index, a in enumerate(attempts):
        attempt_id = f"{campaign_id}:{index:06d}:1"
        contact = {"to": a["to"], "ref": a["ref"], "variables": a["variables"]}
        fields: dict[str, str | int] = {
            "attempt_id": attempt_id,
            "campaign_id": campaign_id,
            "contact": index,
            "contact_json": json.dumps(contact),  # ASCII: surrogates as \\udXXX escapes
            "status": a["status"],
            "reserved": 0,
            "created_at": 1,
            "cost_estimated": "1" if a["cost_estimated"] else "0",
            "settled": "1" if a["settled"] else "0",
        }
        for name in ("call_id", "error_code", "error_message", "request", "final_status"):
            if a[name] is not None:
                fields[name] = a[name]
        if a["billsec"] is not None:
            fields["billsec"] = a["billsec"]
        if a["cost"] is not None:
            fields["cost"] = a["cost"]
        await r.hset(f"dsp:a:{attempt_id}", mapping=fields)
        await r.rpush(f"dsp:c:{campaign_id}:attempts", attempt_id)
        ids.append(attempt_id)
    return ids


# --- the contract ------------------------------------------------------------------------


def unescaped_surrogates(text: str) -> str:
    """A value as CSV and the table must carry it: a lone surrogate as its escape."""
    return SURROGATE.sub(lambda m: m.group().encode("unicode_escape").decode(), text)


def dangerous(text: str) -> bool:
    if not text or PLAIN_NUMBER.fullmatch(text):
        return False
    return text.startswith(TRIGGERS) or text.lstrip().startswith(TRIGGERS)


def via_json(value: str) -> str:
    """What contact_json gives back: a surrogate pair written apart reads as one character."""
    return str(json.loads(json.dumps(value)))


def expected_rows(attempts: list[dict[str, Any]], ids: list[str]) -> list[dict[str, Any]]:
    rows = []
    for attempt_id, a in zip(ids, attempts, strict=True):
        accepted = a["status"] == "accepted"
        rows.append(
            {
                "attempt_id": attempt_id,
                "ref": via_json(a["ref"]),
                "to": via_json(a["to"]),
                "status": a["status"],
                "call_id": a["call_id"],
                "error_code": a["error_code"],
                "request": a["request"],
                "final_status": a["final_status"] if accepted else None,
                "billsec": a["billsec"] if accepted else None,
                "cost_micros": a["cost"] if accepted and a["settled"] else None,
                "currency": "EUR",
            }
        )
    return rows


def check_json(text: str, want: list[dict[str, Any]]) -> None:
    assert text.isascii()
    rows = json.loads(text)
    assert [{k: v for k, v in r.items() if k not in TIMES} for r in rows] == want
    assert all(r[k] is None or ISO.fullmatch(r[k]) for r in rows for k in TIMES)


TIMES = ("claimed_at", "sent_at", "answered_at", "ended_at")
"""The report's per-attempt times: ISO 8601 UTC or null, whatever else is stored."""
ISO = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}Z")


def check_csv(text: str, want: list[dict[str, Any]]) -> None:
    text.encode("utf-8")  # strict: stdout takes it
    reader = csv.reader(io.StringIO(text, newline=""))
    assert next(reader) == list(REPORT_FIELDS)
    got = list(reader)
    assert len(got) == len(want)
    for cells, row in zip(got, want, strict=True):
        for name, cell in zip(REPORT_FIELDS, cells, strict=True):
            if name in TIMES:
                assert cell == "" or ISO.fullmatch(cell), (name, cell)
                continue
            value = row[name]
            plain = "" if value is None else unescaped_surrogates(str(value))
            assert not dangerous(cell), (name, cell)
            assert cell == ("'" + plain if dangerous(plain) else plain), (name, cell, plain)


def literal(value: str | None) -> bool:
    """Values the table must show exactly as stored: printable and no bidi controls."""
    return bool(value) and value.isprintable() and not (set(value) & BIDI)


TABLE_FIELDS = {
    "accepted": ("call_id", "to", "final_status"),
    "rejected": ("attempt_id", "to", "error_code", "request"),
    "sending": ("attempt_id", "to"),
    "in_doubt": ("attempt_id", "to", "error_message"),
    "suppressed": ("attempt_id", "to", "error_message"),
    "expired": ("attempt_id", "to", "error_message"),
    "capped": ("attempt_id", "to", "error_message"),
}
"""Which stored values each table shows."""


def check_table(
    text: str,
    attempts: list[dict[str, Any]],
    ids: list[str],
    halt: tuple[str, str] | None,
) -> None:
    text.encode("utf-8")
    odd = [c for c in text if c != "\n" and (unicodedata.category(c) == "Cc" or c in BIDI)]
    assert not odd, odd
    for attempt_id, a in zip(ids, attempts, strict=True):
        stored = {**a, "attempt_id": attempt_id, "to": via_json(a["to"])}
        for name in TABLE_FIELDS[a["status"]]:
            if literal(stored[name]):
                assert stored[name] in text, (name, stored[name])
    if halt is not None and literal(halt[1]):
        assert humanize_micros(halt[1], "EUR") in text  # stored micros read as money


async def render(
    redis_url: str, attempts: list[dict[str, Any]], halt: tuple[str, str] | None
) -> str:
    redis = Redis.from_url(redis_url)
    try:
        store = Store(redis)
        campaign_id = f"rep{next(_ids)}"
        ids = await seed(store, campaign_id, attempts, halt)
        campaign = await store.campaign(campaign_id)
        assert campaign is not None
        want = expected_rows(attempts, ids)

        out = io.StringIO()
        await write_json(store, campaign, out)
        check_json(out.getvalue(), want)

        out = io.StringIO()
        await write_csv(store, campaign, out)
        check_csv(out.getvalue(), want)

        for width in (4000, 80, 20):
            out = io.StringIO()
            console = Console(file=out, width=width, color_system=None, force_terminal=False)
            await write_table(store, campaign, console)
            if width == 4000:  # wide enough that nothing folds: values appear whole
                check_table(out.getvalue(), attempts, ids, halt)

        out = io.StringIO()  # the table's form for a file or a pipe
        await write_plain(store, campaign, out)
        plain = out.getvalue()
        plain.encode("utf-8")
        odd = [c for c in plain if c != "\n" and (unicodedata.category(c) == "Cc" or c in BIDI)]
        assert not odd, odd
        return campaign_id
    finally:
        await redis.aclose()


@settings(PROFILE)
@given(st.lists(stored_attempts(), min_size=1, max_size=5), halts)
@example(
    [
        {
            "to": "+15551230002",
            "ref": "=1+1",
            "variables": {"x": "[/oops]"},
            "status": "rejected",
            "call_id": None,
            "error_code": "[/oops]",
            "error_message": "\x1b[2J",
            "request": '{"variables":{"x":"[/oops]"}}',
            "final_status": None,
            "billsec": None,
            "cost": None,
            "cost_estimated": False,
            "settled": False,
        }
    ],
    ("[bold]x", "\u202e[/]"),
)
def test_report_renders_any_stored_strings(
    redis_url: str, attempts: list[dict[str, Any]], halt: tuple[str, str] | None
) -> None:
    asyncio.run(render(redis_url, attempts, halt))


@CLI_PROFILE
@given(st.lists(stored_attempts(), min_size=1, max_size=4), halts)
def test_cli_report_exits_0_in_every_format(
    settings: Settings, attempts: list[dict[str, Any]], halt: tuple[str, str] | None
) -> None:
    """Through the real stdout (its encoding and rich's terminal detection)."""
    campaign_id = asyncio.run(render(settings.redis_url, attempts, halt))
    for fmt in ("table", "csv", "json"):
        out = subprocess.run(
            [CAMPAIGNS_BIN, "report", campaign_id, "--format", fmt],
            env=worker_env(settings),
            cwd=ROOT,
            capture_output=True,
            timeout=60,
        )
        assert out.returncode == 0, (fmt, out.stderr)
        assert out.stderr == b"", out.stderr
        out.stdout.decode("utf-8")
        assert API_KEY.encode() not in out.stdout
        if fmt == "json":
            assert len(json.loads(out.stdout)) == len(attempts)
