"""The HTTP API's typed request and response bodies.

Every JSON answer the API sends is validated through one of these models
(:func:`campaigns.operators.api` ``_answer``) and the OpenAPI document is
generated from them (:mod:`campaigns.operators.api_schema`), so the document and
the answers cannot drift apart: an answer that leaves its model fails loudly in
the API's tests instead of silently contradicting the schema. Enums are the
domain's own (:class:`State`, :class:`HaltCode`, :class:`ContactOutcome`) or the
API's :class:`ErrorCode`.
"""

from __future__ import annotations

import enum
from typing import Annotated, Any, ClassVar, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    RootModel,
    WithJsonSchema,
    create_model,
    model_validator,
)
from pydantic_core import PydanticCustomError

from campaigns.domain.lifecycle import HaltCode, State
from campaigns.domain.money import MAX_MICROS
from campaigns.domain.policy import CallingWindow, Schedule
from campaigns.domain.sharing import HeldBy
from campaigns.domain.spec import Contact, Pacing
from campaigns.operators.estimate import Estimate
from campaigns.operators.reconcile import Reconciliation
from campaigns.operators.report import REPORT_FIELDS

__all__ = [
    "CAMPAIGN_ID_PATTERN",
    "E164_EXAMPLE",
    "E164_SCHEMA",
    "MAX_NUMBERS",
    "TOKEN_PATTERN",
    "AddContacts",
    "CallbackLog",
    "CallbackReplayed",
    "CampaignChange",
    "CampaignList",
    "CampaignStatus",
    "ContactList",
    "ContactsAdded",
    "Counts",
    "DeadLetters",
    "Deleted",
    "DncAdded",
    "DncCheck",
    "DncCount",
    "DncCsv",
    "DncImported",
    "DncNumbers",
    "DncNumbersStrict",
    "DncRemoved",
    "ErrorAnswer",
    "ErrorCode",
    "ErrorDetail",
    "EstimateAnswer",
    "FieldError",
    "Halt",
    "Health",
    "History",
    "HistoryEntry",
    "Money",
    "Outcomes",
    "Progress",
    "ReconcileAnswer",
    "Report",
    "ReportPage",
    "ReportRow",
    "Resolve",
    "Resolved",
    "ScheduleTimes",
    "Submitted",
    "Waiting",
    "Whoami",
    "whole_body_field",
]

CAMPAIGN_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"
TOKEN_PATTERN = r"^[!-~]{1,200}$"
"""An attempt, call or event ID as the API takes it: 1-200 printable characters, no spaces."""
E164_EXAMPLE = "+15551230002"
E164_SCHEMA: dict[str, Any] = {
    "type": "string",
    "pattern": r"^\+[1-9][0-9]{2,19}$",
    "description": "E.164; it must also be a possible number for its calling code "
    "(libphonenumber), which a pattern cannot say: else 422",
    "examples": [E164_EXAMPLE],
}
MAX_NUMBERS = 100_000
"""Numbers one do-not-call request may carry (``campaigns.operators.dnc.MAX_NUMBERS``)."""


class ErrorCode(enum.StrEnum):
    """``error.code`` of every error answer: stable, for programs to branch on."""

    UNAUTHORIZED = "unauthorized"
    FORBIDDEN = "forbidden"
    NOT_FOUND = "not_found"
    METHOD_NOT_ALLOWED = "method_not_allowed"
    NOT_ACCEPTABLE = "not_acceptable"
    CONFLICT = "conflict"
    IDEMPOTENCY_KEY_REUSED = "idempotency_key_reused"
    IDEMPOTENCY_KEY_IN_USE = "idempotency_key_in_use"
    TOO_LARGE = "too_large"
    UNSUPPORTED_MEDIA_TYPE = "unsupported_media_type"
    INVALID = "invalid"
    RATE_LIMITED = "rate_limited"
    INTERNAL = "internal"
    PROVIDER_FAILED = "provider_failed"
    UNAVAILABLE = "unavailable"
    HTTP_ERROR = "http_error"


class _Answer(BaseModel):
    """An answer body: exactly these fields, so an unexpected one is a bug here."""

    model_config = ConfigDict(extra="forbid")


class _Body(BaseModel):
    """A request body: unknown fields are refused (422 naming them), and no value is
    coerced (``"yes"`` is not a boolean), as the spec model does it."""

    model_config = ConfigDict(extra="forbid", strict=True)


# ---------------------------------------------------------------- errors


class FieldError(_Answer):
    field: str = Field(description="the field, dotted (`pacing.batch_size`), or a header name")
    message: str = Field(description="what is wrong with it")


class ErrorDetail(_Answer):
    code: ErrorCode
    message: str = Field(description="for people; programs use `code`")
    field: str | None = Field(None, description="the (first) field or header at fault")
    errors: list[FieldError] | None = Field(None, description="a 422's every invalid field")


class ErrorAnswer(_Answer):
    """The one error shape, for every status (the router's 404 and 405 too)."""

    error: ErrorDetail


# ---------------------------------------------------------------- campaign status


