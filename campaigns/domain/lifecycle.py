"""The campaign lifecycle: states, attempt statuses, halt codes, moves, the budget rule.

This is the one place these names and rules are written. The store's Lua
scripts use the same values: ``campaigns.store.scripts`` substitutes them into
each script when it is loaded (``${state_running}``, ``${halt_budget_exhausted}``,
...), so a script cannot spell a state differently from Python.

States::

    queued ──start──► running ──pause──► paused ──resume──► running
       │                 │ ▲                                   ▲
       │                 │ └──── cool-down ends (sweeper) ─────┤ (paused with
       │                 ├──cool_down──► paused ───────────────┘  provider_unavailable)
       │                 ├──halt──► halted ──resume──► running
       │                 └──(claim finds nothing left)──► completed
       └──── cancel (from any state but completed/cancelled) ──► cancelled
"""

from __future__ import annotations

import enum

__all__ = [
    "ACTIVE_STATES",
    "BUDGET_CHANGE_STATES",
    "BUDGET_EXHAUSTED_MESSAGE",
    "FINAL_CALL_STATUSES",
    "FINAL_STATES",
    "NEVER_SENT_NOTES",
    "NEVER_SENT_STATUSES",
    "PROVIDER_MISBEHAVING_MESSAGE",
    "REVIEW_MESSAGE",
    "AttemptStatus",
    "ContactOutcome",
    "HaltCode",
    "Move",
    "OperatorAction",
    "State",
    "budget_allows",
    "budget_floor",
    "contact_outcome",
    "lua_constants",
]


class State(enum.StrEnum):
    QUEUED = "queued"
    """Submitted; the first dispatch batch has not started yet."""
    RUNNING = "running"
    PAUSED = "paused"
    """By an operator, or automatically for a provider cool-down (halt code
    ``provider_unavailable``)."""
    HALTED = "halted"
    """Stopped on a halt code; only an operator resumes it."""
    COMPLETED = "completed"
    CANCELLED = "cancelled"


FINAL_STATES: frozenset[State] = frozenset({State.COMPLETED, State.CANCELLED})
ACTIVE_STATES: frozenset[State] = frozenset(State) - FINAL_STATES


FINAL_CALL_STATUSES: frozenset[str] = frozenset(
    {"completed", "failed", "busy", "no_answer", "canceled"}
)
"""A call in one of these statuses is over: it can be settled (every dialect maps
its own words onto these)."""


class AttemptStatus(enum.StrEnum):
    SENDING = "sending"
    """Claimed with its reservation; the create request's answer is not recorded yet."""
    ACCEPTED = "accepted"
    """The provider returned a call ID, and it is recorded."""
    REJECTED = "rejected"
    """The provider refused it; the code and the exact body are kept."""
    IN_DOUBT = "in_doubt"
    """It may or may not be a call: it keeps its reservation until an operator resolves it."""
    SUPPRESSED = "suppressed"
    """Never sent: the number is on the account's do-not-call list or the campaign's
    ``suppress`` list when its turn came. No reservation, no charge, no request."""
    EXPIRED = "expired"
    """Never sent: the schedule's ``end_at`` came before this contact's next attempt."""
    CAPPED = "capped"
    """Never sent: the number was at ``DISPATCHER_MAX_CALLS_PER_NUMBER`` until the
    campaign ended."""


NEVER_SENT_STATUSES: frozenset[AttemptStatus] = frozenset(
    {AttemptStatus.SUPPRESSED, AttemptStatus.EXPIRED, AttemptStatus.CAPPED}
)
"""Contact outcomes recorded as attempt rows that never reached the provider: no
request body, no Idempotency-Key used, never counted as calls or charged."""

NEVER_SENT_NOTES: dict[AttemptStatus, str] = {
    AttemptStatus.EXPIRED: "the schedule's end_at came before this attempt",
    AttemptStatus.CAPPED: "at DISPATCHER_MAX_CALLS_PER_NUMBER until the schedule's end_at",
}
"""Why an expired or capped contact was never dialled, as the report shows it."""


