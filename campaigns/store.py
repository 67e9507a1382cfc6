"""The campaign store: the Redis key layout and every script that changes it.

This is the only module that knows how campaigns, contacts and attempts are
laid out in Redis. Each state change that must not race (claim + reserve,
record, settle, operator transitions) is one Lua script, so any number of
workers and operators see one consistent order of events.

Key layout (``P`` is the prefix, ``dsp`` by default; ``C`` a campaign ID)::

    P:campaigns              zset  C -> created_at ms            (for `list`)
    P:running                set   campaigns in state running     (for the sweeper)
    P:cooldown               zset  C -> resume-at ms  (paused with provider_unavailable)
    P:unsettled              zset  attempt ID -> next poll due ms
    P:calls                  hash  provider call ID -> attempt ID
    P:deadletter             list  events that could not be applied (JSON)
    P:c:C:meta               hash  state, spec, money, counters, halt, dispatch_seq
    P:c:C:contacts           hash  contact index -> contact JSON
    P:c:C:pending            list  contact indexes not yet finished, head first
    P:c:C:tries              hash  contact index -> attempts made
    P:c:C:attempts           list  attempt IDs in the order they were claimed
    P:c:C:unresolved         zset  attempt ID -> claimed_at ms (sent, answer not recorded)
    P:c:C:lease              str   token of the worker dispatching C (PX lease)
    P:c:C:alerts             set   alert thresholds already fired
    P:c:C:reconciliation     str   the last reconciliation (JSON), kept for operators
    P:a:ATTEMPT              hash  one attempt: contact, reservation, status, call,
                                   exact request body, error, settlement

An attempt ID is ``C:NNNNNN:K``: campaign, contact index, try number. Money
fields are integer micros. Attempt keys are built inside scripts from the
prefix, so the layout assumes one Redis (not Redis Cluster).
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, TypeVar, cast

from redis.asyncio import Redis

from campaigns.spec import CampaignSpec

__all__ = [
    "ACTIVE_STATES",
    "FINAL_STATES",
    "Attempt",
    "CampaignRecord",
    "Claim",
    "Store",
    "StoreError",
    "SubmitConflict",
    "now_ms",
]

State = Literal["queued", "running", "paused", "halted", "completed", "cancelled"]
FINAL_STATES: frozenset[str] = frozenset({"completed", "cancelled"})
ACTIVE_STATES: frozenset[str] = frozenset({"queued", "running", "paused", "halted"})

_CONTACT_CHUNK = 1000
T = TypeVar("T")


def _aw(result: Awaitable[T] | T) -> Awaitable[T]:
    """redis-py types async commands as ``Awaitable[T] | T``; this narrows them."""
    return cast(Awaitable[T], result)


def now_ms() -> int:
    return int(time.time() * 1000)


class StoreError(RuntimeError):
    """The store refused an operation (missing campaign, impossible transition)."""


class SubmitConflict(StoreError):
    """A campaign with this ID exists with a different spec."""


@dataclass(frozen=True, slots=True)
class CampaignRecord:
    """One campaign as an operator sees it, read in one round trip."""

    campaign_id: str
    state: str
    spec: dict[str, Any]
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
    status: str
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


@dataclass(frozen=True, slots=True)
class Claim:
    """What one claim returned: an attempt to send, or why there is none."""

    outcome: Literal[
        "claimed",
        "not_running",
        "lease_lost",
        "in_flight_full",
        "budget_wait",
        "budget_exhausted",
        "empty",
        "completed",
        "needs_review",
    ]
    attempt: Attempt | None = None
    state: str | None = None


# --------------------------------------------------------------------------- scripts
# Every script gets the key prefix as ARGV[1] where it must build keys itself.

_LUA_HELPERS = """
local function num(v) if v == false or v == nil then return 0 end return tonumber(v) end
local function set_state(meta, running, cooldown, cid, state, now)
  redis.call('HSET', meta, 'state', state, 'updated_at', now)
  if state == 'running' then redis.call('SADD', running, cid) else redis.call('SREM', running, cid) end
  redis.call('ZREM', cooldown, cid)
  if state == 'completed' or state == 'cancelled' then redis.call('HSET', meta, 'finished_at', now) end
end
local function halt_for_review(meta, running, cooldown, cid, now)
  redis.call('HSET', meta, 'halt_code', 'in_doubt_review', 'halt_message',
    'attempts in doubt need an operator: campaigns report shows them, campaigns resolve settles them')
  set_state(meta, running, cooldown, cid, 'halted', now)
end
"""

# KEYS: meta, contacts, pending, campaigns, staging_contacts, staging_pending
# ARGV: fingerprint, now, campaign_id, then meta field/value pairs
_SUBMIT = """
local existing = redis.call('HGET', KEYS[1], 'fingerprint')
if existing then
  redis.call('DEL', KEYS[5], KEYS[6])
  if existing == ARGV[1] then return 'exists' end
  return 'conflict'
end
if redis.call('EXISTS', KEYS[5]) == 1 then redis.call('RENAME', KEYS[5], KEYS[2]) end
if redis.call('EXISTS', KEYS[6]) == 1 then redis.call('RENAME', KEYS[6], KEYS[3]) end
redis.call('HSET', KEYS[1], 'fingerprint', ARGV[1], 'created_at', ARGV[2], 'updated_at', ARGV[2])
for i = 4, #ARGV, 2 do redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1]) end
redis.call('ZADD', KEYS[4], ARGV[2], ARGV[3])
return 'created'
"""

# KEYS: meta, pending, tries, unresolved, lease, attempts, running, cooldown, contacts
# ARGV: prefix, campaign_id, lease_token, now
_CLAIM = (
    _LUA_HELPERS
    + """
