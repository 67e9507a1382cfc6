"""The do-not-call list for operators: add, remove, check, count, list and CSV import.

One account-wide list; the claim script refuses to dial a number on it, so a
number added here is never dialled once the call that added it has returned.
Every number is normalised exactly as contacts are (``normalize_number``: E.164,
*possible* numbers; ``strict`` also requires *valid* ones), so the list holds
the same canonical form the contacts hold.

Input is hostile until proven otherwise: every number of a call is checked
before anything is written, and a bad one raises :class:`SpecError` naming the
argument (``numbers.2``) or the file, line and column, with nothing written.

An import reads a UTF-8 CSV whose header has a ``number`` or a ``to`` column
(case-insensitive; so a contacts file imports as it is; other columns are
ignored). It streams: rows are validated a chunk at a time into a private
staging set that is merged into the list only after the last row passed
(:class:`campaigns.store.dnc.StagedImport`), so a bad row anywhere leaves the
list as it was, and memory stays flat whatever the file's size.
"""

from __future__ import annotations

import asyncio
import codecs
import csv
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import IO, Any, Literal, TypeVar

from campaigns.domain.inputs import SpecError
from campaigns.domain.lifecycle import OperatorAction
from campaigns.domain.numbers import normalize_number
from campaigns.operators.control import CampaignClient
from campaigns.store import Store
from campaigns.store.dnc import DoNotCallList

__all__ = [
    "IMPORT_CHUNK",
    "MAX_LINE_BYTES",
    "MAX_NUMBERS",
    "NUMBER_COLUMNS",
    "Change",
    "ImportResult",
    "Naming",
    "add",
    "canonical_numbers",
    "check",
    "import_csv",
    "list_for",
    "recorded",
    "remove",
]

MAX_NUMBERS = 100_000
"""Numbers in one add, remove or check (one Redis command); more go through an import."""
IMPORT_CHUNK = 5_000
"""Numbers validated and staged per round trip during an import."""
MAX_LINE_BYTES = 1024 * 1024
"""A physical line longer than this is not a list of phone numbers."""
NUMBER_COLUMNS = ("number", "to")


def list_for(store: Store) -> DoNotCallList:
    """The do-not-call list of the account whose campaigns ``store`` holds."""
    return DoNotCallList(store.redis, store.keys, store.replicas)


def _shown(value: str, limit: int = 40) -> str:
    """A value from the input as it may appear in a one-line error."""
    return repr(value) if len(value) <= limit else f"{value[:limit]!r}... ({len(value)} chars)"


def _canonical(value: object, field: str, *, strict: bool) -> str:
    if not isinstance(value, str):
        raise SpecError(field, "must be a string such as '+15551230002'")
    if not value.strip():
        raise SpecError(field, "no number (an E.164 number such as '+15551230002')")
    try:
        return normalize_number(value, strict=strict)
    except ValueError as exc:
        message = str(exc)
        if repr(value) not in message:
            message = f"{_shown(value)}: {message}"
        raise SpecError(field, message) from None


Naming = Callable[[int], str]
"""The field name of the i-th number (from 0) in errors: ``numbers.2``, ``NUMBER 3``."""


def _in_body(index: int) -> str:
    return f"numbers.{index}"


def canonical_numbers(
    values: Sequence[object], *, strict: bool = False, name: Naming = _in_body
) -> list[str]:
    """Every value as a canonical number, duplicates dropped, or a SpecError naming
    the first bad one; nothing is written either way."""
    if not values:
        raise SpecError("numbers", "give at least one number")
    if len(values) > MAX_NUMBERS:
        raise SpecError(
            "numbers", f"at most {MAX_NUMBERS} at once, not {len(values)}; import a CSV file"
        )
    found = [_canonical(v, name(i), strict=strict) for i, v in enumerate(values)]
    return list(dict.fromkeys(found))


@dataclass(frozen=True, slots=True)
class Change:
    """The outcome of an add or a remove: the canonical numbers, and how many changed."""

    verb: Literal["added", "removed"]
    numbers: list[str]
    changed: int

    @property
    def _unchanged(self) -> tuple[str, int]:
        why = "already_listed" if self.verb == "added" else "not_listed"
        return why, len(self.numbers) - self.changed

    def to_json(self) -> dict[str, Any]:
        why, unchanged = self._unchanged
        return {"numbers": self.numbers, self.verb: self.changed, why: unchanged}

    def line(self) -> str:
        why, unchanged = self._unchanged
        count = f"{self.changed:,} number{'' if self.changed == 1 else 's'}"
        where = "to" if self.verb == "added" else "from"
        return (
            f"{self.verb} {count} {where} the do-not-call list "
            f"({unchanged:,} {why.replace('_', ' ')})"
        )


async def add(
    dnc: DoNotCallList, values: Sequence[object], *, strict: bool = False, name: Naming = _in_body
) -> Change:
    """Add numbers (all or none): one ``SADD``, so once this returns every claim sees them."""
    numbers = canonical_numbers(values, strict=strict, name=name)
    return Change("added", numbers, await dnc.add(numbers))


async def remove(
    dnc: DoNotCallList, values: Sequence[object], *, name: Naming = _in_body
) -> Change:
    """Remove numbers (all or none, one ``SREM``); an unlisted number is not an error."""
    numbers = canonical_numbers(values, name=name)
    return Change("removed", numbers, await dnc.remove(numbers))


async def check(
    dnc: DoNotCallList, values: Sequence[object], *, name: Naming = _in_body
) -> list[tuple[str, bool]]:
    """Each number in canonical form, and whether it is on the list."""
    numbers = canonical_numbers(values, name=name)
    return list(zip(numbers, await dnc.listed(numbers), strict=True))


