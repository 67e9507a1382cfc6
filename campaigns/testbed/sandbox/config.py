"""Sandbox configuration: every knob a test can turn, validated by pydantic.

The same model is loaded from a JSON file, patched at runtime through
``PATCH /_sandbox/config`` and read by the routes, so a typo in a field name
is refused (400 naming the field) instead of silently ignored.
"""

from __future__ import annotations

import json
import re
from dataclasses import replace
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictInt, ValidationError, model_validator

from campaigns.domain.account import parse_credit_rates
from campaigns.domain.money import MoneyError, parse_micros
from campaigns.domain.rating import Rate, RateError

__all__ = [
    "FinalStatus",
    "NumberOverride",
    "RateConfig",
    "SandboxConfig",
    "SandboxConfigError",
    "ScriptStep",
    "UsageRecordConfig",
    "load_config",
    "patch_config",
]

FinalStatus = Literal["completed", "failed", "busy", "no_answer", "canceled"]
ScriptAction = Literal["respond", "accept_then_fail", "accept_then_hang", "pass"]


class SandboxConfigError(ValueError):
    """A config document or patch that the sandbox refuses."""


class RateConfig(BaseModel):
    """The rate as decimal strings, exactly as written in specs (never floats)."""

    model_config = ConfigDict(extra="forbid")

    per_minute: str = "0.01"
    increments: str = "60/60"
    connect_fee: str = "0"
    tokens_per_minute: int = Field(default=0, ge=0, le=1000)
    """> 0: token-eligible (the VoIPBIN billing tutorial ``vn`` 1, ``tts`` 3): the VoIPBIN dialect
    debits whole-minute tokens first at hangup, then credit."""

    @model_validator(mode="after")
    def _check(self) -> RateConfig:
        self.to_rate()
        return self

    def to_rate(self) -> Rate:
        try:
            rate = Rate.from_decimal(self.per_minute, self.increments, self.connect_fee)
        except (MoneyError, RateError) as exc:
            raise ValueError(str(exc)) from None
        return replace(rate, tokens_per_minute=self.tokens_per_minute)


_JSON_NUMBER = re.compile(r"-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?", re.ASCII)


class UsageRecordConfig(BaseModel):
    """An extra Billing Insights record; amounts are JSON number *text*, sent verbatim
    (``"0.1"``, ``"1e-6"``), so a test can serve numbers a float would round."""

    model_config = ConfigDict(extra="forbid")

    account_id: str = "acc_sandbox"
    month: str = Field(default="2026-01", pattern=r"^[0-9]{4}-(0[1-9]|1[0-2])$")
    type: str = "CALL"
    product_id: str = "TD-USG-TEL-UG-102213"
    description: str = "Outbound calls"
    currency: str = Field(default="EUR", pattern=r"^[A-Z]{3}$")
    unit: str = "MINUTES"
    price: str = "0.01"
    number_of_units: str = "1"
    total_amount: str = "0.01"

    @model_validator(mode="after")
    def _check(self) -> UsageRecordConfig:
        for name in ("price", "number_of_units", "total_amount"):
            if not _JSON_NUMBER.fullmatch(getattr(self, name)):
                raise ValueError(f"{name} must be JSON number text such as '0.1' or '1e-6'")
        return self


class NumberOverride(BaseModel):
    """Per-destination behaviour: a final status and/or billed seconds."""

    model_config = ConfigDict(extra="forbid")

    final_status: FinalStatus | None = None
    billsec_seconds: int | None = Field(default=None, ge=0)


