"""HTTP plumbing shared by the provider adapters: their client, and turning failures into ProviderError."""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import math
import re
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

import aiohttp
import h11
import httpx
from httpx_aiohttp import AiohttpTransport

from campaigns.domain.errors import (
    INVALID_RESPONSE,
    PROVIDER_REDIRECT,
    ProviderError,
    provider_error,
    unsendable,
)
from campaigns.domain.inputs import DuplicateKeyError, strict_json
from campaigns.logs import scrub

__all__ = [
    "MAX_ANSWER_BYTES",
    "MAX_PAGE_BYTES",
    "AnswerTooLarge",
    "ProviderTransport",
    "UnreadableAnswer",
    "answer",
    "error_from_response",
    "network_error",
    "parse_rate_limit_reset",
    "parse_retry_after",
    "provider_client",
    "request",
]

MAX_CONNECTIONS = 100
"""Per client, as httpx's default ``Limits``; a request beyond waits for one."""
KEEPALIVE_SECONDS = 5.0
"""Idle connections are closed after this, as httpx's default ``keepalive_expiry``."""
MAX_ANSWER_BYTES = 64 * 1024
"""The largest answer :func:`request` reads (a create, a call read back, a call
listing, a balance, MiniVoice's usage summary): a call object is a few hundred
bytes. A larger body is read no further: an unreadable answer of its status."""
MAX_PAGE_BYTES = 4 * 1024 * 1024
"""The largest answer read by a client that names no limit of its own: a usage
page of the billing-insights source (up to 1,000 records of about 1 KB)."""
ANSWER_LIMIT = "campaigns.answer_limit"
"""The request extension that carries a request's body limit to the transport."""

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


class UnreadableAnswer(httpx.ReadError):
    """An answer that is not read (further): an unreadable answer of ``status``."""

    def __init__(self, status: int, reason: str, retry_after: float | None = None) -> None:
        super().__init__(reason)
        self.status = status
        self.retry_after = retry_after


class AnswerTooLarge(UnreadableAnswer):
    """A response body past its limit: read no further (see MAX_ANSWER_BYTES)."""

    def __init__(self, status: int, limit: int, retry_after: float | None = None) -> None:
        super().__init__(status, f"an answer of more than {limit} bytes, not read", retry_after)
        self.limit = limit


@dataclass(slots=True)
class _Progress:
    """How far one request got: connected or not, when its deadline struck."""

    connected: bool = False


_PROGRESS: contextvars.ContextVar[_Progress | None] = contextvars.ContextVar(
    "provider_request_progress", default=None
)


async def _connected(*_: object) -> None:
    # aiohttp's trace signals run in the requesting task, so they see its context.
    progress = _PROGRESS.get()
    if progress is not None:
        progress.connected = True


def _trace() -> aiohttp.TraceConfig:
    trace = aiohttp.TraceConfig()
    trace.on_connection_create_end.append(_connected)
    trace.on_connection_reuseconn.append(_connected)
    return trace


def _total_seconds(request: httpx.Request) -> float | None:
    """The whole request's deadline: the largest part of httpx's timeout for it.

    ``provider_client(timeout=DISPATCHER_PROVIDER_TIMEOUT_SECONDS)`` sets every
    part to that value, so it bounds connect + send + headers + body together,
    not each socket read (a provider trickling a byte every half second would
    otherwise hold a request open without end).
    """
    parts = request.extensions.get("timeout") or {}
    values = [float(v) for v in parts.values() if v is not None]
    return max(values) if values else None


class _NoAnswerInTime(httpx.ReadTimeout):
    """The request's deadline passed after it may have been sent."""


def _deadline_passed(connected: bool, seconds: float, url: httpx.URL) -> httpx.TimeoutException:
    # Host and port only: never the query (VoIPBIN's token is one).
    where = f"{url.host}:{url.port or (443 if url.scheme == 'https' else 80)}"
    if not connected:
        # Still connecting (or waiting for the pool): nothing was sent.
        return httpx.ConnectTimeout(f"no connection to {where} within the {seconds:g}s deadline")
    return _NoAnswerInTime(f"no complete answer from {where} within the {seconds:g}s deadline")