# ---------------------------------------------------------------- import


@dataclass(frozen=True, slots=True)
class ImportResult:
    """Rows read, distinct numbers among them, how many were new, the list's size after."""

    rows: int
    numbers: int
    added: int
    listed: int

    def to_json(self) -> dict[str, int]:
        return {
            "rows": self.rows,
            "numbers": self.numbers,
            "added": self.added,
            "listed": self.listed,
        }


async def import_csv(
    dnc: DoNotCallList, source: IO[bytes], *, shown: str, strict: bool = False
) -> ImportResult:
    """Validate every row of a CSV byte stream and merge its numbers, all or nothing.

    ``shown`` names the source in errors (the file name, or ``body``). Parsing
    runs off the event loop a chunk at a time, so an API import does not stall
    other requests; staged chunks are invisible to the claim until the merge.
    """
    reader = _NumberReader(source, shown, strict)
    chunks = reader.chunks()
    async with dnc.staged_import() as staged:
        while (chunk := await asyncio.to_thread(next, chunks, None)) is not None:
            await staged.stage(chunk)
        merged = await staged.commit()
    return ImportResult(reader.rows, merged.numbers, merged.added, merged.listed)


def _split_cr(text: str) -> list[str]:
    """One ``\\n``-terminated piece split at lone ``\\r`` line ends, as ``newline=""`` does."""
    for tail in ("\r\n", "\n", ""):
        if text.endswith(tail):
            body = text[: len(text) - len(tail)]
            break
    parts = body.split("\r")
    pieces = [f"{p}\r" for p in parts[:-1]]
    if parts[-1] or tail:
        pieces.append(parts[-1] + tail)
    return pieces


class _NumberReader:
    """Canonical numbers from a CSV byte stream, a chunk at a time; errors name file and line."""

    def __init__(self, source: IO[bytes], shown: str, strict: bool) -> None:
        self._source = source
        self._shown = shown
        self._strict = strict
        self.rows = 0

    def _error(self, line: int, message: str) -> SpecError:
        return SpecError("dnc", f"{self._shown} line {line}: {message}")

    def _lines(self) -> Iterator[str]:
        """Physical lines, decoded one at a time (UTF-8; a leading BOM is dropped)."""
        line = 0
        first = True
        while raw := self._source.readline(MAX_LINE_BYTES + 1):
            if len(raw) > MAX_LINE_BYTES:
                raise self._error(line + 1, f"no line break within {MAX_LINE_BYTES} bytes")
            if first and raw.startswith(codecs.BOM_UTF8):
                raw = raw[len(codecs.BOM_UTF8) :]
            first = False
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                at = line + 1 + raw[: exc.start].count(b"\r")
                bad = raw[exc.start]
                raise self._error(
                    at, f"not UTF-8 (byte 0x{bad:02x}); save the file as UTF-8"
                ) from None
            for piece in _split_cr(text):
                line += 1
                yield piece

    def _records(self) -> Iterator[tuple[int, list[str]]]:
        """(line where the record starts, values) per non-blank CSV record."""
        reader = csv.reader(self._lines())
        while True:
            start = reader.line_num + 1
            try:
                row = next(reader)
            except StopIteration:
                return
            except csv.Error as exc:
                raise self._error(start, f"not valid CSV: {exc}") from None
            if row:
                yield start, row

    def _header(self, records: Iterator[tuple[int, list[str]]]) -> tuple[int, str, int]:
        """The number column's index and name as written, and the header's width."""
        first = next(records, None)
        if first is None:
            raise SpecError("dnc", f"{self._shown}: the file is empty (a header such as 'number')")
        line, header = first
        names = [name.strip().lower() for name in header]
        present = [c for c in NUMBER_COLUMNS if c in names]
        if not present:
            found = _shown(",".join(header), 60)
            raise self._error(
                line, f"the header must have a 'number' or 'to' column; found {found}"
            )
        if len(present) > 1:
            raise self._error(line, "give one of the columns 'number' and 'to', not both")
        column = present[0]
        if names.count(column) > 1:
            raise self._error(line, f"column {column!r} appears twice")
        return names.index(column), header[names.index(column)].strip(), len(header)

    def chunks(self) -> Iterator[list[str]]:
        """Chunks of up to :data:`IMPORT_CHUNK` canonical numbers, every row checked."""
        records = self._records()
        index, column, width = self._header(records)
        chunk: list[str] = []
        for line, values in records:
            if len(values) > width:
                raise self._error(line, "more values than header columns")
            if index >= len(values):
                raise self._error(line, f"no {column!r} value: fewer values than header columns")
            field = f"dnc[{self._shown} line {line}].{column}"
            chunk.append(_canonical(values[index], field, strict=self._strict))
            self.rows += 1
            if len(chunk) >= IMPORT_CHUNK:
                yield chunk
                chunk = []
        if chunk:
            yield chunk


_HISTORY_NUMBERS = 100
"""A do-not-call change names at most this many of its numbers in the history."""

_Outcome = TypeVar("_Outcome", Change, ImportResult)


async def recorded(
    client: CampaignClient,
    action: OperatorAction,
    outcome: Awaitable[_Outcome],
    *,
    actor: str | None = None,
) -> _Outcome:
    """Run a do-not-call change, then record it in the account's history."""
    result = await outcome
    after: dict[str, Any] = dict(result.to_json())
    numbers = after.get("numbers")
    if isinstance(numbers, list):
        after["count"] = len(numbers)
        after["numbers"] = numbers[:_HISTORY_NUMBERS]
    await client.record_account_action(action, None, after, actor=actor)
    return result
