"""The operator history: who did what to a campaign (or the account), when, from what to what.

One capped Redis list per campaign (``P:c:C:history``) and one for the account
(``P:history``: do-not-call changes), oldest first, JSON entries::

    {"at": ms, "actor": "cli:alice", "action": "budget",
     "before": {"budget_micros": 5000000}, "after": {"budget_micros": 20000000}}

Bounded: each list keeps its newest :data:`HISTORY_LIMIT` entries. A budget
change writes its entry inside the change script (``change_terms.lua``), so the
before and after are the exact values it replaced; other actions append
theirs once the action is done.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar, cast

from redis.asyncio import Redis

from campaigns.domain.lifecycle import OperatorAction
from campaigns.store.keys import Keys
from campaigns.store.records import text

__all__ = ["HISTORY_LIMIT", "History", "entry_head"]

HISTORY_LIMIT = 1000
"""Entries kept per campaign (and for the account): about 200 kB at most."""

T = TypeVar("T")


def _aw(result: Awaitable[T] | T) -> Awaitable[T]:
    return cast(Awaitable[T], result)


def entry_head(at_ms: int, actor: str, action: OperatorAction) -> dict[str, Any]:
    """The fields every history entry starts with."""
    return {"at": at_ms, "actor": actor, "action": str(action)}


@dataclass(frozen=True, slots=True)
class History:
    """Append to and read the operator history."""

    redis: Redis
    keys: Keys

    async def append(
        self,
        campaign_id: str | None,
        head: Mapping[str, Any],
        before: Mapping[str, Any] | None,
        after: Mapping[str, Any] | None,
    ) -> None:
        entry = {**head, "before": before, "after": after}
        key = self.keys.history(campaign_id)
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.rpush(key, json.dumps(entry, separators=(",", ":")))
            pipe.ltrim(key, -HISTORY_LIMIT, -1)
            await pipe.execute()

    async def read(
        self, campaign_id: str | None, limit: int = HISTORY_LIMIT
    ) -> list[dict[str, Any]]:
        """The newest ``limit`` entries, oldest first."""
        rows = await _aw(self.redis.lrange(self.keys.history(campaign_id), -limit, -1))
        return [json.loads(cast(str, text(r))) for r in rows]
