"""What the store hands back: typed records of campaigns, attempts and claims."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal, cast

from campaigns.domain.lifecycle import NEVER_SENT_NOTES, AttemptStatus, State
from campaigns.domain.spec import StoredSpec
from campaigns.store.keys import attempt_id

__all__ = [
    "Attempt",
    "BudgetBelowFloor",
    "BudgetChange",
    "CampaignRecord",
    "Claim",
    "ClaimOutcome",
    "StaleTerms",
    "StoreError",
    "SubmitConflict",
    "TermsChange",
    "attempt_from_hash",
    "campaign_from_hash",
    "decode",
    "integer",
    "text",
    "unsent_attempt",
]


class StoreError(RuntimeError):
    """The store refused an operation (missing campaign, impossible transition)."""


class SubmitConflict(StoreError):
    """A campaign with this ID exists with a different spec."""


class StaleTerms(StoreError):
    """The campaign's terms changed between the read a change was made from and the change."""


@dataclass(frozen=True, slots=True)
class TermsChange:
    """What ``change_terms.lua`` writes besides the budget: the new stored spec,
    the meta fields the claim reads (``fields`` set, ``clear`` removed), the new
    rate's slot interval (microseconds) if it changed, and the history entry (JSON)."""

    spec: str
    fields: dict[str, str]
    clear: tuple[str, ...]
    pace_interval: int | None
    entry: str


class BudgetBelowFloor(StoreError):
    """A new budget below what the campaign spent plus what it holds: nothing changed."""

    def __init__(self, campaign_id: str, budget: int, spent: int, reserved: int) -> None:
        super().__init__(
            f"campaign {campaign_id!r}: budget {budget} micros is below spent {spent} "
            f"+ reserved {reserved} micros"
        )
        self.budget = budget
        self.spent = spent
        self.reserved = reserved


@dataclass(frozen=True, slots=True)
class BudgetChange:
    """What a budget change replaced, and the campaign as it found it (micros)."""

    campaign_id: str
    before: int
    after: int
    spent: int
    reserved: int
    state: State
    halt_code: str | None


@dataclass(frozen=True, slots=True)
class CampaignRecord:
    """One campaign as an operator sees it, read in one round trip."""

    campaign_id: str
    state: State
    spec: StoredSpec
    currency: str
    budget_micros: int
    reserved_micros: int
    spent_micros: int
    worst_case_micros: int
    contacts: int
    pending: int
    accepted: int
    rejected: int
    in_doubt: int
    settled: int
    live: int
    unresolved: int
    halt_code: str | None
    halt_message: str | None
    dispatch_seq: int
    created_at_ms: int
    started_at_ms: int | None
    finished_at_ms: int | None
    duplicates_dropped: int
    estimated_micros: int
    suppressed: int = 0
    """Never dialled: on a do-not-call or suppress list when their turn came."""
    expired: int = 0
    capped: int = 0
    retries: int = 0
    """Retries scheduled by the retry policy so far."""
    retry_waiting: int = 0
    """Of ``pending``: contacts whose retry is not due yet."""
    parked: int = 0
    """Of ``pending``: contacts waiting for the frequency cap's window."""
    pending_by_group: tuple[int, ...] = ()
    """Of ``pending``: each zone group's list (retries and parked ones not included)."""
    zone_groups: tuple[tuple[str, ...], ...] = ((),)
    """Group id -> the zones its calling window is judged in (``()``: no window)."""
    start_at_ms: int | None = None
    end_at_ms: int | None = None
    wait_reason: str | None = None
    """Why the dispatcher last found nothing it may call now (``window``, ...)."""
    wait_since_ms: int | None = None
    wait_until_ms: int | None = None
    cancelled_while: str | None = None
    """``halted`` when an operator cancelled a halted campaign (its contacts left
    undialled were stopped by the halt first)."""
    terms: int = 0
    """The version of the campaign's terms: each change (``campaigns change``) adds one."""
    past_max_calls: int = 0
    """Calls seen live past ``max_call_seconds`` that the dialect could not end:
    while above 0 the reservation (and so the budget) may be exceeded."""

    @property
    def halt(self) -> dict[str, str] | None:
        if self.halt_code is None:
            return None
        return {"code": self.halt_code, "message": self.halt_message or ""}


