"""The campaign store: Redis keys, Lua scripts and the records they hold.

``keys`` spells the key layout, ``lua/`` holds one script per atomic change,
``scripts`` loads and calls them by name, ``records`` types what comes back,
and :class:`Store` is the one way the rest of the dispatcher reads and
changes campaign state. ``faults`` decides which Redis errors are faults to
wait out (never a job's or an input's fault).
"""

from campaigns.store._store import Store, now_ms
from campaigns.store.callbacks import CallbackStore, callback_store
from campaigns.store.faults import REDIS_FAULTS, is_redis_fault
from campaigns.store.history import HISTORY_LIMIT, History, entry_head
from campaigns.store.idempotency import (
    IdempotencyBusy,
    IdempotencyConflict,
    IdempotencyRecords,
    Replay,
)
from campaigns.store.keys import Keys, attempt_id, campaign_of
from campaigns.store.records import (
    Attempt,
    BudgetBelowFloor,
    BudgetChange,
    CampaignRecord,
    Claim,
    StaleTerms,
    StoreError,
    SubmitConflict,
    TermsChange,
)
from campaigns.store.replicas import NotReplicated, ReplicaAck

__all__ = [
    "HISTORY_LIMIT",
    "REDIS_FAULTS",
    "Attempt",
    "BudgetBelowFloor",
    "BudgetChange",
    "CallbackStore",
    "CampaignRecord",
    "Claim",
    "History",
    "IdempotencyBusy",
    "IdempotencyConflict",
    "IdempotencyRecords",
    "Keys",
    "NotReplicated",
    "Replay",
    "ReplicaAck",
    "StaleTerms",
    "Store",
    "StoreError",
    "SubmitConflict",
    "TermsChange",
    "attempt_id",
    "callback_store",
    "campaign_of",
    "entry_head",
    "is_redis_fault",
    "now_ms",
]
