"""Campaign spec validation, CSV contacts and the pre-flight estimate."""

from __future__ import annotations

import copy
import hashlib
import json
from pathlib import Path
from typing import Any

import pytest

from campaigns.domain.rating import Increments, Rate
from campaigns.domain.spec import (
    CampaignSpec,
    Contact,
    SpecError,
    campaign_id_for_key,
    identify,
    load_contacts_csv,
    load_spec,
    parse_spec,
)
from campaigns.operators.estimate import estimate

DESIGN_SPEC = """
{
  "campaign_id": "spring-renewals",
  "name": "Spring renewals",
  "caller_id": "+15551230001",
  "currency": "EUR",
  "budget": "50.00",
  "rate": {"per_minute": "0.01", "increments": "60/60", "connect_fee": "0"},
  "max_call_seconds": 120,
  "pacing": {"calls_per_second": 5, "batch_size": 10, "max_in_flight": 50},
  "contacts": [{"to": "+15551230002", "ref": "cust_123", "variables": {}}]
}
"""


def base() -> dict[str, Any]:
    return copy.deepcopy(json.loads(DESIGN_SPEC))


def spec_error(data: Any) -> SpecError:
    with pytest.raises(SpecError) as info:
        parse_spec(data)
    return info.value


# --- valid input ---------------------------------------------------------------


def test_design_spec_parses() -> None:
    spec = parse_spec(DESIGN_SPEC)
    assert isinstance(spec, CampaignSpec)
    assert spec.campaign_id == "spring-renewals"
    assert spec.name == "Spring renewals"
    assert spec.caller_id == "+15551230001"
    assert spec.currency == "EUR"
    assert spec.budget_in_micros == 50_000_000
    assert spec.rate_model() == Rate(10_000, Increments(60, 60), 0)
    assert spec.max_call_seconds == 120
    assert spec.pacing.calls_per_second == 5
    assert spec.pacing.batch_size == 10
    assert spec.pacing.max_in_flight == 50
    assert spec.contacts == [Contact(to="+15551230002", ref="cust_123", variables={})]
    assert spec.duplicates_dropped == 0
    assert spec.worst_case_call_micros() == 20_000


def test_dict_and_json_text_give_the_same_spec() -> None:
    assert parse_spec(base()) == parse_spec(DESIGN_SPEC)
    assert parse_spec(DESIGN_SPEC.encode()) == parse_spec(DESIGN_SPEC)


MONEY_TERMS = {"currency": "EUR", "rate": {"preset": "pstn_outgoing"}}
"""No money term has a default: the least a spec says."""


def test_defaults() -> None:
    spec = parse_spec({"caller_id": "+15551230001", "budget_micros": 1_000, **MONEY_TERMS})
    assert spec.campaign_id == "", "none made up: a create derives it from its key"
    assert spec.currency == "EUR"
    assert spec.budget_in_micros == 1_000
    assert spec.rate_model() == Rate(10_000, Increments(60, 60), 0)  # PSTN preset of seed 001
    assert spec.max_call_seconds == 120
    assert spec.contacts == []
    assert spec.strict_numbers is False


@pytest.mark.parametrize(
    ("change", "field"),
    [
        (lambda d: d.pop("currency"), "currency"),
        (lambda d: d.pop("rate"), "rate"),
        (lambda d: d.update(rate=None), "rate"),
        (lambda d: d.update(rate={}), "rate"),
        (lambda d: d.update(rate={"increments": "60/60", "connect_fee": "0.10"}), "rate"),
    ],
)
def test_no_silent_money_defaults(change: Any, field: str) -> None:
    data = base()
    change(data)
    err = spec_error(data)
    assert err.field == field
    assert "no default" in err.message


def test_a_spec_without_id_takes_the_one_its_key_names_and_refuses_neither() -> None:
    data = {"caller_id": "+15551230001", "budget": "1", **MONEY_TERMS}
    keyed = identify(parse_spec(data), "order-1")
    assert (
        keyed.campaign_id
        == campaign_id_for_key("order-1")
        == "key_" + hashlib.sha256(b"order-1").hexdigest()[:32]
    )
    assert identify(parse_spec(data), "order-2").campaign_id != keyed.campaign_id
    assert identify(parse_spec({**data, "campaign_id": "own"}), "order-1").campaign_id == "own"
    with pytest.raises(SpecError) as neither:
        identify(parse_spec(data), None)
    assert neither.value.field == "campaign_id"
    assert "campaign_id" in neither.value.message and "Idempotency-Key" in neither.value.message
    for bad in ("", "a b", "x" * 256, "caf\u00e9"):
        with pytest.raises(SpecError) as refused:
            identify(parse_spec(data), bad)
        assert refused.value.field == "Idempotency-Key"


