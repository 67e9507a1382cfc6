"""Webhook ingress: provider ``call.*`` webhooks become ``record_call_event`` jobs,
VoIPBIN ``account_updated`` deliveries ``record_account_event`` jobs.

How a delivery is signed, which events are worth a job and what identifies one
delivery come from the dialect (:data:`WEBHOOK_DIALECTS`): MiniVoice signs
with ``X-MiniVoice-Timestamp`` + ``X-MiniVoice-Signature`` and names each event
in ``data.event_key``; VoIPBIN signs the body with ``X-VoIPBIN-Signature``,
Voxpria with ``X-VoxPria-Signature`` (both ``sha256=<hex>``, no timestamp, the
call in ``data``). ``/webhooks/<dialect>`` uses that dialect's scheme,
``/webhooks`` the configured one's.

An optional, tiny HTTP process in front of the queue. It does as little as it
can on the request path (check size, check signature, check shape, enqueue) so
that a slow worker never makes the provider time out and re-deliver, and so
that a forged or replayed delivery never reaches Redis. Settlement itself, and
any deeper validation of the payload, stays in the worker (``Settler``).
"""

from __future__ import annotations

import hashlib
import math
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, Protocol

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from campaigns.connection import RedisLocation
from campaigns.domain.inputs import DuplicateKeyError, strict_json
from campaigns.domain.signatures import SIGNATURE_HEADER, verify_signature
from campaigns.logs import configure_logging, get_logger, register_secret
from campaigns.providers import MAX_CALL_ID, EventError
from campaigns.providers import minivoice as minivoice
from campaigns.providers import voipbin as voipbin
from campaigns.providers import voxpria_calls as voxpria
from campaigns.providers.voipbin import ACCOUNT_EVENT, parse_account_event
from campaigns.queue import JobQueue, event_job_id, open_queue
from campaigns.settings import Settings
from campaigns.store.faults import fault_kind, is_redis_fault

__all__ = [
    "MAX_BODY_BYTES",
    "SIGNATURE_HEADER",
    "WEBHOOK_DIALECTS",
    "WebhookDialect",
    "account_job_id",
    "create_ingress_app",
    "create_ingress_app_from_settings",
    "event_job_id",
    "serve_ingress",
    "verify_signature",
]

MAX_BODY_BYTES = 64 * 1024
"""Seed-000 events are well under 1 KiB; anything this big is not one."""
_MAX_DEPTH = 16
"""Seed-000 events nest three levels; a deeper body is not one, and a job that
deep would be refused by the worker's envelope check anyway."""

log = get_logger("campaigns.operators.ingress")

Clock = Callable[[], float]


class _BodyTooLarge(Exception):
    """The body passed ``MAX_BODY_BYTES`` while being read."""


class Verifier(Protocol):
    """A dialect's signature check: why a delivery fails it, or None when it holds."""

    def __call__(
        self,
        headers: Mapping[str, str],
        body: bytes,
        secret: str,
        *,
        now: float,
        tolerance_seconds: int,
    ) -> str | None: ...


@dataclass(frozen=True, slots=True)
class WebhookDialect:
    """How one provider signs its webhooks and which of them a worker needs."""

    verify: Verifier
    call_events: frozenset[str]
    """Events worth a ``record_call_event`` job; any other is acknowledged and dropped."""
    event_key: Callable[[dict[str, Any]], str | None]
    """The provider's own identity of one event (the same on every retry), if any."""
    call_id: Callable[[dict[str, Any]], str | None]
    """The call a delivery is about (for its job ID); None refuses the delivery."""
    call_id_field: str = "call.id"
    """Where that ID is, for the refusal's message."""


def verify_x_signature(
    headers: Mapping[str, str],
    body: bytes,
    secret: str,
    *,
    now: float,
    tolerance_seconds: int,
) -> str | None:
    """The contract's ``X-Signature: t=<ts>,v1=<hex>`` scheme (still VoIPBIN's here)."""
    return verify_signature(
        secret, headers.get(SIGNATURE_HEADER), body, now=now, tolerance_seconds=tolerance_seconds
    )


