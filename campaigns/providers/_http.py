"""HTTP plumbing shared by the provider adapters: their client, and turning failures into ProviderError."""

from __future__ import annotations

import contextlib
import json
import re
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

import aiohttp
import h11
import httpx
from httpx_aiohttp import AiohttpTransport

from campaigns.domain.errors import ProviderError, provider_error, unsendable
from campaigns.logs import scrub

__all__ = [
    "ProviderTransport",
    "error_from_response",
    "network_error",
    "parse_retry_after",
    "provider_client",
    "request",
    "request_with_status",
]

MAX_CONNECTIONS = 100
"""Per client, as httpx's default ``Limits``; a request beyond waits for one."""
KEEPALIVE_SECONDS = 5.0
"""Idle connections are closed after this, as httpx's default ``keepalive_expiry``."""

# What httpx's own transport raises in each case, so that network_error() reads
# the same whichever transport sent the request. First match wins.
_AS_HTTPX: tuple[tuple[type[BaseException], type[httpx.TransportError]], ...] = (
    # Nothing was sent: the provider cannot have acted on the request.
    (aiohttp.ConnectionTimeoutError, httpx.ConnectTimeout),  # connecting, or waiting for the pool
    (aiohttp.ClientConnectorError, httpx.ConnectError),  # refused, DNS, TLS handshake
    (aiohttp.InvalidURL, httpx.UnsupportedProtocol),
    (aiohttp.NonHttpUrlClientError, httpx.UnsupportedProtocol),
    # The request may have been sent: the provider may have placed the call.
    (TimeoutError, httpx.ReadTimeout),  # no answer within the read timeout
    (aiohttp.ClientResponseError, httpx.RemoteProtocolError),  # an answer that is not HTTP
    (aiohttp.ClientError, httpx.ReadError),  # disconnected, reset, a truncated body
)


_QUERY = re.compile(r"(https?://[^\s?#]*)[?#][^\s]*")


def _as_httpx(exc: aiohttp.ClientError | TimeoutError) -> httpx.TransportError:
    # aiohttp names the whole URL in some errors, and VoIPBIN's token is a query
    # parameter: keep the URL's path, never its query.
    message = _QUERY.sub(r"\1", str(exc)) or type(exc).__name__
    for aiohttp_type, httpx_type in _AS_HTTPX:
        if isinstance(exc, aiohttp_type):
            return httpx_type(message)
    return httpx.ReadError(message)  # unreachable: ClientError is last


@contextlib.contextmanager
def _httpx_errors() -> Iterator[None]:
    """Re-raise aiohttp's errors as the httpx error httpx's own transport raises.

    ``httpx_aiohttp`` maps them too coarsely for us: it turns a server that
    disconnects after the request was sent into ``ConnectTimeout``, which
    reads as "never reached the provider" (not ambiguous), so the original
    aiohttp error (its ``__cause__``) is mapped again here.
    """
    try:
        yield
    except (httpx.HTTPError, aiohttp.ClientError, TimeoutError) as exc:
        original = exc.__cause__ if isinstance(exc, httpx.HTTPError) else exc
        if not isinstance(original, aiohttp.ClientError | TimeoutError):
            raise  # httpx's own error, raised before aiohttp was involved
        raise _as_httpx(original) from original


def _refuse_unsendable(request: httpx.Request) -> None:
    """Refuse what httpx's own transport refuses before sending (h11's header rules).

    aiohttp would send an empty key's ``Authorization: Bearer `` and get a 401;
    httpx refuses it as a ``LocalProtocolError``, which network_error() reads
    as our configuration error, with nothing sent.
    """
    try:
        h11.Request(method=request.method, target=request.url.raw_path, headers=request.headers.raw)
    except h11.LocalProtocolError as exc:
        raise httpx.LocalProtocolError(str(exc)) from None


class _Body(httpx.AsyncByteStream):
    """A response body whose read errors are httpx's (see _httpx_errors)."""

    def __init__(self, inner: httpx.AsyncByteStream) -> None:
        self._inner = inner

    async def __aiter__(self) -> AsyncIterator[bytes]:
        with _httpx_errors():
            async for chunk in self._inner:
                yield chunk

    async def aclose(self) -> None:
        with _httpx_errors():
            await self._inner.aclose()


class ProviderTransport(httpx.AsyncBaseTransport):
    """httpx's API over aiohttp's connection pool, raising httpx's own errors.

    Why: with requests overlapping, httpx's default transport is the limit
    (docs/benchmarks.md measures both: about 2-7x more requests per second
    over aiohttp with 10 to 50 in flight). Timeouts keep httpx's meaning:
    connect (and pool) and read are enforced; aiohttp has no write timeout,
    which a create body of a few hundred bytes never needs. Cookies and
    proxies stay httpx's: the aiohttp session keeps no cookie jar and ignores
    the environment.
    """

    def __init__(self) -> None:
        self._inner = AiohttpTransport(client=self._session)

    def _session(self) -> aiohttp.ClientSession:
        # Called on the first request, inside the event loop the client lives in.
        connector = aiohttp.TCPConnector(
            limit=MAX_CONNECTIONS,
            keepalive_timeout=KEEPALIVE_SECONDS,
            ssl=self._inner.ssl_context,  # httpx's: certifi's CA bundle
        )
        return aiohttp.ClientSession(connector=connector, cookie_jar=aiohttp.DummyCookieJar())

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        _refuse_unsendable(request)
        with _httpx_errors():
            response = await self._inner.handle_async_request(request)
        assert isinstance(response.stream, httpx.AsyncByteStream)
        response.stream = _Body(response.stream)
        return response

    async def aclose(self) -> None:
        await self._inner.aclose()


def provider_client(
    *, timeout: float, transport: httpx.AsyncBaseTransport | None = None, **options: Any
) -> httpx.AsyncClient:
    """An adapter's one client for the life of its process (``aclose`` on shutdown).

    ``transport`` replaces ProviderTransport (unit tests' ``httpx.MockTransport``).
    """
    return httpx.AsyncClient(timeout=timeout, transport=transport or ProviderTransport(), **options)


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
            reason = error.get("reason")
            if not error.get("code") and isinstance(reason, str) and reason:
                # VoIPBIN (lib/apierror): no ``code``, an UPPER_SNAKE ``reason``;
                # as a code it is spelt like every other one, in lower case.
                code = reason.lower()
            code = str(error.get("code") or code)
            message = str(error.get("message") or message)
            if isinstance(error.get("request_id"), str) and error["request_id"]:
                message = f"{message} (request_id {error['request_id'][:64]})"
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
    return (await request_with_status(client, method, url, **kwargs))[1]


async def request_with_status(
    client: httpx.AsyncClient, method: str, url: str, **kwargs: Any
) -> tuple[int, Any]:
    """As :func:`request`, with the answer's real status (for an adapter's own
    error about a body it cannot use: never a made-up 200)."""
    try:
        response = await client.request(method, url, **kwargs)
    except httpx.HTTPError as exc:
        raise network_error(exc) from None
    if response.status_code >= 400:
        raise error_from_response(response)
    try:
        return response.status_code, response.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise ProviderError(response.status_code, "invalid_response", "not JSON") from None
