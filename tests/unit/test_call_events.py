"""parse_call_event: the seed 000 call.completed webhook, and garbage refused cleanly."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from campaigns.providers import EventError
from campaigns.providers.base import CallInfo
from campaigns.providers.minivoice import parse_call_event
from tests.support import seed_event

SEED_EVENT: dict[str, Any] = seed_event()


def event(**call_changes: Any) -> dict[str, Any]:
    payload = copy.deepcopy(SEED_EVENT)
    for key, value in call_changes.items():
        if value is ...:
            payload["call"].pop(key, None)
        else:
            payload["call"][key] = value
    return payload


def test_seed_000_call_completed() -> None:
    name, call = parse_call_event(SEED_EVENT)
    assert name == "call.completed"
    assert call == CallInfo(
        call_id="call_123",
        status="completed",
        direction="outbound",
        to="+15551230002",
        billsec=None,
        cost_micros=None,
        cost_currency=None,
        variables={},
    )
    assert call.final is True


@pytest.mark.parametrize("encode", [json.dumps, lambda p: json.dumps(p).encode()])
def test_json_text_and_bytes(encode: Any) -> None:
    assert parse_call_event(encode(SEED_EVENT)) == parse_call_event(SEED_EVENT)


def test_billing_fields_and_variables() -> None:
    payload = event(billsec_seconds=150, cost_amount="0.03", cost_currency="EUR")
    payload["variables"] = {"campaign_id": "spring", "attempt_id": "spring:000017:1"}
    _, call = parse_call_event(payload)
    assert call.billsec == 150
    assert call.cost_micros == 30_000
    assert call.cost_currency == "EUR"
    assert call.variables == {"campaign_id": "spring", "attempt_id": "spring:000017:1"}


def test_sub_micro_cost_rounds_up() -> None:
    _, call = parse_call_event(event(cost_amount="0.0300001"))
    assert call.cost_micros == 30_001


@pytest.mark.parametrize(
    ("name", "status"),
    [
        ("call.failed", "failed"),
        ("call.busy", "busy"),
        ("call.no_answer", "no_answer"),
        ("call.canceled", "canceled"),
    ],
)
def test_other_final_events_take_status_from_the_name(name: str, status: str) -> None:
    payload = event(status=...)
    payload["event"] = name
    assert parse_call_event(payload) == (
        name,
        CallInfo(call_id="call_123", status=status, to="+15551230002"),
    )


def test_odd_optional_fields_are_tolerated() -> None:
    payload = event(billsec_seconds=True, direction=..., to=...)
    payload["variables"] = ["not", "a", "dict"]
    _, call = parse_call_event(payload)
    assert call.billsec is None
    assert call.direction == "outbound"
    assert call.to == ""
    assert call.variables == {}


def test_billsec_as_string_is_ignored() -> None:
    _, call = parse_call_event(event(billsec_seconds="150"))
    assert call.billsec is None


MALFORMED = [
    pytest.param("{not json", "not JSON", id="not-json-text"),
    pytest.param(b"\x00\x01", "not JSON", id="binary"),
    pytest.param("[]", "JSON object", id="json-list"),
    pytest.param([SEED_EVENT], "JSON object", id="list"),
    pytest.param(None, "JSON object", id="none"),
    pytest.param(42, "JSON object", id="int"),
    pytest.param({**SEED_EVENT, "event": "call.started"}, "event", id="unsupported-event"),
    pytest.param({k: v for k, v in SEED_EVENT.items() if k != "event"}, "event", id="no-event"),
    pytest.param({**SEED_EVENT, "event": None}, "event", id="null-event"),
    pytest.param({**SEED_EVENT, "call": None}, "call.id", id="null-call"),
    pytest.param({**SEED_EVENT, "call": "call_123"}, "call.id", id="string-call"),
    pytest.param({k: v for k, v in SEED_EVENT.items() if k != "call"}, "call.id", id="no-call"),
    pytest.param(event(id=...), "call.id", id="no-id"),
    pytest.param(event(id=""), "call.id", id="empty-id"),
    pytest.param(event(id=123), "call.id", id="int-id"),
    pytest.param(event(status="in_progress"), "call.status", id="not-final"),
    pytest.param(event(status="ringing"), "call.status", id="ringing"),
    pytest.param(event(status=5), "call.status", id="int-status"),
    pytest.param(event(cost_amount=0.03), "call.cost_amount", id="float-cost"),
    pytest.param(event(cost_amount="abc"), "call.cost_amount", id="garbage-cost"),
    pytest.param(event(cost_amount="NaN"), "call.cost_amount", id="nan-cost"),
    pytest.param(event(cost_amount=3), "call.cost_amount", id="int-cost"),
]


@pytest.mark.parametrize(("payload", "fragment"), MALFORMED)
def test_malformed_events_raise_event_error(payload: Any, fragment: str) -> None:
    with pytest.raises(EventError) as info:
        parse_call_event(payload)
    assert fragment in str(info.value)


@pytest.mark.parametrize(
    "payload",
    [
        pytest.param({**SEED_EVENT, "event": ["call.completed"]}, id="list-event"),
        pytest.param(event(status={"a": 1}), id="dict-status"),
        pytest.param(event(status=["completed"]), id="list-status"),
        pytest.param(event(cost_amount="1e999999"), id="overflow-cost"),
        pytest.param(b"\xff{}", id="invalid-utf8-bytes"),
    ],
)
def test_unhashable_or_overflowing_fields_raise_event_error(payload: Any) -> None:
    with pytest.raises(EventError):
        parse_call_event(payload)


def test_event_error_is_a_value_error() -> None:
    assert issubclass(EventError, ValueError)