class Halt(_Answer):
    code: HaltCode | str = Field(
        description="one of the dispatcher's halt codes, or a provider's halt-class "
        "error code as the provider sent it"
    )
    message: str


class Counts(_Answer):
    contacts: int = Field(ge=0, description="contacts the campaign holds")
    pending: int = Field(ge=0, description="not yet dialled (0 once the campaign is over)")
    not_dialled: int = Field(ge=0, description="left undialled by a campaign that is over")
    accepted: int = Field(ge=0, description="calls the provider accepted")
    rejected: int = Field(ge=0, description="create requests the provider refused")
    in_doubt: int = Field(ge=0, description="attempts whose outcome is unknown (resolve them)")
    settled: int = Field(ge=0, description="calls settled with their final cost")
    suppressed: int = Field(ge=0, description="contacts skipped by a do-not-call list")
    expired: int = Field(ge=0, description="contacts whose schedule ended first")
    capped: int = Field(ge=0, description="contacts over the per-number attempt cap")
    retries: int = Field(ge=0, description="retry attempts made")


class Money(_Answer):
    currency: str = Field(description="ISO 4217")
    budget_micros: int = Field(ge=0)
    reserved_micros: int = Field(ge=0, description="worst case held by live calls")
    spent_micros: int = Field(ge=0, description="settled cost")


class ScheduleTimes(_Answer):
    start_at: str | None = Field(description="RFC 3339; null: no start time")
    end_at: str | None = Field(description="RFC 3339; null: no end time")


class Waiting(_Answer):
    reason: str = Field(description="one word: why nothing is being sent (docs/api.md)")
    message: str
    since: str | None = Field(description="RFC 3339")
    until: str | None = Field(description="RFC 3339; null: not known")


class Progress(_Answer):
    done: int = Field(ge=0)
    not_dialled: int = Field(ge=0)
    percent: float = Field(ge=0)
    calls_last_minute: int = Field(ge=0)
    configured_calls_per_second: float = Field(ge=0)
    weight: float = Field(
        gt=0, description="`pacing.weight`: its share of the account's ceilings when they bind"
    )
    held_by: HeldBy | None = Field(
        description="when it placed fewer calls than its pace in the last minute and something "
        "held it: the account's ceiling (calls per second, live calls, a 429 hold), its "
        "weight's share of a ceiling that binds, or the worker's open requests; else null"
    )


class CampaignStatus(_Answer):
    """The ``campaigns status --json`` shape of DESIGN.md."""

    campaign_id: str = Field(pattern=CAMPAIGN_ID_PATTERN)
    name: str
    state: State
    halt: Halt | None = Field(description="why the campaign halted; null unless halted")
    counts: Counts
    money: Money
    schedule: ScheduleTimes
    not_dialled: dict[str, int] = Field(description="why contacts were left undialled: counts")
    reservation_may_be_exceeded: bool = Field(
        description="a call ran past max_call_seconds and could not be hung up"
    )
    waiting: Waiting | None = Field(None, description="why nothing is sent now; null: sending")
    progress: Progress | None = None
    eta: str | None = Field(None, description="RFC 3339 estimate of the last dial")
    times: dict[str, str | None] | None = Field(None, description="RFC 3339 instants by event")


class CampaignList(_Answer):
    campaigns: list[CampaignStatus]
    next_cursor: str | None = Field(
        description="opaque; pass as `cursor` with the same filters for the next page; "
        "null: the list ends"
    )
    actions: dict[Literal["pause", "resume", "cancel"], list[State]] = Field(
        description="the states each of pause, resume, cancel starts from"
    )


class Submitted(_Answer):
    created: bool = Field(description="false: already submitted with this spec; nothing changed")
    contacts: int = Field(ge=0)
    duplicates_dropped: int = Field(ge=0)
    campaign: CampaignStatus


class Deleted(_Answer):
    campaign_id: str
    deleted: Literal[True]
    keys: int = Field(ge=0, description="Redis keys removed")


class HistoryEntry(BaseModel):
    at: int = Field(description="epoch ms")
    actor: str = Field(description="`api:<role>:<token digest>`, or the CLI's user@host")
    action: str = Field(description="the operator action")
    before: dict[str, Any] | None = None
    after: dict[str, Any] | None = None


class History(_Answer):
    history: list[HistoryEntry]


class Outcomes(_Answer):
    campaign_id: str
    currency: str
    calls_ended: int = Field(ge=0)
    final_status: dict[str, int] = Field(description="ended calls by the provider's final status")
    answered: int = Field(ge=0)
    average_billsec: float | None = Field(description="null: no call ended")
    spent_on_ended_micros: int = Field(ge=0)
    spend_per_answered_call_micros: int | None = Field(description="null: none answered")


ReportRow = create_model(
    "ReportRow",
    __doc__="One attempt, as `campaigns report --format json` (docs/report.md).",
    **{name: (Any, Field(None)) for name in REPORT_FIELDS},  # type: ignore[call-overload]
)


class ReportPage(_Answer):
    attempts: list[ReportRow]
    next_cursor: str | None = Field(
        description="opaque; pass as `cursor` for the next page; null: no row left now"
    )


