"""docs/spec.md is true to the spec model, both ways, defaults included (issue 21).

Every field of :class:`CampaignSpec`, nested ones by their dotted path
(``rate.per_minute``, ``contacts[].to``; the retry rules as ``retry.<status>``),
has a row in one of the page's ``| field |`` tables, and every row names a
field of the model. Each row's default is the model's: ``required``, the JSON
of the default, or "the defaults below" for a nested object.
"""

from __future__ import annotations

import json
import re
import typing
from typing import Any

from pydantic import BaseModel
from pydantic.fields import FieldInfo

from campaigns.domain.policy import RETRYABLE_STATUSES
from campaigns.domain.spec import CampaignSpec, Contact
from tests.support import ROOT

PAGE = ROOT / "docs" / "spec.md"
RETRY = re.compile(rf"^retry\.({'|'.join(RETRYABLE_STATUSES)})\b")
NESTED_DEFAULT = "the defaults below"
RANDOM_DEFAULT = {"campaign_id"}
"""Generated afresh for each spec: documented in words."""


def _models(annotation: Any) -> list[tuple[type[BaseModel], bool]]:
    """The models inside a field's type, and whether each sits in a list."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [(annotation, False)]
    found = []
    for arg in typing.get_args(annotation):
        for model, listed in _models(arg):
            found.append((model, listed or typing.get_origin(annotation) is list))
    return found


def model_fields(model: type[BaseModel] = CampaignSpec, prefix: str = "") -> dict[str, FieldInfo]:
    fields: dict[str, FieldInfo] = {}
    for name, info in model.model_fields.items():
        path = RETRY.sub("retry.<status>", prefix + name)
        fields[path] = info
        for inner, listed in _models(info.annotation):
            fields.update(model_fields(inner, path + ("[]." if listed else ".")))
    return fields


def documented() -> dict[str, list[str]]:
    """Each ``| field |`` table row: path -> its cells."""
    rows: dict[str, list[str]] = {}
    in_table = False
    for line in PAGE.read_text().splitlines():
        if line.startswith("| field |"):
            in_table = True
            continue
        if not line.startswith("|"):
            in_table = False
            continue
        cells = [c.strip() for c in re.split(r"(?<!\\)\|", line.strip().strip("|"))]
        if in_table and cells[0].startswith("`"):
            path = cells[0].strip("`")
            assert path not in rows, f"{path} is documented twice"
            rows[path] = cells
    return rows


def expected_default(path: str, info: FieldInfo) -> str | None:
    if info.is_required():
        return "required"
    if path in RANDOM_DEFAULT:
        return None
    value = info.default_factory() if info.default_factory is not None else info.default  # type: ignore[call-arg]
    if isinstance(value, BaseModel):
        return NESTED_DEFAULT
    return f"`{json.dumps(value)}`"


def test_every_spec_field_is_documented_and_every_documented_field_exists() -> None:
    fields, rows = model_fields(), documented()
    assert sorted(set(fields) - set(rows)) == [], "fields missing from docs/spec.md"
    assert sorted(set(rows) - set(fields)) == [], "docs/spec.md names fields the spec lacks"


def test_documented_defaults_are_the_models() -> None:
    rows = documented()
    wrong = {
        path: (rows[path][2], want)
        for path, info in model_fields().items()
        if path in rows
        and (want := expected_default(path, info)) is not None
        and rows[path][2] != want
    }
    assert wrong == {}, "docs/spec.md default (documented, model)"


def test_every_row_has_a_type_an_example_and_a_meaning() -> None:
    for path, cells in documented().items():
        assert len(cells) == 6, f"{path}: field, type, default, limits, example, what it is"
        assert cells[1] and cells[5], path


def test_the_csv_columns_are_the_contact_fields() -> None:
    text = PAGE.read_text()
    csv_table = text[text.index("| column |") :]
    columns = re.findall(r"^\| `(\w+)` \|", csv_table, re.MULTILINE)
    assert set(columns) == set(Contact.model_fields) - {"variables"}
    assert "| any other column |" in csv_table, "other columns become variables"