local meta = KEYS[1]
local state = redis.call('HGET', meta, 'state')
if state ~= 'running' then return {'not_running', state or ''} end
if redis.call('GET', KEYS[5]) ~= ARGV[3] then return {'lease_lost', state} end
local budget = num(redis.call('HGET', meta, 'budget'))
local reserved = num(redis.call('HGET', meta, 'reserved'))
local spent = num(redis.call('HGET', meta, 'spent'))
local worst = num(redis.call('HGET', meta, 'worst_case'))
if redis.call('LLEN', KEYS[2]) == 0 then
  if redis.call('ZCARD', KEYS[4]) > 0 then return {'empty', state} end
  if num(redis.call('HGET', meta, 'in_doubt')) > 0 then
    halt_for_review(meta, KEYS[7], KEYS[8], ARGV[2], ARGV[4])
    return {'needs_review', 'halted'}
  end
  set_state(meta, KEYS[7], KEYS[8], ARGV[2], 'completed', ARGV[4])
  return {'completed', 'completed'}
end
-- Attempts in doubt hold a live slot and their reservation until an operator
-- resolves them; when nothing else will free up, waiting would be forever.
local in_doubt = num(redis.call('HGET', meta, 'in_doubt'))
local live = num(redis.call('HGET', meta, 'live'))
if live >= num(redis.call('HGET', meta, 'max_in_flight')) then
  if live - in_doubt <= 0 and in_doubt > 0 then
    halt_for_review(meta, KEYS[7], KEYS[8], ARGV[2], ARGV[4])
    return {'needs_review', 'halted'}
  end
  return {'in_flight_full', state}
end
if spent + reserved + worst > budget then
  if reserved - num(redis.call('HGET', meta, 'in_doubt_reserved')) > 0 then
    return {'budget_wait', state}
  end
  if in_doubt > 0 then
    halt_for_review(meta, KEYS[7], KEYS[8], ARGV[2], ARGV[4])
    return {'needs_review', 'halted'}
  end
  redis.call('HSET', meta, 'halt_code', 'budget_exhausted', 'halt_message',
    'remaining budget ' .. (budget - spent) .. ' micros is below the worst case of one call (' .. worst .. ' micros)')
  set_state(meta, KEYS[7], KEYS[8], ARGV[2], 'halted', ARGV[4])
  return {'budget_exhausted', 'halted'}
end
local index = redis.call('LPOP', KEYS[2])
local try = redis.call('HINCRBY', KEYS[3], index, 1)
local attempt_id = ARGV[2] .. ':' .. string.format('%06d', tonumber(index)) .. ':' .. try
local contact = redis.call('HGET', KEYS[9], index)
redis.call('HSET', ARGV[1] .. ':a:' .. attempt_id,
  'attempt_id', attempt_id, 'campaign_id', ARGV[2], 'contact', index, 'contact_json', contact,
  'status', 'sending', 'reserved', worst, 'created_at', ARGV[4])
redis.call('RPUSH', KEYS[6], attempt_id)
redis.call('ZADD', KEYS[4], ARGV[4], attempt_id)
redis.call('HINCRBY', meta, 'reserved', worst)
redis.call('HINCRBY', meta, 'live', 1)
return {'claimed', state, attempt_id, contact, index, worst}
"""
)

# KEYS: meta, attempt, unresolved, unsettled, calls, pending
# ARGV: call_id, now, poll_due, attempt_id
_RECORD_ACCEPTED = """
local status = redis.call('HGET', KEYS[2], 'status')
if not status then return 'unknown' end
if status == 'accepted' then
  if redis.call('HGET', KEYS[2], 'call_id') == ARGV[1] then return 'duplicate' end
  return 'conflict'
end
local owner = redis.call('HGET', KEYS[5], ARGV[1])
if owner and owner ~= ARGV[4] then return 'call_id_taken' end
local result = 'ok'
local reserved = tonumber(redis.call('HGET', KEYS[2], 'reserved') or '0')
if status == 'rejected' then
  -- The provider placed the call after all (its answer to an earlier send
  -- arrived after a rejection). The call is real: record it, reserve for it
  -- again, and take the contact back out of pending if it was put there.
  redis.call('HINCRBY', KEYS[1], 'rejected', -1)
  redis.call('HINCRBY', KEYS[1], 'reserved', reserved)
  redis.call('HINCRBY', KEYS[1], 'live', 1)
  result = 'late'
  if redis.call('HGET', KEYS[2], 'reject_kind') ~= 'contact' then
    if redis.call('LREM', KEYS[6], 1, redis.call('HGET', KEYS[2], 'contact')) == 0 then
      result = 'late_redialled'
    end
  end
  redis.call('HSET', KEYS[2], 'late_accept', '1')
elseif status ~= 'sending' and status ~= 'in_doubt' then
  return 'conflict'
end
redis.call('HSET', KEYS[2], 'status', 'accepted', 'call_id', ARGV[1], 'recorded_at', ARGV[2])
redis.call('ZREM', KEYS[3], ARGV[4])
redis.call('ZADD', KEYS[4], ARGV[3], ARGV[4])
redis.call('HSET', KEYS[5], ARGV[1], ARGV[4])
redis.call('HINCRBY', KEYS[1], 'accepted', 1)
if status == 'in_doubt' then
  redis.call('HINCRBY', KEYS[1], 'in_doubt', -1)
  redis.call('HINCRBY', KEYS[1], 'in_doubt_reserved', -reserved)
