"""Fuzzing the contacts CSV loader: any bytes give contacts or a SpecError naming the
file and line (and the column, where there is one), on one printable line.

Files are built from a header and rows of hostile cells (numbers with letters,
quotes, commas, CR and LF, NUL, BOMs, refs around the 200 character limit), written
well-formed by ``csv.writer`` or joined raw, in UTF-8 with or without a BOM or in
another encoding, with LF, CRLF or CR line ends, and sometimes with bytes replaced.
An independent reading (``bytes.splitlines`` per line for the encoding,
``csv.reader`` for the records) says what the loader must return or which line it
must name. A field over ``csv.field_size_limit()`` names its line and column. At
the real CLI, ``submit --contacts`` exits 2 with one line and writes nothing.
"""

from __future__ import annotations

import csv
import io
import json
import re
import subprocess
from pathlib import Path
from typing import Any

import redis as redis_sync
from hypothesis import example, given, settings
from hypothesis import strategies as st

from campaigns.domain.spec import Contact, SpecError, load_contacts_csv, normalize_number
from campaigns.settings import Settings
from tests.conftest import API_KEY, spec_dict
from tests.fuzz.conftest import FUZZ_PROFILE
from tests.support import CAMPAIGNS_BIN, ROOT, worker_env

PROFILE = settings.get_profile(FUZZ_PROFILE)
CLI_PROFILE = settings(PROFILE, max_examples=max(5, PROFILE.max_examples // 12))
LIMIT = csv.field_size_limit()

# --- strategies -------------------------------------------------------------------

_odd = st.sampled_from(
    [",", '"', "\n", "\r", "\x00", "\ufeff", "\u2028", "\x1b", "=", "+", " ", "\t"]
)
cell_text = st.one_of(
    st.text(max_size=12),
    st.text(st.one_of(_odd, st.characters(codec="utf-8")), max_size=12),
    st.builds(
        lambda c, n: c * n, st.sampled_from(["r", "\u00e9", "\u4e2d"]), st.integers(195, 205)
    ),
)
good_number = st.one_of(
    st.integers(2, 9_999).map(lambda n: f"+1555124{n:04d}"),
    st.integers(2, 9_999).map(lambda n: f" +1 (555) 124-{n:04d} "),
)
number_text = st.one_of(
    good_number,
    good_number,
    good_number,
    st.from_regex(r"\+?[0-9]{0,16}", fullmatch=True),
    cell_text,
)
column_names = st.one_of(
    st.sampled_from(["ref", "name", "plan", "to", "", " to", "To", "\ufeffto", "note"]),
    st.text(max_size=6),
)


@st.composite
def tables(draw: st.DrawFn, clean: bool = False) -> list[list[str]]:
    """A header (usually with 'to' first) and rows, some of the wrong length."""
    if clean:
        names = st.text(st.characters(codec="utf-8", exclude_characters="\r\n"), max_size=6)
        header = ["to", *draw(st.lists(names.filter(lambda n: n != "to"), max_size=4, unique=True))]
    else:
        header = ["to"] if draw(st.integers(0, 9)) else []
        header += draw(st.lists(column_names, max_size=4, unique=draw(st.integers(0, 3)) > 0))
    rows = []
    for _ in range(draw(st.integers(0, 6))):
        width = len(header) + draw(st.sampled_from([0] if clean else [0, 0, 0, 0, -1, 1]))
        first = good_number if clean else number_text
        row = [draw(first if i == 0 else cell_text) for i in range(max(width, 0))]
        rows.append(row)
    return [header, *rows]


ENCODINGS = ["utf-8"] * 5 + ["utf-8-sig"] * 2 + ["utf-16", "latin-1", "cp1252", "shift_jis"]


@st.composite
def csv_files(draw: st.DrawFn, clean: bool = False) -> bytes:
    """Bytes of a CSV file; ``clean``: well-formed UTF-8 with a 'to' header, good numbers."""
    table = draw(tables(clean))
    ending = draw(st.sampled_from(["\n", "\r\n", "\r"]))
    if clean or draw(st.booleans()):
        out = io.StringIO()
        # csv.writer quotes only the line terminator's own characters: a bare CR in a
        # cell written with LF ends would end the record on reading. QUOTE_ALL keeps
        # a clean file unambiguous; the other files may be ambiguous, as in life.
        quoting = csv.QUOTE_ALL if clean else csv.QUOTE_MINIMAL
        csv.writer(out, lineterminator=ending, quoting=quoting).writerows(table)
        text = out.getvalue()
    else:
        text = "".join(",".join(row) + ending for row in table)
    encodings = ["utf-8", "utf-8-sig"] if clean else ENCODINGS
    raw = text.encode(draw(st.sampled_from(encodings)), errors="replace")
    if (
        not clean and draw(st.integers(0, 5)) == 0
    ):  # a few bytes replaced: a broken sequence, mostly
        data = bytearray(raw)
        for _ in range(draw(st.integers(1, 3))):
            at = draw(st.integers(0, len(data)))
            data[at : at + 1] = draw(st.binary(min_size=1, max_size=2))
        raw = bytes(data)
    return raw


# --- the independent reading --------------------------------------------------------


def first_bad_line(raw: bytes) -> int | None:
    """The line holding the first byte that is not UTF-8; None if the file is UTF-8.

    Line ends are ASCII, never part of a multi-byte sequence, so each line decodes
    on its own exactly when the whole file does.
    """
    body = raw.removeprefix(b"\xef\xbb\xbf")
    for number, line in enumerate(body.splitlines(keepends=True), start=1):
        try:
            line.decode("utf-8")
        except UnicodeDecodeError:
            return number
    return None


def expected(text: str) -> list[Contact] | tuple[int | None, str]:
    """The contacts the loader must return, or (line, what) of the first error."""
    reader = csv.reader(io.StringIO(text, newline=""))
    records: list[tuple[int, list[str]]] = []
    while True:
        start = reader.line_num + 1
        try:
            row = next(reader)
        except StopIteration:
            break
        except csv.Error:
            return start, "csv"
        if row:
            records.append((start, row))
    if not records or "to" not in records[0][1]:
        return None, "header"
    line, header = records[0]
    if len(set(header)) != len(header):
        return line, "duplicate"
    contacts = []
    for line, row in records[1:]:
        if len(row) > len(header):
            return line, "width"
        values = dict(zip(header, row, strict=False))
        to = values.pop("to", "").strip()
        ref = values.pop("ref", "").strip()
        try:
            normalize_number(to)
        except ValueError:
            return line, "to"
        if len(ref) > 200:
            return line, "ref"
        contacts.append(Contact(to=to, ref=ref, variables={k: v for k, v in values.items() if v}))
    return contacts


def check_error(err: SpecError, path: Path) -> None:
    text = str(err)
    assert text.isprintable(), repr(text)
    assert err.field.startswith("contacts"), text
    assert str(path) in text, text


# --- properties ----------------------------------------------------------------------


@settings(PROFILE)
@given(csv_files())
@example(b"\xef\xbb\xbfto,ref\n+15551230002,a\n")
@example(b"to,ref\n+15551230002,caf\xe9\n")
@example(b"to,ref\n+15551230002," + b"r" * 201 + b"\n")
@example(b"to,ref\n+15551230002," + b"x" * (LIMIT + 1) + b"\n")
@example(b'to,ref\n"+15551230002\n')
def test_csv_bytes_give_contacts_or_an_error_naming_file_and_line(
    tmp_path_factory: Any, raw: bytes
) -> None:
    path = tmp_path_factory.mktemp("csv") / "contacts.csv"
    path.write_bytes(raw)
    try:
        got: list[Contact] | SpecError = load_contacts_csv(path)
    except SpecError as exc:
        got = exc
    bad_line = first_bad_line(raw)
    if bad_line is not None:
        assert isinstance(got, SpecError), got
        check_error(got, path)
        assert f"{path} line {bad_line}: not UTF-8" in str(got)
        return
    want = expected(raw.decode("utf-8-sig"))
    if isinstance(want, list):
        assert got == want
        return
    assert isinstance(got, SpecError), (want, got)
    check_error(got, path)
    line, what = want
    if line is not None:
        assert re.search(rf"\bline {line}\b", str(got)), (want, str(got))
    if what in ("to", "ref"):
        assert got.field == f"contacts[{path} line {line}].{what}", (want, got.field)
    if what == "header":
        assert "header must include 'to'" in got.message


@settings(PROFILE)
@given(csv_files(clean=True))
def test_well_formed_csv_reads_exactly(tmp_path_factory: Any, raw: bytes) -> None:
    """Quotes, commas, CR/LF inside quotes, NUL and any Unicode survive as written."""
    path = tmp_path_factory.mktemp("clean") / "contacts.csv"
    path.write_bytes(raw)
    want = expected(raw.decode("utf-8-sig"))
    try:
        got: list[Contact] | SpecError = load_contacts_csv(path)
    except SpecError as exc:
        got = exc
    if isinstance(want, list):
        assert got == want
    else:  # only a ref over 200 characters can make a clean file wrong
        assert want[1] == "ref", want
        assert isinstance(got, SpecError) and got.field.endswith(f"line {want[0]}].ref")


@st.composite
def long_field_files(draw: st.DrawFn) -> tuple[bytes, int, str]:
    """Valid rows and one value over the field size limit; (bytes, its line, column)."""
    header = ["to", "ref", *draw(st.lists(st.sampled_from(["a", "b", "c"]), unique=True))]
    n = draw(st.integers(1, 5))
    rows = [[f"+1555124{i:04d}", f"r{i}"] + ["v"] * (len(header) - 2) for i in range(2, n + 2)]
    at_row = draw(st.integers(0, n - 1))
    at_col = draw(st.integers(0, len(header) - 1))
    size = LIMIT + draw(st.integers(1, 2000))
    rows[at_row][at_col] = draw(st.sampled_from(["x", "9", '"', "\u00e9", ","])) * size
    ending = draw(st.sampled_from(["\n", "\r\n"]))
    out = io.StringIO()
    csv.writer(out, lineterminator=ending).writerows([header, *rows])
    bom = b"\xef\xbb\xbf" if draw(st.booleans()) else b""
    return bom + out.getvalue().encode(), at_row + 2, header[at_col]


@settings(PROFILE, max_examples=max(10, PROFILE.max_examples // 4))
@given(long_field_files())
def test_a_field_over_the_size_limit_names_line_and_column(
    tmp_path_factory: Any, case: tuple[bytes, int, str]
) -> None:
    raw, line, column = case
    path = tmp_path_factory.mktemp("long") / "contacts.csv"
    path.write_bytes(raw)
    try:
        load_contacts_csv(path)
    except SpecError as exc:
        check_error(exc, path)
        assert exc.field == f"contacts[{path} line {line}].{column}"
        assert f"longer than {LIMIT} characters" in exc.message
    else:
        raise AssertionError("an over-long field was accepted")


# --- the real CLI ----------------------------------------------------------------------


def _dbsize(url: str) -> int:
    with redis_sync.Redis.from_url(url) as r:
        return int(r.dbsize())


@CLI_PROFILE
@given(csv_files())
@example(b"to,ref\n+15551230002,caf\xe9\n")
@example(b"to,ref\n+15551230002," + b"r" * 201 + b"\n")
def test_cli_submit_with_a_hostile_csv_exits_0_or_2_and_writes_nothing_on_2(
    settings: Settings, tmp_path_factory: Any, raw: bytes
) -> None:
    folder = tmp_path_factory.mktemp("cli")
    spec_path = folder / "spec.json"
    spec_path.write_text(json.dumps(spec_dict(f"csv-{folder.name}"[:60], contacts=1)))
    csv_path = folder / "contacts.csv"
    csv_path.write_bytes(raw)
    try:
        load_contacts_csv(csv_path)
        valid = True
    except SpecError:
        valid = False
    before = _dbsize(settings.redis_url)
    out = subprocess.run(
        [CAMPAIGNS_BIN, "submit", str(spec_path), "--contacts", str(csv_path)],
        env=worker_env(settings),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert "Traceback" not in out.stderr, out.stderr
    assert API_KEY not in out.stdout + out.stderr
    if valid:
        assert out.returncode == 0, out.stderr
        return
    assert out.returncode == 2, (out.stdout, out.stderr)
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and str(csv_path) in lines[0], out.stderr
    assert _dbsize(settings.redis_url) == before, "nothing written on exit 2"