class ContactOutcome(enum.StrEnum):
    """Where a contact stands, judged by its latest attempt (``campaigns contacts --status``)."""

    UNSENT = "unsent"
    """Never dialled: not reached yet, or left pending when the campaign stopped."""
    ANSWERED = "answered"
    NO_ANSWER = "no_answer"
    BUSY = "busy"
    FAILED = "failed"
    """The call failed, or the provider refused the contact itself (a bad number)."""
    SUPPRESSED = "suppressed"
    EXPIRED = "expired"
    CAPPED = "capped"
    IN_DOUBT = "in_doubt"
    DIALLING = "dialling"
    """Sent, or a call still live: not over yet."""


_CALL_OUTCOMES: dict[str, ContactOutcome] = {
    "completed": ContactOutcome.ANSWERED,
    "no_answer": ContactOutcome.NO_ANSWER,
    "busy": ContactOutcome.BUSY,
    "failed": ContactOutcome.FAILED,
    "canceled": ContactOutcome.FAILED,
}


def contact_outcome(
    status: AttemptStatus, final_status: str | None, reject_kind: str | None
) -> ContactOutcome:
    """A contact's outcome from its latest attempt.

    A refusal that put the contact back to pending (a halt-class answer, an
    operator's "no call was placed") leaves it unsent: nothing reached it.
    """
    if status is AttemptStatus.ACCEPTED:
        if final_status is None:
            return ContactOutcome.DIALLING
        return _CALL_OUTCOMES.get(final_status, ContactOutcome.FAILED)
    if status is AttemptStatus.REJECTED:
        return ContactOutcome.FAILED if reject_kind == "contact" else ContactOutcome.UNSENT
    return {
        AttemptStatus.SENDING: ContactOutcome.DIALLING,
        AttemptStatus.IN_DOUBT: ContactOutcome.IN_DOUBT,
        AttemptStatus.SUPPRESSED: ContactOutcome.SUPPRESSED,
        AttemptStatus.EXPIRED: ContactOutcome.EXPIRED,
        AttemptStatus.CAPPED: ContactOutcome.CAPPED,
    }[status]


class HaltCode(enum.StrEnum):
    """Codes the dispatcher sets itself. A provider's halt-class error code (for
    example ``spend_control_exceeded``) is stored as the provider sent it."""

    BUDGET_EXHAUSTED = "budget_exhausted"
    IN_DOUBT_REVIEW = "in_doubt_review"
    INSUFFICIENT_BALANCE = "insufficient_balance"
    """The account (all campaigns on it) cannot pay for the next batch's worst case."""
    MONTHLY_CAP_REACHED = "monthly_cap_reached"
    """Month-to-date usage plus what is committed would pass ``DISPATCHER_MONTHLY_CAP``."""
    PROVIDER_UNAVAILABLE = "provider_unavailable"
    """Not a halt: the code of an automatic cool-down pause."""
    PROVIDER_AUTH_FAILED = "provider_auth_failed"
    """The provider refused our credentials (401, or a 403 that is not about money
    or routing): a configuration error, never retried."""
    REQUEST_UNSENDABLE = "request_unsendable"
    """The HTTP client could not send the request at all (an illegal header such as
    an empty ``Bearer`` key, an unsupported URL scheme): a configuration error."""
    RATING_COST_ABOVE_RESERVATION = "rating_cost_above_reservation"
    PROVIDER_MISBEHAVING = "provider_misbehaving"
    """Create requests kept getting answers that carry no usable call ID (a redirect,
    a 2xx without an ID, an unparseable body): re-sending cannot help, and each
    one may have placed a call, so the campaign stops for an operator."""


