"""VoIPBIN dialect (CONTRACT.md): ``?token=`` auth, ``/v1.0/calls``, ``/v1.0/billing_account``.

VoIPBIN has no call variables and no lookup by attempt, so an attempt whose
answer was lost can only be resolved by the same Idempotency-Key or by an
operator (in doubt).
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

import httpx
from pydantic import SecretStr

from campaigns.domain.errors import ProviderError
from campaigns.domain.money import MAX_MICROS
from campaigns.providers._http import provider_client, request
from campaigns.providers.base import (
    Balance,
    CallInfo,
    Capabilities,
    CreateRequest,
    EventError,
    SentCreate,
    Usage,
    brief,
)

__all__ = ["ACCOUNT_EVENT", "VoIPBIN", "parse_account_event", "parse_balance"]

ACCOUNT_EVENT = "account_updated"
"""Seed 001's balance webhook (``event_type``), delivered through ``campaigns ingress``."""

# VoIPBIN call states mapped onto the dispatcher's (MiniVoice) vocabulary.
_STATUS = {"dialing": "queued", "ringing": "ringing", "progressing": "in_progress"}
# A hung-up call's outcome is in its hangup reason.
_HANGUP = {
    "normal": "completed",
    "failed": "failed",
    "busy": "busy",
    "noanswer": "no_answer",
    "canceled": "canceled",
}


def _call(payload: Any, to: str | None = None) -> CallInfo:
    calls = payload if isinstance(payload, list) else [payload]
    chosen: Any = None
    for call in calls:
        if not isinstance(call, dict):
            continue
        target = (call.get("destination") or {}).get("target")
        if chosen is None or (to is not None and target == to):
            chosen = call
    if chosen is None or not isinstance(chosen.get("id"), str):
        raise ProviderError(200, "invalid_response", "no call object with an id")
    status = str(chosen.get("status", ""))
    if status == "hangup":
        status = _HANGUP.get(str(chosen.get("hangup_reason", "")), "completed")
    else:
        status = _STATUS.get(status, status)
    duration = chosen.get("duration") if isinstance(chosen.get("duration"), int) else None
    return CallInfo(
        call_id=chosen["id"],
        status=status,
        direction=str(chosen.get("direction", "outgoing")),
        to=str((chosen.get("destination") or {}).get("target", to or "")),
        billsec=duration,
    )


def _whole(payload: dict[str, Any], name: str, low: int) -> int:
    value = payload.get(name)
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= MAX_MICROS:
        raise ValueError(f"{name}: expected a whole number {low}..{MAX_MICROS}, got {brief(value)}")
    return value


def parse_balance(payload: Any) -> Balance:
    """``balance_credit`` (int64 micros) and ``balance_token`` (int) of a billing
    account or an ``account_updated`` event's ``data``; never through a float."""
    if not isinstance(payload, dict):
        raise ValueError("expected an object")
    # A credit balance may be overdrawn; a token count may not.
    credit = _whole(payload, "balance_credit", -MAX_MICROS)
    return Balance(credit, _whole(payload, "balance_token", 0))


def _timestamp_ms(value: object) -> int:
    if not isinstance(value, str) or not 0 < len(value) <= 64 or "T" not in value.upper():
        raise EventError("timestamp: expected an RFC 3339 time such as 2024-01-15T10:30:00Z")
    try:
        parsed = datetime.fromisoformat(value.upper().replace("Z", "+00:00"))
    except ValueError:
        parsed = None
    if parsed is None or parsed.tzinfo is None:
        raise EventError("timestamp: expected an RFC 3339 time with an offset")
    return int(parsed.timestamp() * 1000)


def parse_account_event(payload: Any) -> tuple[int, Balance]:
    """An ``account_updated`` delivery (seed 001) as (its time in ms, the balance it reports).

    Raises :class:`EventError` naming the field.
    """
    if not isinstance(payload, dict):
        raise EventError("payload: expected a JSON object")
    if payload.get("event_type") != ACCOUNT_EVENT:
        raise EventError(f"event_type: expected {ACCOUNT_EVENT!r}")
    at_ms = _timestamp_ms(payload.get("timestamp"))
    data = payload.get("data")
    if not isinstance(data, dict):
        raise EventError("data: expected an object")
    try:
        return at_ms, parse_balance(data)
    except ValueError as exc:
        raise EventError(f"data.{exc}") from None


class VoIPBIN:
    dialect = "voipbin"
    capabilities = Capabilities(
        idempotency_keys=False,
        lookup=True,
        creation_events=False,
        hangup=True,
        lookup_settle_seconds=10.0,
    )
    final_events: frozenset[str] = frozenset()
    creation_events: frozenset[str] = frozenset()
    """VoIPBIN reports no call events here: its calls are settled by polling."""

    @staticmethod
    def parse_event(payload: Any) -> tuple[str, CallInfo]:
        raise EventError("event: the voipbin dialect sends no call events; calls settle by polling")

    def __init__(
        self,
        base_url: str,
        api_key: SecretStr,
        *,
        timeout: float = 10.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self._client = provider_client(
            base_url=base_url.rstrip("/"),
            params={"token": api_key.get_secret_value()},
            timeout=timeout,
            transport=transport,
        )

    def build_create(self, request: CreateRequest) -> str:
        body = {
            "source": {"type": "tel", "target": request.caller_id},
            "destinations": [{"type": "tel", "target": request.to}],
        }
        return json.dumps(body, separators=(",", ":"))

    async def create_call(self, body: str, idempotency_key: str) -> CallInfo:
        headers = {"Content-Type": "application/json", "Idempotency-Key": idempotency_key}
        payload = await request(
            self._client, "POST", "/calls", content=body.encode(), headers=headers
        )
        to = json.loads(body)["destinations"][0]["target"]
        return _call(payload, to)

    async def get_call(self, call_id: str) -> CallInfo:
        return _call(await request(self._client, "GET", f"/calls/{call_id}"))

    async def find_calls(self, sent: SentCreate) -> list[CallInfo]:
        raise NotImplementedError("not yet: VoIPBIN's GET /v1.0/calls")

    async def hang_up(self, call_id: str) -> None:
        raise NotImplementedError("not yet: VoIPBIN's POST /v1.0/calls/{id}/hangup")

    async def usage(self, start: datetime, end: datetime) -> Usage | None:
        return None

    async def balance(self) -> Balance | None:
        payload = await request(self._client, "GET", "/billing_account")
        try:
            return parse_balance(payload)
        except ValueError as exc:
            raise ProviderError(200, "invalid_response", f"billing_account: {exc}") from None

    async def aclose(self) -> None:
        await self._client.aclose()
