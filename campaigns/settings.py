"""Process settings, read from ``DISPATCHER_*`` environment variables or ``.env``.

Every value is checked when the settings load, so a careless or hostile value
stops the process at start with one error naming the setting, instead of
surfacing later as a crash deep in a worker (or, for a secret, as a leak in an
error message). Errors never echo the offending input: it may be a secret.
"""

from __future__ import annotations

import difflib
import json
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Literal
from urllib.parse import SplitResult, parse_qs, unquote, urlsplit

import httpx
from dotenv import dotenv_values
from pydantic import Field, SecretStr, ValidationInfo, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from campaigns.domain.account import DEFAULT_CREDIT_RATES, CreditTable, parse_credit_rates
from campaigns.domain.money import MoneyError, parse_micros
from campaigns.logs import check_log_level

__all__ = [
    "API_ROLES",
    "ENV_PREFIX",
    "Settings",
    "parse_sentinels",
    "redis_location",
    "setting_names",
    "unknown_settings",
]

ENV_PREFIX = "DISPATCHER_"
VOXPRIA_CALLS_PER_MINUTE = 100
"""Voxpria's documented limit on calls triggered a minute: the account ceiling
(``provider_calls_per_second``) of the ``voxpria`` dialect when unset."""
_REDIS_SCHEMES = ("redis", "rediss", "unix")
_HTTP_SCHEMES = ("http", "https")
_MAX_URL = 2048
_DAY_SECONDS = 86_400


def _has_control_or_space(value: str) -> bool:
    return any(c.isspace() or not c.isprintable() for c in value)


def _token(value: str, what: str, *, ascii_only: bool) -> str:
    """A credential must be exactly what the provider issued: no padding, no controls.

    A trailing newline from ``$(cat key)`` or a copy-paste would otherwise
    travel into headers and error messages (where the escaped form slips past
    naive masking) instead of being refused here.
    """
    if _has_control_or_space(value):
        raise ValueError(f"{what} must not contain whitespace or control characters")
    if ascii_only and not value.isascii():
        raise ValueError(f"{what} must be ASCII (it is sent in an HTTP header)")
    return value


def _plain_url(value: str) -> str:
    if not value or len(value) > _MAX_URL:
        raise ValueError(f"must be a URL of 1-{_MAX_URL} characters")
    if _has_control_or_space(value):
        raise ValueError("must not contain whitespace or control characters")
    return value


_ACCOUNT = re.compile(r"[A-Za-z0-9_-]{1,64}", re.ASCII)
_ACCOUNT_NAME = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?", re.ASCII)


def _accounts(value: str) -> list[str]:
    """``"a, b,c"`` as ``["a", "b", "c"]``; empty entries are ignored."""
    return [part.strip() for part in value.split(",") if part.strip()]


API_ROLES = ("viewer", "operator")
_MIN_API_TOKEN = 16


def _parse_api_tokens(text: str) -> dict[str, str]:
    """``{"<token>": "viewer" | "operator", ...}``; errors never quote a token."""
    try:
        data = json.loads(text)
    except (ValueError, RecursionError):
        raise ValueError('must be a JSON object such as {"<token>": "operator"}') from None
    if not isinstance(data, dict) or not data:
        raise ValueError("must be a non-empty JSON object mapping each token to a role")
    for number, (token, role) in enumerate(data.items(), 1):
        if role not in API_ROLES:
            raise ValueError(f"token {number}: role must be one of {', '.join(API_ROLES)}")
        if len(token) < _MIN_API_TOKEN:
            raise ValueError(f"token {number}: must be at least {_MIN_API_TOKEN} characters")
        _token(token, f"token {number}", ascii_only=True)
    return dict(data)