end
return result
"""

# KEYS: meta, attempt, unresolved, pending, running, cooldown
# ARGV: kind (contact|halt|not_placed), code, message, now, attempt_id, campaign_id
_RECORD_REJECTED = (
    _LUA_HELPERS
    + """
local status = redis.call('HGET', KEYS[2], 'status')
if not status then return 'unknown' end
if status == 'rejected' then return 'duplicate' end
if status ~= 'sending' and status ~= 'in_doubt' then return 'conflict' end
redis.call('HSET', KEYS[2], 'status', 'rejected', 'error_code', ARGV[2], 'error_message', ARGV[3],
  'recorded_at', ARGV[4], 'reject_kind', ARGV[1])
redis.call('ZREM', KEYS[3], ARGV[5])
local reserved = num(redis.call('HGET', KEYS[2], 'reserved'))
redis.call('HINCRBY', KEYS[1], 'reserved', -reserved)
redis.call('HINCRBY', KEYS[1], 'live', -1)
if status == 'in_doubt' then
  redis.call('HINCRBY', KEYS[1], 'in_doubt', -1)
  redis.call('HINCRBY', KEYS[1], 'in_doubt_reserved', -reserved)
end
redis.call('HINCRBY', KEYS[1], 'rejected', 1)
if ARGV[1] ~= 'contact' then
  redis.call('LPUSH', KEYS[4], redis.call('HGET', KEYS[2], 'contact'))
end
local current = redis.call('HGET', KEYS[1], 'state')
if ARGV[1] == 'halt' and (current == 'running' or current == 'paused') then
  -- Also when paused meanwhile: the provider's refusal must survive a resume.
  redis.call('HSET', KEYS[1], 'halt_code', ARGV[2], 'halt_message', ARGV[3])
  set_state(KEYS[1], KEYS[5], KEYS[6], ARGV[6], 'halted', ARGV[4])
end
return 'ok'
"""
)

# KEYS: meta, attempt, unresolved, running, cooldown
# ARGV: now, attempt_id, reason, error code ('' none), halt ('1' to halt), campaign_id
_MARK_IN_DOUBT = (
    _LUA_HELPERS
    + """
local status = redis.call('HGET', KEYS[2], 'status')
if status ~= 'sending' then return status or 'unknown' end
redis.call('HSET', KEYS[2], 'status', 'in_doubt', 'recorded_at', ARGV[1], 'error_message', ARGV[3])
if ARGV[4] ~= '' then redis.call('HSET', KEYS[2], 'error_code', ARGV[4]) end
redis.call('ZREM', KEYS[3], ARGV[2])
redis.call('HINCRBY', KEYS[1], 'in_doubt', 1)
redis.call('HINCRBY', KEYS[1], 'in_doubt_reserved', num(redis.call('HGET', KEYS[2], 'reserved')))
local state = redis.call('HGET', KEYS[1], 'state')
if ARGV[5] == '1' and (state == 'running' or state == 'paused') then
  redis.call('HSET', KEYS[1], 'halt_code', ARGV[4], 'halt_message', ARGV[3])
  set_state(KEYS[1], KEYS[4], KEYS[5], ARGV[6], 'halted', ARGV[1])
end
return 'ok'
"""
)

# KEYS: meta, lease, attempt   ARGV: lease token, body, now
# The last check before a create request leaves: still running, still ours,
# still unresolved. The body is kept the first time; a re-send reuses it.
_STAMP_SEND = """
if redis.call('HGET', KEYS[1], 'state') ~= 'running' then return 'not_running' end
if redis.call('GET', KEYS[2]) ~= ARGV[1] then return 'lease_lost' end
local status = redis.call('HGET', KEYS[3], 'status')
if status ~= 'sending' then return status or 'unknown' end
if not redis.call('HGET', KEYS[3], 'request') then redis.call('HSET', KEYS[3], 'request', ARGV[2]) end
redis.call('HSET', KEYS[3], 'sent_at', ARGV[3])
redis.call('HINCRBY', KEYS[3], 'sends', 1)
return 'ok'
"""

# KEYS: meta, attempt, unsettled
# ARGV: final_status, billsec, cost, estimated, currency, now, attempt_id, mismatch
# Redis does not roll back a script that errors half-way, so every argument and
# every field a write depends on is checked first; a bad one returns
# 'invalid:<name>' with nothing written. Numbers are digit strings of at most
# 16 digits and at most 2^53-1, the most a Lua double holds exactly.
_SETTLE = """
local MAX = 9007199254740991
local function count(v)
  if type(v) ~= 'string' or #v > 16 or not string.match(v, '^[0-9]+$') then return nil end
  local n = tonumber(v)
  if n == nil or n > MAX then return nil end
  return n
end
local function counter(v)
  if v == false or v == nil then return 0 end
  if #v > 17 or not string.match(v, '^%-?[0-9]+$') then return nil end
  local n = tonumber(v)
  if n == nil or n > MAX or n < -MAX then return nil end
  return n
