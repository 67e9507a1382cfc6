"""Provider dialects: one adapter module per dialect, one factory to pick it."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import httpx

from campaigns.providers.base import (
    FINAL_STATUSES,
    MAX_BILLSEC_SECONDS,
    MAX_CALL_ID,
    Balance,
    CallInfo,
    Capabilities,
    CreateRequest,
    EventError,
    Provider,
    SentCreate,
    Usage,
    billing_refusal,
)
from campaigns.providers.minivoice import MiniVoice
from campaigns.providers.voipbin import VoIPBIN
from campaigns.providers.voxpria_calls import VoxpriaCalls
from campaigns.settings import Settings

__all__ = [
    "FINAL_STATUSES",
    "MAX_BILLSEC_SECONDS",
    "MAX_CALL_ID",
    "Balance",
    "CallInfo",
    "Capabilities",
    "CreateRequest",
    "EventError",
    "MiniVoice",
    "Provider",
    "SentCreate",
    "Usage",
    "VoIPBIN",
    "VoxpriaCalls",
    "billing_refusal",
    "check_call_section",
    "final_events",
    "make_provider",
]

_DIALECTS: dict[str, type[MiniVoice] | type[VoIPBIN] | type[VoxpriaCalls]] = {
    "minivoice": MiniVoice,
    "voipbin": VoIPBIN,
    "voxpria": VoxpriaCalls,
}


def final_events(dialect: str) -> frozenset[str]:
    """The webhook events of a dialect that carry a final call (for the ingress)."""
    return _DIALECTS[dialect].final_events


def check_call_section(dialect: str, call: Mapping[str, Any]) -> None:
    """Refuse (SpecError naming the field) a spec's ``call`` section the dialect
    cannot carry out; a dialect without a ``check_call`` takes any."""
    check = getattr(_DIALECTS.get(dialect), "check_call", None)
    if check is not None:
        check(call)


def make_provider(
    settings: Settings, transport: httpx.AsyncBaseTransport | None = None
) -> Provider:
    if settings.provider_dialect == "voipbin":
        return VoIPBIN(
            settings.provider_url,
            settings.provider_api_key,
            timeout=settings.provider_timeout_seconds,
            transport=transport,
            auth=settings.provider_auth or "accesskey",
        )
    if settings.provider_dialect == "voxpria":
        return VoxpriaCalls(
            settings.provider_url,
            settings.provider_api_key,
            timeout=settings.provider_timeout_seconds,
            transport=transport,
        )
    return MiniVoice(
        settings.provider_url,
        settings.provider_api_key,
        timeout=settings.provider_timeout_seconds,
        transport=transport,
    )