def redis_location(url: str) -> str:
    """Where a Redis URL points, without its credentials (for error messages)."""
    try:
        parts = urlsplit(url)
        port = parts.port or 6379
    except ValueError:
        return "an invalid Redis URL"
    if parts.scheme == "unix":
        return f"unix:{parts.path}"
    host = parts.hostname or "localhost"
    host = f"[{host}]" if ":" in host else host
    return f"{host}:{port}"


def _split(value: str) -> SplitResult:
    """``urlsplit`` plus the port check it defers, as one ValueError with a clear message."""
    try:
        parts = urlsplit(value)
        port = parts.port
    except ValueError:
        raise ValueError("is not a valid URL (check the host and the port, 1-65535)") from None
    if port == 0:
        raise ValueError("port must be a number from 1 to 65535")
    return parts


def _check_redis_url(value: str) -> str:
    """Accept exactly what the queue (arq) and redis-py both open the same way."""
    _plain_url(value)
    parts = _split(value)
    if parts.scheme not in _REDIS_SCHEMES:
        raise ValueError(
            "scheme must be redis://, rediss:// or unix:// (e.g. redis://127.0.0.1:6379/0)"
        )
    query = parse_qs(parts.query, keep_blank_values=True)
    if set(query) - {"db"}:
        raise ValueError("the only query parameter understood is db")
    if parts.scheme == "unix":
        if not parts.path:
            raise ValueError("unix:// needs a socket path, e.g. unix:///run/redis.sock")
        dbs = query.get("db", [])
    else:
        dbs = query.get("db") or [parts.path.lstrip("/") if parts.path else "0"]
    if not all(db.isascii() and db.isdigit() and len(db) <= 5 for db in dbs):
        raise ValueError("database must be a number, e.g. redis://127.0.0.1:6379/0")
    return value


_SERVICE = re.compile(r"[A-Za-z0-9._-]{1,200}", re.ASCII)
_MAX_SENTINELS = 32


def parse_sentinels(value: str) -> list[tuple[str, int]]:
    """``"h1:26379, [::1]:26380"`` as ``[("h1", 26379), ("::1", 26380)]``; a clear error else."""
    found: list[tuple[str, int]] = []
    entries = [part.strip() for part in value.split(",")]
    if not any(entries):
        raise ValueError("expected comma-separated host:port entries, e.g. s1:26379,s2:26379")
    if len(entries) > _MAX_SENTINELS:
        raise ValueError(f"at most {_MAX_SENTINELS} sentinels")
    for number, entry in enumerate(entries, 1):
        host, sep, port = entry.rpartition(":")
        if host.startswith("[") and host.endswith("]"):
            host = host[1:-1]
        if (
            not sep
            or not host
            or _has_control_or_space(host)
            or any(c in host for c in "/@?#[]")
            or not host.isascii()
        ):
            raise ValueError(f"sentinel {number}: expected host:port, e.g. s1:26379")
        if not (port.isascii() and port.isdigit() and 1 <= int(port) <= 65535):
            raise ValueError(f"sentinel {number}: port must be a number from 1 to 65535")
        found.append((host, int(port)))
    return found


def _check_http_url(value: str) -> SplitResult:
    _plain_url(value)
    parts = _split(value)
    if parts.scheme not in _HTTP_SCHEMES or not parts.hostname:
        raise ValueError("must be an http:// or https:// URL with a host")
    return parts


def _check_provider_url(value: str) -> str:
    parts = _check_http_url(value)
    if parts.username is not None or parts.password is not None:
        raise ValueError("must not carry credentials; use DISPATCHER_PROVIDER_API_KEY")
    try:
        httpx.URL(value)
    except httpx.InvalidURL:
        raise ValueError("is not a valid URL") from None
    return value


