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
from campaigns.providers._http import request
from campaigns.providers.base import Balance, CallInfo, EventError, Usage

__all__ = ["VoIPBIN"]

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


class VoIPBIN:
    dialect = "voipbin"
    can_list_calls = False
    final_events: frozenset[str] = frozenset()
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
        self._client = httpx.AsyncClient(
            base_url=base_url.rstrip("/"),
            params={"token": api_key.get_secret_value()},
            timeout=timeout,
            transport=transport,
        )

    def build_create(
        self, *, caller_id: str, to: str, max_duration_seconds: int, variables: dict[str, Any]
    ) -> str:
        body = {
            "source": {"type": "tel", "target": caller_id},
            "destinations": [{"type": "tel", "target": to}],
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

    async def find_call(self, attempt_id: str) -> CallInfo | None:
        raise NotImplementedError("VoIPBIN cannot list calls by attempt")

    async def usage(self, start: datetime, end: datetime) -> Usage | None:
        return None

    async def balance(self) -> Balance | None:
        payload = await request(self._client, "GET", "/billing_account")
        try:
            return Balance(int(payload["balance_credit"]), int(payload.get("balance_token", 0)))
        except (KeyError, TypeError, ValueError) as exc:
            raise ProviderError(200, "invalid_response", f"billing_account: {exc}") from None

    async def aclose(self) -> None:
        await self._client.aclose()
