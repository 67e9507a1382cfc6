"""Callback events: their JSON body, signature and retry schedule (no I/O)."""

from __future__ import annotations

import json
import time

import httpx
import pytest

from campaigns.domain.signatures import sign_signature, verify_signature
from campaigns.engine.alerts import deliver_alert
from campaigns.engine.callbacks import MAX_BACKOFF_SECONDS, backoff_ms, event_payload


def test_backoff_doubles_per_delivery_up_to_the_ceiling() -> None:
    assert [backoff_ms(n, 2.0) for n in range(1, 6)] == [2000, 4000, 8000, 16000, 32000]
    assert backoff_ms(30, 2.0) == MAX_BACKOFF_SECONDS * 1000


def test_state_event_carries_the_halt_only_when_halted_or_paused() -> None:
    fields = {
        "event_id": "c1:state:4",
        "type": "campaign.state_changed",
        "campaign_id": "c1",
        "from": "running",
        "to": "halted",
        "halt_code": "spend_control_exceeded",
        "halt_message": "outbound spend limit exceeded",
        "at": "1700000000123",
    }
    payload = event_payload(fields)
    assert payload == {
        "event_id": "c1:state:4",
        "type": "campaign.state_changed",
        "campaign_id": "c1",
        "at": "2023-11-14T22:13:20.123Z",
        "from": "running",
        "to": "halted",
        "halt": {"code": "spend_control_exceeded", "message": "outbound spend limit exceeded"},
    }
    assert event_payload({**fields, "to": "running", "halt_code": ""})["halt"] is None


def test_attempt_event_has_cost_as_money_and_micros() -> None:
    payload = event_payload(
        {
            "event_id": "c1:000002:1:settled",
            "type": "attempt.final",
            "campaign_id": "c1",
            "attempt_id": "c1:000002:1",
            "call_id": "call_9",
            "status": "completed",
            "error_code": "",
            "error_message": "",
            "billsec": "61",
            "cost": "20000",
            "currency": "EUR",
            "cost_estimated": "0",
            "at": "1700000000000",
        }
    )
    assert payload["cost_micros"] == 20000
    assert payload["cost"] == {"amount": "0.020000", "currency": "EUR"}
    assert payload["billsec"] == 61 and payload["call_id"] == "call_9"
    assert payload["error_code"] is None and payload["cost_estimated"] is False


async def test_the_signature_is_the_one_the_ingress_verifies() -> None:
    seen: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(204)

    secret = "s3cret"
    stamp = int(time.time())
    async with httpx.AsyncClient(transport=httpx.MockTransport(answer)) as client:
        status = await deliver_alert(
            "http://receiver.test/cb",
            {"event_id": "e1", "type": "x"},
            headers=lambda body: {"X-Signature": sign_signature(secret, body, timestamp=stamp)},
            client=client,
        )
    assert status == 204
    (request,) = seen
    body = request.content
    assert json.loads(body) == {"event_id": "e1", "type": "x"}
    header = request.headers["X-Signature"]
    assert verify_signature(secret, header, body, now=stamp, tolerance_seconds=300) is None
    assert verify_signature("other", header, body, now=stamp, tolerance_seconds=300) is not None
    assert verify_signature(secret, header, body + b" ", now=stamp, tolerance_seconds=300)


async def test_a_refusal_raises_so_the_event_is_retried() -> None:
    transport = httpx.MockTransport(lambda request: httpx.Response(503))
    async with httpx.AsyncClient(transport=transport) as client:
        with pytest.raises(httpx.HTTPStatusError):
            await deliver_alert("http://receiver.test/cb", {"event_id": "e1"}, client=client)