@dataclass(frozen=True, slots=True)
class Attempt:
    attempt_id: str
    campaign_id: str
    contact_index: int
    to: str
    ref: str
    variables: dict[str, Any]
    status: AttemptStatus
    reserved_micros: int
    call_id: str | None = None
    error_code: str | None = None
    error_message: str | None = None
    request: str | None = None
    final_status: str | None = None
    billsec: int | None = None
    cost_micros: int | None = None
    cost_currency: str | None = None
    cost_estimated: bool = False
    settled: bool = False
    over_reservation: bool = False
    currency_mismatch: str | None = None
    created_at_ms: int = 0
    recorded_at_ms: int | None = None
    settled_at_ms: int | None = None
    polls: int = 0
    final_seen_at_ms: int | None = None
    first_sent_at_ms: int | None = None
    """When the first create request for this attempt left (our clock)."""
    last_sent_at_ms: int | None = None
    answered_at_ms: int | None = None
    """The provider's answer time (an event before the final one, or the final call)."""
    ended_at_ms: int | None = None
    """The provider's end time of the call, as settlement saw it."""
    hung_up_at_ms: int | None = None
    """When we asked the provider to end the call at ``max_call_seconds``."""
    past_max_at_ms: int | None = None
    """When the call was seen live past ``max_call_seconds`` with no way to end it."""
    lookup_failures: int = 0


ClaimOutcome = Literal[
    "claimed",
    "not_running",
    "lease_lost",
    "in_flight_full",
    "budget_wait",
    "budget_exhausted",
    "empty",
    "completed",
    "needs_review",
    "account_live_full",
    "pace_wait",
    "wait",
    "expire",
    "skipped",
    "terms_changed",
]


@dataclass(frozen=True, slots=True)
class Claim:
    """What one claim returned: an attempt to send, or why there is none."""

    outcome: ClaimOutcome
    attempt: Attempt | None = None
    state: State | None = None
    wait_seconds: float = 0.0
    """With ``pace_wait``: until the campaign's next slot (held for it in Redis)."""
    wait_reason: str | None = None
    """With ``wait``: ``not_started``, ``window``, ``retry`` or ``capped``."""
    due_ms: int | None = None
    """With ``wait``: when the schedule starts, or the first retry or parked contact is due."""
    closed_groups: tuple[int, ...] = ()
    """With ``wait``: zone groups with contacts whose window is closed."""


def text(value: bytes | str | None) -> str | None:
    if value is None:
        return None
    return value.decode() if isinstance(value, bytes) else value


def integer(value: bytes | str | None, default: int = 0) -> int:
    raw = text(value)
    return default if raw is None or raw == "" else int(raw)


def decode(raw: Mapping[Any, Any]) -> dict[str, str]:
    return {cast(str, text(k)): cast(str, text(v)) for k, v in raw.items()}


def attempt_from_hash(raw: dict[str, str]) -> Attempt:
    """An attempt from its hash; damage (a status no script writes, a broken
    number or contact) is a StoreError naming the attempt, never a crash."""
    try:
        return _attempt(raw)
    except (KeyError, ValueError, TypeError, AttributeError) as exc:
        name = raw.get("attempt_id", "?")
        raise StoreError(f"attempt {name!r} is damaged in the store: {exc}") from None


def _attempt(raw: dict[str, str]) -> Attempt:
    contact = json.loads(raw.get("contact_json") or "{}")
    return Attempt(
        attempt_id=raw["attempt_id"],
        campaign_id=raw["campaign_id"],
        contact_index=integer(raw.get("contact")),
        to=contact.get("to", ""),
        ref=contact.get("ref", ""),
        variables=contact.get("variables", {}),
        status=AttemptStatus(raw["status"]),
        reserved_micros=integer(raw.get("reserved")),
        call_id=raw.get("call_id"),
        error_code=raw.get("error_code"),
        error_message=raw.get("error_message"),
        request=raw.get("request"),
        final_status=raw.get("final_status"),
        billsec=integer(raw["billsec"]) if raw.get("billsec") else None,
        cost_micros=integer(raw["cost"]) if raw.get("cost") else None,
        cost_currency=raw.get("cost_currency"),
        cost_estimated=raw.get("cost_estimated") == "1",
        settled=raw.get("settled") == "1",
        over_reservation=raw.get("over_reservation") == "1",
        currency_mismatch=raw.get("currency_mismatch"),
        created_at_ms=integer(raw.get("created_at")),
        recorded_at_ms=integer(raw["recorded_at"]) if raw.get("recorded_at") else None,
        settled_at_ms=integer(raw["settled_at"]) if raw.get("settled_at") else None,
        polls=integer(raw.get("polls")),
        final_seen_at_ms=_ms_field(raw, "final_seen_at"),
        first_sent_at_ms=_ms_field(raw, "first_sent_at") or _ms_field(raw, "sent_at"),
        last_sent_at_ms=_ms_field(raw, "sent_at"),
        answered_at_ms=_ms_field(raw, "answered_at"),
        ended_at_ms=_ms_field(raw, "ended_at"),
        hung_up_at_ms=_ms_field(raw, "hung_up_at"),
        past_max_at_ms=_ms_field(raw, "past_max_at"),
        lookup_failures=integer(raw.get("lookup_failures")),
    )


