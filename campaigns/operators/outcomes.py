"""Contacts by outcome (``campaigns contacts ID --status ...``), as a contacts file.

The CSV is the one ``submit --contacts`` reads (``to,ref`` and one column per
variable), so "a new campaign for the rest" or "the no-answers again tomorrow"
is one pipe. Values are written as stored, unescaped: the file is input for
the dispatcher, not a spreadsheet (the report's CSV is the spreadsheet-safe one).
JSON is an array of contact objects, as a spec's ``contacts`` holds them.
"""

from __future__ import annotations

import csv
import json
from collections.abc import AsyncIterator
from typing import IO, Any

from campaigns.domain.lifecycle import ContactOutcome, contact_outcome
from campaigns.store import Store

__all__ = ["LISTED_OUTCOMES", "write_contacts"]

LISTED_OUTCOMES: tuple[ContactOutcome, ...] = (
    ContactOutcome.UNSENT,
    ContactOutcome.NO_ANSWER,
    ContactOutcome.BUSY,
    ContactOutcome.FAILED,
    ContactOutcome.SUPPRESSED,
    ContactOutcome.EXPIRED,
    ContactOutcome.CAPPED,
    ContactOutcome.ANSWERED,
)
"""The outcomes an operator can ask for (in doubt and dialling are not over)."""

_PAGE = 1000


async def _selected(
    store: Store, campaign_id: str, contacts: int, wanted: ContactOutcome
) -> list[int]:
    """The indexes of the contacts whose latest outcome is ``wanted``, in contact order."""
    latest = await store.latest_attempts(campaign_id)

    def outcome(index: int) -> ContactOutcome:
        found = latest.get(index)
        return ContactOutcome.UNSENT if found is None else contact_outcome(*found)

    return [i for i in range(contacts) if outcome(i) == wanted]


async def _documents(
    store: Store, campaign_id: str, indexes: list[int]
) -> AsyncIterator[dict[str, Any]]:
    for first in range(0, len(indexes), _PAGE):
        page = indexes[first : first + _PAGE]
        for document in await store.contact_documents(campaign_id, page):
            if document is not None:
                yield json.loads(document)


def _cell(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


async def write_contacts(
    store: Store, campaign_id: str, contacts: int, wanted: ContactOutcome, fmt: str, out: IO[str]
) -> int:
    """Write the contacts whose outcome is ``wanted`` as CSV or JSON; returns how many."""
    count = 0
    indexes = await _selected(store, campaign_id, contacts, wanted)
    if fmt == "json":
        out.write("[")
        async for contact in _documents(store, campaign_id, indexes):
            out.write(("," if count else "") + json.dumps(contact, ensure_ascii=False))
            count += 1
        out.write("]\n")
        return count
    # Every variable name first (one read), so the header has a column for each.
    names: set[str] = set()
    async for contact in _documents(store, campaign_id, indexes):
        names.update(contact.get("variables") or {})
    columns = ["to", "ref", *sorted(names - {"to", "ref"})]
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(columns)
    async for contact in _documents(store, campaign_id, indexes):
        variables = contact.get("variables") or {}
        writer.writerow(
            [contact.get("to", ""), contact.get("ref", "")]
            + [_cell(variables.get(name)) for name in columns[2:]]
        )
        count += 1
    return count
