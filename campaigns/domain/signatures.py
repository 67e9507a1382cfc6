"""The ``X-Signature`` scheme: ``t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>." + body)>``.

One place for it: ``campaigns ingress`` verifies inbound webhooks with it (the
contract's scheme) and the dispatcher signs its own callback events with it, so
a receiver checks them exactly as the ingress checks what it receives.
"""

from __future__ import annotations

import hashlib
import hmac

__all__ = ["SIGNATURE_HEADER", "sign_signature", "verify_signature"]

SIGNATURE_HEADER = "X-Signature"


def _mac(secret: str, timestamp: int, body: bytes) -> str:
    return hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()


def sign_signature(secret: str, body: bytes, *, timestamp: int) -> str:
    """The ``X-Signature`` value :func:`verify_signature` accepts for ``body``: what the
    dispatcher's own callbacks carry, so a receiver checks them the same way."""
    return f"t={timestamp},v1={_mac(secret, timestamp, body)}"


def verify_signature(
    secret: str, header: str | None, body: bytes, *, now: float, tolerance_seconds: int
) -> str | None:
    """Check ``t=<ts>,v1=<hex>`` against the raw body; return why it fails, or None.

    The timestamp is inside the MAC, so checking its age stops a captured
    delivery from being replayed later. Several ``v1`` entries are allowed
    (secret rotation); any one matching is enough.
    """
    if not header:
        return "missing signature"
    timestamp: int | None = None
    candidates: list[bytes] = []
    for part in header.split(","):
        key, sep, value = part.strip().partition("=")
        if not sep:
            return "garbled signature"
        if key == "t":
            if not value.isascii() or not value.isdigit() or len(value) > 12:
                return "garbled signature"
            timestamp = int(value)
        elif key == "v1":
            candidates.append(value.strip().lower().encode("utf-8", "replace"))
    if timestamp is None or not candidates:
        return "garbled signature"
    if abs(now - timestamp) > tolerance_seconds:
        return "timestamp outside tolerance"
    wanted = _mac(secret, timestamp, body).encode()
    # Compare against every candidate, so timing says nothing about which one matched.
    matched = False
    for candidate in candidates:
        matched |= hmac.compare_digest(wanted, candidate)
    return None if matched else "signature mismatch"