end
local finals = {completed=true, failed=true, busy=true, no_answer=true, canceled=true}
if not finals[ARGV[1]] then return 'invalid:final_status' end
if not count(ARGV[2]) then return 'invalid:billsec' end
local cost = count(ARGV[3])
if not cost then return 'invalid:cost' end
if ARGV[4] ~= '0' and ARGV[4] ~= '1' then return 'invalid:estimated' end
if not string.match(ARGV[5], '^[A-Z][A-Z][A-Z]$') then return 'invalid:currency' end
if not count(ARGV[6]) then return 'invalid:now' end
if #ARGV[8] > 256 then return 'invalid:currency_mismatch' end
local unsettled_type = redis.call('TYPE', KEYS[3])['ok']
if unsettled_type ~= 'zset' and unsettled_type ~= 'none' then return 'invalid:unsettled' end
local status = redis.call('HGET', KEYS[2], 'status')
if status ~= 'accepted' then return status or 'unknown' end
if redis.call('HGET', KEYS[2], 'settled') == '1' then return 'duplicate' end
local reserved = count(redis.call('HGET', KEYS[2], 'reserved') or '0')
if not reserved then return 'invalid:reserved' end
local m = redis.call('HMGET', KEYS[1], 'reserved', 'spent', 'live', 'settled', 'settled_estimated')
for i = 1, 5 do if not counter(m[i]) then return 'invalid:campaign_counters' end end
if counter(m[2]) + cost > MAX then return 'invalid:spent_overflow' end
redis.call('HSET', KEYS[2], 'settled', '1', 'final_status', ARGV[1], 'billsec', ARGV[2],
  'cost', ARGV[3], 'cost_estimated', ARGV[4], 'cost_currency', ARGV[5], 'settled_at', ARGV[6])
if ARGV[8] ~= '' then redis.call('HSET', KEYS[2], 'currency_mismatch', ARGV[8]) end
if cost > reserved then redis.call('HSET', KEYS[2], 'over_reservation', '1') end
redis.call('HINCRBY', KEYS[1], 'reserved', -reserved)
redis.call('HINCRBY', KEYS[1], 'spent', ARGV[3])
redis.call('HINCRBY', KEYS[1], 'live', -1)
redis.call('HINCRBY', KEYS[1], 'settled', 1)
if ARGV[4] == '1' then redis.call('HINCRBY', KEYS[1], 'settled_estimated', 1) end
redis.call('ZREM', KEYS[3], ARGV[7])
if cost > reserved then return 'over_reservation' end
return 'ok'
"""

_SETTLE_FINAL = frozenset(  # the script's `finals`, providers' FINAL_STATUSES
    {"completed", "failed", "busy", "no_answer", "canceled"}
)
_MAX_EXACT = 2**53 - 1


def _settle_refusal(
    final_status: str, billsec: int, cost_micros: int, currency: str, mismatch: str
) -> str:
    """The first settle argument out of range, as ``invalid:<field>``; '' if all are fine."""

    def count(value: object) -> bool:
        return type(value) is int and 0 <= value <= _MAX_EXACT

    if final_status not in _SETTLE_FINAL:
        return "invalid:final_status"
    if not count(billsec):
        return "invalid:billsec"
    if not count(cost_micros):
        return "invalid:cost"
    if not isinstance(currency, str) or not (
        len(currency) == 3 and currency.isascii() and currency.isupper() and currency.isalpha()
    ):
        return "invalid:currency"
    if not isinstance(mismatch, str) or len(mismatch) > 256 or not mismatch.isascii():
        return "invalid:currency_mismatch"
    return ""


# KEYS: meta, running, cooldown
# ARGV: campaign_id, allowed from-states (comma separated), to-state, now,
#       halt code ('' clears), halt message, cooldown-until ms ('' for none),
#       required current halt code ('' for any)
_TRANSITION = (
    _LUA_HELPERS
    + """
local state = redis.call('HGET', KEYS[1], 'state')
if not state then return {'missing', ''} end
local allowed = false
for s in string.gmatch(ARGV[2], '[^,]+') do if s == state then allowed = true end end
if not allowed then return {'refused', state} end
if ARGV[8] ~= '' and redis.call('HGET', KEYS[1], 'halt_code') ~= ARGV[8] then
  return {'refused', state}
end
set_state(KEYS[1], KEYS[2], KEYS[3], ARGV[1], ARGV[3], ARGV[4])
if ARGV[5] == '' then
  redis.call('HDEL', KEYS[1], 'halt_code', 'halt_message')
else
  redis.call('HSET', KEYS[1], 'halt_code', ARGV[5], 'halt_message', ARGV[6])
end
if ARGV[7] ~= '' then redis.call('ZADD', KEYS[3], ARGV[7], ARGV[1]) end
if ARGV[3] == 'running' and not redis.call('HGET', KEYS[1], 'started_at') then
  redis.call('HSET', KEYS[1], 'started_at', ARGV[4])
end
return {'ok', state}
"""
)

# KEYS: lease   ARGV: token, ttl_ms
_LEASE_ACQUIRE = """
local holder = redis.call('GET', KEYS[1])
if holder == false then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2]) return 1
end
if holder == ARGV[1] then redis.call('PEXPIRE', KEYS[1], ARGV[2]) return 1 end
return 0
"""

# KEYS: lease   ARGV: token, ttl_ms
_LEASE_RENEW = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 0
"""

# KEYS: lease   ARGV: token
_LEASE_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""

# KEYS: meta   ARGV: expected seq
_ADVANCE_SEQ = """
if redis.call('HGET', KEYS[1], 'state') ~= 'running' then return -1 end
if tonumber(redis.call('HGET', KEYS[1], 'dispatch_seq') or '0') ~= tonumber(ARGV[1]) then return -2 end
return redis.call('HINCRBY', KEYS[1], 'dispatch_seq', 1)
"""

