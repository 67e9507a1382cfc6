"""The campaign store: Redis keys, Lua scripts and the records they hold.

``keys`` spells the key layout, ``lua/`` holds one script per atomic change,
``scripts`` loads and calls them by name, ``records`` types what comes back,
and :class:`Store` is the one way the rest of the dispatcher reads and
changes campaign state.
"""

from campaigns.store._store import Store, now_ms
from campaigns.store.keys import Keys, attempt_id, campaign_of
from campaigns.store.records import Attempt, CampaignRecord, Claim, StoreError, SubmitConflict
from campaigns.store.replicas import NotReplicated, ReplicaAck

__all__ = [
    "Attempt",
    "CampaignRecord",
    "Claim",
    "Keys",
    "NotReplicated",
    "ReplicaAck",
    "Store",
    "StoreError",
    "SubmitConflict",
    "attempt_id",
    "campaign_of",
    "now_ms",
]
