"""A change to a running campaign's terms (``PATCH /v1/campaigns/{id}``, ``campaigns change``).

Validated exactly as at submit, with the spec's own models: ``pacing`` is
merged over the campaign's current pacing and checked by :class:`Pacing`,
``schedule`` by :class:`Schedule`, ``calling_window`` by
:class:`CallingWindow`, ``budget`` / ``budget_micros`` as the spec's money;
every invalid field in one :class:`SpecError`. A schedule already ended or a
window that never opens before it ends is refused as submit refuses it
(:func:`timing_problem`). ``schedule`` and ``calling_window`` may be ``null``
(removed).

Contacts were put in zone groups at submit (``domain/policy.py``), so a new
calling window may change its days, hours and dates, and a fixed time zone,
but not how contacts are grouped: a window judged in each recipient's zones
stays one (with the same ``default_timezone``), and a campaign without one
cannot start judging by recipient.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from pydantic import ValidationError

from campaigns.domain.inputs import SpecError
from campaigns.domain.money import MAX_MICROS, MoneyError, parse_micros
from campaigns.domain.numbers import normalize_number
from campaigns.domain.policy import (
    RECIPIENT,
    CallingWindow,
    RuleError,
    Schedule,
    ZoneGroups,
    timing_problem,
)
from campaigns.domain.spec import (
    Contact,
    Pacing,
    StoredSpec,
    _first_surrogate,
    _spec_error,
)

__all__ = ["CHANGEABLE", "CampaignChange", "added_contacts", "parse_change"]

CHANGEABLE = ("budget", "budget_micros", "name", "pacing", "schedule", "calling_window")
"""The fields a change may carry (``budget`` or ``budget_micros``, not both)."""


@dataclass(frozen=True, slots=True)
class CampaignChange:
    """A validated change: ``terms`` holds each spec section that changes (as the
    stored spec holds it, ``None`` for a removed one); ``budget_micros`` the new budget."""

    terms: dict[str, Any] = field(default_factory=dict)
    budget_micros: int | None = None
    zone_groups: tuple[tuple[str, ...], ...] | None = None
    """The zone groups' zones after a window change (a fixed zone is group 0's)."""


def parse_change(
    body: Any,
    current: StoredSpec,
    zone_groups: tuple[tuple[str, ...], ...],
    now: datetime,
) -> CampaignChange:
    """Validate a change against the campaign's current terms; :class:`SpecError`
    naming every invalid field (nothing is written)."""
    if not isinstance(body, dict):
        raise SpecError("body", "must be a JSON object")
    errors: list[tuple[str, str]] = []
    where = _first_surrogate(body)
    if where is not None:
        raise SpecError(where, "not valid Unicode (a lone surrogate such as \\ud800)")
    errors += [(name, "unknown field") for name in sorted(set(body) - set(CHANGEABLE))]
    if not body:
        errors.append(("body", f"give at least one of {', '.join(CHANGEABLE)}"))
    terms: dict[str, Any] = {}
    budget = _budget(body, errors)
    if "name" in body:
        name = body["name"]
        if not isinstance(name, str):
            errors.append(("name", "must be a string"))
        else:
            terms["name"] = name
    if "pacing" in body:
        given = body["pacing"]
        if not isinstance(given, dict):
            errors.append(("pacing", "must be an object"))
        else:
            merged = {**current.pacing.model_dump(mode="json"), **given}
            section = _section("pacing", Pacing, merged, errors)
            if section is not None:
                terms["pacing"] = section
    schedule = current.schedule
    if "schedule" in body:
        schedule = _optional("schedule", Schedule, body["schedule"], errors, terms)
    window = current.calling_window
    groups_after: tuple[tuple[str, ...], ...] | None = None
    if "calling_window" in body:
        window = _optional("calling_window", CallingWindow, body["calling_window"], errors, terms)
        if isinstance(window, CallingWindow):
            errors += _grouping_problems(current.calling_window, window)
            groups_after = zone_groups if window.timezone == RECIPIENT else ((window.timezone,),)
    if not errors and ("schedule" in terms or "calling_window" in terms):
        groups = ZoneGroups(window)
        if window is not None:
            groups.zones = list(groups_after or zone_groups)
        problem = timing_problem(schedule, window, groups, now)
        if problem is not None:
            errors.append((problem.field, problem.message))
    if errors:
        first, message = errors[0]
        more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        raise SpecError(first, message + more, errors)
    return CampaignChange(terms, budget, groups_after)


def _budget(body: dict[str, Any], errors: list[tuple[str, str]]) -> int | None:
    given = [name for name in ("budget", "budget_micros") if name in body]
    if len(given) > 1:
        errors.append(("budget", "give exactly one of budget (decimal string) or budget_micros"))
        return None
    if not given:
        return None
    name = given[0]
    value = body[name]
    if name == "budget" and not isinstance(value, str):
        errors.append((name, 'must be a decimal string such as "250.00"'))
        return None
    if name == "budget_micros":
        if type(value) is not int or value < 0:
            errors.append((name, "must be a non-negative integer number of micros"))
            return None
        if value > MAX_MICROS:
            errors.append((name, f"out of range (at most {MAX_MICROS} micros)"))
            return None
        return int(value)
    try:
        return parse_micros(value)
    except (MoneyError, ArithmeticError) as exc:
        errors.append((name, str(exc)))
        return None


def _section(
    name: str, model: type[Pacing | Schedule | CallingWindow], value: Any, errors: list[Any]
) -> dict[str, Any] | None:
    """``value`` checked by the spec's own model for the section, as the stored spec
    keeps it; the errors named ``name.field``, as submit names them."""
    try:
        return model.model_validate(value).model_dump(mode="json")
    except ValidationError as exc:
        for field_name, message in _spec_error(exc).errors or []:
            errors.append((_prefixed(name, field_name), message))
    except RuleError as exc:
        errors.append((exc.field, exc.message))
    return None


def _prefixed(section: str, field_name: str) -> str:
    if field_name == section or field_name.startswith(f"{section}."):
        return field_name
    return f"{section}.{field_name}" if field_name != "spec" else section


def _optional(
    name: str,
    model: type[Schedule | CallingWindow],
    value: Any,
    errors: list[tuple[str, str]],
    terms: dict[str, Any],
) -> Any:
    """A section that may be removed (``null``); returns the model (or None), or
    ``False`` when invalid."""
    if value is None:
        terms[name] = None
        return None
    if not isinstance(value, dict):
        errors.append((name, "must be an object or null"))
        return False
    section = _section(name, model, value, errors)
    if section is None:
        return False
    terms[name] = section
    return model.model_validate(section)


def _grouping_problems(old: CallingWindow | None, new: CallingWindow) -> list[tuple[str, str]]:
    """A window that would need the contacts grouped again (module docstring)."""
    by_recipient = old is not None and old.timezone == RECIPIENT
    if by_recipient and new.timezone != RECIPIENT:
        return [
            (
                "calling_window.timezone",
                "must stay 'recipient': the contacts were grouped by their own zones at submit",
            )
        ]
    if by_recipient and old is not None and new.default_timezone != old.default_timezone:
        return [
            (
                "calling_window.default_timezone",
                f"must stay {old.default_timezone!r}: the contacts were grouped with it at submit",
            )
        ]
    if not by_recipient and new.timezone == RECIPIENT:
        return [
            (
                "calling_window.timezone",
                "cannot become 'recipient' after submit (the contacts were not grouped by "
                "their zones); give a fixed IANA zone",
            )
        ]
    return []


def added_contacts(given: Any, spec: StoredSpec, field_name: str = "contacts") -> list[Contact]:
    """Contacts to add (a JSON array, or a CSV's rows already read), checked as at
    submit with the campaign's ``strict_numbers`` and ``default_region``, numbers
    in E.164; :class:`SpecError` naming every invalid one (``contacts.3.to``)."""
    where = _first_surrogate(given)
    if where is not None:
        raise SpecError(f"{field_name}.{where}", "not valid Unicode (a lone surrogate)")
    if not isinstance(given, list) or not given:
        raise SpecError(field_name, "must be a non-empty list of contacts")
    found: list[Contact] = []
    errors: list[tuple[str, str]] = []
    for index, item in enumerate(given):
        at = f"{field_name}.{index}"
        try:
            contact = Contact.model_validate(item)
        except ValidationError as exc:
            errors += [(_prefixed(at, f), m) for f, m in _spec_error(exc).errors]
            continue
        try:
            number = normalize_number(
                contact.to, strict=spec.strict_numbers, region=spec.default_region
            )
        except ValueError as exc:
            errors.append((f"{at}.to", str(exc)))
            continue
        found.append(contact if number == contact.to else contact.model_copy(update={"to": number}))
    if errors:
        more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        raise SpecError(errors[0][0], errors[0][1] + more, errors)
    return found
