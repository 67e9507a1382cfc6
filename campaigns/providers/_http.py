"""HTTP plumbing shared by the dialect adapters: turning failures into ProviderError."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

import httpx

from campaigns.domain.errors import ProviderError, provider_error, unsendable
from campaigns.logs import scrub

__all__ = ["error_from_response", "network_error", "parse_retry_after", "request"]


def parse_retry_after(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:  # "-0000" means UTC with no zone information
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


def error_from_response(response: httpx.Response) -> ProviderError:
    code, message = f"http_{response.status_code}", response.reason_phrase
    try:
        payload = response.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        payload = None
    if isinstance(payload, dict):
        error = payload.get("error")
        if isinstance(error, dict):
            code = str(error.get("code") or code)
            message = str(error.get("message") or message)
        elif isinstance(error, str):
            code = error
    # The message becomes a stored halt message: shown by status and report.
    return provider_error(
        response.status_code,
        scrub(code),
        scrub(message),
        parse_retry_after(response.headers.get("Retry-After")),
    )


def network_error(exc: httpx.HTTPError) -> ProviderError:
    if isinstance(exc, httpx.LocalProtocolError | httpx.UnsupportedProtocol):
        # Refused by our own client before anything left: an empty API key's
        # "Bearer " header, a bad scheme. A configuration error, never transient.
        return unsendable(scrub(f"{type(exc).__name__}: {exc}"))
    if isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout):
        # No connection, so the request never reached the provider.
        return ProviderError(None, "connect_failed", scrub(f"{type(exc).__name__}: {exc}"))
    if isinstance(exc, httpx.TimeoutException):
        return ProviderError(None, "timeout", f"{type(exc).__name__}: no answer in time")
    return ProviderError(None, "network_error", scrub(f"{type(exc).__name__}: {exc}"))


async def request(client: httpx.AsyncClient, method: str, url: str, **kwargs: Any) -> Any:
    """Send, raise ProviderError on any failure, return the decoded JSON body."""
    try:
        response = await client.request(method, url, **kwargs)
    except httpx.HTTPError as exc:
        raise network_error(exc) from None
    if response.status_code >= 400:
        raise error_from_response(response)
    try:
        return response.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise ProviderError(response.status_code, "invalid_response", "not JSON") from None
