"""Fuzz the webhook ingress: hostile bodies, headers and signatures, both dialects.

The Starlette app runs in-process (``httpx.ASGITransport``) around a real
``JobQueue`` on the session's real Redis. For every delivery:

- never a 5xx (Redis is up);
- a forged, stale, missing or garbled signature is 401, an oversized body 413;
- each path checks its dialect's scheme (MiniVoice: ``X-MiniVoice-Timestamp`` +
  ``X-MiniVoice-Signature``; VoIPBIN: ``X-Signature``; ``/webhooks``: the
  configured dialect's, MiniVoice here);
- a genuine, well-formed event of either dialect is 2xx: a documented MiniVoice
  call event with a usable call ID, on a MiniVoice path, becomes exactly one job
  carrying the payload as sent, anything else is acknowledged and not queued;
- any other body is 2xx or 4xx, and nothing is queued unless it was accepted;
- no response and no log line carries the webhook secret, the API key or the MAC.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
import structlog
from hypothesis import given, note, settings
from hypothesis import strategies as st
from redis import Redis

from campaigns.logs import register_secret
from campaigns.operators.ingress import MAX_BODY_BYTES, create_ingress_app
from campaigns.providers.minivoice import WEBHOOK_EVENTS
from campaigns.queue import (
    JOB_ACCOUNT_EVENT,
    JOB_CALL_EVENT,
    JobQueue,
    open_queue,
    settlement_queue,
)
from campaigns.testbed.sandbox import minivoice_headers, sign_payload
from tests.fuzz.conftest import FUZZ_PROFILE

pytestmark = pytest.mark.integration

SECRET = "whsec_fuzz_4b9e2f7a1c6d8e3f"
API_KEY = "sk_fuzz_api_key_93kd7e1x"
QUEUE = "dispatcher:fuzz-ingress"
NOW = 1_780_000_000
TOLERANCE = 300
PATHS = ("/webhooks/minivoice", "/webhooks/voipbin", "/webhooks")
NOT_QUEUED = ("call.ringing", "call.in_progress", "call.busy", "call.gathered", "account_updated")
MINIVOICE_PATHS = ("/webhooks/minivoice", "/webhooks")


@dataclass
class Harness:
    loop: asyncio.AbstractEventLoop
    queue: JobQueue
    http: httpx.AsyncClient
    redis: Redis


@pytest.fixture
def harness(redis_url: str) -> Iterator[Harness]:
    """The app around an open queue, all on one private event loop for every example."""
    register_secret(API_KEY)
    loop = asyncio.new_event_loop()
    queue = loop.run_until_complete(open_queue(redis_url, QUEUE))
    app = create_ingress_app(queue, secret=SECRET, tolerance_seconds=TOLERANCE, clock=lambda: NOW)
    http = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://ingress")
    redis = Redis.from_url(redis_url)
    try:
        yield Harness(loop, queue, http, redis)
    finally:
        loop.run_until_complete(http.aclose())
        loop.run_until_complete(queue.aclose())
        loop.close()
        redis.close()


# --- strategies ----------------------------------------------------------------------

any_text = st.text(st.characters(codec=None), max_size=40)  # lone surrogates included
leaves = (
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**63)
    | st.floats(allow_nan=False, allow_infinity=False)
    | any_text
)
json_values = st.recursive(
    leaves,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(any_text, inner, max_size=3),
    max_leaves=8,
)
good_call_ids = st.text(
    st.characters(codec="utf-8", categories=["L", "N", "P", "S"]), min_size=1, max_size=200
)
bad_call_ids = st.one_of(
    st.just(""),
    st.text(min_size=201, max_size=230),
    st.integers(),
    st.none(),
    st.lists(st.text(), max_size=2),
)


@st.composite
def minivoice_events(draw: st.DrawFn) -> tuple[dict[str, Any], str, str]:
    """A MiniVoice ``call.*`` event and what must come of it on a MiniVoice path and
    on the VoIPBIN one (which queues no call events): queue, ignore or refuse."""
    documented = draw(st.booleans())
    event = (
        draw(st.sampled_from(sorted(WEBHOOK_EVENTS)))
        if documented
        else draw(st.sampled_from(NOT_QUEUED) | any_text.filter(lambda e: e not in WEBHOOK_EVENTS))
    )
    usable = draw(st.booleans())
    call: dict[str, Any] = draw(st.dictionaries(any_text, json_values, max_size=4))
    call["id"] = draw(good_call_ids if usable else bad_call_ids)
    payload: dict[str, Any] = {
        "event": event,
        "created_at": draw(any_text),
        "call": call,
        "variables": draw(st.dictionaries(any_text, json_values, max_size=3)),
        "data": draw(json_values | st.fixed_dictionaries({"event_key": any_text})),
    }
    if not event:
        return payload, "refuse", "refuse"
    if event not in WEBHOOK_EVENTS:
        return payload, "ignore", "ignore"
    return payload, "queue" if usable else "refuse", "ignore"


@st.composite
def voipbin_events(draw: st.DrawFn) -> tuple[dict[str, Any], str, str]:
    """A VoIPBIN delivery (``event_type``). ``account_updated`` (seed 001) is queued
    for the worker when well formed and refused when not; any other is
    acknowledged and never queued."""
    if draw(st.booleans()):
        payload = {
            "event_type": "account_updated",
            "timestamp": draw(
                st.sampled_from(["2026-11-25T10:30:00Z", "2026-11-25T10:30:00+01:00"])
            ),
            "data": {
                "id": draw(any_text),
                "balance_credit": draw(st.integers(-(2**53 - 1), 2**53 - 1)),
                "balance_token": draw(st.integers(0, 2**53 - 1)),
            },
        }
        return payload, "queue_account", "queue_account"
    event_type = draw(st.sampled_from(["account_updated", "call_hangup"]) | any_text)
    payload = {
        "event_type": event_type,
        "timestamp": draw(any_text),
        "data": draw(st.dictionaries(any_text, json_values, max_size=4)),
    }
    if event_type == "account_updated":
        # Random fields are almost never a valid event: refused naming the field,
        # or (if hypothesis builds a valid one) queued for the worker.
        return payload, "refuse_or_account", "refuse_or_account"
    outcome = "ignore" if event_type else "refuse"
    return payload, outcome, outcome


def valid_unicode(payload: Any) -> bool:
    """No lone surrogate anywhere (``"\\ud800"`` parses into one; Redis cannot store it)."""
    try:
        json.dumps(payload, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def expect(event: tuple[dict[str, Any], str, str]) -> tuple[str, str]:
    payload, on_minivoice, on_voipbin = event
    if not valid_unicode(payload):
        return "refuse", "refuse"
    return on_minivoice, on_voipbin


def encode(payload: Any, ascii_only: bool) -> bytes:
    text = json.dumps(payload, ensure_ascii=ascii_only)
    return text.encode("utf-8", "surrogatepass")


UNKNOWN = ("unknown", "unknown")
bodies = st.one_of(
    st.tuples(minivoice_events() | voipbin_events(), st.booleans()).map(
        lambda t: (encode(t[0][0], t[1]), expect(t[0]))
    ),
    st.binary(max_size=600).map(lambda b: (b, UNKNOWN)),
    json_values.map(lambda v: (encode(v, True), UNKNOWN)),
    st.sampled_from(
        [b"", b"null", b"[]", b"{}", b'{"event": NaN}', b'{"event": "call.completed"}', b"[" * 5000]
    ).map(lambda b: (b, UNKNOWN)),
)

SIGNATURES = (
    "valid",
    "valid-among-others",
    "valid-upper-hex",
    "wrong-secret",
    "stale",
    "future",
    "other-body",
    "missing",
    "garbage",
    "empty",
)


def x_signature(mode: str, body: bytes, data: st.DataObject) -> dict[str, bytes]:
    """The contract's ``X-Signature: t=<ts>,v1=<hex>`` (VoIPBIN's path)."""
    if mode == "valid":
        value = sign_payload(SECRET, NOW - data.draw(st.integers(0, TOLERANCE)), body)
    elif mode == "valid-among-others":
        good = sign_payload(SECRET, NOW, body).split("v1=")[1]
        junk = data.draw(st.lists(st.text("0123456789abcdef", max_size=64), max_size=3))
        entries = [f"v1={j}" for j in junk] + [f"v1={good}"]
        value = f"t={NOW}," + ",".join(data.draw(st.permutations(entries)))
    elif mode == "valid-upper-hex":
        value = sign_payload(SECRET, NOW, body).upper().replace("T=", "t=").replace("V1=", "v1=")
    elif mode == "wrong-secret":
        value = sign_payload(data.draw(st.text(min_size=1)) + "x", NOW, body)
    elif mode == "stale":
        value = sign_payload(SECRET, NOW - data.draw(st.integers(TOLERANCE + 1, 10**9)), body)
    elif mode == "future":
        value = sign_payload(SECRET, NOW + data.draw(st.integers(TOLERANCE + 1, 10**9)), body)
    elif mode == "other-body":
        other = data.draw(st.binary().filter(lambda b: b != body))
        value = sign_payload(SECRET, NOW, other)
    elif mode == "missing":
        return {}
    elif mode == "empty":
        value = ""
    else:
        return {"x-signature": data.draw(printable_bytes)}
    return {"x-signature": value.encode()}


printable_bytes = st.binary(max_size=300).filter(lambda b: b"\r" not in b and b"\n" not in b)


def minivoice_signature(mode: str, body: bytes, data: st.DataObject) -> dict[str, bytes]:
    """MiniVoice's ``X-MiniVoice-Timestamp`` + ``X-MiniVoice-Signature: v1=<hex>``."""

    def sign(secret: str, stamp: int, signed_body: bytes) -> dict[str, bytes]:
        return {
            k.lower(): v.encode() for k, v in minivoice_headers(secret, stamp, signed_body).items()
        }

    if mode == "valid":
        return sign(SECRET, NOW - data.draw(st.integers(0, TOLERANCE)), body)
    if mode == "valid-among-others":
        headers = sign(SECRET, NOW, body)
        junk = data.draw(st.lists(st.text("0123456789abcdef", max_size=64), max_size=3))
        entries = [f"v1={j}".encode() for j in junk] + [headers["x-minivoice-signature"]]
        sep = data.draw(st.sampled_from([b",", b" ", b", "]))
        headers["x-minivoice-signature"] = sep.join(data.draw(st.permutations(entries)))
        return headers
    if mode == "valid-upper-hex":
        headers = sign(SECRET, NOW, body)
        mac = headers["x-minivoice-signature"].removeprefix(b"v1=")
        headers["x-minivoice-signature"] = b"v1=" + mac.upper()
        return headers
    if mode == "wrong-secret":
        return sign(data.draw(st.text(min_size=1)) + "x", NOW, body)
    if mode == "stale":
        return sign(SECRET, NOW - data.draw(st.integers(TOLERANCE + 1, 10**9)), body)
    if mode == "future":
        return sign(SECRET, NOW + data.draw(st.integers(TOLERANCE + 1, 10**9)), body)
    if mode == "other-body":
        return sign(SECRET, NOW, data.draw(st.binary().filter(lambda b: b != body)))
    if mode == "missing":
        return {}
    if mode == "empty":
        return {"x-minivoice-timestamp": b"", "x-minivoice-signature": b""}
    return {
        "x-minivoice-timestamp": data.draw(printable_bytes),
        "x-minivoice-signature": data.draw(printable_bytes),
    }


