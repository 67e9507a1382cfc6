"""A campaign's contacts, read in chunks: the spec's own, then a CSV file's.

A million-row CSV must not become a million Python objects: :class:`Contacts`
reads the file a record at a time, validates each row (the same checks and
messages as :func:`load_contacts_csv`: file, line, field), drops duplicate
numbers (a set of integers, the E.164 digits) and yields chunks of canonical
contact JSON for the store to stage. The spec fingerprint is hashed as the
contacts pass, so it equals :meth:`CampaignSpec.fingerprint` of the same spec
with every contact inline: a resubmit is a no-op and a change is a conflict,
whichever way the contacts came.

The file is read twice: once as bytes to check it is UTF-8 (a bad byte
anywhere is reported before any row, as when the file was read whole), then
as CSV text.
"""

from __future__ import annotations

import codecs
import csv
import functools
import hashlib
import itertools
import json
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from json.encoder import encode_basestring_ascii
from pathlib import Path
from typing import TypeVar

from campaigns.domain.inputs import SpecError, decode_utf8, show
from campaigns.domain.numbers import nanp_possible, normalize_number
from campaigns.domain.spec import CampaignSpec, Contact, identify, load_spec

__all__ = [
    "CHUNK_SIZE",
    "ContactReader",
    "Contacts",
    "Refusals",
    "Tally",
    "contact_json",
    "load_contacts_csv",
]

CHUNK_SIZE = 5000
"""Contacts per chunk: one pipeline round trip each, a few hundred kB of JSON."""

_REF_MAX = 200
_NO_CONTACTS = "at least one contact is needed (in the spec, or --contacts FILE.csv)"
_dumps = functools.partial(json.dumps, sort_keys=True, separators=(",", ":"))
"""The canonical JSON of :meth:`CampaignSpec.fingerprint`."""


def _check_utf8(path: Path, shown: str) -> None:
    """The file decodes as UTF-8, read a block at a time; else the error naming its line."""
    decoder = codecs.getincrementaldecoder("utf-8")()
    try:
        with path.open("rb") as file:
            while block := file.read(1 << 20):
                decoder.decode(block)
            decoder.decode(b"", final=True)
    except UnicodeDecodeError:
        decode_utf8(path.read_bytes(), shown, "contacts")  # raises, naming the line
        raise  # pragma: no cover - decode_utf8 raised for the same bytes
    except OSError as exc:
        raise SpecError("contacts", f"cannot read {shown}: {exc.strerror or exc}") from None


def _long_column(record: str, limit: int) -> int | None:
    """Index of the first field longer than ``limit`` in one raw CSV record (excel dialect)."""
    column = length = 0
    quoted = False
    at_start = True
    i = 0
    while i < len(record):
        ch = record[i]
        i += 1
        if quoted:
            if ch == '"':
                if record[i : i + 1] == '"':
                    i += 1
                else:
                    quoted = False
                    continue
        elif ch == '"' and at_start:
            quoted = True
            at_start = False
            continue
        elif ch == ",":
            column, length, at_start = column + 1, 0, True
            continue
        elif ch in "\r\n":
            return None
        at_start = False
        length += 1
        if length > limit:
            return column
    return None


def _record_text(path: Path, first: int, last: int) -> str:
    """Lines ``first`` to ``last`` of the file as ``csv.reader`` was given them (a bad record)."""
    with path.open(encoding="utf-8-sig", newline="") as file:
        return "".join(itertools.islice(file, first - 1, last))


def _records(path: Path, text: Iterable[str], shown: str) -> Iterator[tuple[int, list[str]]]:
    """(line where the record starts, values) per non-blank record; csv errors named.

    ``text`` is ``path`` opened with ``newline=""`` (split on \\n, \\r and
    \\r\\n), so ``csv.reader`` sees line ends inside quotes as written. A bad
    record's lines are read again from ``path`` to explain it: nothing is kept
    per row on the way.
    """
    reader = csv.reader(text)
    header: list[str] | None = None
    start = 1
    try:
        for row in reader:
            if row:
                if header is None:
                    header = row
                yield start, row
            start = reader.line_num + 1
    except csv.Error as exc:
        limit = csv.field_size_limit()
        column = _long_column(_record_text(path, start, reader.line_num), limit)
        if column is None:
            raise SpecError("contacts", f"{shown} line {start}: not valid CSV: {exc}") from None
        name = header[column] if header is not None and column < len(header) else None
        field = f"contacts[{shown} line {start}]" + (f".{show(name, 40)}" if name else "")
        what = f"column {column + 1}" if name is None else "the value"
        raise SpecError(field, f"{what} is longer than {limit} characters") from None
    except UnicodeDecodeError:  # the file changed since it was checked
        raise SpecError("contacts", f"{shown} line {start}: not UTF-8") from None


