"""The do-not-call CSV reader and number rules, without Redis: what a file means,
and that every error names the file, the line and the column."""

from __future__ import annotations

import io

import pytest

from campaigns.domain.spec import SpecError, normalize_number
from campaigns.operators import dnc
from campaigns.operators.dnc import _NumberReader, _split_cr, canonical_numbers


def numbers(data: bytes, *, strict: bool = False) -> tuple[list[str], int]:
    reader = _NumberReader(io.BytesIO(data), "list.csv", strict)
    found = [n for chunk in reader.chunks() for n in chunk]
    return found, reader.rows


def error(data: bytes, *, strict: bool = False) -> str:
    with pytest.raises(SpecError) as caught:
        numbers(data, strict=strict)
    return str(caught.value)


@pytest.mark.parametrize(
    "data",
    [
        b"number\n+15551230002\n+1 555 123 0003\n",
        b"number\r\n+15551230002\r\n+1 555 123 0003\r\n",
        b"number\r+15551230002\r+1 555 123 0003",
        b"\xef\xbb\xbfNumber\n+15551230002\n\n+1 555 123 0003\n",
        b"ref,to,name\na,+15551230002,x\nb,+1 555 123 0003,\n",
        b' number ,note\n"+15551230002","a, b"\n+15551230003,c\n',
    ],
    ids=["lf", "crlf", "cr", "bom-case-blank", "contacts-file", "quoted"],
)
def test_a_file_yields_canonical_numbers(data: bytes) -> None:
    assert numbers(data) == (["+15551230002", "+15551230003"], 2)


def test_canonical_form_is_the_contacts_form() -> None:
    raw = ["+1 (555) 123-0002", "+44 20 7946 0958", "+4930901820"]
    assert canonical_numbers(raw) == [normalize_number(n) for n in raw]


def test_duplicates_are_dropped_in_a_call_and_kept_as_rows_in_a_file() -> None:
    assert canonical_numbers(["+15551230002", "+1 555 123 0002"]) == ["+15551230002"]
    assert numbers(b"number\n+15551230002\n+1 555 123 0002\n") == (["+15551230002"] * 2, 2)


def test_chunks_are_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(dnc, "IMPORT_CHUNK", 3)
    rows = b"".join(b"+1555124%04d\n" % i for i in range(8))
    reader = _NumberReader(io.BytesIO(b"number\n" + rows), "list.csv", False)
    assert [len(c) for c in reader.chunks()] == [3, 3, 2]


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (b"", "list.csv: the file is empty"),
        (b"\n\n", "list.csv: the file is empty"),
        (b"phone\n+15551230002\n", "list.csv line 1: the header must have a 'number' or 'to'"),
        (b"+15551230002\n", "list.csv line 1: the header must have a 'number' or 'to'"),
        (b"number,to\n+15551230002,+15551230003\n", "line 1: give one of the columns"),
        (b"number,Number\n+15551230002,x\n", "line 1: column 'number' appears twice"),
        (b"number\n+15551230002\n12345\n", "dnc[list.csv line 3].number: '12345': must be"),
        (b"number\n+15551230002\n+1555\n", "dnc[list.csv line 3].number: '+1555' is not"),
        (b"x,NUMBER\na,+15551230002\nb,\n", "dnc[list.csv line 3].NUMBER: no number"),
        (b"x,number\na,+15551230002\nb\n", "list.csv line 3: no 'number' value"),
        (b"number\n+15551230002,x\n", "list.csv line 2: more values than header columns"),
        (b"number\r\n+15551230002\r\n\xff\r\n", "list.csv line 3: not UTF-8 (byte 0xff)"),
        (b"number\r+15551230002\r\xff\r", "list.csv line 3: not UTF-8 (byte 0xff)"),
        (b"number\n+15551230002\n+1555\xe2\x82", "list.csv line 3: not UTF-8"),
    ],
    ids=[
        "empty",
        "blank",
        "no-number-column",
        "no-header",
        "both-columns",
        "twice",
        "no-plus",
        "impossible",
        "empty-value",
        "short-row",
        "long-row",
        "utf8-crlf",
        "utf8-cr",
        "utf8-cut",
    ],
)
def test_bad_files_name_the_line_and_column(data: bytes, expected: str) -> None:
    assert expected in error(data)


def test_a_bad_row_after_many_good_ones_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(dnc, "IMPORT_CHUNK", 10)
    good = b"".join(b"+1555124%04d\n" % i for i in range(95))
    assert "dnc[list.csv line 97].number" in error(b"number\n" + good + b"+1\n")


def test_a_line_without_a_break_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(dnc, "MAX_LINE_BYTES", 64)
    assert "list.csv line 2: no line break within 64 bytes" in error(b"number\n" + b"+1" * 40)


def test_strict_refuses_possible_but_invalid_numbers() -> None:
    fictional = b"number\n+15551230002\n"  # possible, not valid: the seeds' numbers
    assert numbers(fictional) == (["+15551230002"], 1)
    assert "is not a valid phone number" in error(fictional, strict=True)
    with pytest.raises(SpecError, match=r"numbers\.1"):
        canonical_numbers(["+4930901820", "+15551230002"], strict=True)


def test_bad_values_in_a_call_name_their_position() -> None:
    with pytest.raises(SpecError) as caught:
        canonical_numbers(["+15551230002", 5])
    assert caught.value.field == "numbers.1"
    with pytest.raises(SpecError) as caught:
        canonical_numbers(["+15551230002", "", "x"], name=lambda i: f"NUMBER {i + 1}")
    assert caught.value.field == "NUMBER 2"
    with pytest.raises(SpecError, match="at least one"):
        canonical_numbers([])
    with pytest.raises(SpecError, match="at most"):
        canonical_numbers(["+15551230002"] * (dnc.MAX_NUMBERS + 1))


@pytest.mark.parametrize(
    ("text", "pieces"),
    [
        ("a\n", ["a\n"]),
        ("a\r\n", ["a\r\n"]),
        ("a\rb\r\n", ["a\r", "b\r\n"]),
        ("a\rb", ["a\r", "b"]),
        ("a\r", ["a\r"]),
        ("\r\r\n", ["\r", "\r\n"]),
        ("", []),
    ],
)
def test_lone_carriage_returns_end_lines(text: str, pieces: list[str]) -> None:
    assert _split_cr(text) == pieces
