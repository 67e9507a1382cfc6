"""What an ambiguous create request became, for a provider without idempotency keys.

A create request that timed out, was reset, got a 5xx or an answer without a
usable call ID may have placed a call. Re-sending it is safe only where the
provider honours ``Idempotency-Key`` (:func:`keys_effective`); everywhere else
the attempt is resolved with the strongest mechanism the dialect declares
(``Capabilities``): a lookup of the provider's calls, the provider's creation
webhook (matched in ``engine/settlement.py``), or an operator (in doubt). The
decisions are here, free of I/O, so the send path, the leftover pass and the
settlement of events agree and the tests can hold each one.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

from campaigns.domain.errors import ProviderError
from campaigns.providers.base import CallInfo, Provider, call_id_ok
from campaigns.settings import Settings

__all__ = [
    "CREATION_SKEW_MS",
    "GARBAGE_BEFORE_HALT",
    "IN_BAND_CHECKS",
    "Verdict",
    "choose_lookup",
    "event_rerun_seconds",
    "in_send_window",
    "keys_effective",
    "unusable_answer",
]

GARBAGE_BEFORE_HALT = 5
"""Create answers in a row without a usable call ID (a redirect, a 2xx without an
ID, an unparseable body) before the campaign halts ``provider_misbehaving``: a
provider answering garbage keeps answering it, and every such answer may be a
call nobody can trace, so the dispatcher stops instead of cooling down forever."""

CREATION_SKEW_MS = 5_000
"""How far a creation event's ``created_at`` may lie outside an attempt's send
window (first send to last send plus the request timeout) and still be that
attempt's call: the provider's clock against ours, and MiniVoice's event times
in whole seconds. Two attempts to one number from one caller ID inside that
window are never guessed between (dead letter, then in doubt)."""

IN_BAND_CHECKS = (0.25, 0.5, 1.0)
"""Seconds after an ambiguous failure at which the send path looks for the call
ID a creation event recorded (the webhook usually comes before the slow answer
times out). Short, so a request slot is never held for long: what is still
unknown is left to the next run's leftover pass."""


def event_rerun_seconds(settings: Settings) -> float:
    """How long a call event may sit unapplied because the worker applying it died:
    arq runs it again once its in-progress key expires, after the longest job
    timeout (the dispatch job's, or the crons' 30 s) plus 10 s; 5 s more for the
    run itself. While such an event is queued, "no creation event came" is not
    yet proven, so the leftover pass waits up to this much beyond the usual wait."""
    return max(settings.job_timeout_seconds, 30) + 10 + 5


def keys_effective(provider: Provider, settings: Settings) -> bool:
    """Whether an ambiguous create may be re-sent under the same key: the dialect
    says its provider honours keys, and the setting does not lower that."""
    return provider.capabilities.idempotency_keys and settings.provider_honours_idempotency


def unusable_answer(exc: ProviderError) -> bool:
    """An answer that came back but carries no usable call ID: a redirect, a 2xx
    we could not use, an unparseable body. Each may be a placed call."""
    if exc.code == "invalid_response":
        return True
    return exc.status is not None and 200 <= exc.status < 400


@dataclass(frozen=True, slots=True)
class Verdict:
    """What a lookup proved about one attempt."""

    outcome: Literal["found", "not_placed", "wait", "several"]
    call: CallInfo | None = None
    call_ids: tuple[str, ...] = ()


def choose_lookup(
    attempt_id: str,
    calls: Sequence[CallInfo],
    owners: Mapping[str, str | None],
    *,
    seconds_since_last_send: float,
    settle_seconds: float,
) -> Verdict:
    """Decide from a lookup's calls (``owners``: call ID -> the attempt it is recorded for).

    A call recorded for another attempt, or echoing another attempt's ID, is not
    ours. One left is the call; none once the provider's settle time has passed
    since the last send proves nothing was placed; none earlier proves nothing
    yet; several are for an operator.
    """
    mine: dict[str, CallInfo] = {}
    for call in calls:
        if not call_id_ok(call.call_id):
            continue
        if owners.get(call.call_id) not in (None, attempt_id):
            continue
        if call.attempt_id is not None and call.attempt_id != attempt_id:
            continue
        mine.setdefault(call.call_id, call)
    if len(mine) == 1:
        return Verdict("found", next(iter(mine.values())), tuple(mine))
    if len(mine) > 1:
        return Verdict("several", None, tuple(sorted(mine)))
    if seconds_since_last_send >= settle_seconds:
        return Verdict("not_placed")
    return Verdict("wait")


def in_send_window(
    created_at_ms: int, first_sent_ms: int, last_sent_ms: int, timeout_seconds: float
) -> bool:
    """Whether a call created at ``created_at_ms`` (the provider's clock) can be the
    call of an attempt sent between ``first_sent_ms`` and ``last_sent_ms`` (ours):
    created after the first request left and before the last one timed out,
    give or take :data:`CREATION_SKEW_MS`."""
    low = first_sent_ms - CREATION_SKEW_MS
    high = last_sent_ms + int(timeout_seconds * 1000) + CREATION_SKEW_MS
    return low <= created_at_ms <= high