class ScriptStep(BaseModel):
    """One explicit answer for the next create request, consumed in order.

    ``{"status": 503, "code": "provider_error", "retry_after": 1}`` answers
    without a call; ``{"action": "accept_then_fail"}`` creates the call and
    answers 500; ``{"action": "pass"}`` lets one request through untouched.
    """

    model_config = ConfigDict(extra="forbid")

    action: ScriptAction = "respond"
    status: int | None = Field(default=None, ge=400, le=599)
    code: str | None = None
    message: str | None = None
    retry_after: int | None = Field(default=None, ge=0)
    hang_seconds: float | None = Field(default=None, ge=0)

    @model_validator(mode="after")
    def _check(self) -> ScriptStep:
        if self.action == "respond" and self.status is None:
            raise ValueError("a 'respond' script step needs a status")
        return self


class SandboxConfig(BaseModel):
    """Everything the fake provider can be told to do."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    # account
    api_key: str = "sandbox-key"
    application_id: str = "app_sandbox"
    customer_id: str = "cust_sandbox"
    balance_micros: StrictInt | None = Field(default=None, ge=0)
    balance_token: StrictInt = Field(default=0, ge=0)
    spend_limit_micros: StrictInt | None = Field(default=None, ge=0)
    # Voxpria credits: by destination, at least the minimum per attempt, debited at hangup
    credits_balance: StrictInt = Field(default=0, ge=0)
    voxpria_credit_rates: str = "US=2,CA=2,GB=3,default=10"
    """Credits per minute by destination, as ``DISPATCHER_VOXPRIA_CREDIT_RATES``."""
    voxpria_minimum_credits: int = Field(default=1, ge=0)
    voxpria_rounding: Literal["minute", "second"] = "minute"
    credit_price: str = "0.10"
    """What one credit costs in USD, for the usage history's ``cost`` strings."""
    credits_fail: Literal["no", "success_false", "http_500"] = "no"
    # Voxpria calls (/api/v1/calls)
    voxpria_calls_per_minute: int | None = Field(default=100, ge=1)
    """Calls triggered a minute before a 429 with ``X-RateLimit-Reset`` (Voxpria's
    documented 100; None: no limit)."""
    voxpria_echo_variables: bool = False
    """Also show a call's ``variables`` in ``GET /calls`` and ``/calls/:id`` (the
    Calls API page's answers show none, so the default leaves them out)."""
    # Talkdesk Billing Insights: OAuth2 client credentials, paged monthly usage by
    # filter; other accounts are a 403
    usage_client_id: str = "sandbox-client"
    usage_client_secret: str = "sandbox-client-secret"
    usage_token_expires_in: int = Field(default=3600, ge=1)
    """``expires_in`` of the tokens the token endpoint issues."""
    usage_token_valid_seconds: float | None = Field(default=None, ge=0)
    """How long a token is really accepted (unset: ``expires_in``); shorter makes the
    API answer 401 to a token the client still believes valid."""
    usage_accounts: list[str] = Field(default_factory=lambda: ["acc_sandbox"])
    """Accounts under the sandbox organisation; asking for any other is a 403."""
    usage_records: list[UsageRecordConfig] = Field(default_factory=list)
    usage_page_size: int = Field(default=250, ge=1, le=1000)
    usage_links: Literal["_links", "top"] = "_links"
    """Where the HAL page links go: under ``_links``, or at the top level as the
    usage reference lists them."""
    # calls and billing
    call_seconds: int = Field(default=30, ge=0)
    call_duration_real_seconds: float = Field(default=0.3, ge=0)
    settle_delay_seconds: float = Field(default=0.0, ge=0)
    omit_cost: bool = False
    final_status: FinalStatus = "completed"
    rate: RateConfig = Field(default_factory=RateConfig)
    currency: str = "EUR"
    idempotency_keys: bool = False
    """Honour ``Idempotency-Key`` (Stripe semantics: a repeated key replays the first
    answer). False, the default, ignores the header entirely, as the real
    MiniVoice and VoIPBIN do: every create request is a new call."""
    # destinations
    invalid_numbers: list[str] = Field(default_factory=list)
    blocked_numbers: list[str] = Field(default_factory=list)
    unroutable_numbers: list[str] = Field(default_factory=list)
    per_number: dict[str, NumberOverride] = Field(default_factory=dict)
    # webhooks
    webhook_url: str | None = None
    webhook_secret: str | None = None
    webhook_duplicates: bool = False
    webhook_retries: int = Field(default=2, ge=0, le=10)
    """Re-deliveries after a non-2xx answer or a network error (MiniVoice retries:
    webhooks/call-created), ``webhook_retry_seconds`` apart, doubling."""
    webhook_retry_seconds: float = Field(default=0.5, ge=0, le=60)
    webhook_metadata: bool = False
    """Also put the call's ``metadata`` in MiniVoice webhooks' ``call``; the
    documented payloads do not show it, so the default leaves it out."""
    account_webhooks: bool = False
    """Also post VoIPBIN ``account_updated`` (the VoIPBIN billing tutorial) to ``webhook_url`` after the
    hangups of VoIPBIN calls have been paid."""
    # faults
    seed: int = 0
    latency_seconds: float = Field(default=0.0, ge=0)
    error_rate: float = Field(default=0.0, ge=0, le=1)
    error_statuses: list[int] = Field(default_factory=lambda: [500, 502, 503, 504], min_length=1)
    rate_limit_rate: float = Field(default=0.0, ge=0, le=1)
    retry_after_seconds: int = Field(default=1, ge=0)
    accept_then_hang_rate: float = Field(default=0.0, ge=0, le=1)
    hang_seconds: float = Field(default=30.0, ge=0)
    accept_then_fail_rate: float = Field(default=0.0, ge=0, le=1)
    script: list[ScriptStep] = Field(default_factory=list)

    @model_validator(mode="after")
    def _check(self) -> SandboxConfig:
        try:
            parse_micros(self.credit_price)
        except MoneyError as exc:
            raise ValueError(f"credit_price: {exc}") from None
        try:
            parse_credit_rates(self.voxpria_credit_rates)
        except ValueError as exc:
            raise ValueError(f"voxpria_credit_rates: {exc}") from None
        total = (
            self.error_rate
            + self.rate_limit_rate
            + self.accept_then_hang_rate
            + self.accept_then_fail_rate
        )
        if total > 1:
            raise ValueError("fault rates must add up to at most 1")
        if any(not 500 <= status <= 599 for status in self.error_statuses):
            raise ValueError("error_statuses must all be 5xx")
        return self

    def rate_model(self) -> Rate:
        return self.rate.to_rate()