def test_the_fingerprint_compares_values_not_spellings() -> None:
    base_spec = {
        "campaign_id": "same",
        "caller_id": "+15551230001",
        "currency": "EUR",
        "budget": "1.00",
        "rate": {"per_minute": "0.01", "increments": "60/60", "connect_fee": "0.10"},
        "schedule": {"start_at": "2030-01-01T09:00:00+01:00"},
        "pacing": {"calls_per_second": 5},
        "contacts": [{"to": "+15551230002"}],
    }
    respelt = {
        **base_spec,
        "budget_micros": 1_000_000,
        "rate": {"per_minute_micros": 10_000, "increments": " 60 / 60", "connect_fee": "0.1"},
        "schedule": {"start_at": "2030-01-01T08:00:00Z"},
        "pacing": {"calls_per_second": 5.0},
        "contacts": [{"to": "+1 555 123 0002"}],
    }
    del respelt["budget"]
    assert parse_spec(base_spec).fingerprint() == parse_spec(respelt).fingerprint()
    other = {**base_spec, "budget": "1.01"}
    assert parse_spec(base_spec).fingerprint() != parse_spec(other).fingerprint()
    later = {**base_spec, "schedule": {"start_at": "2030-01-01T09:00:00Z"}}
    assert parse_spec(base_spec).fingerprint() != parse_spec(later).fingerprint()


def test_seed_555_numbers_are_accepted() -> None:
    data = base()
    data["contacts"] = [{"to": "+15551230002"}, {"to": "+15551230003"}]
    spec = parse_spec(data)
    assert [c.to for c in spec.contacts] == ["+15551230002", "+15551230003"]


def test_strict_numbers_rejects_the_fictional_555_numbers() -> None:
    data = base()
    data["strict_numbers"] = True
    err = spec_error(data)
    assert err.field == "caller_id"
    assert "not a valid phone number" in err.message


def test_strict_numbers_rejects_a_fictional_contact() -> None:
    data = base()
    data["strict_numbers"] = True
    data["caller_id"] = "+12025550123"
    data["contacts"] = [{"to": "+442079460000"}, {"to": "+15551230002"}]
    err = spec_error(data)
    assert err.field == "contacts.1.to"
    assert "valid" in err.message
    data["contacts"] = [{"to": "+442079460000"}]
    assert parse_spec(data).contacts[0].to == "+442079460000"


@pytest.mark.parametrize(
    ("rate", "expected"),
    [
        ({"per_minute_micros": 7_000, "increments": "30/6"}, Rate(7_000, Increments(30, 6), 0)),
        ({"per_second": "0.020", "increments": "1/1"}, Rate(1_200_000, Increments(1, 1), 0)),
        ({"per_minute": "0.05", "connect_fee": "0.10"}, Rate(50_000, Increments(), 100_000)),
        ({"per_minute": "0.05", "connect_fee_micros": 5}, Rate(50_000, Increments(), 5)),
        ({"preset": "vn"}, Rate(1_000, Increments(), 0, tokens_per_minute=1)),
    ],
)
def test_rate_forms(rate: dict[str, Any], expected: Rate) -> None:
    data = base()
    data["rate"] = rate
    assert parse_spec(data).rate_model() == expected


# --- bad input names its field -----------------------------------------------


def _with(**changes: Any) -> dict[str, Any]:
    data = base()
    for key, value in changes.items():
        if value is ...:
            data.pop(key, None)
        else:
            data[key] = value
    return data


