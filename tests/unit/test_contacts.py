"""Streaming contacts: the same contacts, counts, errors and fingerprint as the whole-list path.

``load_spec(spec, csv)`` builds one spec holding every contact; :class:`Contacts`
reads the same input in chunks without holding it. Both must agree exactly:
that is what makes a resubmit a no-op and a change a conflict whichever way
the contacts came, and what the store keeps per contact.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from campaigns.domain.contacts import Contacts, contact_json
from campaigns.domain.spec import SpecError, load_spec, parse_spec
from campaigns.operators.estimate import estimate
from tests.conftest import spec_dict


def write_csv(path: Path, rows: list[list[str]], header: tuple[str, ...] = ("to", "ref")) -> Path:
    out = io.StringIO()
    csv.writer(out, lineterminator="\n", quoting=csv.QUOTE_ALL).writerows([list(header), *rows])
    path.write_text(out.getvalue(), encoding="utf-8")
    return path


def write_spec(path: Path, data: dict[str, Any]) -> Path:
    path.write_text(json.dumps(data))
    return path


def streamed(contacts: Contacts, size: int) -> list[str]:
    return [item for chunk in contacts.read(size) for item in chunk]


def test_matches_the_whole_list_path(tmp_path: Path) -> None:
    """Inline contacts first, then the file's; duplicates across both and inside the
    file dropped and counted; numbers normalized; variables and odd refs kept."""
    data = spec_dict("agree", contacts=3)
    data["contacts"].append({"to": "+1 555 124 0001", "ref": "dup of inline"})
    spec_path = write_spec(tmp_path / "s.json", data)
    csv_path = write_csv(
        tmp_path / "c.csv",
        [
            ["+15551240002", "dup of inline", "", "x"],
            ["+1 (555) 124-0099", 'quote " and, comma', "Zo\u00eb \u4e2d", ""],
            ["+15551240099", "dup in file", "", ""],
            ["+390612345678", "italy", "", "\n"],
            ["+15551240100", "", "", ""],
        ],
        header=("to", "ref", "name", "note"),
    )
    whole = load_spec(spec_path, csv_path)
    contacts = Contacts.load(spec_path, csv_path)
    for size in (1, 2, 3, 1000):
        assert streamed(contacts, size) == [contact_json(c) for c in whole.contacts]
    tally = contacts.tally()
    assert tally.fingerprint == whole.fingerprint()
    assert (tally.contacts, tally.duplicates_dropped) == (len(whole.contacts), 3)
    assert tally.duplicates_dropped == whole.duplicates_dropped
    got = estimate(contacts.spec, tally=tally, average_seconds=60)
    assert got == estimate(whole, average_seconds=60)


@pytest.mark.parametrize(
    "header", [("to",), ("ref", "to"), ("to", "ref", "name"), ("name", "to", "ref", "b", "a")]
)
def test_every_column_count_matches_the_whole_list_path(
    tmp_path: Path, header: tuple[str, ...]
) -> None:
    """No variable, one (the common list, rendered its own way) or several; short rows too."""
    rows = [
        [f"+1201555{i:04d}" if h == "to" else f"{h} \u00e9 {i}" if i % 3 else "" for h in header]
        for i in range(7)
    ]
    rows.append([*rows[1][: header.index("to")], "+12015559999"])  # short: the rest missing
    csv_path = write_csv(tmp_path / "c.csv", rows, header=header)
    spec_path = write_spec(tmp_path / "s.json", spec_dict("columns", contacts=0))
    whole = load_spec(spec_path, csv_path)
    contacts = Contacts.load(spec_path, csv_path)
    assert streamed(contacts, 3) == [contact_json(c) for c in whole.contacts]
    assert contacts.tally().fingerprint == whole.fingerprint()


def test_inline_only_fingerprint_is_the_spec_fingerprint() -> None:
    spec = parse_spec(spec_dict("inline", contacts=4))
    assert Contacts(spec).tally().fingerprint == spec.fingerprint()


@settings(max_examples=40, deadline=None)
@given(
    st.lists(st.integers(0, 30), max_size=40),
    st.lists(st.text(max_size=5), max_size=3),
    st.integers(1, 7),
)
def test_duplicates_across_chunks_are_counted(
    tmp_path_factory: pytest.TempPathFactory, picks: list[int], refs: list[str], size: int
) -> None:
    folder = tmp_path_factory.mktemp("dups")
    rows = [[f"+1555124{n:04d}", refs[i % len(refs)] if refs else ""] for i, n in enumerate(picks)]
    spec_path = write_spec(folder / "s.json", spec_dict("dups", contacts=2))
    csv_path = write_csv(folder / "c.csv", rows)
    contacts = Contacts.load(spec_path, csv_path)
    items = streamed(contacts, size)
    numbers = [json.loads(item)["to"] for item in items]
    assert len(numbers) == len(set(numbers))
    reader = contacts.read(size)
    chunks = list(reader)
    assert all(len(chunk) == size for chunk in chunks[:-1])
    whole = load_spec(spec_path, csv_path)
    assert reader.tally.contacts == len(whole.contacts) == len(numbers)
    assert reader.tally.duplicates_dropped == whole.duplicates_dropped
    assert reader.tally.fingerprint == whole.fingerprint()


def test_a_bad_row_after_chunks_were_yielded_names_file_line_and_field(tmp_path: Path) -> None:
    rows = [[f"+1555124{n:04d}", f"r{n}"] for n in range(20)]
    rows[13] = ["+1555", "too short"]
    spec_path = write_spec(tmp_path / "s.json", spec_dict("bad", contacts=1))
    csv_path = write_csv(tmp_path / "c.csv", rows)
    reader = Contacts.load(spec_path, csv_path).read(4)
    seen: list[list[str]] = []
    with pytest.raises(SpecError) as info:
        for chunk in reader:
            seen.append(chunk)
    assert len(seen) == 3, "the bad row comes after three full chunks"
    assert info.value.field == f"contacts[{csv_path} line 15].to"
    assert "'+1555' is not a possible phone number" in str(info.value)
    with pytest.raises(RuntimeError):
        reader.tally  # noqa: B018 - never complete after an error


def test_a_long_ref_and_bad_utf8_keep_their_messages(tmp_path: Path) -> None:
    spec_path = write_spec(tmp_path / "s.json", spec_dict("msg", contacts=1))
    long_ref = write_csv(tmp_path / "ref.csv", [["+15551240002", "r" * 201]])
    with pytest.raises(SpecError) as info:
        Contacts.load(spec_path, long_ref).tally()
    assert info.value.field == f"contacts[{long_ref} line 2].ref"
    assert info.value.message == "must be at most 200 characters, not 201"
    bad = tmp_path / "bytes.csv"
    bad.write_bytes(b"to,ref\n+15551240002,a\n+15551240003,b\n" + b"+15551240004,caf\xe9\n")
    with pytest.raises(SpecError) as info:
        Contacts.load(spec_path, bad).tally()
    assert f"{bad} line 4: not UTF-8 (byte 0xe9)" in str(info.value)


def test_strict_numbers_apply_to_the_file_naming_its_line(tmp_path: Path) -> None:
    spec_path = write_spec(
        tmp_path / "s.json",
        {**spec_dict("strict", contacts=0), "caller_id": "+12125550100", "strict_numbers": True},
    )
    csv_path = write_csv(tmp_path / "c.csv", [["+12125550123", "ok"], ["+15551240002", "fake"]])
    with pytest.raises(SpecError) as info:
        Contacts.load(spec_path, csv_path).tally()
    assert info.value.field == f"contacts[{csv_path} line 3].to"
    assert "not a valid phone number" in info.value.message


def test_none_at_all_is_refused_when_required(tmp_path: Path) -> None:
    spec_path = write_spec(tmp_path / "s.json", spec_dict("empty", contacts=0))
    csv_path = write_csv(tmp_path / "c.csv", [])
    contacts = Contacts.load(spec_path, csv_path)
    assert not contacts.none_given
    assert contacts.tally().contacts == 0
    with pytest.raises(SpecError, match="at least one contact"):
        contacts.tally(required=True)
    assert Contacts(contacts.spec).none_given
