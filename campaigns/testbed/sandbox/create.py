"""The create-call pipeline shared by every dialect.

Order matters and mirrors a real provider: log the request, add latency,
authenticate, inject pre-acceptance faults, replay or refuse a known
idempotency key, validate, admit (spend/balance/destination), remember the
answer under the key, and only then let a post-acceptance fault lose or
delay that answer. Nothing awaits between the key check and the commit.
"""

from __future__ import annotations

import abc
import asyncio
import json
from dataclasses import dataclass
from typing import Any, cast

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from campaigns.testbed.sandbox.config import SandboxConfig
from campaigns.testbed.sandbox.state import (
    DialectName,
    IdempotencyRecord,
    LedgerEntry,
    Rejection,
    SandboxCall,
    SandboxState,
)

__all__ = [
    "CallRequest",
    "Dialect",
    "apply_latency",
    "get_state",
    "guard",
    "handle_create",
    "handle_get_call",
]


@dataclass(frozen=True, slots=True)
class CallRequest:
    """A create request in dialect-neutral form."""

    from_number: str
    to_number: str
    max_duration_seconds: int | None
    variables: dict[str, Any]
    agent_id: str = ""
    """Voxpria's ``agentId``: the agent that makes the call."""


class Dialect(abc.ABC):
    """How one provider API spells auth, requests, call objects and errors."""

    name: DialectName
    created_status: int = 201

    @abc.abstractmethod
    def authorized(self, request: Request, config: SandboxConfig) -> bool: ...

    @abc.abstractmethod
    def parse(self, document: object) -> CallRequest | str:
        """The request, or a message saying what is wrong with it."""

    @abc.abstractmethod
    def render_call(self, call: SandboxCall, now: float) -> dict[str, Any]: ...

    def render_created(self, call: SandboxCall, now: float) -> Any:
        return self.render_call(call, now)

    def request_tags(self, document: object) -> dict[str, Any] | None:
        """Our IDs as the request carries them, for the ledger (``variables``)."""
        tags = document.get("variables") if isinstance(document, dict) else None
        return tags if isinstance(tags, dict) else None

    @abc.abstractmethod
    def error_code(self, code: str) -> str:
        """The dialect's spelling of a sandbox error code."""

    def error(
        self, status: int, code: str, message: str, headers: dict[str, str] | None = None
    ) -> JSONResponse:
        body = {"error": {"code": self.error_code(code), "message": message}}
        return JSONResponse(body, status_code=status, headers=headers)

    def refusal(self, status: int, code: str, message: str) -> tuple[int, str, str]:
        """How the dialect answers a refusal (VoIPBIN: a per-destination failure is a 500)."""
        return status, code, message

    def wait_headers(self, retry: int, state: SandboxState) -> dict[str, str]:
        """The headers of a refusal that asks the client to wait ``retry`` seconds."""
        return {"Retry-After": str(retry)}

    def throttled(self, state: SandboxState) -> int | None:
        """Seconds to wait when the account is over the provider's own limit, else None."""
        return None


def get_state(request: Request) -> SandboxState:
    """The sandbox behind this app (``app.state.sandbox``)."""
    return cast(SandboxState, request.app.state.sandbox)


async def apply_latency(state: SandboxState) -> None:
    delay = state.config.latency_seconds
    if delay > 0:
        await asyncio.sleep(delay)


def _fingerprint(document: object) -> str:
    """Same JSON, same fingerprint, whatever the key order or whitespace."""
    return json.dumps(document, sort_keys=True, separators=(",", ":"))


def _settle(state: SandboxState, entry: LedgerEntry, **answer: Any) -> None:
    with state.lock:
        for name, value in answer.items():
            setattr(entry, name, value)


async def handle_create(request: Request, dialect: Dialect) -> Response:
    state = get_state(request)
    raw = await request.body()
    key = request.headers.get("idempotency-key") or None
    generation = state.generation
    entry = state.record_request(request.url.path, key, raw)
    await apply_latency(state)
    if state.generation != generation:
        # Arrived before a reset: nothing of it may appear after the reset.
        return dialect.error(503, "sandbox_reset", "the sandbox was reset meanwhile", None)

    def refuse(
        status: int, code: str, message: str, *, fault: str | None = None, retry: int | None = None
    ) -> Response:
        status, code, message = dialect.refusal(status, code, message)
        _settle(state, entry, status=status, error_code=dialect.error_code(code), fault=fault)
        headers = dialect.wait_headers(retry, state) if retry is not None else None
        return dialect.error(status, code, message, headers)

    if not dialect.authorized(request, state.config):
        return refuse(401, "unauthorized", "missing or invalid API key")
    if (wait := dialect.throttled(state)) is not None:
        return refuse(429, "rate_limited", "too many calls triggered this minute", retry=wait)

    try:
        document: object = json.loads(raw) if raw else None
    except (json.JSONDecodeError, UnicodeDecodeError):
        document = None
    tags = dialect.request_tags(document)
    if tags is not None:
        _settle(state, entry, variables=tags)

    with state.lock:
        fault = state.draw_fault()
        if fault is not None and fault.kind == "respond":
            return refuse(
                fault.status, fault.code, fault.message, fault=fault.name, retry=fault.retry_after
            )
        if document is None:
            return refuse(400, "invalid_json", "request body must be JSON")
        fingerprint = _fingerprint(document)
        record = state.lookup_key(key)
        replayed = record is not None
        if record is not None:
            if record.fingerprint != fingerprint:
                return refuse(
                    409,
                    "idempotency_key_reuse",
                    "idempotency key was already used with a different request body",
                )
        else:
            parsed = dialect.parse(document)
            if isinstance(parsed, str):
                return refuse(400, "invalid_request", parsed)
            admission = state.admit(
                dialect=dialect.name,
                from_number=parsed.from_number,
                to_number=parsed.to_number,
                max_duration_seconds=parsed.max_duration_seconds,
                variables=parsed.variables,
                idempotency_key=key,
                agent_id=parsed.agent_id,
            )
            if isinstance(admission, Rejection):
                return refuse(admission.status, admission.code, admission.message)
            record = IdempotencyRecord(
                fingerprint=fingerprint,
                status=dialect.created_status,
                body=dialect.render_created(admission, state.clock()),
                call_id=admission.id,
            )
            state.remember_key(key, record)
        _settle(state, entry, status=record.status, call_id=record.call_id, replayed=replayed)

    headers = {"Idempotent-Replayed": "true"} if replayed else None
    if fault is not None and fault.kind == "accept_then_fail":
        _settle(
            state,
            entry,
            status=500,
            error_code=dialect.error_code("provider_error"),
            fault=fault.name,
        )
        return dialect.error(500, "provider_error", "internal error")
    if fault is not None and fault.kind == "accept_then_hang":
        _settle(state, entry, fault=fault.name)
        await asyncio.sleep(fault.hang_seconds)
    return JSONResponse(record.body, status_code=record.status, headers=headers)


async def guard(request: Request, dialect: Dialect) -> Response | None:
    """Latency, then auth: the preamble of every read endpoint of a dialect."""
    state = get_state(request)
    await apply_latency(state)
    if not dialect.authorized(request, state.config):
        return dialect.error(401, "unauthorized", "missing or invalid credentials")
    return None


async def handle_get_call(request: Request, dialect: Dialect) -> Response:
    if (refused := await guard(request, dialect)) is not None:
        return refused
    state = get_state(request)
    call = state.get_call(request.path_params["call_id"])
    if call is None:
        return dialect.error(404, "not_found", "no such call")
    return JSONResponse(dialect.render_call(call, state.clock()))