BAD = [
    pytest.param(_with(budget=50.0), "budget", "not a JSON number", id="float-budget"),
    pytest.param(_with(budget=50), "budget", "_micros", id="int-budget"),
    pytest.param(_with(budget=True), "budget", "not a JSON number", id="bool-budget"),
    pytest.param(_with(budget="1.0000001"), "budget", "precision", id="7-places"),
    pytest.param(_with(budget="NaN"), "budget", "finite", id="nan-budget"),
    pytest.param(_with(budget="-1.00"), "budget", "negative", id="negative-budget"),
    pytest.param(_with(budget="fifty"), "budget", "decimal", id="word-budget"),
    pytest.param(
        _with(budget=..., budget_micros=5.0), "budget_micros", "integer", id="float-micros"
    ),
    pytest.param(_with(budget=..., budget_micros="5"), "budget_micros", "integer", id="str-micros"),
    pytest.param(_with(budget=..., budget_micros=-1), "budget_micros", "negative", id="neg-micros"),
    pytest.param(_with(extra=1), "extra", "unknown field", id="unknown-top-level"),
    pytest.param(
        _with(contacts=[{"to": "+15551230002", "phone": "x"}]),
        "contacts.0.phone",
        "unknown field",
        id="unknown-contact-field",
    ),
    pytest.param(
        _with(contacts=[{"to": "+15551230002"}, {"to": "+1555123000212345"}]),
        "contacts.1.to",
        "not a possible phone number",
        id="impossible-number",
    ),
    pytest.param(_with(contacts=[{"to": "15551230002"}]), "contacts.0.to", "E.164", id="no-plus"),
    pytest.param(
        _with(contacts=[{"to": "+abc"}]), "contacts.0.to", "not a phone number", id="letters"
    ),
    pytest.param(_with(contacts=[{"ref": "x"}]), "contacts.0.to", "required", id="contact-no-to"),
    pytest.param(_with(caller_id=...), "caller_id", "required", id="missing-caller_id"),
    pytest.param(_with(caller_id="+1555"), "caller_id", "possible", id="short-caller_id"),
    pytest.param(_with(currency="eur"), "currency", "ISO 4217", id="lowercase-currency"),
    pytest.param(_with(currency="EURO"), "currency", "ISO 4217", id="4-letter-currency"),
    pytest.param(_with(campaign_id="spring:2026"), "campaign_id", "letters", id="colon-id"),
    pytest.param(_with(campaign_id="spring renewals"), "campaign_id", "letters", id="space-id"),
    pytest.param(_with(campaign_id=""), "campaign_id", "letters", id="empty-id"),
    pytest.param(_with(campaign_id="a" * 65), "campaign_id", "letters", id="long-id"),
    # Issue 12, defect 6: `$` in re.match let a trailing newline through.
    pytest.param(_with(campaign_id="abc\n"), "campaign_id", "letters", id="id-trailing-newline"),
    pytest.param(_with(campaign_id="abc\r\n"), "campaign_id", "letters", id="id-trailing-crlf"),
    pytest.param(_with(campaign_id="\nabc"), "campaign_id", "letters", id="id-leading-newline"),
    pytest.param(_with(campaign_id="abc "), "campaign_id", "letters", id="id-trailing-space"),
    pytest.param(_with(campaign_id="ab\u0661"), "campaign_id", "letters", id="id-arabic-digit"),
    pytest.param(_with(currency="EUR\n"), "currency", "ISO 4217", id="currency-newline"),
    pytest.param(
        _with(rate={"per_minute": "0.01", "increments": "60/60\n"}),
        "rate",
        "increments",
        id="increments-newline",
    ),
    pytest.param(
        _with(rate={"per_minute": "0.01", "increments": "\u0666\u0660/\u0666\u0660"}),
        "rate",
        "ASCII digits",
        id="increments-arabic-digits",
    ),
    pytest.param(
        _with(rate={"per_minute": "0.01", "increments": "9" * 5000 + "/1"}),
        "rate",
        "increments",
        id="increments-5000-digits",
    ),
    pytest.param(
        _with(rate={"per_minute": "0.01", "increments": "60-60"}),
        "rate",
        "increments must look like '60/60'",
        id="bad-increments",
    ),
    pytest.param(
        _with(rate={"per_minute": "0.01", "increments": "0/60"}),
        "rate",
        "increments",
        id="zero-increments",
    ),
    pytest.param(
        _with(rate={"per_minute": "0.01", "per_minute_micros": 10_000}),
        "rate",
        "give one price, not per_minute and per_minute_micros",
        id="two-prices",
    ),
    pytest.param(
        _with(rate={"per_minute": "0.01", "per_second": "0.001"}),
        "rate",
        "give one price",
        id="minute-and-second",
    ),
    pytest.param(
        _with(rate={"per_minute": "0.01", "connect_fee": "0.1", "connect_fee_micros": 1}),
        "rate",
        "connect_fee",
        id="two-fees",
    ),
    pytest.param(_with(rate={"preset": "gold"}), "rate", "unknown preset", id="bad-preset"),
    pytest.param(
        _with(rate={"per_minute": 0.01}), "rate.per_minute", "not a JSON number", id="float-rate"
    ),
    pytest.param(
        _with(pacing={"calls_per_second": 0}),
        "pacing.calls_per_second",
        "greater than or equal to 0.001",
        id="cps-0",
    ),
    pytest.param(
        _with(pacing={"calls_per_second": 1e-300}),
        "pacing.calls_per_second",
        "0.001",
        id="cps-never-wakes",
    ),
    pytest.param(
        _with(pacing={"calls_per_second": float("nan")}),
        "pacing.calls_per_second",
        "Input should be",
        id="cps-nan",
    ),
    pytest.param(_with(pacing={"batch_size": 0}), "pacing.batch_size", "greater", id="batch-0"),
    pytest.param(_with(pacing={"weight": 0}), "pacing.weight", "greater than 0", id="weight-0"),
    pytest.param(_with(pacing={"weight": -2}), "pacing.weight", "greater than 0", id="weight-neg"),
    pytest.param(
        _with(pacing={"weight": float("inf")}), "pacing.weight", "finite", id="weight-inf"
    ),
    pytest.param(_with(pacing={"weight": "x"}), "pacing.weight", "number", id="weight-text"),
    pytest.param(_with(max_call_seconds=0), "max_call_seconds", "greater", id="max-call-0"),
    pytest.param(_with(max_call_seconds=-5), "max_call_seconds", "greater", id="max-call-neg"),
    pytest.param(
        _with(contacts=[{"to": "+15551230002", "ref": "r" * 201}]),
        "contacts.0.ref",
        "200",
        id="long-ref",
    ),
]


@pytest.mark.parametrize(("data", "field", "fragment"), BAD)
def test_bad_input_names_its_field(data: dict[str, Any], field: str, fragment: str) -> None:
    err = spec_error(data)
    assert err.field == field
    assert fragment in err.message
    assert str(err).startswith(f"{field}: ")


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(_with(budget_micros=50_000_000), id="both"),
        pytest.param(_with(budget=...), id="neither"),
    ],
)
def test_budget_and_budget_micros_names_the_field(data: dict[str, Any]) -> None:
    err = spec_error(data)
    assert "exactly one of budget" in err.message
    assert err.field in ("budget", "budget_micros")