# KEYS: unsettled   ARGV: now, hold_ms, limit
_TAKE_DUE = """
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, ARGV[3])
for _, member in ipairs(due) do redis.call('ZADD', KEYS[1], ARGV[1] + ARGV[2], member) end
return due
"""


def _s(value: bytes | str | None) -> str | None:
    if value is None:
        return None
    return value.decode() if isinstance(value, bytes) else value


def _i(value: bytes | str | None, default: int = 0) -> int:
    text = _s(value)
    return default if text is None or text == "" else int(text)


def _decode(raw: Mapping[Any, Any]) -> dict[str, str]:
    return {cast(str, _s(k)): cast(str, _s(v)) for k, v in raw.items()}


class Store:
    """All reads and atomic writes of campaign state in Redis."""

    def __init__(self, redis: Redis, prefix: str = "dsp") -> None:
        self.redis = redis
        self.prefix = prefix
        self._submit = redis.register_script(_SUBMIT)
        self._claim = redis.register_script(_CLAIM)
        self._accepted = redis.register_script(_RECORD_ACCEPTED)
        self._rejected = redis.register_script(_RECORD_REJECTED)
        self._in_doubt = redis.register_script(_MARK_IN_DOUBT)
        self._settle = redis.register_script(_SETTLE)
        self._transition = redis.register_script(_TRANSITION)
        self._lease_acquire = redis.register_script(_LEASE_ACQUIRE)
        self._lease_release = redis.register_script(_LEASE_RELEASE)
        self._lease_renew = redis.register_script(_LEASE_RENEW)
        self._stamp = redis.register_script(_STAMP_SEND)
        self._advance = redis.register_script(_ADVANCE_SEQ)
        self._take_due = redis.register_script(_TAKE_DUE)

    # ------------------------------------------------------------------ key names
    def _c(self, campaign_id: str, what: str) -> str:
        return f"{self.prefix}:c:{campaign_id}:{what}"

    def _a(self, attempt_id: str) -> str:
        return f"{self.prefix}:a:{attempt_id}"

    @property
    def _campaigns(self) -> str:
        return f"{self.prefix}:campaigns"

    @property
    def _running(self) -> str:
        return f"{self.prefix}:running"

    @property
    def _cooldown(self) -> str:
        return f"{self.prefix}:cooldown"

    @property
    def _unsettled(self) -> str:
        return f"{self.prefix}:unsettled"

    @property
    def _calls(self) -> str:
        return f"{self.prefix}:calls"

    @property
    def _deadletter(self) -> str:
        return f"{self.prefix}:deadletter"

    @staticmethod
    def campaign_of(attempt_id: str) -> str:
        return attempt_id.split(":", 1)[0]

    # ------------------------------------------------------------------ submit
    async def submit(self, spec: CampaignSpec) -> Literal["created", "exists"]:
        """Write a validated spec and its contacts; same spec again is a no-op.

        Contacts go to staging keys first and are renamed into place by one
        script, so a crash mid-write leaves no half-submitted campaign.
        """
        cid = spec.campaign_id
        fingerprint = spec.fingerprint()
        existing = _s(await _aw(self.redis.hget(self._c(cid, "meta"), "fingerprint")))
        if existing is not None:
            if existing == fingerprint:
                return "exists"
            raise SubmitConflict(f"campaign {cid!r} exists with a different spec")
        token = uuid.uuid4().hex
        staging_contacts = self._c(cid, f"staging:{token}:contacts")
        staging_pending = self._c(cid, f"staging:{token}:pending")
        rate = spec.rate_model()
        try:
            for start in range(0, len(spec.contacts), _CONTACT_CHUNK):
                chunk = spec.contacts[start : start + _CONTACT_CHUNK]
                mapping = {
                    str(start + i): json.dumps(c.model_dump(mode="json"), separators=(",", ":"))
                    for i, c in enumerate(chunk)
                }
                async with self.redis.pipeline(transaction=False) as pipe:
                    pipe.hset(staging_contacts, mapping=mapping)
                    pipe.rpush(staging_pending, *range(start, start + len(chunk)))
                    pipe.expire(staging_contacts, 3600)
                    pipe.expire(staging_pending, 3600)
                    await pipe.execute()
            spec_json = spec.model_dump(mode="json", exclude={"contacts"})
            fields: dict[str, str | int] = {
                "state": "queued",
                "spec": json.dumps(spec_json, separators=(",", ":")),
                "currency": spec.currency,
                "budget": spec.budget_in_micros,
                "reserved": 0,
                "spent": 0,
                "worst_case": spec.worst_case_call_micros(),
                "max_in_flight": spec.pacing.max_in_flight,
                "contacts": len(spec.contacts),
                "accepted": 0,
                "rejected": 0,
                "in_doubt": 0,
                "settled": 0,
                "live": 0,
                "dispatch_seq": 0,
                "duplicates_dropped": spec.duplicates_dropped,
                "estimated": rate.cost_micros(spec.max_call_seconds) * len(spec.contacts),
            }
            argv: list[str | int] = [fingerprint, now_ms(), cid]
            for key, value in fields.items():
                argv += [key, value]
            result = _s(
                await self._submit(
                    keys=[
                        self._c(cid, "meta"),
                        self._c(cid, "contacts"),
                        self._c(cid, "pending"),
                        self._campaigns,
                        staging_contacts,
                        staging_pending,
                    ],
                    args=argv,
                )
            )
        finally:
            await _aw(self.redis.delete(staging_contacts, staging_pending))
        if result == "conflict":
            raise SubmitConflict(f"campaign {cid!r} exists with a different spec")
        return "exists" if result == "exists" else "created"

    # ------------------------------------------------------------------ reads
    async def campaign(self, campaign_id: str) -> CampaignRecord | None:
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hgetall(self._c(campaign_id, "meta"))
            pipe.llen(self._c(campaign_id, "pending"))
            pipe.zcard(self._c(campaign_id, "unresolved"))
            raw, pending, unresolved = await pipe.execute()
        meta = _decode(raw)
        if "state" not in meta:
            return None
        try:
            return CampaignRecord(
                campaign_id=campaign_id,
                state=meta["state"],
                spec=json.loads(meta["spec"]),
                currency=meta["currency"],
                budget_micros=_i(meta.get("budget")),
                reserved_micros=_i(meta.get("reserved")),
                spent_micros=_i(meta.get("spent")),
                worst_case_micros=_i(meta.get("worst_case")),
                contacts=_i(meta.get("contacts")),
                pending=int(pending),
                accepted=_i(meta.get("accepted")),
                rejected=_i(meta.get("rejected")),
                in_doubt=_i(meta.get("in_doubt")),
                settled=_i(meta.get("settled")),
                live=_i(meta.get("live")),
                unresolved=int(unresolved),
                halt_code=meta.get("halt_code"),
                halt_message=meta.get("halt_message"),
                dispatch_seq=_i(meta.get("dispatch_seq")),
                created_at_ms=_i(meta.get("created_at")),
                started_at_ms=_i(meta.get("started_at")) if meta.get("started_at") else None,
                finished_at_ms=_i(meta.get("finished_at")) if meta.get("finished_at") else None,
                duplicates_dropped=_i(meta.get("duplicates_dropped")),
                estimated_micros=_i(meta.get("estimated")),
            )
        except (KeyError, ValueError, json.JSONDecodeError) as exc:
            raise StoreError(f"campaign {campaign_id!r} is damaged in the store: {exc}") from None

    async def campaign_ids(self) -> list[str]:
        return [cast(str, _s(m)) for m in await _aw(self.redis.zrange(self._campaigns, 0, -1))]

    async def campaigns_created_between(self, start_ms: int, end_ms: int) -> list[str]:
        found = await _aw(self.redis.zrangebyscore(self._campaigns, start_ms, end_ms))
        return [cast(str, _s(m)) for m in found]

    async def running_campaigns(self) -> list[str]:
        return sorted(cast(str, _s(m)) for m in await _aw(self.redis.smembers(self._running)))

    async def attempt(self, attempt_id: str) -> Attempt | None:
        raw = _decode(await _aw(self.redis.hgetall(self._a(attempt_id))))
        if "status" not in raw:
            return None
        return _attempt(raw)

    async def attempt_for_call(self, call_id: str) -> str | None:
        return _s(await _aw(self.redis.hget(self._calls, call_id)))

    async def attempts(self, campaign_id: str, page: int = 500) -> AsyncIterator[Attempt]:
        """Every attempt of a campaign in claim order, read a page at a time."""
        key = self._c(campaign_id, "attempts")
        start = 0
        while True:
            ids = await _aw(self.redis.lrange(key, start, start + page - 1))
            if not ids:
                return
            async with self.redis.pipeline(transaction=False) as pipe:
                for attempt_id in ids:
                    pipe.hgetall(self._a(cast(str, _s(attempt_id))))
                rows = await pipe.execute()
            for row in rows:
                decoded = _decode(row)
                if "status" in decoded:
                    yield _attempt(decoded)
            start += page

    async def unresolved_attempts(self, campaign_id: str) -> list[Attempt]:
        ids = await _aw(self.redis.zrange(self._c(campaign_id, "unresolved"), 0, -1))
        found = [await self.attempt(cast(str, _s(i))) for i in ids]
        return [a for a in found if a is not None]

    # ------------------------------------------------------------------ dispatch
    async def acquire_lease(self, campaign_id: str, token: str, ttl_seconds: float) -> bool:
        keys = [self._c(campaign_id, "lease")]
        return bool(await self._lease_acquire(keys=keys, args=[token, int(ttl_seconds * 1000)]))

    async def renew_lease(self, campaign_id: str, token: str, ttl_seconds: float) -> bool:
        """Extend a lease we still hold; never take back one that lapsed."""
        keys = [self._c(campaign_id, "lease")]
        return bool(await self._lease_renew(keys=keys, args=[token, int(ttl_seconds * 1000)]))

    async def release_lease(self, campaign_id: str, token: str) -> None:
        await self._lease_release(keys=[self._c(campaign_id, "lease")], args=[token])

    async def lease_holder(self, campaign_id: str) -> str | None:
        return _s(await _aw(self.redis.get(self._c(campaign_id, "lease"))))

    async def claim(self, campaign_id: str, lease_token: str) -> Claim:
        """Check running, claim the next contact and reserve its worst case: one script."""
        result = await self._claim(
            keys=[
                self._c(campaign_id, "meta"),
                self._c(campaign_id, "pending"),
                self._c(campaign_id, "tries"),
                self._c(campaign_id, "unresolved"),
                self._c(campaign_id, "lease"),
                self._c(campaign_id, "attempts"),
                self._running,
                self._cooldown,
                self._c(campaign_id, "contacts"),
            ],
            args=[self.prefix, campaign_id, lease_token, now_ms()],
        )
        outcome = cast(Any, _s(result[0]))
        state = _s(result[1])
        if outcome != "claimed":
            return Claim(outcome, state=state)
        attempt_id = cast(str, _s(result[2]))
        contact = json.loads(cast(str, _s(result[3])))
        return Claim(
            "claimed",
            Attempt(
                attempt_id=attempt_id,
                campaign_id=campaign_id,
                contact_index=_i(result[4]),
                to=contact["to"],
                ref=contact.get("ref", ""),
                variables=contact.get("variables", {}),
                status="sending",
                reserved_micros=_i(result[5]),
            ),
            state,
        )

    async def stamp_send(self, attempt_id: str, body: str, lease_token: str) -> str:
        """Check running + lease + unresolved and keep the body, right before a send.

        ``ok`` means the request may leave now; ``not_running`` or ``lease_lost``
        mean it must not; any other answer is the attempt's status (someone
        else resolved it). A re-send keeps the first body: the same bytes go out
        under the same Idempotency-Key.
        """
        cid = self.campaign_of(attempt_id)
        keys = [self._c(cid, "meta"), self._c(cid, "lease"), self._a(attempt_id)]
        return cast(str, _s(await self._stamp(keys=keys, args=[lease_token, body, now_ms()])))

    async def record_accepted(self, attempt_id: str, call_id: str, poll_in_seconds: float) -> str:
        """Store the call ID the moment the provider returns it. Idempotent."""
        cid = self.campaign_of(attempt_id)
        now = now_ms()
        return cast(
            str,
            _s(
                await self._accepted(
                    keys=[
                        self._c(cid, "meta"),
                        self._a(attempt_id),
                        self._c(cid, "unresolved"),
                        self._unsettled,
                        self._calls,
                        self._c(cid, "pending"),
                    ],
                    args=[call_id, now, now + int(poll_in_seconds * 1000), attempt_id],
                )
            ),
        )

    async def record_rejected(
        self,
        attempt_id: str,
        kind: Literal["contact", "halt", "not_placed"],
        code: str,
        message: str,
    ) -> str:
        """Reject an attempt; a halt-class one also halts the campaign, atomically.

        ``contact``: the contact is finished. ``halt``: the contact goes back to
        pending and the campaign halts with the code. ``not_placed``: an operator
        confirmed no call exists; the contact goes back to pending.
        """
        cid = self.campaign_of(attempt_id)
        return cast(
            str,
            _s(
                await self._rejected(
                    keys=[
                        self._c(cid, "meta"),
                        self._a(attempt_id),
                        self._c(cid, "unresolved"),
                        self._c(cid, "pending"),
                        self._running,
                        self._cooldown,
                    ],
                    args=[kind, code, message, now_ms(), attempt_id, cid],
                )
            ),
        )

    async def note_lookup_failure(self, attempt_id: str) -> int:
        """Count failed look-ups of an attempt's call; returns the count so far."""
        return int(await _aw(self.redis.hincrby(self._a(attempt_id), "lookup_failures", 1)))

    async def mark_in_doubt(
        self, attempt_id: str, reason: str, *, code: str = "", halt: bool = False
    ) -> str:
        """The attempt may or may not be a call: keep its reservation, ask an operator.

        With ``halt``, the campaign halts with ``code`` too (a halt-class answer
        to an attempt that an earlier send may already have placed).
        """
        cid = self.campaign_of(attempt_id)
        keys = [
            self._c(cid, "meta"),
            self._a(attempt_id),
            self._c(cid, "unresolved"),
            self._running,
            self._cooldown,
        ]
        args: list[str | int] = [now_ms(), attempt_id, reason, code, "1" if halt else "0", cid]
        return cast(str, _s(await self._in_doubt(keys=keys, args=args)))

    async def transition(
        self,
        campaign_id: str,
        allowed_from: Sequence[str],
        to: State,
        *,
        halt_code: str = "",
        halt_message: str = "",
        cooldown_until_ms: int | None = None,
        require_halt_code: str = "",
    ) -> tuple[bool, str]:
        """One atomic check-and-set of the campaign state. Returns (done, previous state)."""
        result = await self._transition(
            keys=[self._c(campaign_id, "meta"), self._running, self._cooldown],
            args=[
                campaign_id,
                ",".join(allowed_from),
                to,
                now_ms(),
                halt_code,
                halt_message,
                "" if cooldown_until_ms is None else cooldown_until_ms,
                require_halt_code,
            ],
        )
        outcome, previous = _s(result[0]), cast(str, _s(result[1]))
        if outcome == "missing":
            raise StoreError(f"no campaign {campaign_id!r}")
        return outcome == "ok", previous

    async def next_dispatch_seq(self, campaign_id: str, current: int) -> int | None:
        """Advance the dispatch sequence if this job is still the current one."""
        value = int(await self._advance(keys=[self._c(campaign_id, "meta")], args=[current]))
        return value if value > 0 else None

    async def bump_dispatch_seq(self, campaign_id: str) -> int:
        """Start a new dispatch chain (submit, resume, sweeper); older jobs stand down."""
        return int(await _aw(self.redis.hincrby(self._c(campaign_id, "meta"), "dispatch_seq", 1)))

    async def state(self, campaign_id: str) -> str | None:
        return _s(await _aw(self.redis.hget(self._c(campaign_id, "meta"), "state")))

    async def heartbeat(self, campaign_id: str) -> None:
        await _aw(self.redis.hset(self._c(campaign_id, "meta"), "heartbeat_at", str(now_ms())))

    async def last_heartbeat_ms(self, campaign_id: str) -> int:
        return _i(await _aw(self.redis.hget(self._c(campaign_id, "meta"), "heartbeat_at")))

    async def due_cooldowns(self) -> list[str]:
        due = await _aw(self.redis.zrangebyscore(self._cooldown, "-inf", now_ms()))
        return [cast(str, _s(m)) for m in due]

    # ------------------------------------------------------------------ settlement
    async def take_due_calls(self, limit: int, hold_seconds: float) -> list[str]:
        """Attempt IDs whose call is due for a poll, held off others for a while."""
        due = await self._take_due(
            keys=[self._unsettled], args=[now_ms(), int(hold_seconds * 1000), limit]
        )
        return [cast(str, _s(m)) for m in due]

    async def reschedule_poll(
        self, attempt_id: str, delay_seconds: float, *, final_seen: bool = False
    ) -> None:
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.zadd(self._unsettled, {attempt_id: now_ms() + int(delay_seconds * 1000)}, xx=True)
            pipe.hincrby(self._a(attempt_id), "polls", 1)
            if final_seen:
                pipe.hsetnx(self._a(attempt_id), "final_seen_at", str(now_ms()))
            await pipe.execute()

    async def settle(
        self,
        attempt_id: str,
        *,
        final_status: str,
        billsec: int,
        cost_micros: int,
        estimated: bool,
        currency: str,
        currency_mismatch: str = "",
    ) -> str:
        """Book a final call: release its reservation, add its cost. Idempotent.

        Returns ``ok``, ``over_reservation``, ``duplicate``, the attempt's
        status when it is not an accepted call, or ``invalid:<field>`` when a
        value is out of range (checked here and again in the script, before
        its first write): then nothing at all is written.
        """
        invalid = _settle_refusal(final_status, billsec, cost_micros, currency, currency_mismatch)
        if invalid:
            return invalid
        cid = self.campaign_of(attempt_id)
        keys = [self._c(cid, "meta"), self._a(attempt_id), self._unsettled]
        args: list[str | int] = [
            final_status,
            billsec,
            cost_micros,
            "1" if estimated else "0",
            currency,
            now_ms(),
            attempt_id,
            currency_mismatch,
        ]
        return cast(str, _s(await self._settle(keys=keys, args=args)))

    async def settle_forget(self, attempt_id: str) -> None:
        """Stop polling an attempt that has nothing left to settle."""
        await _aw(self.redis.zrem(self._unsettled, attempt_id))

    async def unsettled_count(self) -> int:
        return int(await _aw(self.redis.zcard(self._unsettled)))

    async def dead_letter(self, entry: Mapping[str, Any]) -> None:
        await _aw(self.redis.lpush(self._deadletter, json.dumps(dict(entry), default=str)))
        await _aw(self.redis.ltrim(self._deadletter, 0, 9999))

    async def dead_letters(self, limit: int = 100) -> list[dict[str, Any]]:
        rows = await _aw(self.redis.lrange(self._deadletter, 0, limit - 1))
        return [json.loads(cast(str, _s(r))) for r in rows]

    async def save_reconciliation(self, campaign_id: str, result: Mapping[str, Any]) -> None:
        await _aw(self.redis.set(self._c(campaign_id, "reconciliation"), json.dumps(dict(result))))

    async def last_reconciliation(self, campaign_id: str) -> dict[str, Any] | None:
        raw = _s(await _aw(self.redis.get(self._c(campaign_id, "reconciliation"))))
        return None if raw is None else dict(json.loads(raw))

    # ------------------------------------------------------------------ alerts
    async def mark_alert_fired(self, campaign_id: str, threshold: int) -> bool:
        """True the first time a threshold is crossed for a campaign, never again."""
        return bool(await _aw(self.redis.sadd(self._c(campaign_id, "alerts"), threshold)))


