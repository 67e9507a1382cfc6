"""The campaign store: Redis keys, Lua scripts and the records they hold.

``keys`` spells the key layout, ``lua/`` holds one script per atomic change,
``scripts`` loads and calls them by name, ``records`` types what comes back,
and :class:`Store` is the one way the rest of the dispatcher reads and
changes campaign state.
"""

from campaigns.store._store import Store, now_ms
from campaigns.store.history import HISTORY_LIMIT, History, entry_head
from campaigns.store.keys import Keys, attempt_id, campaign_of
from campaigns.store.records import (
    Attempt,
    BudgetBelowFloor,
    BudgetChange,
    CampaignRecord,
    Claim,
    StoreError,
    SubmitConflict,
)

__all__ = [
    "HISTORY_LIMIT",
    "Attempt",
    "BudgetBelowFloor",
    "BudgetChange",
    "CampaignRecord",
    "Claim",
    "History",
    "Keys",
    "Store",
    "StoreError",
    "SubmitConflict",
    "attempt_id",
    "campaign_of",
    "entry_head",
    "now_ms",
]