V = TypeVar("V")
Columns = list[tuple[str, int]]
"""The variable columns of a CSV header: (name, index), sorted by name."""


def _variables(columns: Columns) -> Callable[[list[str]], dict[str, str]]:
    """A row's non-empty variables as a dict (sorted by name)."""

    def variables(values: list[str]) -> dict[str, str]:
        count = len(values)
        return {name: values[i] for name, i in columns if i < count and values[i]}

    return variables


def _variables_json(columns: Columns) -> Callable[[list[str]], str]:
    """A row's non-empty variables as the inside of the JSON object
    :func:`contact_json` writes (keys sorted, ASCII), with no dict between."""
    keys = [(encode_basestring_ascii(name) + ":", i) for name, i in columns]
    if len(keys) == 1:  # the common list: to, ref and one more (a name); no list per row
        ((key, at),) = keys

        def variable(values: list[str]) -> str:
            value = values[at] if at < len(values) else ""
            return key + encode_basestring_ascii(value) if value else ""

        return variable

    def variables(values: list[str]) -> str:
        count = len(values)
        return ",".join(
            [key + encode_basestring_ascii(values[i]) for key, i in keys if i < count and values[i]]
        )

    return variables


Refuse = Callable[[int, str, str, str, str], None]
"""Takes a bad row (line, column, reason, its ``to`` and ``ref`` as written) and
lets the read go on; without one, the first bad row ends it."""


def _csv_rows(
    path: Path, render: Callable[[Columns], Callable[[list[str]], V]], refuse: Refuse | None = None
) -> Iterator[tuple[int, str, str, V]]:
    """(line, to, ref, variables) per data row of a contacts CSV with a checked header,
    ``to`` and ``ref`` stripped, the variables as ``render(columns)`` makes them.

    A row with more values than the header is refused here (to ``refuse`` when
    given); the number and the ref are the caller's to check (it knows whether
    the number is canonical).
    """
    shown = show(str(path))
    _check_utf8(path, shown)
    try:
        file = path.open(encoding="utf-8-sig", newline="")
    except OSError as exc:  # pragma: no cover - it was just read
        raise SpecError("contacts", f"cannot read {shown}: {exc.strerror or exc}") from None
    with file:
        rows = _records(path, file, shown)
        first = next(rows, None)
        header_line, header = (1, []) if first is None else first
        if "to" not in header:
            found = f"; found {show(','.join(header), 60)!r}" if header else "; the file is empty"
            raise SpecError(
                "contacts", f"{shown}: the CSV header must include 'to' (e.g. 'to,ref'){found}"
            )
        duplicated = sorted({name for name in header if header.count(name) > 1})
        if duplicated:
            raise SpecError(
                "contacts",
                f"{shown} line {header_line}: column {show(duplicated[0], 40)!r} appears twice",
            )
        to_at = header.index("to")
        ref_at = header.index("ref") if "ref" in header else None
        others = sorted((name, i) for i, name in enumerate(header) if name not in ("to", "ref"))
        width = len(header)
        variables = render(others)
        for line, values in rows:
            count = len(values)
            if count > width:
                if refuse is None:
                    raise SpecError(
                        "contacts", f"{shown} line {line}: more values than header columns"
                    )
                ref = values[ref_at] if ref_at is not None else ""
                refuse(line, "row", "more values than header columns", values[to_at], ref)
                continue
            to = values[to_at].strip() if to_at < count else ""
            ref = values[ref_at].strip() if ref_at is not None and ref_at < count else ""
            yield line, to, ref, variables(values)


def _never(value: str) -> object:
    return None


