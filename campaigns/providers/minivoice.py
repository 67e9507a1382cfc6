"""MiniVoice dialect (CONTRACT.md): bearer auth, ``/v1/calls``, ``/v1/usage``."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import httpx
from pydantic import SecretStr

from campaigns.domain.errors import ProviderError
from campaigns.domain.money import MoneyError, amount_to_micros
from campaigns.providers._http import provider_client, request
from campaigns.providers.base import (
    FINAL_STATUSES,
    Balance,
    CallInfo,
    Capabilities,
    CreateRequest,
    EventError,
    SentCreate,
    Usage,
    billsec_refusal,
    brief,
    call_id_ok,
    currency_refusal,
)

__all__ = ["FINAL_EVENTS", "MiniVoice", "parse_call", "parse_call_event"]

FINAL_EVENTS = frozenset(
    {
        "call.completed",
        "call.failed",
        "call.busy",
        "call.no_answer",
        "call.canceled",
    }
)
"""The seed-000 events that carry a final call."""


def _rfc3339(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_call(payload: Any) -> CallInfo:
    """A MiniVoice call object (API answer or webhook ``call``) as a CallInfo.

    Raises ValueError naming the field; callers turn it into their own error.
    """
    if not isinstance(payload, dict) or not isinstance(payload.get("id"), str) or not payload["id"]:
        raise ValueError("id: missing")
    cost: int | None = None
    if payload.get("cost_amount") is not None:
        try:
            cost = amount_to_micros(payload["cost_amount"])
        except MoneyError as exc:
            raise ValueError(f"cost_amount: {exc}") from None
    billsec = payload.get("billsec_seconds")
    variables = payload.get("variables")
    return CallInfo(
        call_id=payload["id"],
        status=str(payload.get("status", "")),
        direction=str(payload.get("direction", "outbound")),
        to=str(payload.get("to", "")),
        billsec=billsec if isinstance(billsec, int) and not isinstance(billsec, bool) else None,
        cost_micros=cost,
        cost_currency=payload.get("cost_currency"),
        variables=variables if isinstance(variables, dict) else {},
    )


def parse_call_event(payload: Any) -> tuple[str, CallInfo]:
    """Validate a webhook payload (seed 000 shape) into (event name, call)."""
    if isinstance(payload, str | bytes):
        try:
            payload = json.loads(payload)
        except json.JSONDecodeError as exc:
            raise EventError(f"not JSON: {exc.msg}") from None
        except (ValueError, RecursionError):
            # UnicodeDecodeError, or an integer too long to convert.
            raise EventError("not JSON: undecodable body") from None
    if not isinstance(payload, dict):
        raise EventError("event must be a JSON object")
    event = payload.get("event")
    if not isinstance(event, str) or event not in FINAL_EVENTS:
        raise EventError(f"event: unsupported {brief(event)}")
    call = payload.get("call")
    if not isinstance(call, dict):
        raise EventError("call.id: missing")
    call_id = call.get("id")
    if isinstance(call_id, str) and not call_id_ok(call_id):
        raise EventError(f"call.id: not a call ID: {brief(call_id)}")
    status = call.get("status") or event.removeprefix("call.")
    try:
        info = parse_call({**call, "status": status, "variables": payload.get("variables")})
    except ValueError as exc:
        raise EventError(f"call.{exc}") from None
    if not isinstance(status, str) or status not in FINAL_STATUSES:
        raise EventError(f"call.status: {brief(status)} is not final")
    # A billsec of another type is ignored (the call is read back for it); a
    # whole number that no call can have is refused.
    if info.billsec is not None and billsec_refusal(info.billsec):
        raise EventError(f"call.billsec_seconds: {billsec_refusal(info.billsec)}")
    currency = call.get("cost_currency")
    if currency is not None and currency_refusal(currency):
        raise EventError(f"call.cost_currency: {currency_refusal(currency)}")
    return event, info


def _call(payload: Any) -> CallInfo:
    try:
        return parse_call(payload)
    except ValueError as exc:
        raise ProviderError(200, "invalid_response", f"call object: {exc}") from None


class MiniVoice:
    dialect = "minivoice"
    capabilities = Capabilities(
        idempotency_keys=False, lookup=False, creation_events=True, hangup=False
    )
    final_events = FINAL_EVENTS
    creation_events: frozenset[str] = frozenset()

    @staticmethod
    def parse_event(payload: Any) -> tuple[str, CallInfo]:
        return parse_call_event(payload)

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
            headers={"Authorization": f"Bearer {api_key.get_secret_value()}"},
            timeout=timeout,
            transport=transport,
        )

    def build_create(self, request: CreateRequest) -> str:
        variables = {
            **request.variables,
            "campaign_id": request.campaign_id,
            "attempt_id": request.attempt_id,
            "contact_ref": request.contact_ref,
        }
        body = {
            "from": request.caller_id,
            "to": request.to,
            "max_duration_seconds": request.max_duration_seconds,
            "variables": variables,
        }
        return json.dumps(body, separators=(",", ":"), sort_keys=False)

    async def create_call(self, body: str, idempotency_key: str) -> CallInfo:
        headers = {"Content-Type": "application/json", "Idempotency-Key": idempotency_key}
        payload = await request(
            self._client, "POST", "/v1/calls", content=body.encode(), headers=headers
        )
        return _call(payload)

    async def get_call(self, call_id: str) -> CallInfo:
        return _call(await request(self._client, "GET", f"/v1/calls/{call_id}"))

    async def find_calls(self, sent: SentCreate) -> list[CallInfo]:
        attempt_id = sent.attempt_id
        payload = await request(self._client, "GET", "/v1/calls", params={"attempt_id": attempt_id})
        rows = payload.get("data") if isinstance(payload, dict) else None
        return [
            _call(row)
            for row in rows or []
            if isinstance(row, dict)
            and (row.get("variables") or {}).get("attempt_id") == attempt_id
        ]

    async def hang_up(self, call_id: str) -> None:
        raise NotImplementedError("MiniVoice documents no hang-up endpoint")

    async def usage(self, start: datetime, end: datetime) -> Usage:
        params = {"from": _rfc3339(start), "to": _rfc3339(end)}
        payload = await request(self._client, "GET", "/v1/usage", params=params)
        try:
            summary = payload["summary"]
            return Usage(
                start=str(payload.get("from", params["from"])),
                end=str(payload.get("to", params["to"])),
                calls=int(summary["calls"]),
                billsec=int(summary["billsec_seconds"]),
                cost_micros=amount_to_micros(summary["cost_amount"]),
                currency=str(summary["cost_currency"]),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ProviderError(200, "invalid_response", f"usage: {exc}") from None

    async def balance(self) -> Balance | None:
        return None

    async def aclose(self) -> None:
        await self._client.aclose()
