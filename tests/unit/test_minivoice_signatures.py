"""MiniVoice's webhook signature (webhooks/signatures), checked as documented:
``X-MiniVoice-Signature: v1=<hex HMAC-SHA256(secret, timestamp + "." + raw body)>``."""

from __future__ import annotations

import hashlib
import hmac

import pytest

from campaigns.providers.minivoice import event_key, sign_webhook, verify_webhook

SECRET = "whsec_minivoice_9f8e7d"
NOW = 1_780_000_000
BODY = b'{"event":"call.created","call":{"id":"call_123"},"data":{"event_key":"call_123:call.created"}}'


def headers(stamp: str, body: bytes = BODY, secret: str = SECRET) -> dict[str, str]:
    return {
        "X-MiniVoice-Timestamp": stamp,
        "X-MiniVoice-Signature": sign_webhook(secret, stamp, body),
    }


def verify(given: dict[str, str], body: bytes = BODY) -> str | None:
    return verify_webhook(given, body, SECRET, now=NOW, tolerance_seconds=300)


def test_the_documented_mac() -> None:
    """Computed independently of the code under test."""
    mac = hmac.new(SECRET.encode(), f"{NOW}.".encode() + BODY, hashlib.sha256).hexdigest()
    assert sign_webhook(SECRET, str(NOW), BODY) == f"v1={mac}"
    given = {"X-MiniVoice-Timestamp": str(NOW), "X-MiniVoice-Signature": f"v1={mac}"}
    assert verify(given) is None


@pytest.mark.parametrize(
    "stamp",
    [str(NOW), str(NOW - 300), str(NOW + 300), str(NOW * 1000 + 999), "2026-05-28T20:26:40Z"],
    ids=["seconds", "oldest", "newest", "milliseconds", "rfc3339"],
)
def test_timestamp_formats_within_tolerance(stamp: str) -> None:
    assert verify(headers(stamp)) is None


@pytest.mark.parametrize(
    ("given", "reason"),
    [
        (headers(str(NOW - 301)), "timestamp outside tolerance"),
        (headers(str(NOW + 301)), "timestamp outside tolerance"),
        (headers(str(NOW), secret="whsec_other"), "signature mismatch"),
        ({}, "missing signature"),
        ({"X-MiniVoice-Timestamp": str(NOW)}, "missing signature"),
        ({"X-MiniVoice-Signature": "v1=00"}, "missing signature"),
        ({"X-MiniVoice-Timestamp": "soon", "X-MiniVoice-Signature": "v1=00"}, "garbled signature"),
        ({"X-MiniVoice-Timestamp": str(NOW), "X-MiniVoice-Signature": "00"}, "garbled signature"),
        ({"X-MiniVoice-Timestamp": "9" * 70, "X-MiniVoice-Signature": "v1=0"}, "garbled signature"),
        ({"X-Signature": f"t={NOW},v1=00"}, "missing signature"),
    ],
    ids=[
        "stale",
        "future",
        "wrong-secret",
        "no-headers",
        "no-signature",
        "no-timestamp",
        "bad-timestamp",
        "no-v1",
        "huge-timestamp",
        "other-scheme",
    ],
)
def test_refusals_say_why(given: dict[str, str], reason: str) -> None:
    assert verify(given) == reason


def test_a_tampered_body_or_timestamp_fails() -> None:
    good = headers(str(NOW))
    assert verify(good, BODY + b" ") == "signature mismatch"
    assert verify({**good, "X-MiniVoice-Timestamp": str(NOW + 1)}) == "signature mismatch"


def test_header_names_are_case_insensitive_and_several_macs_allowed() -> None:
    good = headers(str(NOW))
    rotated = {
        "x-minivoice-timestamp": good["X-MiniVoice-Timestamp"],
        "x-minivoice-signature": "v1="
        + "ab" * 32
        + ", "
        + good["X-MiniVoice-Signature"].upper().replace("V1=", "v1="),
    }
    assert verify(rotated) is None


@pytest.mark.parametrize(
    ("payload", "key"),
    [
        ({"data": {"event_key": "call_123:call.created"}}, "call_123:call.created"),
        ({"data": {}}, None),
        ({"data": {"event_key": 5}}, None),
        ({"data": {"event_key": "x" * 257}}, None),
        ({"data": {"event_key": "a\nb"}}, None),
        ({"data": "nope"}, None),
        ([], None),
    ],
)
def test_event_key(payload: object, key: str | None) -> None:
    assert event_key(payload) == key
