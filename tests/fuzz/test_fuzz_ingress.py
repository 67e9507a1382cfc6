"""Fuzz the webhook ingress: hostile bodies, headers and signatures, both dialects.

The Starlette app runs in-process (``httpx.ASGITransport``) around a real
``JobQueue`` on the session's real Redis. For every delivery:

- never a 5xx (Redis is up);
- a forged, stale, missing or garbled signature is 401, an oversized body 413;
- a genuine, well-formed event of either dialect is 2xx: a MiniVoice final
  event with a usable call ID becomes exactly one job carrying the payload as
  sent, anything else is acknowledged and not queued;
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
from campaigns.providers.minivoice import FINAL_EVENTS
from campaigns.queue import JOB_ACCOUNT_EVENT, JOB_CALL_EVENT, JobQueue, open_queue
from campaigns.testbed.sandbox import sign_payload
from tests.fuzz.conftest import FUZZ_PROFILE

pytestmark = pytest.mark.integration

SECRET = "whsec_fuzz_4b9e2f7a1c6d8e3f"
API_KEY = "sk_fuzz_api_key_93kd7e1x"
QUEUE = "dispatcher:fuzz-ingress"
NOW = 1_780_000_000
TOLERANCE = 300
PATHS = ("/webhooks/minivoice", "/webhooks/voipbin", "/webhooks")
NON_FINAL = ("call.ringing", "call.in_progress", "call.queued", "account_updated")


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
def minivoice_events(draw: st.DrawFn) -> tuple[dict[str, Any], str]:
    """A MiniVoice ``call.*`` event and what must come of it: queue, ignore or refuse."""
    final = draw(st.booleans())
    event = (
        draw(st.sampled_from(sorted(FINAL_EVENTS)))
        if final
        else draw(st.sampled_from(NON_FINAL) | any_text.filter(lambda e: e not in FINAL_EVENTS))
    )
    usable = draw(st.booleans())
    call: dict[str, Any] = draw(st.dictionaries(any_text, json_values, max_size=4))
    call["id"] = draw(good_call_ids if usable else bad_call_ids)
    payload: dict[str, Any] = {
        "event": event,
        "created_at": draw(any_text),
        "call": call,
        "variables": draw(st.dictionaries(any_text, json_values, max_size=3)),
        "data": draw(json_values),
    }
    if not event:
        return payload, "refuse"
    if event not in FINAL_EVENTS:
        return payload, "ignore"
    return payload, "queue" if usable else "refuse"


@st.composite
def voipbin_events(draw: st.DrawFn) -> tuple[dict[str, Any], str]:
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
        return payload, "queue_account"
    event_type = draw(st.sampled_from(["account_updated", "call_hangup"]) | any_text)
    payload = {
        "event_type": event_type,
        "timestamp": draw(any_text),
        "data": draw(st.dictionaries(any_text, json_values, max_size=4)),
    }
    if event_type == "account_updated":
        # Random fields are almost never a valid event: refused naming the field,
        # or (if hypothesis builds a valid one) queued for the worker.
        return payload, "refuse_or_account"
    return payload, "ignore" if event_type else "refuse"


def valid_unicode(payload: Any) -> bool:
    """No lone surrogate anywhere (``"\\ud800"`` parses into one; Redis cannot store it)."""
    try:
        json.dumps(payload, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def expect(event: tuple[dict[str, Any], str]) -> str:
    payload, outcome = event
    return outcome if valid_unicode(payload) else "refuse"


def encode(payload: Any, ascii_only: bool) -> bytes:
    text = json.dumps(payload, ensure_ascii=ascii_only)
    return text.encode("utf-8", "surrogatepass")


bodies = st.one_of(
    st.tuples(minivoice_events() | voipbin_events(), st.booleans()).map(
        lambda t: (encode(t[0][0], t[1]), expect(t[0]))
    ),
    st.binary(max_size=600).map(lambda b: (b, "unknown")),
    json_values.map(lambda v: (encode(v, True), "unknown")),
    st.sampled_from(
        [b"", b"null", b"[]", b"{}", b'{"event": NaN}', b'{"event": "call.completed"}', b"[" * 5000]
    ).map(lambda b: (b, "unknown")),
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


def signature_header(mode: str, body: bytes, data: st.DataObject) -> bytes | None:
    if mode == "valid":
        return sign_payload(SECRET, NOW - data.draw(st.integers(0, TOLERANCE)), body).encode()
    if mode == "valid-among-others":
        good = sign_payload(SECRET, NOW, body).split("v1=")[1]
        junk = data.draw(st.lists(st.text("0123456789abcdef", max_size=64), max_size=3))
        entries = [f"v1={j}" for j in junk] + [f"v1={good}"]
        return (f"t={NOW}," + ",".join(data.draw(st.permutations(entries)))).encode()
    if mode == "valid-upper-hex":
        return (
            sign_payload(SECRET, NOW, body)
            .upper()
            .replace("T=", "t=")
            .replace("V1=", "v1=")
            .encode()
        )
    if mode == "wrong-secret":
        return sign_payload(data.draw(st.text(min_size=1)) + "x", NOW, body).encode()
    if mode == "stale":
        return sign_payload(
            SECRET, NOW - data.draw(st.integers(TOLERANCE + 1, 10**9)), body
        ).encode()
    if mode == "future":
        return sign_payload(
            SECRET, NOW + data.draw(st.integers(TOLERANCE + 1, 10**9)), body
        ).encode()
    if mode == "other-body":
        other = data.draw(st.binary().filter(lambda b: b != body))
        return sign_payload(SECRET, NOW, other).encode()
    if mode == "missing":
        return None
    if mode == "empty":
        return b""
    return data.draw(st.binary(max_size=300).filter(lambda b: b"\r" not in b and b"\n" not in b))


VALID = {"valid", "valid-among-others", "valid-upper-hex"}


def jobs(redis: Redis) -> list[bytes]:
    return sorted(redis.zrange(QUEUE, 0, -1))  # type: ignore[arg-type]


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
    delivery: tuple[bytes, str],
    mode: str,
    path: str,
    oversized: bool,
    content_type: str,
    data: st.DataObject,
) -> None:
    body, expected = delivery
    if oversized:
        body = body + b" " * (MAX_BODY_BYTES + 1 - len(body))
    harness.redis.delete(QUEUE, *harness.redis.keys("arq:*"))
    header = (
        signature_header(mode, body, data)
        if data is not None
        else sign_payload(SECRET, NOW, body).encode()
    )
    headers: dict[str, bytes] = {"content-type": content_type.encode()}
    if header is not None:
        headers["x-signature"] = header
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
    if header:
        mac = header.decode("latin-1").rpartition("v1=")[2]
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
            assert raw["a"][0]["event"] in FINAL_EVENTS
    else:
        assert queued == [], "nothing may be queued for a delivery that was not accepted"
        assert 400 <= response.status_code < 500 or response.json().get("ignored")