class Settings(BaseSettings):
    """Bounds on durations are sanity limits: beyond them a value is a typo, not a choice."""

    model_config = SettingsConfigDict(
        env_prefix="DISPATCHER_",
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        # Validation errors would otherwise quote the input, which may be a secret.
        hide_input_in_errors=True,
    )

    redis_url: str = "redis://127.0.0.1:6379/0"
    redis_sentinels: str | None = None
    """Comma-separated ``host:port`` of the Redis Sentinels; with
    ``DISPATCHER_REDIS_SENTINEL_MASTER`` it replaces ``DISPATCHER_REDIS_URL``: every
    process asks the sentinels where the primary is, and again after a failover."""
    redis_sentinel_master: str | None = Field(None, validate_default=True)
    """The service name the sentinels monitor (``sentinel monitor <name> ...``)."""
    redis_password: SecretStr | None = None
    """Password of the Redis data nodes (primary and replicas), instead of one in the URL."""
    redis_sentinel_password: SecretStr | None = Field(None, validate_default=True)
    """Password of the sentinels themselves (``requirepass`` in sentinel.conf)."""
    redis_min_replicas: int = Field(0, ge=0, le=10)
    """Replicas that must acknowledge (``WAIT``) a write the dispatcher acts on: a
    claim, a stamp, a call ID, a settlement, an operator command. 0: no ``WAIT``
    (a single Redis). docs/operations.md#what-a-redis-failure-can-lose"""
    redis_replica_timeout_ms: int = Field(1000, ge=10, le=60_000)
    """How long a write waits for those replicas; not acknowledged by then, it is
    treated as not done (nothing is sent on it; an operator command exits 1)."""
    provider_url: str = "http://127.0.0.1:8089"
    provider_api_key: SecretStr = SecretStr("")
    provider_dialect: Literal["minivoice", "voipbin", "voxpria"] = "minivoice"
    provider_auth: Literal["accesskey", "token", "bearer"] | None = None
    """How the key is presented. VoIPBIN: ``accesskey`` (default: an access key as
    ``?accesskey=``), ``token`` (a login JWT as ``?token=``) or ``bearer`` (a login
    JWT as ``Authorization: Bearer``). MiniVoice and Voxpria take only ``bearer`` (their default)."""
    provider_timeout_seconds: float = Field(10.0, ge=0.01, le=600, allow_inf_nan=False)
    provider_honours_idempotency: bool = True
    """Can only lower the dialect's own claim (``Capabilities.idempotency_keys``):
    an ambiguous create is re-sent under the same Idempotency-Key only when both
    say yes. Otherwise it is looked up, matched to the provider's creation event,
    or marked in doubt, never re-sent blind (docs/operations.md#in-doubt-attempts)."""
    creation_event_wait_seconds: float = Field(30.0, ge=0, le=3600, allow_inf_nan=False)
    """For a provider whose creation webhook is the only way to learn the ID of an
    ambiguous create: how long after its last send an attempt waits for that
    event before it is marked in doubt."""
    webhook_secret: SecretStr | None = None
    """HMAC-SHA256 secret the provider signs webhooks with (``campaigns ingress``).
    Unset means unsigned; set but empty is refused, never read as "unsigned"."""
    callback_url: str | None = None
    """Where every campaign's callback events go unless its spec names its own
    ``callbacks.url`` (docs/callbacks.md). Unset, and no spec URL: not sent."""
    callback_secret: SecretStr | None = None
    """HMAC-SHA256 secret callback events are signed with (``X-Signature``, the
    scheme the ingress verifies). Unset: sent unsigned, and each worker warns once."""
    callback_max_attempts: int = Field(10, ge=1, le=100)
    """Deliveries of one event before it is kept as failed for an operator to replay."""
    callback_retry_seconds: float = Field(2.0, ge=0.1, le=3600, allow_inf_nan=False)
    """The wait after a first failed delivery; it doubles after each, up to 300 s."""
    queue_name: str = Field("dispatcher:queue", min_length=1, max_length=200)
    log_format: Literal["auto", "json", "console"] = "auto"
    log_level: str = "INFO"

    lease_seconds: float = Field(10.0, ge=1, le=3600, allow_inf_nan=False)
    """A dispatching worker renews its campaign lease well within this."""
    sweep_interval_seconds: int = Field(5, ge=1, le=60)
    poll_interval_seconds: float = Field(1.0, ge=0.01, le=3600, allow_inf_nan=False)
    """First delay before an accepted call is read back; doubles up to the cap."""
    poll_max_interval_seconds: float = Field(30.0, ge=0.01, le=86400, allow_inf_nan=False)
    retry_attempts: int = Field(5, ge=0, le=100)
    """Transient failures of one create request before it is left unresolved."""
    retry_base_seconds: float = Field(0.2, ge=0.001, le=60, allow_inf_nan=False)
    retry_max_seconds: float = Field(5.0, ge=0.001, le=3600, allow_inf_nan=False)
    provider_unavailable_cooldown_seconds: float = Field(
        30.0, ge=0.01, le=86400, allow_inf_nan=False
    )
    pace_margin_percent: float = Field(1.0, ge=0, le=50, allow_inf_nan=False)
    """Slots and windows of every pace (a campaign's and the account's) are this much
    longer than the rate says, so jitter between a request's start and its arrival
    at the provider never puts more than the rate into one of the provider's 1 s
    windows. 1 on a quiet host; raise it on a loaded one (``make bench``, ``loaded``)."""
    worker_max_open_requests: int = Field(200, ge=1, le=100_000)
    """Create requests one worker keeps open at once, over all its campaigns: what a
    worker's campaigns cost is their calls, so this (not a number of campaigns) is
    the limit; a campaign waiting for a free one is shown as ``worker_capacity``."""
    redis_max_connections: int = Field(64, ge=4, le=10_000)
    """Connections in the worker's Redis pool; a command past them waits for one
    (a bounded, blocking pool), however many campaigns the worker runs."""
    job_timeout_seconds: int = Field(60, ge=5, le=86400)
    provider_calls_per_second: float | None = Field(
        None, gt=0, le=100_000, allow_inf_nan=False, validate_default=True
    )
    """Create requests per second to the provider account, all campaigns and workers
    together (unset: only each campaign's own pace; with the ``voxpria`` dialect,
    Voxpria's documented 100 calls a minute)."""
    provider_max_live_calls: int | None = Field(None, ge=1, le=10_000_000)
    """Live calls on the provider account, all campaigns together (trunk capacity)."""
    # The account (issue 10, docs/account.md): balance, credits and monthly usage.
    balance_buffer_percent: int = Field(10, ge=0, le=1000)
    """Safety margin on the account gate's worst case (the VoIPBIN billing tutorial: 10-20 %)."""
    low_balance_micros: int | None = Field(None, ge=0, le=2**53 - 1)
    """Below this credit balance: one warning and one alert per crossing."""
    low_balance_credits: int | None = Field(None, ge=0, le=2**53 - 1)
    """The same for Voxpria credits (Voxpria's Credits API page: alert when credits run low)."""
    balance_source: Literal["provider", "voxpria"] = "provider"
    """Where the account balance comes from: the dialect's own, or Voxpria credits."""
    balance_url: str | None = Field(None, validate_default=True)
    """Voxpria credits base URL (``.../api/v1``); required with ``balance_source=voxpria``."""
    balance_api_key: SecretStr | None = Field(None, validate_default=True)
    usage_url: str | None = None
    """Talkdesk Billing Insights API base (``https://api.talkdeskapp.com``);
    ``/express/usage/month`` and ``/express/accounts`` are appended."""
    usage_client_id: str | None = Field(None, validate_default=True)
    """OAuth2 client ID of the Talkdesk client-credentials grant (with ``DISPATCHER_USAGE_URL``)."""
    usage_client_secret: SecretStr | None = Field(None, validate_default=True)
    """Its client secret (sent with HTTP Basic to the token endpoint only)."""
    usage_account_name: str | None = None
    """The Talkdesk account name: the token endpoint is
    ``https://{name}.talkdeskid.com/oauth/token`` (or the region's)."""
    usage_region: Literal["us", "eu", "ca"] = "us"
    """Region of the token endpoint: ``talkdeskid.com``, ``talkdeskid.eu``, ``talkdeskidca.com``."""
    usage_token_url: str | None = Field(None, validate_default=True)
    """The token endpoint itself, instead of the account name and region."""
    usage_scope: str = "express-accounts-usage:read express-accounts:read"
    """Scopes asked for in the token request (space-separated)."""
    usage_accounts: str = ""
    """Comma-separated Talkdesk account IDs; unset: every account ``/express/accounts`` lists."""
    monthly_cap: str | None = Field(None, validate_default=True)
    """Money (decimal): month-to-date usage plus what is committed must stay within it."""
    api_tokens: SecretStr | None = None
    """``campaigns api`` bearer tokens: a JSON object mapping each token to
    ``viewer`` (read) or ``operator`` (read and change). Unset: the API refuses to start."""
    retention_days: int | None = Field(None, ge=1, le=36_500)
    """Completed and cancelled campaigns finished longer ago than this (and with every
    call settled) are deleted, every key, by the worker's sweep. Unset: kept for good."""
    api_rate_limit: int = Field(1200, ge=0, le=1_000_000)
    """``campaigns api``: requests a minute per token, past which it answers 429 with
    ``Retry-After`` until the minute ends (every replica counts together, in Redis).
    0: no limit. The live page polls about once a second."""
    metrics_port: int | None = Field(None, ge=1, le=65535)
    """Each worker serves Prometheus metrics on this port; unset, no metrics server."""
    max_calls_per_number: int | None = Field(None, ge=1, le=1000)
    """The frequency cap: at most this many calls to one number, over every campaign,
    within ``DISPATCHER_FREQUENCY_WINDOW_SECONDS``. Unset: no cap."""
    frequency_window_seconds: int | None = Field(None, ge=1, le=366 * 86_400, validate_default=True)
    """The frequency cap's window; a day when only the number of calls is set."""
    wait_recheck_seconds: float = Field(60.0, ge=0.1, le=600, allow_inf_nan=False)
    """A campaign waiting for its calling window, schedule, a retry or the frequency
    cap looks again at least this often, whatever it waits for."""
    voxpria_credit_rates: str = DEFAULT_CREDIT_RATES
    """Voxpria credits per minute by destination: ``KEY=N`` entries, KEY an ISO country
    (``GB``) or calling code (``+44``), plus ``default=N`` for every other destination."""
    voxpria_minimum_credits: int = Field(1, ge=0, le=1_000_000)
    """Credits every attempt takes, answered or not (voxpria.com: 1 credit per attempt)."""
    voxpria_rounding: Literal["minute", "second"] = "minute"
    """``minute``: each started minute billed whole; ``second``: pro rata, a call rounded
    up to a whole credit (Voxpria states no rounding: choose what your invoices show)."""

    @field_validator("frequency_window_seconds")
    @classmethod
    def _frequency_window(cls, value: int | None, info: ValidationInfo) -> int | None:
        capped = info.data.get("max_calls_per_number") is not None
        if value is None:
            return _DAY_SECONDS if capped else None
        if not capped:
            raise ValueError(
                "a window without DISPATCHER_MAX_CALLS_PER_NUMBER caps nothing: set both "
                "(or neither: no cap)"
            )
        return value

    @property
    def frequency_cap(self) -> tuple[int, int] | None:
        """``(calls, window ms)`` per number across campaigns, or None."""
        if self.max_calls_per_number is None or self.frequency_window_seconds is None:
            return None
        return self.max_calls_per_number, self.frequency_window_seconds * 1000

    @field_validator("redis_url")
    @classmethod
    def _redis_url(cls, value: str) -> str:
        return _check_redis_url(value)

    @field_validator("redis_sentinels")
    @classmethod
    def _redis_sentinels(cls, value: str | None) -> str | None:
        if value is not None:
            parse_sentinels(value)
        return value

    @field_validator("redis_sentinel_master")
    @classmethod
    def _redis_sentinel_master(cls, value: str | None, info: ValidationInfo) -> str | None:
        sentinels = info.data.get("redis_sentinels")
        if value is None:
            if sentinels is not None:
                raise ValueError(
                    "must be set with DISPATCHER_REDIS_SENTINELS (the service name they monitor)"
                )
            return None
        if sentinels is None:
            raise ValueError(
                "names a sentinel service but DISPATCHER_REDIS_SENTINELS is not set: set both "
                "(or neither, for DISPATCHER_REDIS_URL)"
            )
        if not _SERVICE.fullmatch(value):
            raise ValueError("expected a service name: 1-200 letters, digits, '.', '_' or '-'")
        return value

    @field_validator("redis_password", "redis_sentinel_password")
    @classmethod
    def _redis_passwords(cls, value: SecretStr | None, info: ValidationInfo) -> SecretStr | None:
        if value is None:
            return None
        if not value.get_secret_value():
            raise ValueError("must not be empty: unset it for no password")
        _token(value.get_secret_value(), "the password", ascii_only=False)
        if info.field_name == "redis_sentinel_password" and not info.data.get("redis_sentinels"):
            raise ValueError("is for the sentinels: set DISPATCHER_REDIS_SENTINELS too")
        if (
            info.field_name == "redis_password"
            and urlsplit(info.data.get("redis_url", "")).password
        ):
            raise ValueError("DISPATCHER_REDIS_URL carries a password too: set one of them")
        return value

    @model_validator(mode="after")
    def _one_redis_location(self) -> Settings:
        if self.redis_sentinels is not None and "redis_url" in self.model_fields_set:
            raise ValueError(
                "DISPATCHER_REDIS_URL and DISPATCHER_REDIS_SENTINELS: set one of them "
                "(the sentinels say where the primary is)"
            )
        return self

    @property
    def redis_sentinel_list(self) -> list[tuple[str, int]]:
        """The sentinels as ``(host, port)``; empty without ``DISPATCHER_REDIS_SENTINELS``."""
        return [] if self.redis_sentinels is None else parse_sentinels(self.redis_sentinels)

    @property
    def replica_ack(self) -> tuple[int, int] | None:
        """``(replicas, timeout ms)`` every confirmed write waits for, or None (no WAIT)."""
        if self.redis_min_replicas == 0:
            return None
        return self.redis_min_replicas, self.redis_replica_timeout_ms

    @field_validator("provider_url")
    @classmethod
    def _provider_url(cls, value: str) -> str:
        return _check_provider_url(value)

    @field_validator("provider_api_key")
    @classmethod
    def _api_key(cls, value: SecretStr) -> SecretStr:
        _token(value.get_secret_value(), "the API key", ascii_only=True)
        return value

    @field_validator("provider_auth")
    @classmethod
    def _provider_auth(cls, value: str | None, info: ValidationInfo) -> str | None:
        dialect = info.data.get("provider_dialect")
        if value not in (None, "bearer") and dialect in ("minivoice", "voxpria"):
            name = "MiniVoice" if dialect == "minivoice" else "Voxpria"
            raise ValueError(f"{name} takes its key only as a bearer token: unset it or 'bearer'")
        return value

    @field_validator("provider_calls_per_second")
    @classmethod
    def _provider_calls_per_second(cls, value: float | None, info: ValidationInfo) -> float | None:
        if value is None and info.data.get("provider_dialect") == "voxpria":
            return VOXPRIA_CALLS_PER_MINUTE / 60
        return value

    @field_validator("webhook_secret", "callback_secret")
    @classmethod
    def _webhook_secret(cls, value: SecretStr | None, info: ValidationInfo) -> SecretStr | None:
        if value is None:
            return None
        secret = value.get_secret_value()
        if not secret.strip():
            if info.field_name == "callback_secret":
                raise ValueError("must not be empty: unset it to send unsigned callbacks")
            raise ValueError(
                "must not be empty: unset it to accept unsigned webhooks, "
                "or set the secret the provider signs with"
            )
        what = (
            "the callback secret" if info.field_name == "callback_secret" else "the webhook secret"
        )
        _token(secret, what, ascii_only=False)
        return value

    @field_validator("callback_url")
    @classmethod
    def _callback_url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        _check_http_url(value)
        try:
            httpx.URL(value)
        except httpx.InvalidURL:
            raise ValueError("is not a valid URL") from None
        return value

    @field_validator("queue_name")
    @classmethod
    def _queue_name(cls, value: str) -> str:
        if _has_control_or_space(value):
            raise ValueError("must not contain whitespace or control characters")
        return value

    @field_validator("balance_url", "usage_url")
    @classmethod
    def _account_urls(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is None:
            if info.field_name == "balance_url" and info.data.get("balance_source") == "voxpria":
                raise ValueError("must be set when DISPATCHER_BALANCE_SOURCE=voxpria")
            return None
        return _check_provider_url(value)

    @field_validator("voxpria_credit_rates")
    @classmethod
    def _voxpria_credit_rates(cls, value: str) -> str:
        parse_credit_rates(value)
        return value

    @property
    def credit_table(self) -> CreditTable:
        """The Voxpria credit table the gate and ``estimate`` reserve with."""
        return CreditTable.parse(
            self.voxpria_credit_rates, self.voxpria_minimum_credits, self.voxpria_rounding
        )

    @field_validator("usage_client_id")
    @classmethod
    def _usage_client_id(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is None:
            if info.data.get("usage_url"):
                raise ValueError(
                    "must be set with DISPATCHER_USAGE_URL (OAuth2 client credentials)"
                )
            return None
        if not value:
            raise ValueError("must not be empty")
        return _token(value, "the client ID", ascii_only=True)

    @field_validator("usage_account_name")
    @classmethod
    def _usage_account_name(cls, value: str | None) -> str | None:
        if value is not None and not _ACCOUNT_NAME.fullmatch(value):
            raise ValueError("expected the account's subdomain: 1-63 letters, digits or '-'")
        return value

    @field_validator("usage_token_url")
    @classmethod
    def _usage_token_url(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is not None:
            return _check_provider_url(value)
        if info.data.get("usage_url") and not info.data.get("usage_account_name"):
            raise ValueError(
                "set it, or DISPATCHER_USAGE_ACCOUNT_NAME (and DISPATCHER_USAGE_REGION), "
                "with DISPATCHER_USAGE_URL"
            )
        return None

    @field_validator("usage_scope")
    @classmethod
    def _usage_scope(cls, value: str) -> str:
        if not value.strip() or not value.isascii() or not value.isprintable():
            raise ValueError("expected space-separated scopes such as express-accounts-usage:read")
        return value

    @property
    def usage_token_endpoint(self) -> str | None:
        """Where the client-credentials token comes from (docs.talkdesk.com Client Credentials)."""
        if self.usage_token_url is not None:
            return self.usage_token_url
        if self.usage_account_name is None:
            return None
        host = {"us": "talkdeskid.com", "eu": "talkdeskid.eu", "ca": "talkdeskidca.com"}
        return f"https://{self.usage_account_name}.{host[self.usage_region]}/oauth/token"

    @field_validator("balance_api_key", "usage_client_secret")
    @classmethod
    def _account_secrets(cls, value: SecretStr | None, info: ValidationInfo) -> SecretStr | None:
        if value is None:
            if (
                info.field_name == "balance_api_key"
                and info.data.get("balance_source") == "voxpria"
            ):
                raise ValueError("must be set when DISPATCHER_BALANCE_SOURCE=voxpria")
            if info.field_name == "usage_client_secret" and info.data.get("usage_url"):
                raise ValueError(
                    "must be set with DISPATCHER_USAGE_URL (OAuth2 client credentials)"
                )
            return None
        if not value.get_secret_value():
            raise ValueError("must not be empty")
        _token(value.get_secret_value(), "the credential", ascii_only=True)
        return value

    @field_validator("usage_accounts")
    @classmethod
    def _usage_accounts(cls, value: str) -> str:
        for number, account in enumerate(_accounts(value), 1):
            if not _ACCOUNT.fullmatch(account):
                raise ValueError(f"account {number}: expected 1-64 letters, digits, '_' or '-'")
        return value

    @field_validator("monthly_cap")
    @classmethod
    def _monthly_cap(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is None:
            return None
        try:
            parse_micros(value)
        except MoneyError:
            raise ValueError(
                "must be a plain decimal amount with at most 6 places, e.g. 250.00"
            ) from None
        missing = [
            f"DISPATCHER_{name.upper()}"
            for name in ("usage_url", "usage_client_id", "usage_client_secret")
            if not info.data.get(name)
        ]
        if missing:
            raise ValueError(f"needs {', '.join(missing)} (the month-to-date usage source)")
        return value

    @property
    def usage_account_list(self) -> list[str]:
        return _accounts(self.usage_accounts)

    @property
    def monthly_cap_micros(self) -> int | None:
        return None if self.monthly_cap is None else parse_micros(self.monthly_cap)

    @field_validator("log_level")
    @classmethod
    def _log_level(cls, value: str) -> str:
        return check_log_level(value)

    @field_validator("api_tokens")
    @classmethod
    def _api_tokens(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None:
            _parse_api_tokens(value.get_secret_value())
        return value

    def api_roles(self) -> dict[str, str]:
        """Token to role (``viewer`` or ``operator``); empty when no tokens are set."""
        if self.api_tokens is None:
            return {}
        return _parse_api_tokens(self.api_tokens.get_secret_value())

    def secret_values(self) -> list[str]:
        """Every secret these settings hold, to register with the log scrubber."""
        values = [self.provider_api_key.get_secret_value(), *self.api_roles()]
        if self.webhook_secret is not None:
            values.append(self.webhook_secret.get_secret_value())
        for secret in (self.balance_api_key, self.usage_client_secret, self.callback_secret):
            if secret is not None:
                values.append(secret.get_secret_value())
        password = urlsplit(self.redis_url).password
        if password:
            values += [password, unquote(password)]
        for secret in (self.redis_password, self.redis_sentinel_password):
            if secret is not None:
                values.append(secret.get_secret_value())
        return [v for v in values if v]


def setting_names() -> list[str]:
    """Every ``DISPATCHER_*`` variable the settings read, in declaration order."""
    return [f"{ENV_PREFIX}{name.upper()}" for name in Settings.model_fields]


def unknown_settings(
    environ: Mapping[str, str] | None = None, env_file: str | Path | None = ".env"
) -> list[str]:
    """``DISPATCHER_*`` names in the environment or ``.env`` that no setting reads.

    A misspelt name (``DISPATCHER_REDIS_URI``) would otherwise be ignored
    silently and the default used; each is returned with a suggestion, e.g.
    ``DISPATCHER_REDIS_URI (did you mean DISPATCHER_REDIS_URL?)``.
    """
    known = setting_names()
    names = list(os.environ if environ is None else environ)
    if env_file is not None and Path(env_file).is_file():
        names += [str(k) for k in dotenv_values(env_file)]
    found: list[str] = []
    for name in dict.fromkeys(names):
        upper = name.upper()
        if not upper.startswith(ENV_PREFIX) or upper in known:
            continue
        guess = difflib.get_close_matches(upper, known, n=1, cutoff=0.75)
        found.append(f"{name} (did you mean {guess[0]}?)" if guess else name)
    return found
