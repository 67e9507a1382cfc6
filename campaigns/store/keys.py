"""The Redis key layout and the attempt-ID format: the only place either is spelt.

``P`` is the prefix (``dsp`` by default), ``C`` a campaign ID, ``A`` an attempt ID::

    P:campaigns              zset  C -> created_at ms            (for `list`)
    P:running                set   campaigns in state running     (for the sweeper)
    P:cooldown               zset  C -> resume-at ms  (paused with provider_unavailable)
    P:unsettled              zset  A -> next poll due ms
    P:calls                  hash  provider call ID -> A
    P:sent_to:N              zset  attempts sent to number N whose call ID is not known
                                   (sending or in doubt) -> last send ms; kept by the
                                   stamp/record/reject/in-doubt scripts, so a creation
                                   event without our attempt ID finds its attempt (PX 1 day)
    P:retention_pass         str   set (EX) while a retention pass is not due again: one
                                   pass an interval over every worker
    P:dispatch_due           zset  C -> when a dispatch run of C should next show a sign
                                   of life (ms): each heartbeat, or the time its next run
                                   was queued for; the sweeper reads only the overdue ones
    P:full_sweep             str   set (EX) while the sweeper's full pass over every running
                                   campaign is not due again (the backstop of P:dispatch_due)
    P:workers:Q              zset  live workers of arq queue Q -> alive until ms (each
                                   worker beats every 3 s; status reads it, never SCAN)
    P:deadletter             list  events and jobs that could not be applied (JSON)
    P:callbacks:outbox       stream callback events, appended by the script that makes
                                   the change (capped ~100,000); consumer group
                                   ``deliverers`` keeps those not yet delivered
    P:callbacks:failed       zset  event IDs whose delivery gave up -> when (ms)
    P:callbacks:lock         str   token of the worker running a delivery pass (PX)
    P:idem:H                 str   the API's first answer to an Idempotency-Key whose
                                   SHA-256 is H (JSON: request digest, status, body,
                                   headers); PX 2 min while it runs, then EX 24 h
    P:dnc:staging:T          set   one `dnc import` (token T) until its rows pass, then
                                   merged into P:dnc by dnc_merge.lua; PX 1 h
    P:account:balance        str   the account balance (JSON, short PX TTL), newest wins
    P:account:balance_at     str   the newest balance time seen, ms (outlives the TTL)
    P:account:usage          str   month-to-date usage of the usage source (JSON, PX TTL)
    P:account:usage_at       str   the newest usage time seen, ms
    P:account:low_balance    str   set while the balance is below the low-balance mark
    P:account:live           str   live calls of every campaign (the live-calls ceiling)
    P:account:pace           hash  tat: the account ceiling's next free slot, us (Redis clock)
    P:account:pace_log       list  the newest request start times, us (the ceiling's window)
    P:account:pace_hold      str   no request starts before this, us (a 429's Retry-After)
    P:dnc                    set   the account's do-not-call list: canonical E.164 numbers
    P:freq:N                 zset  attempt IDs that claimed number N -> claim ms, every
                                   campaign (the frequency cap; PX expiry = its window)
    P:c:C:meta               hash  state, spec, money, counters, halt, dispatch_seq
    P:c:C:staging:T:contacts hash  a submit's contacts as they are read (token T, 1 h TTL),
    P:c:C:staging:T:pending  list    renamed to contacts / pending once all are valid
    P:c:C:contacts           hash  contact index -> contact JSON
    P:c:C:pending            list  contact indexes not yet finished, head first (zone group 0)
    P:c:C:pending:G          list  the same for zone group G > 0 (meta ``zone_groups``)
    P:c:C:retry              zset  ``G|index`` -> when the contact's retry is due (ms)
    P:c:C:parked             zset  ``G|index`` -> when a number at the frequency cap frees up
    P:c:C:suppress           set   the campaign's own ``suppress`` numbers (E.164)
    P:c:C:unsent             list  ``status|index|try`` of contacts the schedule's end left
                                   undialled (expired, capped): report rows without a hash
    P:c:C:tries              hash  contact index -> attempts made
    P:c:C:attempts           list  attempt IDs in the order they were claimed
    P:c:C:unresolved         zset  A -> claimed_at ms (sent, answer not recorded)
    P:c:C:lease              str   token of the worker dispatching C (PX lease)
    P:c:C:pace               hash  tat: next free slot; held: the slot C reserved, us
    P:c:C:pace_log           list  C's newest request start times, us (its pace window)
    P:c:C:alerts             set   alert thresholds already fired
    P:c:C:reconciliation     str   the last reconciliation (JSON), kept for operators
    P:c:C:callbacks:failed   hash  event ID -> the event and its last error (JSON),
                                   until replayed
    P:c:C:callbacks:log      list  the newest delivery results of C's events (JSON, 100)
    P:c:C:history            list  operator actions on C, oldest first (JSON: at, actor,
                                   action, before, after), capped at the newest 1000
    P:history                list  account-wide operator actions (do-not-call changes),
                                   the same shape and cap
    P:a:A                    hash  one attempt: contact, reservation, status, call,
                                   exact request body, error, settlement

An attempt ID is ``C:NNNNNN:K``: campaign, contact index (six digits or more),
try number. It is also the create request's ``Idempotency-Key`` (where the
provider honours one) and is echoed in its metadata/variables where it has them. Money fields
are integer micros. The claim script builds attempt keys from
:attr:`Keys.attempt_prefix`, so the layout assumes one Redis (not Redis Cluster).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

__all__ = ["ATTEMPT_ID_LUA_FORMAT", "Keys", "attempt_id", "campaign_of"]

ATTEMPT_ID_LUA_FORMAT = "%s:%06d:%d"
"""The attempt-ID format as the claim script applies it (``string.format``)."""


def attempt_id(campaign_id: str, contact_index: int, try_no: int) -> str:
    """The attempt ID of a contact's ``try_no``-th attempt (same as the claim script)."""
    return f"{campaign_id}:{contact_index:06d}:{try_no}"