class _Body(httpx.AsyncByteStream):
    """A response body whose read errors are httpx's (see _httpx_errors), read
    within the request's deadline and never past its byte limit."""

    def __init__(
        self,
        inner: httpx.AsyncByteStream,
        *,
        status: int,
        limit: int,
        deadline: float | None,
        seconds: float,
        url: httpx.URL,
        retry_after: float | None,
    ) -> None:
        self._url = url
        self._retry_after = retry_after
        self._inner = inner
        self._status = status
        self._limit = limit
        self._deadline = deadline
        self._seconds = seconds

    async def __aiter__(self) -> AsyncIterator[bytes]:
        received = 0
        with _httpx_errors():
            chunks = aiter(self._inner)
            while True:
                window = asyncio.timeout_at(self._deadline)
                try:
                    async with window:
                        chunk = await anext(chunks)
                except StopAsyncIteration:
                    return
                except TimeoutError:
                    if not window.expired():
                        raise  # aiohttp's own read timeout
                    raise _deadline_passed(True, self._seconds, self._url) from None
                received += len(chunk)
                if received > self._limit:
                    raise AnswerTooLarge(self._status, self._limit, self._retry_after)
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
    which a create body of a few hundred bytes never needs. On top of them the
    whole request, body included, has one deadline (:func:`_total_seconds`),
    and a body is read no further than its limit (the request's
    ``ANSWER_LIMIT`` extension, else MAX_PAGE_BYTES). Cookies and proxies stay
    httpx's: the aiohttp session keeps no cookie jar and ignores the environment.
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
        return aiohttp.ClientSession(
            connector=connector, cookie_jar=aiohttp.DummyCookieJar(), trace_configs=[_trace()]
        )

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        # Uncompressed answers only: the byte limit then bounds what is decoded
        # too (64 KiB of gzip can inflate to 64 MB after the limit was checked).
        request.headers["Accept-Encoding"] = "identity"
        _refuse_unsendable(request)
        seconds = _total_seconds(request)
        deadline = None if seconds is None else asyncio.get_running_loop().time() + seconds
        progress = _Progress()
        token = _PROGRESS.set(progress)
        try:
            with _httpx_errors():
                window = asyncio.timeout_at(deadline)
                try:
                    async with window:
                        response = await self._inner.handle_async_request(request)
                except TimeoutError:
                    if not window.expired():
                        raise  # aiohttp's own connect or read timeout: mapped as before
                    raise _deadline_passed(
                        progress.connected, seconds or 0.0, request.url
                    ) from None
        finally:
            _PROGRESS.reset(token)
        assert isinstance(response.stream, httpx.AsyncByteStream)
        limit = request.extensions.get(ANSWER_LIMIT, MAX_PAGE_BYTES)
        retry_after = parse_retry_after(response.headers.get("Retry-After"))
        if not 300 <= response.status_code < 400:  # a redirect's body is never read
            length = response.headers.get("Content-Length", "")
            encoding = response.headers.get("Content-Encoding", "identity").strip().lower()
            refusal: UnreadableAnswer | None = None
            if length.isdigit() and int(length) > limit:
                refusal = AnswerTooLarge(response.status_code, limit, retry_after)  # said up front
            elif encoding not in ("", "identity"):
                refusal = UnreadableAnswer(
                    response.status_code,
                    f"a {encoding[:20]!r}-encoded answer (we accept 'identity' only), not read",
                    retry_after,
                )
            if refusal is not None:
                await response.aclose()  # not a byte of the body is read
                raise refusal
        response.stream = _Body(
            response.stream,
            status=response.status_code,
            limit=limit,
            deadline=deadline,
            seconds=seconds or 0.0,
            url=request.url,
            retry_after=retry_after,
        )
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


def parse_rate_limit_reset(value: str | None, now: float | None = None) -> float | None:
    """Seconds until ``X-RateLimit-Reset`` (Voxpria sends it on a 429); None when absent or unreadable.

    Its unit is not documented: a number from 10^9 on is an epoch time (seconds,
    or milliseconds from 10^12 on), a smaller one a count of seconds to wait, an
    RFC 3339 or HTTP date a moment. Never negative.
    """
    if not value or len(value) > 64:
        return None
    text = value.strip()
    at = time.time() if now is None else now
    try:
        number = float(text)
    except ValueError:
        number = None
    if number is not None:
        if not math.isfinite(number) or number < 0:
            return None
        if number >= 1e12:
            return max(0.0, number / 1000 - at)
        if number >= 1e9:
            return max(0.0, number - at)
        return number
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        moment = None
    if moment is None:
        try:
            moment = parsedate_to_datetime(text)
        except (TypeError, ValueError):
            return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return max(0.0, moment.timestamp() - at)


def _hold_seconds(response: httpx.Response) -> float | None:
    """How long a refusal asks us to wait: ``Retry-After``, else ``X-RateLimit-Reset``."""
    retry_after = parse_retry_after(response.headers.get("Retry-After"))
    if retry_after is None and response.status_code == 429:
        retry_after = parse_rate_limit_reset(response.headers.get("X-RateLimit-Reset"))
    return retry_after


def _payload(body: bytes) -> Any:
    """A provider answer as JSON, strictly: duplicate keys and NaN refused (ValueError)."""
    return strict_json(body)