class Report(RootModel[list[ReportRow] | ReportPage]):
    """The report: every attempt (no `limit` or `cursor`), or one page of it."""


class ContactList(RootModel[list[Contact]]):
    """Contacts as a spec's `contacts` array."""


class EstimateAnswer(RootModel[Estimate]):
    """Worst-case cost of a spec (``campaigns estimate --json``)."""


class ReconcileAnswer(RootModel[Reconciliation]):
    """Settled total beside the provider's usage (``campaigns reconcile --json``)."""


class DeadLetters(_Answer):
    dead_letters: list[dict[str, Any]] = Field(description="newest first, as stored")


class CallbackLog(_Answer):
    campaign_id: str
    failed: list[dict[str, Any]] = Field(description="callback events that were not delivered")
    log: list[dict[str, Any]] | None = Field(
        None, description="the newest delivery results (absent with `failed=true`)"
    )


class CallbackReplayed(_Answer):
    event_id: str
    replayed: Literal[True]


class ContactsAdded(_Answer):
    campaign_id: str
    added: int = Field(ge=0)
    duplicates_dropped: int = Field(ge=0)
    contacts: int = Field(ge=0, description="contacts the campaign holds now")


class Resolved(_Answer):
    attempt_id: str
    outcome: str = Field(description="what the attempt was settled as")


class Whoami(_Answer):
    role: Literal["viewer", "operator"]


class Health(_Answer):
    ok: bool


class DncCount(_Answer):
    count: int = Field(ge=0)


class DncCheck(_Answer):
    number: str = Field(description="the canonical E.164 number", examples=[E164_EXAMPLE])
    listed: bool


class DncAdded(_Answer):
    numbers: list[str] = Field(description="the canonical numbers asked for")
    added: int = Field(ge=0, description="newly listed")
    already_listed: int = Field(ge=0, description="listed before")


class DncRemoved(_Answer):
    numbers: list[str] = Field(description="the canonical numbers asked for")
    removed: int = Field(ge=0, description="no longer listed")
    not_listed: int = Field(ge=0, description="not listed before")


class DncImported(_Answer):
    rows: int = Field(ge=0)
    numbers: int = Field(ge=0)
    added: int = Field(ge=0)
    listed: int = Field(ge=0, description="numbers on the list now")


# ---------------------------------------------------------------- request bodies


class Resolve(_Body):
    """Exactly one of ``call_id`` (the call found) or ``no_call: true``."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "oneOf": [
                {"required": ["call_id"], "properties": {"no_call": {"const": False}}},
                {
                    "required": ["no_call"],
                    "properties": {"no_call": {"const": True}},
                    "not": {"required": ["call_id"]},
                },
            ],
            "examples": [{"no_call": True}],
        },
    )

    problem_field: ClassVar[str] = "call_id"
    """What a 422 of the whole body (neither, or both) names."""

    call_id: str = Field(
        None,  # type: ignore[assignment]  # absent is fine, null is not
        pattern=TOKEN_PATTERN,
        description="the provider's call ID of the attempt's call",
    )
    no_call: bool = Field(False, description="true: no call was placed")

    @model_validator(mode="after")
    def _exactly_one(self) -> Resolve:
        if (self.call_id is not None) == self.no_call:
            raise PydanticCustomError("exactly_one", "give exactly one of call_id or no_call: true")
        return self


def whole_body_field(model: type[BaseModel]) -> str:
    """The field a body's cross-field error is reported against (``body`` by default)."""
    return str(getattr(model, "problem_field", "body"))


class DncNumbers(_Body):
    numbers: list[Annotated[str, WithJsonSchema(E164_SCHEMA)]] = Field(
        min_length=1,
        max_length=MAX_NUMBERS,
        description="E.164 numbers (or national numbers when not strict)",
        examples=[[E164_EXAMPLE]],
    )


class DncNumbersStrict(DncNumbers):
    strict: bool = Field(False, description="refuse anything that is not already E.164")


class AddContacts(_Body):
    contacts: list[Contact] = Field(
        min_length=1, description="contacts as in a spec", examples=[[{"to": E164_EXAMPLE}]]
    )


class DncCsv(RootModel[str]):
    """A CSV with a `number` or `to` column."""


class CampaignChange(_Body):
    """At least one field; at most one of `budget` and `budget_micros`."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "minProperties": 1,
            "not": {"required": ["budget", "budget_micros"]},
            "examples": [{"budget": "250.00"}, {"pacing": {"calls_per_second": 2}}],
        },
    )

    budget: str | None = Field(
        None, pattern=r"^[0-9]+(\.[0-9]+)?$", description="decimal string", examples=["250.00"]
    )
    budget_micros: int | None = Field(None, ge=0, le=MAX_MICROS)
    name: str | None = None
    pacing: Pacing | None = Field(None, description="the fields given replace the current ones")
    schedule: Schedule | None = Field(None, description="null: removed")
    calling_window: CallingWindow | None = Field(None, description="null: removed")