def test_budget_and_budget_micros_both_refused() -> None:
    err = spec_error(_with(budget_micros=50_000_000))
    assert "give exactly one of budget (decimal string) or budget_micros" in err.message
    err = spec_error(_with(budget=...))
    assert "give exactly one of budget" in err.message


def test_huge_exponent_budget_is_a_spec_error() -> None:
    err = spec_error(_with(budget="1e999999"))
    assert err.field == "budget"


def test_non_object_json_is_refused() -> None:
    with pytest.raises(SpecError):
        parse_spec("[1, 2]")
    with pytest.raises(SpecError):
        parse_spec("{not json")


# --- duplicates and normalization ---------------------------------------------


def test_duplicates_dropped_and_counted_across_formats() -> None:
    data = _with(
        contacts=[
            {"to": "+15551230002", "ref": "first"},
            {"to": "+1 555 123 0002", "ref": "spaced"},
            {"to": "+1 (555) 123-0002", "ref": "punctuated"},
            {"to": "+15551230003", "ref": "other"},
            {"to": "+15551230002", "ref": "exact"},
        ]
    )
    spec = parse_spec(data)
    assert [(c.to, c.ref) for c in spec.contacts] == [
        ("+15551230002", "first"),
        ("+15551230003", "other"),
    ]
    assert spec.duplicates_dropped == 3


def test_numbers_are_normalized_to_e164() -> None:
    spec = parse_spec(
        _with(caller_id="+1 555 123 0001", contacts=[{"to": " +1-555-123-0009 ", "ref": "x"}])
    )
    assert spec.caller_id == "+15551230001"
    assert spec.contacts[0].to == "+15551230009"
    assert spec.contacts[0].ref == "x"


def test_contact_variables_kept() -> None:
    spec = parse_spec(
        _with(contacts=[{"to": "+15551230002", "variables": {"name": "Ann", "n": 3, "vip": True}}])
    )
    assert spec.contacts[0].variables == {"name": "Ann", "n": 3, "vip": True}


# --- fingerprint ----------------------------------------------------------------


def test_fingerprint_stable_for_the_same_input() -> None:
    a = parse_spec(DESIGN_SPEC).fingerprint()
    b = parse_spec(base()).fingerprint()
    assert a == b
    assert len(a) == 64
    int(a, 16)


def test_fingerprint_same_after_number_normalization() -> None:
    data = base()
    data["contacts"][0]["to"] = "+1 555 123 0002"
    assert parse_spec(data).fingerprint() == parse_spec(DESIGN_SPEC).fingerprint()


@pytest.mark.parametrize(
    "change",
    [
        {"budget": "50.01"},
        {"max_call_seconds": 121},
        {"caller_id": "+15551230009"},
        {"rate": {"per_minute": "0.02"}},
        {"contacts": [{"to": "+15551230003"}]},
    ],
)
def test_fingerprint_changes_with_the_spec(change: dict[str, Any]) -> None:
    original = parse_spec(DESIGN_SPEC).fingerprint()
    data = base()
    data.update(change)
    assert parse_spec(data).fingerprint() != original


def test_fingerprint_budget_vs_micros_is_about_the_written_form() -> None:
    # Decimal string and integer micros for the same amount: both parse to 50 units.
    a = parse_spec(base())
    b = parse_spec(_with(budget=..., budget_micros=50_000_000))
    assert a.budget_in_micros == b.budget_in_micros == 50_000_000


# --- CSV ------------------------------------------------------------------------


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_csv_contacts(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "c.csv",
        "to,ref,first_name,plan\n+15551230002,cust_1,Ann,gold\n+15551230003,cust_2,,\n",
    )
    contacts = load_contacts_csv(path)
    assert contacts == [
        Contact(to="+15551230002", ref="cust_1", variables={"first_name": "Ann", "plan": "gold"}),
        Contact(to="+15551230003", ref="cust_2", variables={}),
    ]


def test_csv_without_ref_column(tmp_path: Path) -> None:
    contacts = load_contacts_csv(write(tmp_path, "c.csv", "to\n+15551230002\n"))
    assert contacts == [Contact(to="+15551230002", ref="", variables={})]


@pytest.mark.parametrize(
    "text",
    [
        pytest.param("number,ref\n+15551230002,a\n", id="no-to-column"),
        pytest.param("", id="empty-file"),
        pytest.param("+15551230002,a\n", id="no-header"),
    ],
)
def test_csv_missing_header_names_contacts(tmp_path: Path, text: str) -> None:
    with pytest.raises(SpecError) as info:
        load_contacts_csv(write(tmp_path, "c.csv", text))
    assert info.value.field == "contacts"
    assert "header" in info.value.message