def campaign_of(attempt: str) -> str:
    """The campaign an attempt ID belongs to (campaign IDs contain no ``:``)."""
    return attempt.split(":", 1)[0]


@dataclass(frozen=True, slots=True)
class Keys:
    """Key names under one prefix."""

    prefix: str = "dsp"

    def campaign(self, campaign_id: str, what: str) -> str:
        return f"{self.prefix}:c:{campaign_id}:{what}"

    def meta(self, campaign_id: str) -> str:
        return self.campaign(campaign_id, "meta")

    def staging(self, campaign_id: str, token: str, what: str) -> str:
        """Where a submit writes contacts before one script renames them into place."""
        return self.campaign(campaign_id, f"staging:{token}:{what}")

    def attempt(self, attempt: str) -> str:
        return f"{self.attempt_prefix}{attempt}"

    @property
    def attempt_prefix(self) -> str:
        return f"{self.prefix}:a:"

    @property
    def campaigns(self) -> str:
        return f"{self.prefix}:campaigns"

    @property
    def running(self) -> str:
        return f"{self.prefix}:running"

    @property
    def cooldown(self) -> str:
        return f"{self.prefix}:cooldown"

    @property
    def unsettled(self) -> str:
        return f"{self.prefix}:unsettled"

    @property
    def calls(self) -> str:
        return f"{self.prefix}:calls"

    @property
    def dnc(self) -> str:
        return f"{self.prefix}:dnc"

    @property
    def frequency_prefix(self) -> str:
        """``P:freq:``: the claim script appends the number (the cap counts every campaign)."""
        return f"{self.prefix}:freq:"

    def sent_to(self, number: str) -> str:
        """Attempts sent to ``number`` whose call ID is not known yet (creation events)."""
        return f"{self.prefix}:sent_to:{number}"

    def frequency(self, number: str) -> str:
        return f"{self.frequency_prefix}{number}"

    def pending(self, campaign_id: str, group: int = 0) -> str:
        """Zone group ``group``'s list of contacts to call (group 0: ``pending`` itself)."""
        base = self.campaign(campaign_id, "pending")
        return base if group == 0 else f"{base}:{group}"

    @property
    def callbacks_outbox(self) -> str:
        """The account's callback events, written by the Lua scripts (a Redis stream)."""
        return f"{self.prefix}:callbacks:outbox"

    @property
    def callbacks_failed(self) -> str:
        return f"{self.prefix}:callbacks:failed"

    @property
    def callbacks_lock(self) -> str:
        return f"{self.prefix}:callbacks:lock"

    @property
    def retention_pass(self) -> str:
        return f"{self.prefix}:retention_pass"

    @property
    def dispatch_due(self) -> str:
        return f"{self.prefix}:dispatch_due"

    @property
    def full_sweep(self) -> str:
        return f"{self.prefix}:full_sweep"

    def workers(self, queue_name: str) -> str:
        """Workers of one arq queue that said they are alive, and until when."""
        return f"{self.prefix}:workers:{queue_name}"

    def idempotency(self, key: str) -> str:
        """The API's record of an Idempotency-Key (hashed: a key may be any 255 characters)."""
        return f"{self.prefix}:idem:{hashlib.sha256(key.encode()).hexdigest()}"

    @property
    def deadletter(self) -> str:
        return f"{self.prefix}:deadletter"

    def dnc_staging(self, token: str) -> str:
        """Where a ``dnc import`` collects its numbers until ``dnc_merge.lua`` merges them."""
        return f"{self.prefix}:dnc:staging:{token}"

    def history(self, campaign_id: str | None = None) -> str:
        """Operator actions on one campaign, or (``None``) on the account (the DNC list)."""
        if campaign_id is None:
            return f"{self.prefix}:history"
        return self.campaign(campaign_id, "history")

    @property
    def campaign_prefix(self) -> str:
        """``P:c:``: scripts that visit every campaign build ``P:c:C:meta`` from it."""
        return f"{self.prefix}:c:"

    def account(self, what: str) -> str:
        """Account-wide keys: ``balance``, ``usage`` (and their ``_at``), ``low_balance``,
        ``live``, ``pace``, ``pace_log``, ``pace_hold``."""
        return f"{self.prefix}:account:{what}"
