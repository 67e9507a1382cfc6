"""Changes to a campaign's terms, validated as at submit (campaigns/domain/changes.py)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from campaigns.domain.changes import added_contacts, parse_change
from campaigns.domain.spec import SpecError, StoredSpec, parse_spec
from tests.conftest import spec_dict

_NOW = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)


def _stored(**overrides: object) -> StoredSpec:
    spec = parse_spec(spec_dict("c", contacts=1, **overrides))
    return StoredSpec.model_validate(spec.model_dump(mode="json", exclude={"contacts", "suppress"}))


def _fields(exc: pytest.ExceptionInfo[SpecError]) -> set[str]:
    return {field for field, _ in exc.value.errors}


def test_pacing_is_merged_over_the_current_one_and_checked_whole() -> None:
    current = _stored(pacing={"calls_per_second": 10, "max_in_flight": 7})
    change = parse_change({"pacing": {"calls_per_second": 2}}, current, ((),), _NOW)
    assert change.terms["pacing"]["calls_per_second"] == 2
    assert change.terms["pacing"]["max_in_flight"] == 7
    with pytest.raises(SpecError) as bad:
        parse_change({"pacing": {"batch_size": 0, "weight": 0}}, current, ((),), _NOW)
    assert _fields(bad) == {"pacing.batch_size", "pacing.weight"}


def test_a_window_keeps_how_contacts_were_grouped() -> None:
    by_recipient = _stored(
        calling_window={
            "start": "09:00",
            "end": "18:00",
            "timezone": "recipient",
            "default_timezone": "America/New_York",
        }
    )
    groups = (("America/New_York",), ("America/Los_Angeles",))
    hours = {"start": "10:00", "end": "17:00", "default_timezone": "America/New_York"}
    kept = parse_change({"calling_window": hours}, by_recipient, groups, _NOW)
    assert kept.zone_groups == groups
    for window, field in (
        ({"start": "10:00", "end": "17:00", "timezone": "UTC"}, "calling_window.timezone"),
        ({**hours, "default_timezone": "UTC"}, "calling_window.default_timezone"),
    ):
        with pytest.raises(SpecError) as bad:
            parse_change({"calling_window": window}, by_recipient, groups, _NOW)
        assert _fields(bad) == {field}
    plain = _stored()
    fixed = {"start": "09:00", "end": "18:00", "timezone": "Europe/Paris"}
    assert parse_change({"calling_window": fixed}, plain, ((),), _NOW).zone_groups == (
        ("Europe/Paris",),
    )
    with pytest.raises(SpecError) as bad:
        parse_change({"calling_window": hours | {"timezone": "recipient"}}, plain, ((),), _NOW)
    assert _fields(bad) == {"calling_window.timezone"}
    removed = parse_change({"calling_window": None, "schedule": None}, by_recipient, groups, _NOW)
    assert removed.terms == {"calling_window": None, "schedule": None}


def test_budget_name_and_unknown_fields() -> None:
    current = _stored()
    assert parse_change({"budget": "2.50"}, current, ((),), _NOW).budget_micros == 2_500_000
    assert parse_change({"name": "Q4"}, current, ((),), _NOW).terms == {"name": "Q4"}
    with pytest.raises(SpecError) as bad:
        parse_change({"budget": 2.5, "name": None, "rate": {}}, current, ((),), _NOW)
    assert _fields(bad) == {"budget", "name", "rate"}


def test_added_contacts_are_checked_and_put_in_e164() -> None:
    current = _stored(default_region="US")
    found = added_contacts([{"to": "(555) 123-4599", "ref": "a"}], current)
    assert [c.to for c in found] == ["+15551234599"]
    with pytest.raises(SpecError) as bad:
        added_contacts([{"to": "x"}, {"to": "+15551234599", "extra": 1}], current)
    assert _fields(bad) == {"contacts.0.to", "contacts.1.extra"}