def test_csv_bad_number_names_the_line(tmp_path: Path) -> None:
    path = write(tmp_path, "c.csv", "to,ref\n+15551230002,a\n12345,b\n")
    with pytest.raises(SpecError) as info:
        load_contacts_csv(path)
    assert info.value.field.startswith("contacts")
    assert "line 3" in info.value.field
    assert info.value.field.endswith(".to")


def test_csv_too_many_values(tmp_path: Path) -> None:
    path = write(tmp_path, "c.csv", "to,ref\n+15551230002,a,extra\n")
    with pytest.raises(SpecError) as info:
        load_contacts_csv(path)
    assert info.value.field == "contacts"
    assert "line 2" in info.value.message


def test_csv_missing_file(tmp_path: Path) -> None:
    with pytest.raises(SpecError) as info:
        load_contacts_csv(tmp_path / "nope.csv")
    assert info.value.field == "contacts"


# --- load_spec --------------------------------------------------------------------


def test_load_spec(tmp_path: Path) -> None:
    spec = load_spec(write(tmp_path, "s.json", DESIGN_SPEC))
    assert spec == parse_spec(DESIGN_SPEC)


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        pytest.param("{not json", "not valid JSON", id="garbage"),
        pytest.param("campaign_id: x\n", "not valid JSON", id="yaml"),
        pytest.param("", "not valid JSON", id="empty"),
        pytest.param("[1, 2]", "JSON object", id="array"),
        pytest.param('"x"', "JSON object", id="string"),
    ],
)
def test_load_spec_non_json_names_spec(tmp_path: Path, text: str, fragment: str) -> None:
    with pytest.raises(SpecError) as info:
        load_spec(write(tmp_path, "s.json", text))
    assert info.value.field == "spec"
    assert fragment in info.value.message


def test_load_spec_missing_file(tmp_path: Path) -> None:
    with pytest.raises(SpecError) as info:
        load_spec(tmp_path / "missing.json")
    assert info.value.field == "spec"


def test_load_spec_with_csv_counts_duplicates_across_both(tmp_path: Path) -> None:
    data = base()
    data["contacts"] = [
        {"to": "+15551230002", "ref": "spec_a"},
        {"to": "+1 555 123 0002", "ref": "spec_dup"},
    ]
    spec_path = write(tmp_path, "s.json", json.dumps(data))
    csv_path = write(
        tmp_path,
        "c.csv",
        "to,ref\n+15551230002,csv_dup_of_spec\n+15551230003,csv_b\n+1 (555) 123-0003,csv_dup\n",
    )
    spec = load_spec(spec_path, csv_path)
    assert [(c.to, c.ref) for c in spec.contacts] == [
        ("+15551230002", "spec_a"),
        ("+15551230003", "csv_b"),
    ]
    assert spec.duplicates_dropped == 3


def test_load_spec_csv_error_propagates(tmp_path: Path) -> None:
    spec_path = write(tmp_path, "s.json", DESIGN_SPEC)
    csv_path = write(tmp_path, "c.csv", "phone\n+15551230002\n")
    with pytest.raises(SpecError) as info:
        load_spec(spec_path, csv_path)
    assert info.value.field == "contacts"


# --- estimate ---------------------------------------------------------------------


def test_estimate_design_spec() -> None:
    est = estimate(parse_spec(DESIGN_SPEC))
    assert est.campaign_id == "spring-renewals"
    assert est.currency == "EUR"
    assert est.contacts == 1
    assert est.increments == "60/60"
    assert est.max_call_seconds == 120
    assert est.billed_seconds_worst_case == 120
    assert est.worst_case_per_call_micros == 20_000
    assert est.worst_case_total_micros == 20_000
    assert est.budget_micros == 50_000_000
    assert est.calls_within_budget == 1
    assert est.budget_covers_all is True


def test_estimate_budget_runs_out_first() -> None:
    data = _with(
        budget="0.05",
        max_call_seconds=61,
        contacts=[{"to": f"+1555123{n:04d}"} for n in range(2, 7)] + [{"to": "+1 555 123 0002"}],
    )
    est = estimate(parse_spec(data))
    assert est.contacts == 5
    assert est.duplicates_dropped == 1
    assert est.billed_seconds_worst_case == 120
    assert est.worst_case_per_call_micros == 20_000
    assert est.worst_case_total_micros == 100_000
    assert est.budget_micros == 50_000
    assert est.calls_within_budget == 2
    assert est.budget_covers_all is False
    lines = "\n".join(est.lines())
    assert "EUR 0.02 (61s billed as 120s)" in lines
    assert "2 of 5" in lines
    assert "budget runs out first" in lines
    assert est.to_json()["calls_within_budget"] == 2


def test_estimate_with_increments_and_connect_fee() -> None:
    data = _with(
        rate={"per_minute": "0.05", "increments": "30/6", "connect_fee": "0.01"},
        max_call_seconds=45,
        budget_micros=100_000,
        budget=...,
        contacts=[{"to": "+15551230002"}, {"to": "+15551230003"}, {"to": "+15551230004"}],
    )
    est = estimate(parse_spec(data))
    assert est.increments == "30/6"
    assert est.billed_seconds_worst_case == 48
    assert est.worst_case_per_call_micros == 50_000
    assert est.worst_case_total_micros == 150_000
    assert est.calls_within_budget == 2
    assert est.budget_covers_all is False


