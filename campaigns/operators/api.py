"""The HTTP API (``campaigns api``): the operator API over HTTP, and the live campaign page.

Starlette rather than FastAPI: it is already here for the ingress, and the
request bodies are campaign specs that ``campaigns.domain.spec`` validates
itself (422 naming the field, exactly as ``campaigns submit`` exits 2). The
routes, roles and media types come from the route table of
:mod:`campaigns.operators.api_schema`, every JSON answer is checked against its
model of :mod:`campaigns.operators.api_models`, and the OpenAPI document is
generated from the two (``python -m campaigns.operators.api > docs/openapi.json``).

Every endpoint calls the same ``campaigns`` functions as the CLI
(:class:`CampaignClient`, :func:`status_json`, the report writers, estimate,
reconcile). Authentication is a bearer token from ``DISPATCHER_API_TOKENS``
with one of two roles: ``viewer`` reads, ``operator`` reads and changes.
Tokens are compared as SHA-256 digests with :func:`hmac.compare_digest`,
against every known token, so timing says nothing about a token; they are
registered with the log scrubber and never logged.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import io
import json
import math
import re
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from contextlib import asynccontextmanager
from importlib import resources
from typing import IO, Any, TypeVar, cast

import httpx
import structlog
import uvicorn
from pydantic import BaseModel, ValidationError
from starlette.applications import Starlette
from starlette.convertors import Convertor, register_url_convertor
from starlette.datastructures import Headers, MutableHeaders
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.gzip import GZipMiddleware
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from campaigns.domain.inputs import DuplicateKeyError, strict_json
from campaigns.domain.lifecycle import Move, OperatorAction
from campaigns.domain.spec import (
    CampaignSpec,
    SpecError,
    check_idempotency_key,
    identify,
    is_campaign_id,
    parse_spec,
)
from campaigns.logs import configure_logging, get_logger, register_secret, scrub
from campaigns.operators import api_models as m
from campaigns.operators import dnc as _dnc
from campaigns.operators import report as _report
from campaigns.operators.api_schema import ENDPOINTS, OPERATOR, VIEWER, Endpoint, openapi
from campaigns.operators.control import (
    CampaignClient,
    ControlError,
    InvalidRequest,
    NotFound,
    explain_many,
    status_json,
)
from campaigns.operators.estimate import estimate
from campaigns.operators.listing import QueryError, campaign_page, parse_query
from campaigns.operators.reconcile import reconcile
from campaigns.operators.report_pages import outcomes, parse_report_query, report_page
from campaigns.settings import Settings
from campaigns.store import (
    IdempotencyBusy,
    IdempotencyConflict,
    IdempotencyRecords,
    Replay,
    StoreError,
    SubmitConflict,
)
from campaigns.store.faults import fault_kind, is_redis_fault

__all__ = [
    "MAX_BODY_BYTES",
    "OPERATOR",
    "VIEWER",
    "create_api_app",
    "openapi",
    "serve_api",
]

MAX_BODY_BYTES = 32 * 1024 * 1024
"""A spec with 100 000 contacts is about 10 MB; anything far beyond is not a spec."""
_MAX_ID = 200
_SPOOL_BYTES = 4 * 1024 * 1024
"""An imported CSV is held in memory up to this size, then in a temporary file."""
_PAGE_FILES = {
    "/": ("index.html", "text/html; charset=utf-8"),
    "/page/app.js": ("app.js", "text/javascript; charset=utf-8"),
    "/page/style.css": ("style.css", "text/css; charset=utf-8"),
}
_PAGE_HEADERS = {
    # Everything the page needs comes from this origin; nothing inline, no CDN.
    "Content-Security-Policy": "default-src 'self'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-cache",
}

_ACTIONS = {move.verb: sorted(move.from_states) for move in (Move.PAUSE, Move.RESUME, Move.CANCEL)}
"""The states each operator action starts from (the page offers only those)."""

log = get_logger("campaigns.operators.api")

Handler = Callable[[Request], Coroutine[Any, Any, Response]]
Digest = Callable[[Request, str], Awaitable[str]]
"""What a POST with an Idempotency-Key is compared by: the same digest is the same request."""
_IDEMPOTENCY_WAIT_SECONDS = 30.0
"""A retry of a create still running waits this long for its answer, then gets 409."""


class _Problem(Exception):
    """An error answer: HTTP status, a stable code, the message, and the field if any."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        field: str | None = None,
        errors: list[tuple[str, str]] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.field = field
        self.errors = errors
        self.headers = headers or {}

    @classmethod
    def invalid(cls, errors: list[tuple[str, str]]) -> _Problem:
        """A 422 naming every invalid field: ``field`` the first, ``errors`` all."""
        message = "; ".join(f"{field}: {message}" for field, message in errors)
        return cls(422, "invalid", message, errors[0][0], errors)

    def response(self) -> Response:
        error: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.field is not None:
            error["field"] = self.field
        if self.errors is not None:
            error["errors"] = [{"field": f, "message": m} for f, m in self.errors]
        headers = dict(self.headers)
        if self.status == 401:
            headers["WWW-Authenticate"] = "Bearer"
        return _answer(m.ErrorAnswer, {"error": error}, self.status, headers)