def _verify_voipbin(
    headers: Mapping[str, str],
    body: bytes,
    secret: str,
    *,
    now: float,
    tolerance_seconds: int,
) -> str | None:
    """VoIPBIN's ``X-VoIPBIN-Signature`` (what the platform sends); a delivery with
    only the contract's ``X-Signature`` (the VoIPBIN billing tutorial's ``account_updated``) is checked
    by that scheme instead."""
    if SIGNATURE_HEADER in headers and voipbin.SIGNATURE_HEADER not in headers:
        return verify_x_signature(
            headers, body, secret, now=now, tolerance_seconds=tolerance_seconds
        )
    return voipbin.verify_webhook(
        headers, body, secret, now=now, tolerance_seconds=tolerance_seconds
    )


def _no_event_key(payload: dict[str, Any]) -> str | None:
    return None


def _minivoice_call_id(payload: dict[str, Any]) -> str | None:
    call = payload.get("call")
    call_id = call.get("id") if isinstance(call, dict) else None
    if isinstance(call_id, str) and 0 < len(call_id) <= MAX_CALL_ID:
        return call_id
    return None


WEBHOOK_DIALECTS: dict[str, WebhookDialect] = {
    "minivoice": WebhookDialect(
        minivoice.verify_webhook, minivoice.WEBHOOK_EVENTS, minivoice.event_key, _minivoice_call_id
    ),
    "voipbin": WebhookDialect(
        _verify_voipbin, voipbin.FINAL_EVENTS, _no_event_key, voipbin.event_call_id, "data.id"
    ),
    "voxpria": WebhookDialect(
        voxpria.verify_webhook,
        voxpria.WEBHOOK_EVENTS,
        _no_event_key,
        voxpria.event_call_id,
        "data.callId",
    ),
}
"""Per dialect: its signature scheme, the events to queue, its event identity."""


def account_job_id(body: bytes) -> str:
    """Deterministic job id of an ``account_updated`` delivery (the same body twice is one job)."""
    return f"account:{hashlib.sha256(body).hexdigest()[:16]}"


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"non-standard JSON constant {name}")


def _finite_float(text: str) -> float:
    """``1e400`` would parse as infinity and be stored as non-standard JSON."""
    value = float(text)
    if not math.isfinite(value):
        raise ValueError("number out of range")
    return value


def _parse(body: bytes) -> tuple[dict[str, Any], str] | str:
    """The payload and its event name, or the reason it is not a usable event.

    MiniVoice names the event in ``event``; VoIPBIN (``account_updated``) in
    ``event_type``. Only the events a dialect queues reach a worker, but any
    genuine delivery of either dialect is acknowledged, so it is not re-sent.
    """
    try:
        payload = strict_json(body, parse_constant=_refuse_constant, parse_float=_finite_float)
    except DuplicateKeyError as exc:
        return f"body is not valid JSON: {exc}"
    except (ValueError, RecursionError):
        return "body is not valid JSON"
    if not isinstance(payload, dict):
        return "body must be a JSON object"
    problem = _shape_problem(payload)
    if problem is not None:
        return problem
    key = next((k for k in ("event", "type", "event_type") if k in payload), "event")
    event = payload.get(key)
    if not isinstance(event, str) or not event:
        return f"{key}: expected a non-empty string"
    return payload, event


def _shape_problem(value: Any) -> str | None:
    """Why a parsed body cannot travel on as a job, or None (iteratively: no recursion).

    Deeper than ``_MAX_DEPTH`` is not an event. A ``\\ud800`` escape parses
    into a lone surrogate, which no Redis client can encode: a call ID like
    that used to fail the request with a 500, so the provider retried forever.
    """
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, level = stack.pop()
        if isinstance(item, str):
            if not _encodable(item):
                return "body has a string that is not valid Unicode (a lone surrogate)"
            continue
        if isinstance(item, dict):
            children: list[Any] = [*item.keys(), *item.values()]
        elif isinstance(item, list):
            children = item
        else:
            continue
        if level > _MAX_DEPTH:
            return f"body nests more than {_MAX_DEPTH} levels deep"
        stack.extend((child, level + 1) for child in children)
    return None