def test_estimate_free_rate_covers_all() -> None:
    data = _with(
        rate={"per_minute": "0"},
        budget="0",
        contacts=[{"to": "+15551230002"}, {"to": "+15551230003"}],
    )
    est = estimate(parse_spec(data))
    assert est.worst_case_per_call_micros == 0
    assert est.calls_within_budget == 2
    assert est.budget_covers_all is True


def test_estimate_no_contacts() -> None:
    est = estimate(parse_spec(_with(contacts=[])))
    assert est.contacts == 0
    assert est.worst_case_total_micros == 0
    assert est.calls_within_budget == 0
    assert est.budget_covers_all is True


# --- issue 12: hostile values ------------------------------------------------------


def test_trailing_newline_campaign_id_refused_in_json_text_too() -> None:
    """Defect 6 through the JSON-text path (the CLI reads files, other services send text)."""
    text = json.dumps({**base(), "campaign_id": "abc\n"})
    with pytest.raises(SpecError) as info:
        parse_spec(text)
    assert info.value.field == "campaign_id"
    assert parse_spec(json.dumps({**base(), "campaign_id": "abc"})).campaign_id == "abc"


# Defect 10: money beyond the decimal context was rounded, not refused. These need
# campaigns/money.py to read amounts exactly (strict grammar, integer arithmetic).
@pytest.mark.parametrize(
    ("budget", "fragment"),
    [
        pytest.param("5.9999999999999999999999999999999", "precision", id="31-places"),
        pytest.param("6.0000000", "precision", id="7-places-zeros"),
        pytest.param("1e-999999999", "exponent", id="tiny-exponent"),
        pytest.param("1E2", "exponent", id="exponent"),
        pytest.param("\u0665", "ASCII", id="arabic-indic-five"),
        pytest.param("\uff15", "ASCII", id="fullwidth-five"),
        pytest.param("1_000", "_", id="underscore"),
        pytest.param("9007199254.740992", "range", id="one-micro-over-ceiling"),
    ],
)
def test_inexact_budget_is_refused_naming_budget(budget: str, fragment: str) -> None:
    err = spec_error(_with(budget=budget))
    assert err.field == "budget"
    assert fragment in err.message


def test_budget_at_the_ceiling_is_exact() -> None:
    assert parse_spec(_with(budget="9007199254.740991")).budget_in_micros == 2**53 - 1


def test_per_second_rate_whose_worst_case_passes_the_ceiling_is_refused() -> None:
    """Issue 12's example: 7.78e20 micros was accepted and halted later with a float."""
    err = spec_error(_with(rate={"per_second": "9007199254.740991"}, max_call_seconds=3600))
    assert err.field == "rate.per_second"
    assert "9007199254740991" in err.message  # the ceiling, written as an integer
    assert "e+" not in err.message and "e20" not in err.message


@pytest.mark.parametrize(
    ("rate", "max_call_seconds", "field"),
    [
        pytest.param(
            {"per_minute_micros": 2**53 - 1}, 61, "rate.per_minute_micros", id="micros-x-2min"
        ),
        pytest.param(
            {"per_minute": "9007199254.740991", "connect_fee_micros": 1},
            60,
            "rate.per_minute",
            id="fee-pushes-over",
        ),
        pytest.param(
            {"per_minute": "1000000", "increments": "999999/1"}, 1, "rate.per_minute", id="incr"
        ),
        pytest.param({"per_second": "200000000"}, 1, "rate.per_second", id="x60-over"),
    ],
)
def test_worst_case_above_the_ceiling_names_the_price(
    rate: dict[str, Any], max_call_seconds: int, field: str
) -> None:
    err = spec_error(_with(rate=rate, max_call_seconds=max_call_seconds))
    assert err.field == field
    assert "ceiling" in err.message


def test_worst_case_exactly_at_the_ceiling_is_accepted() -> None:
    spec = parse_spec(_with(rate={"per_minute_micros": 2**53 - 1}, max_call_seconds=60))
    assert spec.worst_case_call_micros() == 2**53 - 1
    assert estimate(spec).worst_case_per_call_micros == 2**53 - 1


@pytest.mark.parametrize(
    ("patch", "field"),
    [
        pytest.param({"name": "a\ud800"}, "name", id="name"),
        pytest.param({"contacts": [{"to": "+15551230002", "ref": "\udfff"}]}, "contacts.0.ref"),
        pytest.param(
            {"contacts": [{"to": "+15551230002", "variables": {"k": "\ud83d"}}]},
            "contacts.0.variables.k",
            id="variable-value",
        ),
        pytest.param(
            {"contacts": [{"to": "+15551230002", "variables": {"\ud83d": "v"}}]},
            "contacts.0.variables.\\ud83d",
            id="variable-key",
        ),
    ],
)
def test_lone_surrogates_are_refused_naming_the_field(patch: dict[str, Any], field: str) -> None:
    """JSON may carry "\\ud800"; no UTF-8 store, terminal or report can take it."""
    err = spec_error(_with(**patch))
    assert err.field == field
    assert "Unicode" in err.message
    with pytest.raises(SpecError) as info:
        parse_spec(json.dumps(_with(**patch)))  # the same, as JSON text with \u escapes
    assert info.value.field