def _answer(
    model: type[BaseModel], data: Any, status: int = 200, headers: dict[str, str] | None = None
) -> Response:
    """A JSON answer checked against its model first: what the document says is sent
    is what is sent (an answer that leaves its model is a bug, and a 500 says so)."""
    model.model_validate(data)
    return _json(data, status, headers)


def _json(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    """A JSON answer with every registered secret masked (stored text may quote one)."""
    body = scrub(json.dumps(data, separators=(",", ":")))
    return Response(body, status, headers, media_type="application/json")


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode("utf-8", "surrogateescape")).digest()


class _Api:
    """The endpoints, around one :class:`CampaignClient` opened on the server's loop."""

    def __init__(self, settings: Settings, tokens: dict[str, str]) -> None:
        self.settings = settings
        self.client: CampaignClient | None = None
        self._tokens = [(_digest(token), role) for token, role in tokens.items()]
        self._rates: dict[bytes, tuple[int, int]] = {}
        """Token digest -> (minute, requests in it): only known tokens get here."""

    # ------------------------------------------------------------ plumbing
    def role(self, request: Request) -> str | None:
        """The caller's role, checking the presented token against every known one."""
        scheme, _, presented = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not presented.strip():
            return None
        digest = _digest(presented.strip())
        found: str | None = None
        for known, role in self._tokens:
            if hmac.compare_digest(digest, known):
                found = role
        return found

    def endpoint(self, spec: Endpoint, handler: Handler, digest: Digest | None = None) -> Handler:
        """Authenticate, authorise, run (a POST once per Idempotency-Key), and map
        errors to answers; one log line. ``digest``: what makes two requests the
        same for the key (default: method, path, query and the body's JSON value)."""

        async def run(request: Request) -> Response:
            started = time.monotonic()
            role = self.role(request)
            try:
                if role is None:
                    raise _Problem(401, "unauthorized", "a valid bearer token is required")
                if spec.role == OPERATOR and role != OPERATOR:
                    raise _Problem(403, "forbidden", "this needs the operator role")
                await self.limit_rate(request)
                _check_media(request, spec.consumes, spec.produces)
                key = _idempotency_key(request)
                if key is None:
                    response = await handler(request)
                else:
                    response = await self.once(request, key, handler, digest or _body_digest)
            except _Problem as problem:
                response = problem.response()
            except SpecError as exc:
                response = _Problem(
                    422, "invalid", exc.message, exc.field or "spec", exc.errors
                ).response()
            except SubmitConflict as exc:
                response = _Problem(409, "conflict", str(exc)).response()
            except NotFound as exc:
                response = _Problem(404, "not_found", str(exc)).response()
            except InvalidRequest as exc:
                response = _Problem(422, "invalid", str(exc), exc.field).response()
            except (ControlError, StoreError) as exc:
                response = _Problem(409, "conflict", str(exc)).response()
            except httpx.HTTPError as exc:
                detail = f"provider request failed: {type(exc).__name__}"
                response = _Problem(502, "provider_failed", detail).response()
            except Exception as exc:
                if is_redis_fault(exc):
                    log.error("api_redis_failed", error=fault_kind(exc), path=request.url.path)
                    response = _Problem(503, "unavailable", "Redis is not answering").response()
                else:  # a bug: one JSON answer and one log line, with the ID
                    log.exception("api_failed", error=type(exc).__name__, path=request.url.path)
                    response = _Problem(
                        500, "internal", "the API failed; the request ID is in its log"
                    ).response()
            level = (
                log.info if request.method != "GET" or response.status_code >= 400 else log.debug
            )
            level(
                "api_request",
                request_id=request.state.request_id,
                method=request.method,
                path=request.url.path,
                status=response.status_code,
                role=role,
                campaign_id=request.path_params.get("campaign_id"),
                ms=round((time.monotonic() - started) * 1000, 1),
            )
            return response

        return run

    async def once(self, request: Request, key: str, handler: Handler, digest: Digest) -> Response:
        """Run a POST with an Idempotency-Key once; a retry gets the first 2xx answer."""
        records = IdempotencyRecords(self.campaigns().store.redis, self.campaigns().store.keys)
        request_digest = await digest(request, key)
        try:
            replay = await records.begin(
                key, request_digest, wait_seconds=_IDEMPOTENCY_WAIT_SECONDS
            )
        except IdempotencyConflict:
            raise _Problem(
                409,
                "idempotency_key_reused",
                f"Idempotency-Key {key!r} was first used with another request",
                "Idempotency-Key",
            ) from None
        except IdempotencyBusy:
            raise _Problem(
                409,
                "idempotency_key_in_use",
                f"the first request with Idempotency-Key {key!r} is still running; retry",
                "Idempotency-Key",
            ) from None
        if replay is not None:
            headers = {**replay.headers, "Idempotent-Replayed": "true"}
            return Response(replay.body, replay.status, headers, media_type="application/json")
        try:
            response = await handler(request)
        except BaseException:
            await records.release(key)
            raise
        if 200 <= response.status_code < 300 and not isinstance(response, StreamingResponse):
            kept = {k: v for k, v in response.headers.items() if k.lower() == "location"}
            answer = Replay(response.status_code, bytes(response.body).decode(), kept)
            await records.keep(key, request_digest, answer)
        else:
            await records.release(key)
        return response

    async def limit_rate(self, request: Request) -> None:
        """At most ``DISPATCHER_API_RATE_LIMIT`` requests a minute per token (per API
        process, a fixed window; nothing is written to Redis): past it, 429 until the
        minute ends, with ``Retry-After``."""
        limit = self.settings.api_rate_limit
        if not limit:
            return
        _, _, token = request.headers.get("authorization", "").partition(" ")
        now = time.time()
        window = int(now // 60)
        digest = _digest(token.strip())
        seen_window, count = self._rates.get(digest, (window, 0))
        count = count + 1 if seen_window == window else 1
        self._rates[digest] = (window, count)
        if count > limit:
            retry = max(1, math.ceil((window + 1) * 60 - now))
            raise _Problem(
                429,
                "rate_limited",
                f"more than {limit} requests a minute with this token; retry in {retry} s",
                headers={"Retry-After": str(retry)},
            )

    def campaigns(self) -> CampaignClient:
        if self.client is None:
            raise _Problem(503, "unavailable", "the API is starting")
        return self.client

    # ------------------------------------------------------------ reads
    async def list_campaigns(self, request: Request) -> Response:
        try:
            query = parse_query(
                request.query_params, [k for k, _ in request.query_params.multi_items()]
            )
        except QueryError as exc:
            raise _Problem.invalid(exc.errors) from None
        client = self.campaigns()
        found, next_cursor = await campaign_page(client.store, query)
        # With why each one waits (a 429 hold, a cool-down...), as `campaigns list`.
        explained = await explain_many(client.store, found, self.settings)
        rows = [status_json(c, e) for c, e in zip(found, explained, strict=True)]
        answer = {"campaigns": rows, "next_cursor": next_cursor, "actions": _ACTIONS}
        return _answer(m.CampaignList, answer)

    async def get_campaign(self, request: Request) -> Response:
        return _answer(m.CampaignStatus, await self.campaigns().status(_campaign_id(request)))

    async def get_report(self, request: Request) -> Response:
        campaign_id = _campaign_id(request)
        try:
            query = parse_report_query(
                campaign_id,
                request.query_params,
                [k for k, _ in request.query_params.multi_items()],
            )
        except QueryError as exc:
            raise _Problem.invalid(exc.errors) from None
        client = self.campaigns()
        campaign = await client.get(campaign_id)
        if query.paged:  # a page is JSON
            if _chosen(request, (_JSON,)) is None:
                raise _Problem(
                    406, "not_acceptable", f"a page answers with {_JSON}, which Accept refuses"
                )
            return _answer(m.ReportPage, await report_page(client.store, campaign, query))
        fmt = query.format
        if fmt is None:  # no format asked for: the Accept header chooses
            fmt = "csv" if _chosen(request, _REPORT_MEDIA) == "text/csv" else "json"
        write = _report.write_csv if fmt == "csv" else _report.write_json
        headers = {}
        if fmt == "csv":
            headers["Content-Disposition"] = f'attachment; filename="{campaign.campaign_id}.csv"'
        return StreamingResponse(
            _stream(lambda out: write(client.store, campaign, out)),
            media_type="text/csv; charset=utf-8" if fmt == "csv" else "application/json",
            headers=headers,
        )

    async def get_outcomes(self, request: Request) -> Response:
        client = self.campaigns()
        campaign = await client.get(_campaign_id(request))
        return _answer(m.Outcomes, await outcomes(client.store, campaign))

    async def get_reconcile(self, request: Request) -> Response:
        campaign_id = _campaign_id(request)
        if not self.settings.provider_api_key.get_secret_value():
            raise _Problem(
                503, "unavailable", "DISPATCHER_PROVIDER_API_KEY must be set to reconcile"
            )
        from campaigns.providers import make_provider

        client = self.campaigns()
        provider = make_provider(self.settings)
        try:
            result = await reconcile(client.store, provider, campaign_id)
        except LookupError as exc:
            raise _Problem(404, "not_found", str(exc)) from None
        finally:
            await provider.aclose()
        return _answer(m.ReconcileAnswer, result.to_json())

    async def post_estimate(self, request: Request) -> Response:
        return _answer(m.EstimateAnswer, estimate(await _spec(request)).to_json())

    async def dead_letters(self, request: Request) -> Response:
        raw = request.query_params.get("limit", "20")
        if not raw.isascii() or not raw.isdigit() or not 1 <= int(raw) <= 10_000:
            raise _Problem(422, "invalid", "must be an integer from 1 to 10000", "limit")
        letters = await self.campaigns().store.dead_letters(int(raw))
        return _answer(m.DeadLetters, {"dead_letters": letters})

    # ------------------------------------------------------------ callbacks (docs/callbacks.md)
    async def campaign_callbacks(self, request: Request) -> Response:
        from campaigns.store.callbacks import callback_store

        failed_only = request.query_params.get("failed", "false")
        if failed_only not in ("true", "false"):
            raise _Problem(422, "invalid", "must be true or false", "failed")
        client = self.campaigns()
        campaign = await client.get(_campaign_id(request))
        outbox = callback_store(client.store)
        found: dict[str, Any] = {
            "campaign_id": campaign.campaign_id,
            "failed": await outbox.failed(campaign.campaign_id),
        }
        if failed_only == "false":
            found["log"] = await outbox.log(campaign.campaign_id)
        return _answer(m.CallbackLog, found)

    async def replay_callback(self, request: Request) -> Response:
        from campaigns.store import campaign_of, now_ms
        from campaigns.store.callbacks import callback_store

        campaign_id = _campaign_id(request)
        event_id = request.path_params["event_id"]
        if not _is_token(event_id):
            raise _Problem(
                422, "invalid", f"1-{_MAX_ID} printable characters without spaces", "event_id"
            )
        outbox = callback_store(self.campaigns().store)
        if campaign_of(event_id) != campaign_id or not await outbox.replay(
            event_id, now_ms=now_ms()
        ):
            raise _Problem(404, "not_found", f"no failed callback event {event_id!r}")
        log.info("api_callback_replayed", campaign_id=campaign_id, event_id=event_id)
        return _answer(m.CallbackReplayed, {"event_id": event_id, "replayed": True})

    async def whoami(self, request: Request) -> Response:
        return _answer(m.Whoami, {"role": self.role(request)})

    # ------------------------------------------------------------ changes
    async def submit(self, request: Request) -> Response:
        spec = identify(await _spec(request), _idempotency_key(request))
        client = self.campaigns()
        result = await client.submit(spec, actor=_actor(self, request))
        log.info("api_campaign_submitted", campaign_id=spec.campaign_id, created=result.created)
        return _answer(
            m.Submitted,
            {
                "created": result.created,
                "contacts": result.contacts,
                "duplicates_dropped": result.duplicates_dropped,
                "campaign": await client.status(spec.campaign_id),
            },
            201 if result.created else 200,
            {"Location": f"/v1/campaigns/{spec.campaign_id}"},
        )

    async def delete_campaign(self, request: Request) -> Response:
        campaign_id = _campaign_id(request)
        deleted = await self.campaigns().delete(campaign_id)
        log.info("api_campaign_deleted", campaign_id=campaign_id, keys=deleted)
        return _answer(m.Deleted, {"campaign_id": campaign_id, "deleted": True, "keys": deleted})

    def change(self, verb: str) -> Handler:
        async def run(request: Request) -> Response:
            campaign_id = _campaign_id(request)
            client = self.campaigns()
            action: Callable[..., Awaitable[str]] = getattr(client, verb)
            await action(campaign_id, actor=_actor(self, request))
            log.info(f"api_campaign_{verb}", campaign_id=campaign_id)
            return _answer(m.CampaignStatus, await client.status(campaign_id))

        return run

    async def add_contacts(self, request: Request) -> Response:
        """``{"contacts": [...]}`` or a contacts CSV (``text/csv``): added to a campaign
        that is not over; numbers it has are dropped and counted (``campaigns
        add-contacts``). With an Idempotency-Key a retry gets the first answer."""
        from campaigns.domain.changes import added_contacts
        from campaigns.domain.contacts import load_contacts_csv

        client = self.campaigns()
        campaign = await client.get(_campaign_id(request))
        spec = campaign.spec
        media = _media_type(request.headers.get("content-type", _JSON))
        if media == "text/csv":
            with tempfile.NamedTemporaryFile(suffix=".csv") as spool:
                async for chunk in _limited(request):
                    spool.write(chunk)
                spool.flush()
                rows = load_contacts_csv(spool.name, spec.default_region)
            given: Any = [row.model_dump(mode="json") for row in rows]
        else:
            body = _object(await _body(request))
            unknown = _unknown_fields(body, {"contacts"})
            if unknown:
                raise _Problem.invalid(unknown)
            given = body.get("contacts")
        done = await client.add_contacts(
            campaign.campaign_id, added_contacts(given, spec), actor=_actor(self, request)
        )
        log.info("api_contacts_added", **done.to_json())
        return _answer(m.ContactsAdded, done.to_json())

    async def resolve(self, request: Request) -> Response:
        attempt_id = request.path_params["attempt_id"]
        if not _is_token(attempt_id):
            raise _Problem(
                422, "invalid", f"1-{_MAX_ID} printable characters without spaces", "attempt_id"
            )
        given = _parsed(m.Resolve, _object(await _body(request)))
        call_id = given.call_id
        outcome = await self.campaigns().resolve(
            attempt_id, call_id=call_id, actor=_actor(self, request)
        )
        log.info("api_attempt_resolved", attempt_id=attempt_id, outcome=outcome)
        return _answer(m.Resolved, {"attempt_id": attempt_id, "outcome": outcome})

    # ------------------------------------------------------------ do-not-call list
    async def dnc_count(self, request: Request) -> Response:
        count = await _dnc.list_for(self.campaigns().store).count()
        return _answer(m.DncCount, {"count": count})

    async def dnc_check(self, request: Request) -> Response:
        dnc = _dnc.list_for(self.campaigns().store)
        [(number, listed)] = await _dnc.check(dnc, [request.path_params["number"]], name=_number)
        return _answer(m.DncCheck, {"number": number, "listed": listed})

    async def dnc_add(self, request: Request) -> Response:
        given = _parsed(m.DncNumbersStrict, _object(await _body(request)))
        numbers, strict = given.numbers, given.strict
        client = self.campaigns()
        change = await _dnc.recorded(
            client,
            OperatorAction.DNC_ADD,
            _dnc.add(_dnc.list_for(client.store), numbers, strict=strict),
            actor=_actor(self, request),
        )
        log.info("api_dnc_added", numbers=len(change.numbers), added=change.changed)
        return _answer(m.DncAdded, change.to_json())

    async def dnc_remove(self, request: Request) -> Response:
        numbers = _parsed(m.DncNumbers, _object(await _body(request))).numbers
        client = self.campaigns()
        change = await _dnc.recorded(
            client,
            OperatorAction.DNC_REMOVE,
            _dnc.remove(_dnc.list_for(client.store), numbers),
            actor=_actor(self, request),
        )
        log.info("api_dnc_removed", numbers=len(change.numbers), removed=change.changed)
        return _answer(m.DncRemoved, change.to_json())

    async def dnc_import(self, request: Request) -> Response:
        strict = _flag(request, "strict")
        dnc = _dnc.list_for(self.campaigns().store)
        with tempfile.SpooledTemporaryFile(max_size=_SPOOL_BYTES) as spool:
            async for chunk in _limited(request):
                spool.write(chunk)
            spool.seek(0)
            result = await _dnc.recorded(
                self.campaigns(),
                OperatorAction.DNC_IMPORT,
                _dnc.import_csv(dnc, spool, shown="body", strict=strict),
                actor=_actor(self, request),
            )
        log.info("api_dnc_imported", **result.to_json())
        return _answer(m.DncImported, result.to_json())

    # ------------------------------------------------------------ open
    async def healthz(self, request: Request) -> Response:
        try:
            await asyncio.wait_for(self.campaigns().store.redis.ping(), 3)
        except _Problem:
            return _answer(m.Health, {"ok": False}, 503)
        except Exception as exc:
            if not is_redis_fault(exc):
                raise
            return _answer(m.Health, {"ok": False}, 503)
        return _answer(m.Health, {"ok": True})

    async def openapi(self, request: Request) -> Response:
        return _json(openapi())

    async def page(self, request: Request) -> Response:
        name, media = _PAGE_FILES[request.url.path]
        content = resources.files("campaigns.operators").joinpath(f"page/{name}").read_bytes()
        return Response(content, media_type=media, headers=_PAGE_HEADERS)


def _campaign_id(request: Request) -> str:
    value = request.path_params["campaign_id"]
    if not is_campaign_id(value):
        raise _Problem(
            422, "invalid", "1-64 characters of letters, digits, '_', '.', '-'", "campaign_id"
        )
    return str(value)


def _is_token(value: object) -> bool:
    return (
        isinstance(value, str)
        and 0 < len(value) <= _MAX_ID
        and not any(c.isspace() or not c.isprintable() for c in value)
    )


async def _limited(request: Request) -> AsyncIterator[bytes]:
    """The request body's chunks, refused past :data:`MAX_BODY_BYTES` while it is read
    (the body as :func:`_body` read it, when it did: for an Idempotency-Key's digest)."""
    cached: bytes | None = getattr(request.state, "body", None)
    if cached is not None:
        yield cached
        return
    declared = request.headers.get("content-length", "")
    if declared.isascii() and declared.isdigit() and int(declared) > MAX_BODY_BYTES:
        raise _Problem(413, "too_large", f"the body is over {MAX_BODY_BYTES} bytes")
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            raise _Problem(413, "too_large", f"the body is over {MAX_BODY_BYTES} bytes")
        yield chunk


async def _body(request: Request) -> bytes:
    """The whole request body (at most :data:`MAX_BODY_BYTES`), read once per request."""
    cached: bytes | None = getattr(request.state, "body", None)
    if cached is None:
        cached = request.state.body = b"".join([chunk async for chunk in _limited(request)])
    return cached


async def _spec(request: Request) -> CampaignSpec:
    """The body as a validated spec, parsed once per request."""
    spec: CampaignSpec | None = getattr(request.state, "spec", None)
    if spec is None:
        spec = request.state.spec = parse_spec(await _body(request))
    return spec


_JSON = "application/json"
_Model = TypeVar("_Model", bound=BaseModel)
_REPORT_MEDIA = next(e.produces for e in ENDPOINTS if e.operation_id == "get_report")


def _media_type(value: str) -> str:
    return value.split(";", 1)[0].strip().lower()


def _chosen(request: Request, offered: tuple[str, ...]) -> str | None:
    """The first of ``offered`` the Accept header takes (no header: the first)."""
    accept = request.headers.get("accept", "").strip()
    if not accept:
        return offered[0]
    ranges: list[tuple[float, str]] = []
    for item in accept.split(","):
        media, *params = (part.strip() for part in item.split(";"))
        quality = 1.0
        for param in params:
            name, _, value = param.partition("=")
            if name.strip().lower() == "q":
                try:
                    quality = float(value)
                except ValueError:
                    quality = 0.0
        if quality > 0 and media:
            ranges.append((quality, media.lower()))
    for _, media in sorted(ranges, key=lambda r: -r[0]):
        for offer in offered:
            kind = offer.split("/", 1)[0]
            if media in (offer, "*/*", f"{kind}/*"):
                return offer
    return None


def _check_media(request: Request, consumes: tuple[str, ...], offered: tuple[str, ...]) -> None:
    """415 for a body that is not of a type the endpoint reads; 406 when the
    client accepts none of the types it answers with (checked before it runs)."""
    given = request.headers.get("content-type")
    has_body = request.headers.get("content-length", "0") != "0" or (
        "transfer-encoding" in request.headers
    )
    if request.method == "POST" and given is not None and has_body:
        media = _media_type(given)
        if media not in consumes and not (consumes == (_JSON,) and media.endswith("+json")):
            raise _Problem(
                415,
                "unsupported_media_type",
                f"the body must be {' or '.join(consumes)}, not {media or 'empty'}",
                "Content-Type",
            )
    if _chosen(request, offered) is None:
        raise _Problem(
            406,
            "not_acceptable",
            f"this answers with {' or '.join(offered)}, which the Accept header refuses",
            "Accept",
        )


def _idempotency_key(request: Request) -> str | None:
    """The request's Idempotency-Key (POST only), or a 422 naming the header."""
    key = request.headers.get("idempotency-key")
    if key is None or request.method != "POST":
        return None
    return check_idempotency_key(key)


async def _body_digest(request: Request, key: str) -> str:
    """Method, path, query and the body: as a JSON value if it is one (so key
    order and blanks do not matter), else its bytes."""
    body = await _body(request)
    try:
        canonical = json.dumps(strict_json(body), sort_keys=True, separators=(",", ":")).encode()
    except (ValueError, RecursionError):
        canonical = body
    head = f"{request.method} {request.url.path}?{request.url.query}\n".encode()
    return hashlib.sha256(head + canonical).hexdigest()


async def _spec_digest(request: Request, key: str) -> str:
    """A create is the same request when its spec has the same values (fingerprint)."""
    return f"{request.url.path} {identify(await _spec(request), key).fingerprint()}"


def _number(index: int) -> str:
    return "number"


def _flag(request: Request, name: str) -> bool:
    """A boolean query parameter: absent, ``true`` or ``false``."""
    value = request.query_params.get(name, "false")
    if value not in ("true", "false"):
        raise _Problem(422, "invalid", "must be true or false", name)
    return value == "true"


def _parsed(model: type[_Model], body: dict[str, Any]) -> _Model:
    """The body through its model (the one the document shows), or a 422 naming
    every invalid field."""
    try:
        return model.model_validate(body)
    except ValidationError as exc:
        errors = []
        for error in exc.errors(include_url=False):
            # An error of the whole body (a rule across fields) names the model's field.
            where = ".".join(str(part) for part in error["loc"]) or m.whole_body_field(model)
            why = "unknown field" if error["type"] == "extra_forbidden" else error["msg"]
            errors.append((where, why))
        # Unknown fields first: the likeliest mistake is a misspelt name.
        errors.sort(key=lambda error: error[1] != "unknown field")
        raise _Problem.invalid(errors) from None


def _unknown_fields(body: dict[str, Any], known: set[str]) -> list[tuple[str, str]]:
    """Each field of the body that is not one of ``known``, for a 422."""
    return [(name, "unknown field") for name in sorted(set(body) - known)]


def _object(body: bytes) -> dict[str, Any]:
    try:
        data = strict_json(body)
    except DuplicateKeyError as exc:
        raise _Problem(422, "invalid", f"{exc}: each key may appear once", "body") from None
    except (ValueError, RecursionError):
        raise _Problem(422, "invalid", "the body must be a JSON object", "body") from None
    if not isinstance(data, dict):
        raise _Problem(422, "invalid", "the body must be a JSON object", "body")
    return data


class _Chunks(io.TextIOBase):
    """A text stream for the report writers whose writes come out as response chunks.

    Each write is one row, so a registered secret in a row is masked whole.
    """

    def __init__(self) -> None:
        self.queue: asyncio.Queue[str | None] = asyncio.Queue()

    def write(self, text: str) -> int:
        self.queue.put_nowait(scrub(text))
        return len(text)

    def writable(self) -> bool:
        return True


async def _stream(write: Callable[[IO[str]], Awaitable[None]]) -> AsyncIterator[str]:
    """Run a report writer and yield what it writes, as it writes it."""
    out = _Chunks()

    async def produce() -> None:
        try:
            await write(cast(IO[str], out))
        finally:
            out.queue.put_nowait(None)

    task = asyncio.create_task(produce())
    try:
        while (chunk := await out.queue.get()) is not None:
            yield chunk
        await task
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


# ---------------------------------------------------------------- operator's day two
# Budget and history (issue 21): self-contained handlers over the same
# CampaignClient calls as `campaigns budget` and `campaigns history`.


def _actor(api: _Api, request: Request) -> str:
    """The history's actor for a request: ``api:<role>:<first 8 hex of the token's
    SHA-256>`` (tokens have no names; the digest names one without revealing it)."""
    _, _, presented = request.headers.get("authorization", "").partition(" ")
    return f"api:{api.role(request)}:{_digest(presented.strip()).hex()[:8]}"


async def _patch_campaign(api: _Api, request: Request) -> Response:
    """Change the budget, pacing, schedule, calling window or name
    (``campaigns/domain/changes.py``): validated as at submit, every invalid field
    in one 422, applied in one script against what the dispatcher claims with."""
    body = _object(await _body(request))
    campaign_id = _campaign_id(request)
    client = api.campaigns()
    done, change = await client.change(campaign_id, body, actor=_actor(api, request))
    log.info(
        "api_campaign_changed",
        campaign_id=campaign_id,
        changed=sorted(change.terms),
        budget_before=done.before if change.budget_micros is not None else None,
        budget_after=change.budget_micros,
    )
    return _answer(m.CampaignStatus, await client.status(campaign_id))


async def _get_history(api: _Api, request: Request) -> Response:
    raw = request.query_params.get("limit", "1000")
    if not raw.isascii() or not raw.isdigit() or not 1 <= int(raw) <= 1000:
        raise _Problem(422, "invalid", "must be an integer from 1 to 1000", "limit")
    entries = await api.campaigns().history(_campaign_id(request), int(raw))
    return _answer(m.History, {"history": entries})


async def _get_contacts(api: _Api, request: Request) -> Response:
    """``?status=unsent&format=csv``: the contacts of one outcome, as a contacts file."""
    from campaigns.domain.lifecycle import ContactOutcome
    from campaigns.operators.outcomes import LISTED_OUTCOMES, write_contacts

    wanted = request.query_params.get("status", "")
    if wanted not in LISTED_OUTCOMES:
        allowed = ", ".join(LISTED_OUTCOMES)
        raise _Problem(422, "invalid", f"must be one of {allowed}", "status")
    fmt = request.query_params.get("format", "csv")
    if fmt not in ("csv", "json"):
        raise _Problem(422, "invalid", "must be csv or json", "format")
    client = api.campaigns()
    campaign = await client.get(_campaign_id(request))
    headers = {}
    if fmt == "csv":
        name = f"{campaign.campaign_id}-{wanted}.csv"
        headers["Content-Disposition"] = f'attachment; filename="{name}"'

    async def write(out: IO[str]) -> None:
        cid, count = campaign.campaign_id, campaign.contacts
        await write_contacts(client.store, cid, count, ContactOutcome(wanted), fmt, out)

    return StreamingResponse(
        _stream(write),
        media_type="text/csv; charset=utf-8" if fmt == "csv" else "application/json",
        headers=headers,
    )


def _handlers(api: _Api) -> dict[str, Handler]:
    """Each operation of :data:`ENDPOINTS` by its ``operationId``: the handler's name."""

    def bound(handler: Callable[[_Api, Request], Awaitable[Response]]) -> Handler:
        async def run(request: Request) -> Response:
            return await handler(api, request)

        return run

    found: dict[str, Handler] = {verb: api.change(verb) for verb in ("pause", "resume", "cancel")}
    found["patch_campaign"] = bound(_patch_campaign)
    found["get_history"] = bound(_get_history)
    found["get_contacts"] = bound(_get_contacts)
    return {
        e.operation_id: found.get(e.operation_id) or getattr(api, e.operation_id) for e in ENDPOINTS
    }


class _Segment(Convertor[str]):
    """A path parameter that is never one of its literal siblings: ``GET /v1/dnc/add``
    is a 405 naming POST, not a check of the number ``add``."""

    regex = "[^/]+"

    def convert(self, value: str) -> str:
        return value

    def to_string(self, value: str) -> str:
        return value


def _route_path(path: str) -> str:
    """``path`` for the router: a last-segment parameter gets a :class:`_Segment`
    convertor refusing the literal paths beside it."""
    head, _, last = path.rpartition("/")
    if not (last.startswith("{") and last.endswith("}")):
        return path
    siblings = sorted(
        {e.path.rpartition("/")[2] for e in ENDPOINTS if e.path.rpartition("/")[0] == head} - {last}
    )
    if not siblings:
        return path
    name = f"segment_{head.strip('/').replace('/', '_')}"
    words = "|".join(re.escape(word) for word in siblings)
    segment = type(name, (_Segment,), {"regex": f"(?!(?:{words})$)[^/]+"})
    register_url_convertor(name, segment())
    return f"{head}/{{{last[1:-1]}:{name}}}"


def _routes(api: _Api) -> list[Route]:
    """The routes of the table (role, media types and all), then the page's files."""
    handlers = _handlers(api)
    routes = []
    for spec in ENDPOINTS:
        handler = handlers[spec.operation_id]
        if spec.role is not None:
            digest = _spec_digest if spec.body is CampaignSpec else None
            handler = api.endpoint(spec, handler, digest)
        routes.append(Route(_route_path(spec.path), handler, methods=[spec.method]))
    routes += [Route(path, api.page, methods=["GET"]) for path in _PAGE_FILES]
    return routes


def _merged(routes: list[Route]) -> list[Route]:
    """One route per path, answering each of its methods: a 405 then says every
    method the path allows in ``Allow`` (Starlette names the first route's only)."""
    by_path: dict[str, list[Route]] = {}
    for route in routes:
        by_path.setdefault(route.path, []).append(route)
    merged: list[Route] = []
    for path, group in by_path.items():
        if len(group) == 1:
            merged.append(group[0])
            continue
        handlers: dict[str, Handler] = {}
        for route in group:
            for method in route.methods or ():
                handlers[method] = route.endpoint

        async def by_method(request: Request, handlers: dict[str, Handler] = handlers) -> Response:
            return await handlers[request.method](request)

        merged.append(Route(path, by_method, methods=sorted(handlers)))
    return merged


class _RequestIds:
    """ASGI middleware: each request's ``X-Request-ID`` (the client's, when it is
    1-200 printable ASCII characters without spaces; else a new one), echoed on
    the answer and bound to every log line written while it runs."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = Headers(scope=scope).get("x-request-id", "")
        valid = 0 < len(given) <= _MAX_ID and given.isascii() and given.isprintable()
        request_id = given if valid and " " not in given else uuid.uuid4().hex
        scope.setdefault("state", {})["request_id"] = request_id

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                MutableHeaders(scope=message).append("X-Request-ID", request_id)
            await send(message)

        with structlog.contextvars.bound_contextvars(request_id=request_id):
            await self.app(scope, receive, send_with_id)


async def _http_error(request: Request, exc: Exception) -> Response:
    """The router's own answers (404, 405 with ``Allow``) in the API's error shape."""
    if not isinstance(exc, HTTPException):
        return await _server_error(request, exc)
    code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
    message = {404: f"no endpoint {request.url.path}", 405: f"{request.method} is not allowed here"}
    return _Problem(
        exc.status_code,
        code,
        message.get(exc.status_code, str(exc.detail)),
        headers=dict(exc.headers or {}),
    ).response()


async def _server_error(request: Request, exc: Exception) -> Response:
    log.error("api_failed", error=type(exc).__name__, path=request.url.path)
    return _Problem(500, "internal", "the API failed; the request ID is in the log").response()


def create_api_app(settings: Settings, tokens: dict[str, str] | None = None) -> Starlette:
    """The API, opening its Redis client in the lifespan, on the server's loop.

    ``tokens`` defaults to ``settings.api_roles()``; none at all is refused.
    """
    tokens = settings.api_roles() if tokens is None else tokens
    if not tokens:
        raise ValueError("DISPATCHER_API_TOKENS: must be set to serve the API")
    for token in tokens:
        register_secret(token)
    api = _Api(settings, tokens)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        api.client = await CampaignClient.connect(settings)
        log.info("api_started", queue=settings.queue_name, tokens=len(tokens))
        try:
            yield
        finally:
            client, api.client = api.client, None
            await client.aclose()

    return Starlette(
        routes=_merged(_routes(api)),
        lifespan=lifespan,
        middleware=[Middleware(_RequestIds), Middleware(GZipMiddleware, minimum_size=1024)],
        exception_handlers={HTTPException: _http_error, Exception: _server_error},
    )


def serve_api(host: str, port: int, settings: Settings) -> bool:
    """Run the API in the foreground until interrupted (Ctrl-C, SIGTERM); False when
    it never started (its startup failed: the log says why)."""
    configure_logging(settings.log_level, settings.log_format)
    for value in settings.secret_values():
        register_secret(value)
    app = create_api_app(settings)
    # log_config=None: uvicorn's lines go through our structlog handlers too;
    # no access log: the page polls every second, and api_request says the rest.
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        lifespan="on",
        log_config=None,
        access_log=False,
        proxy_headers=False,
    )
    server = uvicorn.Server(config)
    server.run()
    return bool(server.started)


if (
    __name__ == "__main__"
):  # pragma: no cover - `python -m campaigns.operators.api > docs/openapi.json`
    print(json.dumps(openapi(), indent=2, sort_keys=True))