def error_from_response(response: httpx.Response) -> ProviderError:
    """An error answer (4xx/5xx) whose body has been read, as a ProviderError."""
    try:
        payload = _payload(response.content)
    except (ValueError, RecursionError):
        payload = None
    return _error(response, payload, response.reason_phrase)


def _error(response: httpx.Response, payload: Any, message: str) -> ProviderError:
    code = f"http_{response.status_code}"
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
    if response.status_code == 404:
        message = f"{message} ({_tried(response)})"
    # The message becomes a stored halt message: shown by status and report.
    return provider_error(
        response.status_code,
        scrub(code),
        scrub(message),
        _hold_seconds(response),
    )


def _tried(response: httpx.Response) -> str:
    """Which URL answered 404, without its query (an access key may ride there):
    most often a DISPATCHER_PROVIDER_URL without the dialect's base path."""
    try:
        sent = response.request
    except RuntimeError:  # a response built without its request
        return "check DISPATCHER_PROVIDER_URL"
    url = sent.url.copy_with(query=None, fragment=None)
    return f"404 from {sent.method} {url}: check DISPATCHER_PROVIDER_URL"


def redirect_error(response: httpx.Response) -> ProviderError:
    """A 3xx answer: never followed (the API key stays with the configured URL).

    Ambiguous and transient like an unreadable 2xx (a 303 may follow a call
    that was placed); the hint says what to fix.
    """
    location = _QUERY.sub(r"\1", response.headers.get("Location", "")) or "nowhere"
    return ProviderError(
        response.status_code,
        PROVIDER_REDIRECT,
        scrub(
            f"the provider answered HTTP {response.status_code} with a redirect to "
            f"{location[:200]}; the provider URL redirects: set DISPATCHER_PROVIDER_URL "
            "to the final address"
        ),
    )


def network_error(exc: httpx.HTTPError) -> ProviderError:
    if isinstance(exc, UnreadableAnswer):
        if exc.status >= 400:
            return provider_error(exc.status, f"http_{exc.status}", str(exc), exc.retry_after)
        return ProviderError(exc.status, INVALID_RESPONSE, str(exc))
    if isinstance(exc, httpx.LocalProtocolError | httpx.UnsupportedProtocol):
        # Refused by our own client before anything left: an empty API key's
        # "Bearer " header, a bad scheme. A configuration error, never transient.
        return unsendable(scrub(f"{type(exc).__name__}: {exc}"))
    if isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout):
        # No connection, so the request never reached the provider.
        return ProviderError(None, "connect_failed", scrub(f"{type(exc).__name__}: {exc}"))
    if isinstance(exc, _NoAnswerInTime):
        return ProviderError(None, "timeout", scrub(str(exc)))
    if isinstance(exc, httpx.TimeoutException):
        return ProviderError(None, "timeout", f"{type(exc).__name__}: no answer in time")
    return ProviderError(None, "network_error", scrub(f"{type(exc).__name__}: {exc}"))


async def answer(
    client: httpx.AsyncClient,
    method: str,
    url: str,
    *,
    limit: int = MAX_ANSWER_BYTES,
    **kwargs: Any,
) -> tuple[int, Any]:
    """Send; return the status and the decoded JSON body of a 2xx answer.

    Raises ProviderError for everything else: a network failure or the
    deadline (``timeout``, ``connect_failed``...), an error status (its code),
    a redirect (``provider_redirect``, its real status), a 2xx body that is
    larger than ``limit``, not JSON, or JSON with a duplicate key
    (``invalid_response``, its real status).
    """
    extensions = {**kwargs.pop("extensions", {}), ANSWER_LIMIT: limit}
    try:
        sent = client.build_request(method, url, extensions=extensions, **kwargs)
        response = await client.send(sent, stream=True)
        try:
            if 300 <= response.status_code < 400:
                raise redirect_error(response)  # its body is never read
            body = await response.aread()
        finally:
            await response.aclose()
    except httpx.HTTPError as exc:
        raise network_error(exc) from None
    if response.status_code >= 400:
        raise error_from_response(response)
    try:
        return response.status_code, _payload(body)
    except DuplicateKeyError as exc:
        raise ProviderError(response.status_code, INVALID_RESPONSE, scrub(str(exc))) from None
    except (ValueError, RecursionError):
        raise ProviderError(response.status_code, INVALID_RESPONSE, "not JSON") from None


async def request(
    client: httpx.AsyncClient,
    method: str,
    url: str,
    *,
    limit: int = MAX_ANSWER_BYTES,
    **kwargs: Any,
) -> Any:
    """Send, raise ProviderError on any failure (see :func:`answer`), return the JSON body."""
    return (await answer(client, method, url, limit=limit, **kwargs))[1]