VALID = {"valid", "valid-among-others", "valid-upper-hex"}


def jobs(redis: Redis) -> list[bytes]:
    return sorted(redis.zrange(settlement_queue(QUEUE), 0, -1))  # type: ignore[arg-type]


PROFILE = settings.get_profile(FUZZ_PROFILE)


@settings(PROFILE, max_examples=PROFILE.max_examples * 5)  # a few ms each
@given(
    delivery=bodies,
    mode=st.sampled_from(SIGNATURES),
    path=st.sampled_from(PATHS),
    oversized=st.integers(0, 9).map(lambda n: n == 0),
    content_type=st.sampled_from(
        ["application/json", "text/plain", "", "application/json; charset=latin-1"]
    ),
    data=st.data(),
)
def test_fuzz_webhook_deliveries(
    harness: Harness,
    delivery: tuple[bytes, tuple[str, str]],
    mode: str,
    path: str,
    oversized: bool,
    content_type: str,
    data: st.DataObject,
) -> None:
    body, (on_minivoice, on_voipbin) = delivery
    minivoice = path in MINIVOICE_PATHS
    expected = on_minivoice if minivoice else on_voipbin
    if oversized:
        body = body + b" " * (MAX_BODY_BYTES + 1 - len(body))
    harness.redis.delete(settlement_queue(QUEUE), *harness.redis.keys("arq:*"))
    signature = (minivoice_signature if minivoice else x_signature)(mode, body, data)
    headers: dict[str, bytes] = {"content-type": content_type.encode(), **signature}
    note(f"{mode} {path} {len(body)} bytes, expected {expected}")

    with structlog.testing.capture_logs() as logs:
        response = harness.loop.run_until_complete(
            harness.http.post(path, content=body, headers=headers)  # type: ignore[arg-type]
        )
    note(f"{response.status_code} {response.text[:200]}")
    queued = jobs(harness.redis)

    assert response.status_code < 500, response.text
    shown = response.text + repr(logs)
    for secret in (SECRET, API_KEY):
        assert secret not in shown
    for name in ("x-signature", "x-minivoice-signature"):
        mac = signature.get(name, b"").decode("latin-1").rpartition("v1=")[2]
        assert len(mac) < 16 or mac not in shown

    if oversized:
        assert response.status_code == 413
    elif mode not in VALID:
        assert response.status_code == 401
        assert response.json() == {"error": "invalid signature"}
    elif expected in ("queue", "queue_account"):
        assert response.status_code == 202, response.text
        assert response.json() == {"queued": True}
    elif expected == "ignore":
        assert response.status_code == 202, response.text
        assert response.json() == {"queued": False, "ignored": True}
    elif expected == "refuse":
        assert response.status_code == 400, response.text
    elif expected == "refuse_or_account":
        assert response.status_code in (400, 202), response.text
        if response.status_code == 202:
            assert response.json() == {"queued": True}
            expected = "queue_account"

    if response.status_code == 202 and response.json().get("queued"):
        [job_id] = queued
        raw = json.loads(harness.redis.get(b"arq:job:" + job_id) or b"null")
        assert raw["a"] == [json.loads(body)]
        if expected == "queue_account":
            assert raw["f"] == JOB_ACCOUNT_EVENT
        else:
            assert raw["f"] == JOB_CALL_EVENT
            assert minivoice and raw["a"][0]["event"] in WEBHOOK_EVENTS
    else:
        assert queued == [], "nothing may be queued for a delivery that was not accepted"
        assert 400 <= response.status_code < 500 or response.json().get("ignored")