def _validate(document: dict[str, Any]) -> SandboxConfig:
    unknown = sorted(set(document) - set(SandboxConfig.model_fields))
    if unknown:
        raise SandboxConfigError(f"unknown config field: {', '.join(unknown)}")
    try:
        return SandboxConfig.model_validate(document)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(part) for part in err['loc']) or 'config'}: {err['msg']}"
            for err in exc.errors()
        )
        raise SandboxConfigError(problems) from None


def patch_config(current: SandboxConfig, patch: object) -> SandboxConfig:
    """A new config with ``patch`` applied; ``rate`` merges field by field."""
    if not isinstance(patch, dict):
        raise SandboxConfigError("config patch must be a JSON object")
    merged = current.model_dump()
    for key, value in patch.items():
        if key == "rate" and isinstance(value, dict) and isinstance(merged.get("rate"), dict):
            merged["rate"] = {**merged["rate"], **value}
        else:
            merged[key] = value
    unknown = sorted(set(patch) - set(SandboxConfig.model_fields))
    if unknown:
        raise SandboxConfigError(f"unknown config field: {', '.join(unknown)}")
    return _validate(merged)


def load_config(path: str | Path) -> SandboxConfig:
    """Read an initial config from a JSON file (same fields as the PATCH body)."""
    try:
        document = json.loads(Path(path).read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise SandboxConfigError(f"{path}: not JSON: {exc}") from None
    if not isinstance(document, dict):
        raise SandboxConfigError(f"{path}: config must be a JSON object")
    return _validate(document)