def _ms_field(raw: dict[str, str], name: str) -> int | None:
    return integer(raw[name]) if raw.get(name) else None


def unsent_attempt(
    campaign_id: str,
    index: int,
    try_no: int,
    status: AttemptStatus,
    contact_json: str | None,
    at_ms: int,
) -> Attempt:
    """The report row of a contact the schedule's end left undialled: the attempt
    it would have had, never sent, no reservation (``lua/expire.lua``)."""
    contact = json.loads(contact_json or "{}")
    return Attempt(
        attempt_id=attempt_id(campaign_id, index, try_no),
        campaign_id=campaign_id,
        contact_index=index,
        to=contact.get("to", ""),
        ref=contact.get("ref", ""),
        variables=contact.get("variables", {}),
        status=status,
        reserved_micros=0,
        error_message=NEVER_SENT_NOTES.get(status),
        created_at_ms=at_ms,
        recorded_at_ms=at_ms,
    )


def campaign_from_hash(
    campaign_id: str,
    meta: dict[str, str],
    pending: int,
    unresolved: int,
    *,
    retry_waiting: int = 0,
    parked: int = 0,
    pending_by_group: tuple[int, ...] = (),
) -> CampaignRecord | None:
    """A campaign from its meta hash (None if there is none); damage is a StoreError."""
    if "state" not in meta:
        return None

    def optional(field: str) -> int | None:
        return integer(meta[field]) if meta.get(field) else None

    try:
        return CampaignRecord(
            campaign_id=campaign_id,
            state=State(meta["state"]),
            spec=StoredSpec.model_validate_json(meta["spec"]),
            currency=meta["currency"],
            budget_micros=integer(meta.get("budget")),
            reserved_micros=integer(meta.get("reserved")),
            spent_micros=integer(meta.get("spent")),
            worst_case_micros=integer(meta.get("worst_case")),
            contacts=integer(meta.get("contacts")),
            pending=pending,
            accepted=integer(meta.get("accepted")),
            rejected=integer(meta.get("rejected")),
            in_doubt=integer(meta.get("in_doubt")),
            settled=integer(meta.get("settled")),
            live=integer(meta.get("live")),
            unresolved=unresolved,
            halt_code=meta.get("halt_code"),
            halt_message=meta.get("halt_message"),
            dispatch_seq=integer(meta.get("dispatch_seq")),
            created_at_ms=integer(meta.get("created_at")),
            started_at_ms=optional("started_at"),
            finished_at_ms=optional("finished_at"),
            duplicates_dropped=integer(meta.get("duplicates_dropped")),
            estimated_micros=integer(meta.get("estimated")),
            suppressed=integer(meta.get("suppressed")),
            expired=integer(meta.get("expired")),
            capped=integer(meta.get("capped")),
            retries=integer(meta.get("retries")),
            retry_waiting=retry_waiting,
            parked=parked,
            pending_by_group=pending_by_group,
            zone_groups=tuple(tuple(g) for g in json.loads(meta.get("zone_groups") or "[[]]")),
            start_at_ms=optional("start_at"),
            end_at_ms=optional("end_at"),
            wait_reason=meta.get("wait_reason") or None,
            wait_since_ms=optional("wait_since"),
            wait_until_ms=optional("wait_until"),
            past_max_calls=integer(meta.get("past_max")),
            terms=integer(meta.get("terms")),
            cancelled_while=meta.get("cancelled_while") or None,
        )
    except (KeyError, ValueError, TypeError) as exc:
        raise StoreError(f"campaign {campaign_id!r} is damaged in the store: {exc}") from None