def _attempt(raw: dict[str, str]) -> Attempt:
    contact = json.loads(raw.get("contact_json") or "{}")
    return Attempt(
        attempt_id=raw["attempt_id"],
        campaign_id=raw["campaign_id"],
        contact_index=_i(raw.get("contact")),
        to=contact.get("to", ""),
        ref=contact.get("ref", ""),
        variables=contact.get("variables", {}),
        status=raw["status"],
        reserved_micros=_i(raw.get("reserved")),
        call_id=raw.get("call_id"),
        error_code=raw.get("error_code"),
        error_message=raw.get("error_message"),
        request=raw.get("request"),
        final_status=raw.get("final_status"),
        billsec=_i(raw["billsec"]) if raw.get("billsec") else None,
        cost_micros=_i(raw["cost"]) if raw.get("cost") else None,
        cost_currency=raw.get("cost_currency"),
        cost_estimated=raw.get("cost_estimated") == "1",
        settled=raw.get("settled") == "1",
        over_reservation=raw.get("over_reservation") == "1",
        currency_mismatch=raw.get("currency_mismatch"),
        created_at_ms=_i(raw.get("created_at")),
        recorded_at_ms=_i(raw["recorded_at"]) if raw.get("recorded_at") else None,
        settled_at_ms=_i(raw["settled_at"]) if raw.get("settled_at") else None,
        polls=_i(raw.get("polls")),
        final_seen_at_ms=_i(raw["final_seen_at"]) if raw.get("final_seen_at") else None,
    )
