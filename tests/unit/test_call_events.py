"""parse_call_event: MiniVoice's documented call webhooks, and garbage refused cleanly."""

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


COMPLETED_MS = 1_780_056_600_000  # 2026-05-29T12:10:00Z, the event's created_at

# webhooks/call-created: the documented payload.
CREATED: dict[str, Any] = {
    "event": "call.created",
    "created_at": "2026-05-29T12:00:00Z",
    "call": {
        "id": "call_123",
        "customer_id": "cust_123",
        "application_id": "app_123",
        "provider_call_id": "uuid",
        "status": "in_progress",
        "direction": "outbound",
        "from": "+15551230001",
        "to": "+15551230002",
        "route_mode": "webhook",
        "routing_target": "app_123",
    },
    "variables": {},
    "data": {"event_key": "call_123:call.created"},
}


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
        caller_id="+15551230001",
        ended_at_ms=COMPLETED_MS,
    )
    assert call.final is True


def test_documented_call_created() -> None:
    """A live call with its creation time, caller and number: what the engine needs
    to match it to an ambiguous create; its status never makes it final."""
    name, call = parse_call_event(CREATED)
    assert name == "call.created"
    assert call == CallInfo(
        call_id="call_123",
        status="in_progress",
        to="+15551230002",
        caller_id="+15551230001",
        created_at_ms=COMPLETED_MS - 600_000,
    )
    assert call.final is False
    assert call.attempt_id is None, "the documented payload carries no metadata"


@pytest.mark.parametrize("status", ["completed", "failed", "dialing", None])
def test_call_created_and_answered_are_never_final(status: str | None) -> None:
    for event in ("call.created", "call.answered"):
        payload = copy.deepcopy(CREATED)
        payload["event"] = event
        payload["call"]["status"] = status
        assert parse_call_event(payload)[1].final is False


def test_call_answered_gives_the_answer_time() -> None:
    payload = copy.deepcopy(CREATED)
    payload["event"] = "call.answered"
    payload["created_at"] = "2026-05-29T12:00:05.250Z"
    name, call = parse_call_event(payload)
    assert name == "call.answered"
    assert call.answered_at_ms == COMPLETED_MS - 600_000 + 5_250
    assert (call.created_at_ms, call.ended_at_ms) == (None, None)


@pytest.mark.parametrize(
    "where",
    [
        pytest.param(lambda p, m: p["call"].__setitem__("metadata", m), id="call-metadata"),
        pytest.param(lambda p, m: p.__setitem__("metadata", m), id="top-level-metadata"),
    ],
)
def test_echoed_metadata_gives_the_attempt_id(where: Any) -> None:
    payload = copy.deepcopy(CREATED)
    where(payload, {"campaign_id": "spring", "attempt_id": "spring:000017:1"})
    assert parse_call_event(payload)[1].attempt_id == "spring:000017:1"


@pytest.mark.parametrize("metadata", [None, "spring", {"attempt_id": 5}, {"attempt_id": ""}])
def test_unusable_metadata_is_no_attempt_id(metadata: Any) -> None:
    payload = copy.deepcopy(CREATED)
    payload["call"]["metadata"] = metadata
    _, call = parse_call_event(payload)
    assert (call.call_id, call.attempt_id) == ("call_123", None)


def test_variables_never_give_the_attempt_id() -> None:
    """Call variables are set by answer_url actions, not by us: not our identity."""
    payload = copy.deepcopy(CREATED)
    payload["variables"] = {"attempt_id": "spring:000017:1"}
    assert parse_call_event(payload)[1].attempt_id is None


def test_a_bad_event_time_is_no_time() -> None:
    payload = copy.deepcopy(CREATED)
    payload["created_at"] = "yesterday"
    assert parse_call_event(payload)[1].created_at_ms is None


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
    [("call.completed", "completed"), ("call.failed", "failed"), ("call.canceled", "canceled")],
)
def test_final_events_take_status_from_the_name(name: str, status: str) -> None:
    payload = event(status=...)
    payload["event"] = name
    assert parse_call_event(payload) == (
        name,
        CallInfo(
            call_id="call_123",
            status=status,
            to="+15551230002",
            caller_id="+15551230001",
            ended_at_ms=COMPLETED_MS,
        ),
    )


@pytest.mark.parametrize(
    ("given", "status"),
    [("busy", "busy"), ("no_answer", "no_answer"), ("failed", "failed"), ("hangup", "failed")],
)
def test_call_failed_keeps_a_final_status_and_reads_an_unknown_one_by_name(
    given: str, status: str
) -> None:
    payload = event(status=given)
    payload["event"] = "call.failed"
    assert parse_call_event(payload)[1].status == status


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
    pytest.param({**SEED_EVENT, "event": "call.busy"}, "event", id="undocumented-busy"),
    pytest.param({**SEED_EVENT, "event": "call.gathered"}, "event", id="action-event"),
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