def test_surrogate_check_survives_deep_nesting() -> None:
    deep: Any = "\ud800"
    for _ in range(5_000):
        deep = [deep]
    err = spec_error(_with(contacts=[{"to": "+15551230002", "variables": {"k": deep}}]))
    assert err.field.startswith("contacts.0.variables.k.0.0.0")
    assert "Unicode" in err.message


def test_contact_integer_variables_stay_exact() -> None:
    ok = parse_spec(_with(contacts=[{"to": "+15551230002", "variables": {"n": 2**53 - 1}}]))
    assert ok.contacts[0].variables == {"n": 2**53 - 1}
    err = spec_error(_with(contacts=[{"to": "+15551230002", "variables": {"n": 2**53}}]))
    assert err.field == "contacts.0.variables"
    assert "'n'" in err.message


def test_field_names_from_hostile_keys_stay_on_one_line() -> None:
    err = spec_error(_with(**{"evil\nkey": 1}))
    assert "\n" not in str(err)
    assert err.message == "unknown field"
    assert err.field == "evil\\nkey"


def test_invalid_json_text_names_spec() -> None:
    with pytest.raises(SpecError) as info:
        parse_spec("{not json")
    assert info.value.field == "spec"


@pytest.mark.parametrize(
    ("raw", "fragment"),
    [
        pytest.param(b'{"name": "caf\xe9"}', "line 1: not UTF-8 (byte 0xe9)", id="latin-1"),
        pytest.param(b'{\n\n  "name": "\xff"}', "line 3: not UTF-8", id="line-3"),
        pytest.param("{}".encode("utf-16"), "line 1: not UTF-8 (byte 0xff)", id="utf-16"),
        pytest.param(b"[" * 100_000, "nested too deeply", id="deep"),
        pytest.param(b'{"budget_micros": ' + b"9" * 5000 + b"}", "not valid JSON", id="int-5000"),
    ],
)
def test_load_spec_refuses_bad_bytes_naming_the_line(
    tmp_path: Path, raw: bytes, fragment: str
) -> None:
    path = tmp_path / "s.json"
    path.write_bytes(raw)
    with pytest.raises(SpecError) as info:
        load_spec(path)
    assert info.value.field == "spec"
    assert fragment in info.value.message


def test_load_spec_accepts_a_utf8_bom(tmp_path: Path) -> None:
    path = tmp_path / "s.json"
    path.write_bytes(b"\xef\xbb\xbf" + DESIGN_SPEC.encode())
    assert load_spec(path) == parse_spec(DESIGN_SPEC)


# --- issue 12, defect 8: the CSV loader -----------------------------------------------


def write_bytes(tmp_path: Path, raw: bytes, name: str = "c.csv") -> Path:
    path = tmp_path / name
    path.write_bytes(raw)
    return path


def csv_error(path: Path) -> SpecError:
    with pytest.raises(SpecError) as info:
        load_contacts_csv(path)
    assert "\n" not in str(info.value), "one line at the CLI"
    return info.value


def test_csv_with_a_utf8_bom_reads_the_header(tmp_path: Path) -> None:
    """Excel's "CSV UTF-8" starts with a BOM: it used to read as a header '\\ufeffto'."""
    path = write_bytes(tmp_path, b"\xef\xbb\xbfto,ref\r\n+15551230002,a\r\n")
    assert load_contacts_csv(path) == [Contact(to="+15551230002", ref="a")]


@pytest.mark.parametrize(
    ("raw", "line", "byte"),
    [
        pytest.param(b"to,ref\n+15551230002,caf\xe9\n", 2, "0xe9", id="latin-1-line-2"),
        pytest.param(
            b"to,ref\r\n+15551230002,a\r\n+15551230003,\xc3\x28\r\n", 3, "0xc3", id="crlf"
        ),
        pytest.param(b"to,ref\r+15551230002,a\r\x80\r", 3, "0x80", id="cr-only"),
        pytest.param("to,ref\n".encode("utf-16"), 1, "0xff", id="utf-16"),
        pytest.param(b"\xef\xbb\xbfto,ref\n\n\n\xff\n", 4, "0xff", id="bom-then-bad"),
    ],
)
def test_csv_not_utf8_names_file_and_line(tmp_path: Path, raw: bytes, line: int, byte: str) -> None:
    path = write_bytes(tmp_path, raw)
    err = csv_error(path)
    assert err.field == "contacts"
    assert f"{path} line {line}: not UTF-8 (byte {byte})" in err.message