def _bad(path: Path, line: int, column: str, message: str) -> SpecError:
    return SpecError(f"contacts[{show(str(path))} line {line}].{show(column, 40)}", message)


def _check_ref(path: Path, line: int, ref: str) -> None:
    if len(ref) > _REF_MAX:
        raise _bad(path, line, "ref", f"must be at most {_REF_MAX} characters, not {len(ref)}")


def load_contacts_csv(path: str | Path, region: str | None = None) -> list[Contact]:
    """Contacts from a UTF-8 CSV file with a ``to,ref`` header; other columns become variables.

    The numbers are as written (checked, not normalized) and duplicates kept:
    the spec normalizes and drops them. For small files and tests; a campaign
    is submitted with :class:`Contacts`, which never holds the whole file.
    """
    path = Path(path)
    contacts: list[Contact] = []
    for line, to, ref, variables in _csv_rows(path, _variables):
        try:
            normalize_number(to, region=region)
        except ValueError as exc:
            raise _bad(path, line, "to", str(exc)) from None
        _check_ref(path, line, ref)
        contacts.append(Contact(to=to, ref=ref, variables=dict(variables)))
    return contacts


def contact_json(contact: Contact) -> str:
    """A contact as the store keeps it and the fingerprint hashes it (sorted keys)."""
    return _dumps(contact.model_dump(mode="json"))


def _checked(
    path: Path, line: int, written: str, ref: str, strict: bool, region: str | None
) -> str:
    """A CSV row's number in E.164 and its ref checked, or the :class:`SpecError` naming them."""
    try:
        to = normalize_number(written, strict=strict, region=region)
    except ValueError as exc:
        raise _bad(path, line, "to", str(exc)) from None
    _check_ref(path, line, ref)
    return to


def _fingerprint_frame(spec: CampaignSpec, *, legacy: bool = False) -> tuple[str, str]:
    """The canonical spec JSON before and after its contacts' items (``"contacts":[`` … ``]``).

    ``json.dumps(sort_keys=True, separators=(",", ":"))`` of a dict is its
    sorted ``key:value`` pairs joined by commas: built here around the contacts.
    """
    data = spec.fingerprint_data(exclude={"contacts"}, legacy=legacy)
    names = sorted([*data, "contacts"])
    at = names.index("contacts")

    def pairs(keys: list[str]) -> str:
        return ",".join(f"{json.dumps(k)}:{_dumps(data[k])}" for k in keys)

    before, after = pairs(names[:at]), pairs(names[at + 1 :])
    return (
        "{" + before + ("," if before else "") + '"contacts":[',
        "]" + ("," if after else "") + after + "}",
    )


@dataclass(frozen=True, slots=True)
class Tally:
    """What a full read found: unique contacts, duplicates dropped, the spec fingerprint."""

    contacts: int
    duplicates_dropped: int
    fingerprint: str


