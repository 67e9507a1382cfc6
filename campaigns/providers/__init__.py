"""Provider dialects: one adapter module per dialect, one factory to pick it."""

from __future__ import annotations

import httpx

from campaigns.providers.base import FINAL_STATUSES, Balance, CallInfo, Provider, Usage
from campaigns.providers.minivoice import MiniVoice
from campaigns.settings import Settings

__all__ = [
    "FINAL_STATUSES",
    "Balance",
    "CallInfo",
    "MiniVoice",
    "Provider",
    "Usage",
    "make_provider",
]


def make_provider(
    settings: Settings, transport: httpx.AsyncBaseTransport | None = None
) -> Provider:
    if settings.provider_dialect == "voipbin":
        from campaigns.providers.voipbin import VoIPBIN

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
