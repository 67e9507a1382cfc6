"""Provider dialects: one adapter module per dialect, one factory to pick it."""

from __future__ import annotations

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
    "billing_refusal",
    "final_events",
    "make_provider",
]

_DIALECTS: dict[str, type[MiniVoice] | type[VoIPBIN]] = {"minivoice": MiniVoice, "voipbin": VoIPBIN}


def final_events(dialect: str) -> frozenset[str]:
    """The webhook events of a dialect that carry a final call (for the ingress)."""
    return _DIALECTS[dialect].final_events


def make_provider(
    settings: Settings, transport: httpx.AsyncBaseTransport | None = None
) -> Provider:
    if settings.provider_dialect == "voipbin":
        return VoIPBIN(
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