class ContactReader:
    """One pass over a campaign's contacts: iterate for chunks of contact JSON.

    After the last chunk, :attr:`tally` holds the counts and fingerprint; a bad
    row raises :class:`SpecError` (file, line, field) from the iteration.
    """

    def __init__(
        self, source: Contacts, size: int, *, required: bool, legacy: bool = False
    ) -> None:
        self._legacy = legacy
        self._source = source
        self._size = size
        self._required = required
        self._tally: Tally | None = None

    @property
    def tally(self) -> Tally:
        if self._tally is None:
            raise RuntimeError("the contacts have not all been read yet")
        return self._tally

    def __iter__(self) -> Iterator[list[str]]:
        spec = self._source.spec
        head, tail = _fingerprint_frame(spec, legacy=self._legacy)
        digest = hashlib.sha256(head.encode())
        seen: set[int] = set()
        count = 0
        dropped = spec.duplicates_dropped
        for chunk in self._chunks(seen):
            digest.update(("," if count else "").encode() + ",".join(chunk).encode())
            count += len(chunk)
            yield chunk
        dropped += self._dropped
        if self._required and count == 0:
            raise SpecError("contacts", _NO_CONTACTS)
        digest.update(tail.encode())
        self._tally = Tally(count, dropped, digest.hexdigest())

    def _chunks(self, seen: set[int]) -> Iterator[list[str]]:
        """Unique contacts, inline first, ``size`` at a time; counts the CSV's duplicates."""
        spec, path, size = self._source.spec, self._source.csv_path, self._size
        self._dropped = 0
        chunk: list[str] = []
        for contact in spec.contacts:  # normalized and unique already
            seen.add(int(contact.to))
            chunk.append(contact_json(contact))
            if len(chunk) >= size:
                yield chunk
                chunk = []
        if path is not None:
            strict, region = spec.strict_numbers, spec.default_region
            refusals = self._source.refusals
            refuse = None if refusals is None else refusals.refuse
            if refusals is not None:
                refusals.begin(path)
            # Not strict, a +1 number is its own E.164 form; anything else is checked in full.
            plain = nanp_possible if not strict else _never
            for line, written, ref, pairs in _csv_rows(path, _variables_json, refuse):
                if plain(written) and len(ref) <= _REF_MAX:
                    to = written
                else:
                    try:
                        to = _checked(path, line, written, ref, strict, region)
                    except SpecError as error:
                        if refuse is None:
                            raise
                        refuse(line, error.field.rpartition(".")[2], error.message, written, ref)
                        continue
                number = int(to)
                if number in seen:
                    self._dropped += 1
                    continue
                seen.add(number)
                # contact_json's form (sorted keys), written directly.
                chunk.append(
                    f'{{"ref":{encode_basestring_ascii(ref)},"to":"{to}","variables":{{{pairs}}}}}'
                )
                if len(chunk) >= size:
                    yield chunk
                    chunk = []
        if chunk:
            yield chunk


class Refusals:
    """Where ``--skip-invalid`` puts bad CSV rows instead of stopping at the first.

    Every pass over the file starts afresh (:meth:`begin`), so a file read twice
    (a resubmit's check, then the write) reports each bad row once. Subclasses
    write them somewhere (:meth:`refuse`); this one counts them.
    """

    def __init__(self) -> None:
        self.count = 0

    def begin(self, path: Path) -> None:
        self.count = 0

    def refuse(self, line: int, column: str, reason: str, to: str, ref: str) -> None:
        self.count += 1


@dataclass(frozen=True, slots=True)
class Contacts:
    """A validated spec (its own contacts inline) and, optionally, a contacts CSV file.

    Nothing is read until :meth:`read` or :meth:`tally`; each reads the file
    afresh, so holding one costs nothing however large the file.
    """

    spec: CampaignSpec
    csv_path: Path | None = None
    refusals: Refusals | None = field(default=None, compare=False)
    """With it, a bad CSV row is handed to it and the read goes on (``--skip-invalid``);
    without, the first bad row is a :class:`SpecError` and nothing is written."""

    def read(self, size: int = CHUNK_SIZE, *, required: bool = False) -> ContactReader:
        """A pass over the contacts; ``required``: none at all is a :class:`SpecError`."""
        return ContactReader(self, size, required=required)

    def tally(self, *, required: bool = False, legacy: bool = False) -> Tally:
        """Validate and count every contact without keeping any (estimate, resubmit);
        ``legacy``: with the fingerprint as campaigns stored before it compared values."""
        reader = ContactReader(self, CHUNK_SIZE, required=required, legacy=legacy)
        for _ in reader:
            pass
        return reader.tally

    @property
    def none_given(self) -> bool:
        """No inline contacts and no file: refused before anything is read or written."""
        return self.csv_path is None and not self.spec.contacts

    @classmethod
    def load(
        cls,
        spec_path: str | Path,
        contacts_csv: str | Path | None = None,
        refusals: Refusals | None = None,
    ) -> Contacts:
        """The spec file, validated now; the CSV file, read only when the contacts are."""
        csv_path = None if contacts_csv is None else Path(contacts_csv)
        return cls(load_spec(spec_path), csv_path, refusals)

    def identified(self, idempotency_key: str | None) -> Contacts:
        """The same contacts with the spec's campaign ID settled (:func:`identify`)."""
        spec = identify(self.spec, idempotency_key)
        return self if spec is self.spec else Contacts(spec, self.csv_path, self.refusals)

    @staticmethod
    def no_contacts() -> SpecError:
        return SpecError("contacts", _NO_CONTACTS)