class Move(enum.Enum):
    """Every allowed change of state: ``(from states, to, required halt code)``."""

    START = (frozenset({State.QUEUED}), State.RUNNING, None)
    PAUSE = (frozenset({State.QUEUED, State.RUNNING, State.PAUSED}), State.PAUSED, None)
    """From paused too: an operator pause overrides a provider cool-down."""
    RESUME = (frozenset({State.PAUSED, State.HALTED}), State.RUNNING, None)
    CANCEL = (ACTIVE_STATES, State.CANCELLED, None)
    HALT = (frozenset({State.RUNNING}), State.HALTED, None)
    HALT_ON_SETTLEMENT = (
        frozenset({State.QUEUED, State.RUNNING, State.PAUSED}),
        State.HALTED,
        None,
    )
    """A cost above its reservation is learnt after the fact, whatever the campaign does now."""
    COOL_DOWN = (frozenset({State.RUNNING}), State.PAUSED, None)
    END_COOL_DOWN = (frozenset({State.PAUSED}), State.RUNNING, HaltCode.PROVIDER_UNAVAILABLE)

    @property
    def from_states(self) -> frozenset[State]:
        states: frozenset[State] = self.value[0]
        return states

    @property
    def to(self) -> State:
        state: State = self.value[1]
        return state

    @property
    def requires_halt_code(self) -> HaltCode | None:
        """Only when the campaign currently carries this halt code."""
        code: HaltCode | None = self.value[2]
        return code

    @property
    def verb(self) -> str:
        return self.name.lower().replace("_", " ")


BUDGET_CHANGE_STATES: frozenset[State] = ACTIVE_STATES
"""A budget can be set while the campaign is not over. A campaign halted with
``budget_exhausted`` stays halted when its budget is raised: it is then resumable
(``Move.RESUME``, whose budget check now passes), and the operator resumes it."""


class OperatorAction(enum.StrEnum):
    """What the campaign history records (``campaigns history``), one name per action."""

    SUBMIT = "submit"
    PAUSE = "pause"
    RESUME = "resume"
    CANCEL = "cancel"
    BUDGET = "budget"
    CHANGE = "change"
    """Pacing, schedule, calling window or name (``campaigns change``)."""
    RESOLVE = "resolve"
    ADD_CONTACTS = "add_contacts"
    DNC_ADD = "dnc_add"
    DNC_REMOVE = "dnc_remove"
    DNC_IMPORT = "dnc_import"


REVIEW_MESSAGE = "attempts in doubt need an operator: campaigns report shows them, campaigns resolve settles them"
"""Why a campaign halted with ``in_doubt_review``."""

BUDGET_EXHAUSTED_MESSAGE = (
    "remaining budget {remaining} micros is below the worst case of one call ({worst_case} micros)"
)
"""Why a campaign halted with ``budget_exhausted``; the claim script fills in the numbers."""


PROVIDER_MISBEHAVING_MESSAGE = (
    "{count} create answers in a row carried no usable call ID (last: {status}: "
    "{excerpt}); check DISPATCHER_PROVIDER_URL (it must be the final address, not one "
    "that redirects) and the provider's health; the attempts involved are in doubt "
    "or were found, never re-dialled"
)
"""Why a campaign halted with ``provider_misbehaving``."""


def budget_allows(*, budget: int, spent: int, reserved: int, worst_case: int) -> bool:
    """The budget rule: one more call may be reserved only if its worst case fits.

    ``spent + reserved + worst case <= budget``. The claim script
    (``store/lua/claim.lua``) applies the same rule atomically; the store's
    state-machine test holds the two to the same answers.
    """
    return spent + reserved + worst_case <= budget


def budget_floor(*, spent: int, reserved: int) -> int:
    """The lowest budget a campaign may be given now: what it spent plus what it holds.

    A lower one would break ``spent + reserved <= budget`` at once; the budget
    script (``store/lua/change_terms.lua``) applies the same rule atomically.
    """
    return spent + reserved


def lua_constants() -> dict[str, str]:
    """Every lifecycle name, as the store's scripts refer to it (``state_running``, ...)."""
    names: dict[str, str] = {}
    for prefix, enum_type in (("state", State), ("attempt", AttemptStatus), ("halt", HaltCode)):
        for member in enum_type:
            names[f"{prefix}_{member.name.lower()}"] = member.value
    return names