@pytest.mark.parametrize(
    ("raw", "field"),
    [
        pytest.param(b"to,ref\n+15551230002," + b"x" * 131_073 + b"\n", "ref", id="ref"),
        pytest.param(
            b'to,ref\n+15551230002,a\n+15551230003,"' + b'x""' * 65_537 + b'"\n',
            "ref",
            id="quoted-ref",
        ),
        pytest.param(
            b"to,ref,note\n+15551230002,a,b\n+15551230003,b," + b"n" * 200_000 + b"\n",
            "note",
            id="variable",
        ),
        pytest.param(b"to,ref\n" + b"1" * 131_073 + b",a\n", "to", id="to"),
    ],
)
def test_csv_field_over_the_size_limit_names_line_and_column(
    tmp_path: Path, raw: bytes, field: str
) -> None:
    path = write_bytes(tmp_path, raw)
    line = raw.count(b"\n")  # the over-long record is the last line
    err = csv_error(path)
    assert err.field == f"contacts[{path} line {line}].{field}"
    assert "longer than 131072 characters" in err.message


def test_csv_field_exactly_at_the_size_limit_is_read(tmp_path: Path) -> None:
    path = write_bytes(tmp_path, b"to,note\n+15551230002," + b"n" * 131_072 + b"\n")
    assert load_contacts_csv(path)[0].variables == {"note": "n" * 131_072}


def test_csv_header_over_the_size_limit_names_the_column(tmp_path: Path) -> None:
    path = write_bytes(tmp_path, b"to," + b"h" * 131_073 + b"\n")
    err = csv_error(path)
    assert err.field == f"contacts[{path} line 1]"
    assert "column 2 is longer than 131072" in err.message


def test_csv_ref_over_200_characters_names_file_line_and_field(tmp_path: Path) -> None:
    path = write_bytes(tmp_path, b"to,ref\n+15551230002,ok\n+15551230003," + b"r" * 201 + b"\n")
    err = csv_error(path)
    assert err.field == f"contacts[{path} line 3].ref"
    assert "200" in err.message
    ok = write_bytes(tmp_path, b"to,ref\n+15551230002," + b"r" * 200 + b"\n", "ok.csv")
    assert load_contacts_csv(ok)[0].ref == "r" * 200


def test_csv_multiline_record_is_named_by_its_first_line(tmp_path: Path) -> None:
    path = write_bytes(tmp_path, b'to,ref\n+15551230002,"two\nlines"\n12,b\n')
    err = csv_error(path)
    assert err.field == f"contacts[{path} line 4].to"
    ok = write_bytes(tmp_path, b'to,ref\n+15551230002,"two\nlines"\n', "ok.csv")
    assert load_contacts_csv(ok)[0].ref == "two\nlines"


def test_csv_missing_to_shows_the_header_found(tmp_path: Path) -> None:
    err = csv_error(write_bytes(tmp_path, b"phone,ref\n+15551230002,a\n"))
    assert err.field == "contacts"
    assert "'phone,ref'" in err.message


def test_csv_duplicate_column_refused(tmp_path: Path) -> None:
    err = csv_error(write_bytes(tmp_path, b"to,ref,to\n+15551230002,a,+15551230003\n"))
    assert err.field == "contacts"
    assert "'to' appears twice" in err.message


def test_csv_blank_lines_skipped_and_line_numbers_kept(tmp_path: Path) -> None:
    path = write_bytes(tmp_path, b"\nto,ref\n\n+15551230002,a\n\nbad,b\n")
    err = csv_error(path)
    assert err.field == f"contacts[{path} line 6].to"


def test_csv_hostile_path_stays_on_one_line(tmp_path: Path) -> None:
    path = write_bytes(tmp_path, b"to\n\xff\n", "evil\nname.csv")
    err = csv_error(path)
    assert "evil\\nname.csv line 2" in err.message


def test_csv_variable_keeps_unicode_and_nul(tmp_path: Path) -> None:
    text = "to,ref,name\n+15551230002,a,Zo\u00eb \u4e2d\u6587\x00\n"
    path = write_bytes(tmp_path, text.encode())
    assert load_contacts_csv(path)[0].variables == {"name": "Zo\u00eb \u4e2d\u6587\x00"}


def test_load_spec_with_a_bad_csv_names_the_csv(tmp_path: Path) -> None:
    spec_path = write(tmp_path, "s.json", DESIGN_SPEC)
    csv_path = write_bytes(tmp_path, b"to,ref\n+15551230002,\xff\n")
    with pytest.raises(SpecError) as info:
        load_spec(spec_path, csv_path)
    assert f"{csv_path} line 2" in info.value.message


@pytest.mark.parametrize(
    "url", ["http://127.0.0.1:8000/alerts", "https://alerts.example/hook?team=ops"]
)
def test_alert_webhook_url_accepted(url: str) -> None:
    assert parse_spec(_with(alerts={"webhook_url": url})).alerts.webhook_url == url


@pytest.mark.parametrize(
    "url",
    [
        "ftp://alerts.example/x",
        "alerts.example/hook",
        "/hook",
        "http://",
        "http://[::1",
        "http://alerts.example:99999/",
        "http://alerts.example/\n",
        "http://ex ample/",
        "http://alerts.example/" + "a" * 2048,
    ],
)
def test_alert_webhook_url_refused_at_submit_not_on_every_retry(url: str) -> None:
    err = spec_error(_with(alerts={"webhook_url": url}))
    assert err.field == "alerts.webhook_url"