def _encodable(text: str) -> bool:
    try:
        text.encode()
    except UnicodeEncodeError:
        return False
    return True


async def _read_body(request: Request) -> bytes:
    """Read the raw body, giving up as soon as it passes the cap."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > MAX_BODY_BYTES:
        raise _BodyTooLarge
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            raise _BodyTooLarge
        chunks.append(chunk)
    return b"".join(chunks)


class _Ingress:
    """The request handlers, sharing the queue and the verification settings."""

    def __init__(
        self,
        queue: JobQueue | None,
        secret: str | None,
        tolerance_seconds: int,
        clock: Clock,
        dialect: str,
    ) -> None:
        if secret is not None:
            if not secret.strip():
                raise ValueError(
                    "webhook secret must not be empty (DISPATCHER_WEBHOOK_SECRET); "
                    "pass None to accept unsigned webhooks"
                )
            try:
                secret.encode()
            except UnicodeEncodeError:
                raise ValueError("webhook secret must be valid text") from None
            register_secret(secret)
        if isinstance(tolerance_seconds, bool) or not isinstance(tolerance_seconds, int):
            raise TypeError("tolerance_seconds must be an int")
        if tolerance_seconds <= 0:
            raise ValueError("tolerance_seconds must be positive")
        self.queue = queue
        self.secret = secret
        self.tolerance_seconds = tolerance_seconds
        self.clock = clock
        if dialect not in WEBHOOK_DIALECTS:
            raise ValueError(f"unknown provider dialect {dialect!r}")
        self.dialect = dialect

    def endpoint(self, dialect: str | None) -> Callable[[Request], Awaitable[Response]]:
        """The handler of one path: its dialect's scheme, or the configured one's."""

        async def handle(request: Request) -> Response:
            return await self.webhook(request, WEBHOOK_DIALECTS[dialect or self.dialect])

        return handle

    async def healthz(self, request: Request) -> Response:
        return JSONResponse({"status": "ok", "queue": self.queue is not None})

    async def webhook(self, request: Request, dialect: WebhookDialect) -> Response:
        peer = request.client.host if request.client else None
        try:
            body = await _read_body(request)
        except _BodyTooLarge:
            log.warning("webhook_rejected", reason="body too large", peer=peer, status=413)
            return JSONResponse({"error": "body too large"}, status_code=413)

        if self.secret is not None:
            reason = dialect.verify(
                request.headers,
                body,
                self.secret,
                now=self.clock(),
                tolerance_seconds=self.tolerance_seconds,
            )
            if reason is not None:
                log.warning("webhook_rejected", reason=reason, peer=peer, status=401)
                return JSONResponse({"error": "invalid signature"}, status_code=401)

        parsed = _parse(body)
        if isinstance(parsed, str):
            log.warning("webhook_rejected", reason=parsed, peer=peer, status=400, size=len(body))
            return JSONResponse({"error": parsed}, status_code=400)
        payload, event = parsed
        if event == ACCOUNT_EVENT and "event" not in payload:
            return await self._account_event(payload, body, peer)
        if event not in dialect.call_events or "event_type" in payload:
            log.info("webhook_ignored", event_name=event[:64], peer=peer)
            return JSONResponse({"queued": False, "ignored": True}, status_code=202)
        call_id = dialect.call_id(payload)
        if call_id is None:
            reason = f"{dialect.call_id_field}: expected a non-empty string"
            log.warning("webhook_rejected", reason=reason, event_name=event, peer=peer, status=400)
            return JSONResponse({"error": reason}, status_code=400)

        job_id = event_job_id(call_id, event, body, dialect.event_key(payload))
        if self.queue is None:  # only before the lifespan has opened the pool
            log.error("webhook_not_queued", reason="queue not open", job_id=job_id)
            return JSONResponse({"error": "queue unavailable"}, status_code=503)
        try:
            await self.queue.call_event(payload, job_id=job_id)
        except Exception as exc:
            if not is_redis_fault(exc):
                raise
            # 5xx makes the provider deliver again later; the job id keeps that safe.
            log.error("webhook_not_queued", reason=fault_kind(exc), job_id=job_id)
            return JSONResponse({"error": "queue unavailable"}, status_code=503)
        log.info("webhook_accepted", event_name=event, call_id=call_id, job_id=job_id, peer=peer)
        return JSONResponse({"queued": True}, status_code=202)

    async def _account_event(
        self, payload: dict[str, Any], body: bytes, peer: str | None
    ) -> Response:
        """Check the balance fields here (a bad one is a 400, nothing queued); the
        worker refreshes the cached balance and alerts."""
        try:
            parse_account_event(payload)
        except EventError as exc:
            log.warning("webhook_rejected", reason=str(exc), event_name=ACCOUNT_EVENT, status=400)
            return JSONResponse({"error": str(exc)}, status_code=400)
        job_id = account_job_id(body)
        if self.queue is None:
            log.error("webhook_not_queued", reason="queue not open", job_id=job_id)
            return JSONResponse({"error": "queue unavailable"}, status_code=503)
        try:
            await self.queue.account_event(payload, job_id=job_id)
        except Exception as exc:
            if not is_redis_fault(exc):
                raise
            log.error("webhook_not_queued", reason=fault_kind(exc), job_id=job_id)
            return JSONResponse({"error": "queue unavailable"}, status_code=503)
        log.info("webhook_accepted", event_name=ACCOUNT_EVENT, job_id=job_id, peer=peer)
        return JSONResponse({"queued": True}, status_code=202)


def _build(ingress: _Ingress, lifespan: Any = None) -> Starlette:
    routes = [Route("/healthz", ingress.healthz, methods=["GET"])]
    routes += [
        Route(f"/webhooks/{name}", ingress.endpoint(name), methods=["POST"])
        for name in WEBHOOK_DIALECTS
    ]
    routes.append(Route("/webhooks", ingress.endpoint(None), methods=["POST"]))
    if ingress.secret is None:
        log.warning("webhook_ingress_unsigned", detail="accepting unsigned webhooks")
    return Starlette(routes=routes, lifespan=lifespan)


def create_ingress_app(
    queue: JobQueue,
    *,
    secret: str | None,
    tolerance_seconds: int = 300,
    clock: Clock = time.time,
    dialect: str = "minivoice",
) -> Starlette:
    """The ingress around an open queue (its Redis pool must live on the serving loop)."""
    return _build(_Ingress(queue, secret, tolerance_seconds, clock, dialect))


def create_ingress_app_from_settings(
    settings: Settings,
    *,
    secret: str | None,
    tolerance_seconds: int = 300,
    clock: Clock = time.time,
) -> Starlette:
    """The ingress that opens its own arq pool in the lifespan, on the server's loop."""
    ingress = _Ingress(None, secret, tolerance_seconds, clock, settings.provider_dialect)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        queue = await open_queue(
            RedisLocation.from_settings(settings),
            settings.queue_name,
            replicas=settings.replica_ack,
        )
        ingress.queue = queue
        log.info("webhook_ingress_started", queue=settings.queue_name, signed=secret is not None)
        try:
            yield
        finally:
            ingress.queue = None
            await queue.aclose()

    return _build(ingress, lifespan)


def serve_ingress(
    host: str,
    port: int,
    settings: Settings,
    secret: str | None,
    *,
    tolerance_seconds: int = 300,
) -> bool:
    """Run the ingress in the foreground until interrupted (Ctrl-C); False when it
    never started (its startup failed: the log says why)."""
    configure_logging(settings.log_level, settings.log_format)
    for value in settings.secret_values():
        register_secret(value)
    app = create_ingress_app_from_settings(
        settings, secret=secret, tolerance_seconds=tolerance_seconds
    )
    # log_config=None: uvicorn's lines go through our structlog handlers too.
    config = uvicorn.Config(
        app, host=host, port=port, lifespan="on", log_config=None, proxy_headers=False
    )
    server = uvicorn.Server(config)
    server.run()
    return bool(server.started)
