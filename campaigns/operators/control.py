"""The operator's and other services' API: submit, status, pause, resume, cancel, resolve.

Every state change is one atomic check-and-set in the store, so two
operators, or an operator and a worker, never race into an impossible state.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import AuthenticationError, RedisError, ResponseError

from campaigns.domain.lifecycle import AttemptStatus, Move, State, budget_allows
from campaigns.domain.spec import CampaignSpec
from campaigns.logs import scrub
from campaigns.queue import JobQueue, open_queue
from campaigns.settings import Settings, redis_location
from campaigns.store import CampaignRecord, Store, StoreError

__all__ = [
    "CampaignClient",
    "ControlError",
    "NotFound",
    "RedisUnavailable",
    "SubmitResult",
    "check_redis",
    "status_json",
    "submit_campaign",
]


class ControlError(RuntimeError):
    """An operator request that cannot be carried out (the CLI exits 1)."""


class NotFound(ControlError):
    pass


class RedisUnavailable(ControlError):
    """Redis did not answer a PING in time: say so at once instead of riding it out."""


async def check_redis(redis_url: str, wait_seconds: float) -> None:
    """One PING on a fresh connection with no retries, bounded by ``wait_seconds``.

    The queue's pool retries for minutes so that a worker rides out a Redis
    restart; an operator at a terminal wants to know now. The message names
    where Redis was expected, never the URL's credentials.
    """
    where = redis_location(redis_url)
    redis: Redis = Redis.from_url(
        redis_url,
        socket_connect_timeout=wait_seconds,
        socket_timeout=wait_seconds,
        retry_on_timeout=False,
    )
    try:
        async with asyncio.timeout(wait_seconds):
            await redis.ping()
    except AuthenticationError as exc:
        raise RedisUnavailable(
            f"Redis at {where} refused the credentials: {scrub(str(exc))}"
        ) from None
    except ResponseError as exc:
        raise RedisUnavailable(f"Redis at {where} answered: {scrub(str(exc))}") from None
    except TimeoutError:
        raise RedisUnavailable(
            f"cannot reach Redis at {where}: no answer within {wait_seconds:g}s"
        ) from None
    except (RedisError, OSError) as exc:
        reason = scrub(str(exc)) or type(exc).__name__
        raise RedisUnavailable(f"cannot reach Redis at {where}: {reason}") from None
    finally:
        await redis.aclose()


@dataclass(frozen=True, slots=True)
class SubmitResult:
    campaign_id: str
    created: bool
    contacts: int
    duplicates_dropped: int


def status_json(campaign: CampaignRecord) -> dict[str, Any]:
    """The ``campaigns status --json`` shape of DESIGN.md."""
    return {
        "campaign_id": campaign.campaign_id,
        "state": campaign.state,
        "halt": campaign.halt,
        "counts": {
            "contacts": campaign.contacts,
            "pending": campaign.pending,
            "accepted": campaign.accepted,
            "rejected": campaign.rejected,
            "in_doubt": campaign.in_doubt,
            "settled": campaign.settled,
        },
        "money": {
            "currency": campaign.currency,
            "budget_micros": campaign.budget_micros,
            "reserved_micros": campaign.reserved_micros,
            "spent_micros": campaign.spent_micros,
        },
    }


class CampaignClient:
    """Async client for services that feed and steer the dispatcher.

    >>> async with await CampaignClient.connect(Settings()) as client:
    ...     await client.submit(spec)
    """

    def __init__(self, store: Store, queue: JobQueue, settings: Settings) -> None:
        self.store = store
        self.queue = queue
        self.settings = settings

    @classmethod
    async def connect(
        cls, settings: Settings | None = None, *, check_timeout: float | None = None
    ) -> CampaignClient:
        """Open the queue's pool, which rides out Redis restarts (retrying for minutes).

        With ``check_timeout``, first check Redis answers within that many
        seconds and raise :class:`RedisUnavailable` if not (the CLI does).
        """
        settings = settings or Settings()
        if check_timeout is not None:
            await check_redis(settings.redis_url, check_timeout)
        queue = await open_queue(settings.redis_url, settings.queue_name)
        return cls(Store(queue.redis), queue, settings)

    async def __aenter__(self) -> CampaignClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self.queue.aclose()

    async def submit(self, spec: CampaignSpec) -> SubmitResult:
        """Store a validated spec and start it. Same ID and spec again: a no-op."""
        rate = spec.rate_model()
        outcome = await self.store.submit(
            spec,
            worst_case_micros=spec.worst_case_call_micros(),
            estimated_micros=rate.cost_micros(spec.max_call_seconds) * len(spec.contacts),
        )
        campaign = await self.store.campaign(spec.campaign_id)
        if campaign is not None and campaign.state is State.QUEUED:
            # Also after "exists": a submit that died before enqueueing is finished here.
            await self._kick(spec.campaign_id)
        return SubmitResult(
            spec.campaign_id, outcome == "created", len(spec.contacts), spec.duplicates_dropped
        )

    async def get(self, campaign_id: str) -> CampaignRecord:
        campaign = await self.store.campaign(campaign_id)
        if campaign is None:
            raise NotFound(f"no campaign {campaign_id!r}")
        return campaign

    async def status(self, campaign_id: str) -> dict[str, Any]:
        return status_json(await self.get(campaign_id))

    async def campaigns(self) -> list[CampaignRecord]:
        found = [await self.store.campaign(cid) for cid in await self.store.campaign_ids()]
        return [c for c in found if c is not None]

    async def pause(self, campaign_id: str) -> str:
        """Pause; returns once no create request can start (the dispatcher let go)."""
        await self._transition(campaign_id, Move.PAUSE)
        await self._wait_for_dispatcher(campaign_id)
        return State.PAUSED

    async def cancel(self, campaign_id: str) -> str:
        await self._transition(campaign_id, Move.CANCEL)
        await self._wait_for_dispatcher(campaign_id)
        return State.CANCELLED

    async def resume(self, campaign_id: str) -> str:
        """Re-check the budget, then set running and start a fresh dispatch chain."""
        campaign = await self.get(campaign_id)
        if campaign.state not in Move.RESUME.from_states:
            raise ControlError(f"cannot resume campaign {campaign_id!r}: it is {campaign.state}")
        fits = budget_allows(
            budget=campaign.budget_micros,
            spent=campaign.spent_micros,
            reserved=campaign.reserved_micros,
            worst_case=campaign.worst_case_micros,
        )
        remaining = campaign.budget_micros - campaign.spent_micros - campaign.reserved_micros
        if not fits and campaign.reserved_micros == 0:
            raise ControlError(
                f"cannot resume campaign {campaign_id!r}: remaining budget {remaining} micros "
                f"is below one call's worst case ({campaign.worst_case_micros} micros)"
            )
        await self._transition(campaign_id, Move.RESUME)
        await self._kick(campaign_id)
        return State.RUNNING

    async def resolve(self, attempt_id: str, *, call_id: str | None) -> str:
        """Settle an in-doubt attempt: the call the operator found, or no call at all."""
        attempt = await self.store.attempt(attempt_id)
        if attempt is None:
            raise NotFound(f"no attempt {attempt_id!r}")
        if attempt.status is not AttemptStatus.IN_DOUBT:
            raise ControlError(f"attempt {attempt_id!r} is {attempt.status}, not in_doubt")
        if call_id:
            result = await self.store.record_accepted(
                attempt_id, call_id, self.settings.poll_interval_seconds
            )
        else:
            result = await self.store.record_rejected(
                attempt_id, "not_placed", "not_placed", "operator confirmed no call was placed"
            )
        if result not in ("ok", "duplicate"):
            raise ControlError(f"attempt {attempt_id!r} could not be resolved: {result}")
        return "accepted" if call_id else "requeued"

    async def _transition(self, campaign_id: str, move: Move) -> None:
        try:
            done, previous = await self.store.transition(campaign_id, move)
        except StoreError as exc:
            raise NotFound(str(exc)) from None
        if not done:
            raise ControlError(f"cannot {move.verb} campaign {campaign_id!r}: it is {previous}")

    async def _kick(self, campaign_id: str) -> None:
        seq = await self.store.bump_dispatch_seq(campaign_id)
        await self.queue.dispatch(campaign_id, seq)

    async def _wait_for_dispatcher(self, campaign_id: str) -> None:
        """Wait until no worker holds the campaign's lease.

        The claim script refuses once the state changed, so the only request
        that can still start is one already claimed by the lease holder. When
        the lease is free, none can. A dead holder's lease lapses by itself.
        """
        deadline = time.monotonic() + self.settings.lease_seconds + 1
        while await self.store.lease_holder(campaign_id) is not None:
            if time.monotonic() > deadline:
                raise ControlError(
                    f"campaign {campaign_id!r} changed state, but its dispatcher did not let go "
                    f"within {self.settings.lease_seconds + 1:g}s"
                )
            await asyncio.sleep(0.02)


async def submit_campaign(
    spec: CampaignSpec | dict[str, Any] | str, settings: Settings | None = None
) -> SubmitResult:
    """Validate and submit a campaign in one call (for other Python services).

    Raises :class:`campaigns.domain.spec.SpecError` naming the field, with nothing
    written, when the spec is invalid.
    """
    from campaigns.domain.spec import parse_spec

    valid = spec if isinstance(spec, CampaignSpec) else parse_spec(spec)
    client = await CampaignClient.connect(settings)
    async with client:
        return await client.submit(valid)
