"""A hypothesis state machine that drives the Redis store the way workers and operators do.

Several simulated workers (each with its own lease token) claim contacts, record
accepted / rejected / in-doubt outcomes, resolve and settle calls, while operators
pause, resume, cancel and halt, the dispatcher pauses for a provider cool-down and
the sweeper ends it. Everything runs against the session's real ``redis-server``.

A plain-Python model predicts every script's answer (claim outcome and contact,
record/settle results, transitions, leases) from the attempts it has seen, not
from the store's counters; after every step the invariants of DESIGN.md are read
back from Redis: ``spent + reserved <= budget``, reservations and counters match
the attempt hashes, no contact is lost or dialled twice, call IDs map back to
their attempts, and nothing is claimed unless the campaign runs and the claimer
holds the lease.

``STORE_SM_EXAMPLES=500`` runs a longer bug hunt than the CI default.

Only hypothesis' generate phase runs by default, so a run costs at most its
examples' work, pass or fail, however slow the machine. Once a failure is found,
neither the target phase nor shrinking counts against ``max_examples``: the
target phase's hill climb and the shrinker each replay thousands of machines
against Redis (shrinking, under ``sys.settrace`` on Python < 3.12, until
hypothesis' own five-minute clock stops it), past the suite's 300 s timeout,
which hypothesis then takes for one more failure of the test.
A failure names its seed: ``STORE_SM_SEED=<seed> STORE_SM_SHRINK=1`` (and
``--timeout 0``) replays it and shrinks it to a minimal program.
"""

from __future__ import annotations

import asyncio
import os
import secrets
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import Any, TypeVar

import pytest
from hypothesis import HealthCheck, Phase, event, seed, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)
from redis.asyncio import Redis

from campaigns.domain.lifecycle import Move
from campaigns.domain.spec import CampaignSpec, parse_spec
from campaigns.store import Claim, Store, StoreError, SubmitConflict, now_ms
from campaigns.store.dnc import DoNotCallList
from tests.support import claim_next, submit_spec

pytestmark = pytest.mark.integration

T = TypeVar("T")
PREFIX = "dsp"
WORKERS = ("w0", "w1", "w2")
TOKENS = {w: f"lease-token-{w}" for w in WORKERS}
LEASE_TTL_SECONDS = 600.0  # never lapses by itself during a run: lapses are simulated
COOLDOWN_MS = 600_000
LIVE = ("sending", "in_doubt")
ANSWERS = ("accepted", "accepted", "completed", "completed", "completed", "contact")
ANSWERS += ("halt", "in_doubt", "unanswered", "unanswered")


@dataclass
class AttemptModel:
    attempt_id: str
    cid: str
    contact: int
    reserved: int
    worker: str
    status: str = "sending"  # sending | in_doubt | accepted | rejected
    call_id: str | None = None
    reject_kind: str | None = None
    error_code: str | None = None
    settled: bool = False
    cost: int = 0
    alt_calls: int = 0
    late: bool = False
    """Accepted after it was recorded as rejected: the provider contradicted itself."""

    @property
    def holds_reservation(self) -> bool:
        return self.status in LIVE or (self.status == "accepted" and not self.settled)


@dataclass
class CampaignModel:
    cid: str
    spec: CampaignSpec
    budget: int
    worst: int
    max_in_flight: int
    contacts: int
    state: str = "queued"
    halt_code: str | None = None
    cooldown_until: int | None = None
    lease: str | None = None
    pending: list[int] = field(default_factory=list)
    tries: dict[int, int] = field(default_factory=dict)
    attempts: list[AttemptModel] = field(default_factory=list)
    stopped: bool = False  # paused/halted/cancelled since the last successful resume

    def live(self) -> list[AttemptModel]:
        return [a for a in self.attempts if a.holds_reservation]

    def reserved(self) -> int:
        return sum(a.reserved for a in self.live())

    def spent(self) -> int:
        return sum(a.cost for a in self.attempts if a.settled)

    def set_state(self, state: str) -> None:
        self.state = state
        self.cooldown_until = None


def _spec(cid: str, contacts: int, budget: int, max_in_flight: int, seconds: int) -> CampaignSpec:
    return parse_spec(
        {
            "campaign_id": cid,
            "name": f"state machine {cid}",
            "caller_id": "+15551230001",
            "currency": "EUR",
            "budget_micros": budget,
            "rate": {"per_minute": "0.01", "increments": "60/60", "connect_fee": "0"},
            "max_call_seconds": seconds,
            "pacing": {"calls_per_second": 50, "batch_size": 10, "max_in_flight": max_in_flight},
            "contacts": [
                {"to": f"+1555124{i:04d}", "ref": f"ref_{i}", "variables": {}}
                for i in range(contacts)
            ],
        }
    )


campaign_shapes = st.fixed_dictionaries(
    {
        "contacts": st.integers(3, 8),
        "budget": st.integers(50_000, 120_000),
        "max_in_flight": st.integers(2, 3),
        "seconds": st.sampled_from([61, 61, 120, 30]),  # worst case 20,000 or 10,000 micros
        "start": st.sampled_from([True] * 5 + [False]),
    }
)


def costs(reserved: int) -> st.SearchStrategy[int]:
    """A final cost within the reservation, edges included."""
    return st.sampled_from([reserved, reserved, max(reserved - 1, 0), 0]) | st.integers(0, reserved)


def build_machine(redis_url: str) -> type[RuleBasedStateMachine]:
    class StoreMachine(RuleBasedStateMachine):
        def __init__(self) -> None:
            super().__init__()
            self.loop = asyncio.new_event_loop()
            self.redis: Redis = Redis.from_url(redis_url)
            self.store = Store(self.redis, prefix=PREFIX)
            self.campaigns: dict[str, CampaignModel] = {}
            self.dnc: set[int] = set()
            """Contact indexes whose number is on the account's do-not-call list
            (every campaign here numbers its contacts the same way)."""
            self.run(self.redis.flushall())

        def run(self, coro: Coroutine[Any, Any, T]) -> T:
            return self.loop.run_until_complete(coro)

        def teardown(self) -> None:
            try:
                self.run(self.redis.aclose())
            finally:
                self.loop.close()

        # ------------------------------------------------------------ helpers
        def attempts(self) -> list[AttemptModel]:
            return [a for c in self.campaigns.values() for a in c.attempts]

        def pick_campaign(self, data: st.DataObject) -> CampaignModel:
            return self.campaigns[data.draw(st.sampled_from(sorted(self.campaigns)), "campaign")]

        def pick_attempt(self, data: st.DataObject, prefer: Any = None) -> AttemptModel:
            """Mostly an attempt ``prefer`` selects (when there is one), sometimes any."""
            everything = self.attempts()
            pool = [a for a in everything if prefer(a)] if prefer else []
            if pool and data.draw(st.integers(0, 3), "preferred"):
                return data.draw(st.sampled_from(pool), "attempt")
            return data.draw(st.sampled_from(everything), "attempt")

        def expect_claim(self, c: CampaignModel, token: str) -> tuple[str, int | None]:
            """What the claim script must answer, derived from the model's attempts."""
            if c.state != "running":
                return "not_running", None
            if c.lease != token:
                return "lease_lost", None
            if not c.pending:
                if any(a.status == "sending" for a in c.attempts):
                    return "empty", None
                if any(a.status == "in_doubt" for a in c.attempts):
                    return "needs_review", None
                return "completed", None
            # In-doubt attempts hold a slot and their reservation until an
            # operator resolves them: when only they block, the claim halts.
            in_doubt = [a for a in c.attempts if a.status == "in_doubt"]
            if len(c.live()) >= c.max_in_flight:
                if in_doubt and len(c.live()) - len(in_doubt) <= 0:
                    return "needs_review", None
                return "in_flight_full", None
            if c.spent() + c.reserved() + c.worst > c.budget:
                if c.reserved() - sum(a.reserved for a in in_doubt) > 0:
                    return "budget_wait", None
                return ("needs_review" if in_doubt else "budget_exhausted"), None
            # Numbers on the do-not-call list are passed over (recorded suppressed).
            for index in c.pending:
                if index not in self.dnc:
                    return "claimed", index
            return "skipped", None

        # ------------------------------------------------------------ setup
        @initialize(shapes=st.lists(campaign_shapes, min_size=1, max_size=2))
        def submit_campaigns(self, shapes: list[dict[str, Any]]) -> None:
            for n, shape in enumerate(shapes):
                cid = f"sm-{n}"
                spec = _spec(
                    cid,
                    shape["contacts"],
                    shape["budget"],
                    shape["max_in_flight"],
                    shape["seconds"],
                )
                assert self.run(submit_spec(self.store, spec)) == "created"
                c = CampaignModel(
                    cid=cid,
                    spec=spec,
                    budget=shape["budget"],
                    worst=spec.worst_case_call_micros(),
                    max_in_flight=shape["max_in_flight"],
                    contacts=shape["contacts"],
                    pending=list(range(shape["contacts"])),
                )
                assert c.worst == (20_000 if shape["seconds"] > 60 else 10_000)
                self.campaigns[cid] = c
                if shape["start"]:
                    assert self.run(self.store.transition(cid, Move.START)) == (
                        True,
                        "queued",
                    )
                    c.set_state("running")

        # ------------------------------------------------------------ submit again
        @rule(data=st.data(), what=st.sampled_from(["same", "different", "missing"]))
        def resubmit(self, data: st.DataObject, what: str) -> None:
            """Submit again: same spec a no-op, different spec refused; unknown IDs refused."""
            if what == "missing":
                with pytest.raises(StoreError):
                    self.run(self.store.transition("sm-missing", Move.PAUSE))
                return
            c = self.pick_campaign(data)
            if what == "same":
                assert self.run(submit_spec(self.store, c.spec)) == "exists"
                return
            other = _spec(c.cid, c.contacts, c.budget + 1, c.max_in_flight, 61)
            with pytest.raises(SubmitConflict):
                self.run(submit_spec(self.store, other))

        # ------------------------------------------------------------ leases
        @rule(
            data=st.data(),
            worker=st.sampled_from(WORKERS),
            op=st.sampled_from(["acquire", "acquire", "release", "lapse"]),
        )
        def lease(self, data: st.DataObject, worker: str, op: str) -> None:
            c = self.pick_campaign(data)
            token = TOKENS[worker]
            if op == "acquire":
                self._acquire(c, worker)
            elif op == "release":
                self.run(self.store.release_lease(c.cid, token))
                if c.lease == token:
                    c.lease = None
            else:  # the holder died: its lease lapses
                self.run(self.redis.delete(f"{PREFIX}:c:{c.cid}:lease"))
                c.lease = None

        def _acquire(self, c: CampaignModel, worker: str) -> bool:
            token = TOKENS[worker]
            got = self.run(self.store.acquire_lease(c.cid, token, LEASE_TTL_SECONDS))
            assert got == (c.lease in (None, token)), (c.lease, token)
            if got:
                c.lease = token
            return got

        # ------------------------------------------------------------ claims
        def _claim(self, c: CampaignModel, worker: str) -> Claim:
            token = TOKENS[worker]
            expected, index = self.expect_claim(c, token)
            state_before, lease_before = c.state, c.lease
            result = self.run(claim_next(self.store, c.cid, token))
            assert result.outcome == expected, (result, expected, c.state, c.lease)
            event(f"claim: {result.outcome}")
            if result.outcome in ("claimed", "skipped"):
                # The contacts passed over: recorded suppressed, never sent or reserved.
                while c.pending and c.pending[0] in self.dnc:
                    skipped = c.pending.pop(0)
                    c.tries[skipped] = c.tries.get(skipped, 0) + 1
                    attempt_id = f"{c.cid}:{skipped:06d}:{c.tries[skipped]}"
                    c.attempts.append(
                        AttemptModel(attempt_id, c.cid, skipped, 0, worker, status="suppressed")
                    )
            if result.outcome == "claimed":
                assert result.attempt is not None and index not in self.dnc
                # Invariants 4 and 5: only a running campaign, only the lease holder.
                assert state_before == "running" and lease_before == token
                assert not c.stopped
                assert result.attempt is not None and index is not None
                c.pending.pop(0)
                c.tries[index] = c.tries.get(index, 0) + 1
                attempt_id = f"{c.cid}:{index:06d}:{c.tries[index]}"
                assert result.attempt.attempt_id == attempt_id
                assert result.attempt.contact_index == index
                assert result.attempt.to == f"+1555124{index:04d}"
                assert result.attempt.reserved_micros == c.worst
                c.attempts.append(AttemptModel(attempt_id, c.cid, index, c.worst, worker))
            elif result.outcome == "needs_review":
                c.set_state("halted")
                c.halt_code = "in_doubt_review"
            elif result.outcome == "budget_exhausted":
                c.set_state("halted")
                c.halt_code = "budget_exhausted"
            elif result.outcome == "completed":
                c.set_state("completed")
            return result

        @rule(
            data=st.data(),
            worker=st.sampled_from(WORKERS),
            mode=st.sampled_from(["batch", "batch", "batch", "lone_claim"]),
            calls=st.integers(1, 4),
        )
        def dispatch(self, data: st.DataObject, worker: str, mode: str, calls: int) -> None:
            """A dispatcher's batch: take (or keep) the lease, claim until told to stop.

            ``lone_claim``: one claim by any worker, whether it holds the lease or not.
            """
            c = self.pick_campaign(data)
            if mode == "lone_claim":
                self._claim(c, worker)
                return
            if c.lease is not None and data.draw(st.integers(0, 3), "holder_dispatches"):
                worker = next(w for w in WORKERS if TOKENS[w] == c.lease)
            if not self._acquire(c, worker):
                return
            for _ in range(calls):
                claim = self._claim(c, worker)
                if claim.outcome != "claimed":
                    break
                # The answer to the create request; "unanswered" leaves it sending.
                answer = data.draw(st.sampled_from(ANSWERS), "answer")
                a = c.attempts[-1]
                if answer in ("accepted", "completed"):
                    self._accept(a, f"call-{a.attempt_id}")
                    if answer == "completed":
                        self._settle(a, data.draw(costs(a.reserved), "cost"))
                elif answer == "contact":
                    self._reject(a, "contact", "invalid_number")
                elif answer == "halt":
                    self._reject(a, "halt", "spend_control_exceeded")
                    break
                elif answer == "in_doubt":
                    assert self.run(self.store.mark_in_doubt(a.attempt_id, "answer lost")) == "ok"
                    a.status = "in_doubt"
                else:
                    break  # the worker died before recording anything

        @rule(index=st.integers(0, 7))
        def dnc_add(self, index: int) -> None:
            """An operator puts a number on the account's do-not-call list: no claim
            of any campaign may return its contact from now on."""
            number = f"+1555124{index:04d}"
            listed = DoNotCallList(self.redis, self.store.keys)
            self.run(listed.add([number]))
            assert self.run(listed.listed([number])) == [True]
            self.dnc.add(index)

        # ------------------------------------------------------------ outcomes
        def _accept(self, a: AttemptModel, call_id: str) -> str:
            c = self.campaigns[a.cid]
            if a.status == "rejected":
                # The provider placed the call after all (a late answer). Only
                # modelled while the contact has not been claimed again: a later
                # second call is what the dispatcher's in-doubt rule prevents.
                if a.reject_kind != "contact" and a.contact not in c.pending:
                    return "skipped"
                got = self.run(self.store.record_accepted(a.attempt_id, call_id, 0))
                assert got == "late", (got, a)
                event("record_accepted: late")
                if a.reject_kind != "contact":
                    c.pending.remove(a.contact)
                a.status, a.call_id, a.late = "accepted", call_id, True
                return got
            if a.status in LIVE:
                expected = "ok"
            elif a.status == "accepted":
                expected = "duplicate" if call_id == a.call_id else "conflict"
            else:
                expected = "conflict"
            got = self.run(self.store.record_accepted(a.attempt_id, call_id, 0))
            assert got == expected, (got, expected, a)
            event(f"record_accepted: {got}")
            if expected == "ok":
                a.status, a.call_id = "accepted", call_id
            return got

        @precondition(lambda self: self.attempts())
        @rule(
            data=st.data(),
            mode=st.sampled_from(["fresh", "fresh", "and_settle", "same_again", "other_id"]),
        )
        def record_accepted(self, data: st.DataObject, mode: str) -> None:
            """Record a call ID: fresh, replayed, a different one (conflict), or the
            usual life of a call (accepted, then settled from its completed event)."""
            if mode in ("fresh", "and_settle"):
                a = self.pick_attempt(data, lambda a: a.status in LIVE)
            else:
                a = self.pick_attempt(data, lambda a: a.status == "accepted")
            canonical = f"call-{a.attempt_id}"
            if mode == "same_again":
                call_id = a.call_id or canonical
            elif mode == "other_id":
                a.alt_calls += 1
                call_id = f"{canonical}-alt{a.alt_calls}"
            else:
                call_id = canonical
            if self._accept(a, call_id) == "ok" and mode == "and_settle":
                self._settle(a, data.draw(costs(a.reserved), "cost"))

        def _reject(self, a: AttemptModel, kind: Any, code: str) -> str:
            c = self.campaigns[a.cid]
            if a.status in LIVE:
                expected = "ok"
            elif a.status == "rejected":
                expected = "duplicate"
            else:
                expected = "conflict"
            got = self.run(self.store.record_rejected(a.attempt_id, kind, code, f"{code} message"))
            assert got == expected, (got, expected, a)
            event(f"record_rejected {kind}: {got}")
            if expected == "ok":
                a.status, a.reject_kind, a.error_code = "rejected", kind, code
                if kind != "contact":
                    c.pending.insert(0, a.contact)
                if kind == "halt" and c.state in ("running", "paused"):
                    c.set_state("halted")
                    c.halt_code = code
                    c.stopped = True
            return got

        @precondition(lambda self: self.attempts())
        @rule(
            data=st.data(),
            kind_code=st.sampled_from(
                [
                    ("contact", "invalid_number"),
                    ("contact", "number_blocked"),
                    ("contact", "invalid_number"),
                    ("halt", "spend_control_exceeded"),
                    ("halt", "insufficient_balance"),
                ]
            ),
        )
        def record_rejected(self, data: st.DataObject, kind_code: tuple[str, str]) -> None:
            a = self.pick_attempt(data, lambda a: a.status in LIVE)
            self._reject(a, kind_code[0], kind_code[1])

        @precondition(lambda self: self.attempts())
        @rule(data=st.data(), op=st.sampled_from(["mark", "mark", "found_call", "not_placed"]))
        def in_doubt(self, data: st.DataObject, op: str) -> None:
            """Mark an attempt in doubt, or resolve one as the operator would."""
            if op == "mark":
                a = self.pick_attempt(data, lambda a: a.status == "sending")
                expected = "ok" if a.status == "sending" else a.status
                assert self.run(self.store.mark_in_doubt(a.attempt_id, "answer lost")) == expected
                event(f"mark_in_doubt: {expected}")
                if expected == "ok":
                    a.status = "in_doubt"
                return
            doubtful = [a for a in self.attempts() if a.status == "in_doubt"]
            if not doubtful:
                return
            a = data.draw(st.sampled_from(doubtful), "attempt")
            if op == "found_call":
                assert self._accept(a, f"call-{a.attempt_id}") == "ok"
            else:
                assert self._reject(a, "not_placed", "not_placed") == "ok"

        @precondition(lambda self: self.attempts())
        @rule(data=st.data())
        def settle(self, data: st.DataObject) -> None:
            # Mostly an accepted call (settled already, too), sometimes anything at all.
            if data.draw(st.integers(0, 3), "unsettled_first"):
                a = self.pick_attempt(data, lambda a: a.status == "accepted" and not a.settled)
            else:
                a = self.pick_attempt(data, lambda a: a.status == "accepted")
            self._settle(a, data.draw(costs(a.reserved), "cost"))

        def _settle(self, a: AttemptModel, cost: int) -> None:
            if a.status != "accepted":
                expected = a.status
            elif a.settled:
                expected = "duplicate"
            else:
                expected = "ok"
            got = self.run(
                self.store.settle(
                    a.attempt_id,
                    final_status="completed",
                    billsec=cost // 100,
                    cost_micros=cost,
                    estimated=False,
                    currency="EUR",
                )
            )
            assert got == expected, (got, expected, a)
            event(f"settle: {got}")
            if expected == "ok":
                a.settled, a.cost = True, cost

        # ------------------------------------------------------------ operators
        def _transition(self, c: CampaignModel, move: Move, **kwargs: Any) -> bool:
            to = move.to
            required = move.requires_halt_code
            ok = c.state in move.from_states and (not required or c.halt_code == required)
            got = self.run(self.store.transition(c.cid, move, **kwargs))
            assert got == (ok, c.state), (got, ok, c.state, c.halt_code)
            event(f"transition {c.state}->{to}: {'ok' if ok else 'refused'}")
            if ok:
                c.set_state(to)
                c.halt_code = kwargs.get("halt_code") or None
                if kwargs.get("cooldown_until_ms") is not None:
                    c.cooldown_until = kwargs["cooldown_until_ms"]
                c.stopped = to != "running"
            return ok

        @rule(
            data=st.data(),
            op=st.sampled_from(
                [
                    *("pause", "pause", "resume", "resume", "resume", "resume", "resume"),
                    *("cancel", "halt", "unavailable", "unavailable", "start", "start"),
                ]
            ),
        )
        def operator(self, data: st.DataObject, op: str) -> None:
            c = self.pick_campaign(data)
            if op == "pause":
                self._transition(c, Move.PAUSE)
            elif op == "resume":
                self._transition(c, Move.RESUME)
            elif op == "start":
                self._transition(c, Move.START)
            elif op == "cancel":
                self._transition(c, Move.CANCEL)
            elif op == "halt":  # the dispatcher's balance re-check
                self._transition(
                    c,
                    Move.HALT,
                    halt_code="insufficient_balance",
                    halt_message="provider balance below one call's worst case",
                )
            else:  # the dispatcher's provider_unavailable pause with a cool-down
                due = data.draw(st.booleans(), "cooldown_due")
                until = now_ms() + (-COOLDOWN_MS if due else COOLDOWN_MS)
                self._transition(
                    c,
                    Move.COOL_DOWN,
                    halt_code="provider_unavailable",
                    halt_message="create request kept failing",
                    cooldown_until_ms=until,
                )

        @rule(data=st.data(), any_campaign=st.booleans())
        def sweeper(self, data: st.DataObject, any_campaign: bool) -> None:
            """The sweeper's pass: end every cool-down that is due, and only those.

            ``any_campaign``: its transition tried on any campaign; only a paused
            one with the provider_unavailable code may resume.
            """
            if any_campaign:
                c = self.pick_campaign(data)
                self._transition(c, Move.END_COOL_DOWN)
                return
            now = now_ms()
            due = self.run(self.store.due_cooldowns())
            expected = sorted(
                c.cid
                for c in self.campaigns.values()
                if c.cooldown_until is not None and c.cooldown_until <= now
            )
            assert sorted(due) == expected
            for cid in due:
                assert self._transition(self.campaigns[cid], Move.END_COOL_DOWN)

        # ------------------------------------------------------------ invariants
        @invariant()
        def store_matches_model(self) -> None:
            self.run(self._check())

        async def _check(self) -> None:
            r, store = self.redis, self.store
            cids = sorted(self.campaigns)
            # The raw keys in one round trip; the store's own reads below.
            async with r.pipeline(transaction=True) as pipe:
                pipe.smembers(f"{PREFIX}:running")
                pipe.zrange(f"{PREFIX}:cooldown", 0, -1, withscores=True)
                pipe.hgetall(f"{PREFIX}:calls")
                pipe.zrange(f"{PREFIX}:unsettled", 0, -1)
                for cid in cids:
                    pipe.get(f"{PREFIX}:c:{cid}:lease")
                    pipe.lrange(f"{PREFIX}:c:{cid}:pending", 0, -1)
                    pipe.zrange(f"{PREFIX}:c:{cid}:unresolved", 0, -1)
                raw = await pipe.execute()
            running = {m.decode() for m in raw[0]}
            assert running == {c.cid for c in self.campaigns.values() if c.state == "running"}
            cooldown = {m.decode(): int(score) for m, score in raw[1]}
            assert cooldown == {
                c.cid: c.cooldown_until
                for c in self.campaigns.values()
                if c.cooldown_until is not None
            }
            calls = {k.decode(): v.decode() for k, v in raw[2].items()}
            unsettled = {m.decode() for m in raw[3]}
            per_campaign = {
                cid: (
                    raw[4 + 3 * n] and raw[4 + 3 * n].decode(),
                    [int(i) for i in raw[5 + 3 * n]],
                    {m.decode() for m in raw[6 + 3 * n]},
                )
                for n, cid in enumerate(cids)
            }
            expected_calls: dict[str, str] = {}
            expected_unsettled: set[str] = set()

            for c in self.campaigns.values():
                rec = await store.campaign(c.cid)
                assert rec is not None
                attempts = [a async for a in store.attempts(c.cid)]
                by_id = {a.attempt_id: a for a in attempts}

                # The model and the store agree on every attempt.
                assert [a.attempt_id for a in attempts] == [a.attempt_id for a in c.attempts]
                for m in c.attempts:
                    a = by_id[m.attempt_id]
                    assert (a.status, a.call_id, a.settled, a.reserved_micros) == (
                        m.status,
                        m.call_id,
                        m.settled,
                        m.reserved,
                    ), (a, m)
                    assert a.contact_index == m.contact
                    if m.settled:
                        assert a.cost_micros == m.cost and not a.over_reservation
                    if m.status == "rejected":  # keeps its code, never costs anything
                        assert a.error_code == m.error_code and a.cost_micros is None
                    if m.status == "accepted":
                        assert m.call_id is not None
                        expected_calls[m.call_id] = m.attempt_id
                        if not m.settled:
                            expected_unsettled.add(m.attempt_id)

                assert rec.state == c.state, (rec.state, c.state)
                assert rec.halt_code == c.halt_code, (rec.halt_code, c.halt_code)
                lease, pending, unresolved = per_campaign[c.cid]
                assert lease == c.lease
                assert rec.budget_micros == c.budget and rec.worst_case_micros == c.worst

                # Invariant 1: the budget holds at every instant. The one exception
                # is a call the provider placed after refusing it (a late answer):
                # it is real, so it is recorded and reserved even if that overdraws;
                # the claim sends nothing more until the campaign fits again.
                late = [m for m in c.attempts if m.late]
                overdraw = sum(m.reserved if m.holds_reservation else m.cost for m in late)
                assert rec.reserved_micros >= 0 and rec.spent_micros >= 0
                assert rec.spent_micros + rec.reserved_micros <= rec.budget_micros + overdraw

                # Invariant 2: reserved is exactly what the live attempts hold.
                holding = [
                    a
                    for a in attempts
                    if a.status in LIVE or (a.status == "accepted" and not a.settled)
                ]
                assert rec.reserved_micros == sum(a.reserved_micros for a in holding)
                assert rec.reserved_micros == c.reserved()
                settled = [a for a in attempts if a.settled]
                assert rec.spent_micros == sum(a.cost_micros or 0 for a in settled)
                assert rec.spent_micros == c.spent()

                # Invariant 6: counters match the attempts; live is capped.
                def count(status: str, attempts: list[Any] = attempts) -> int:
                    return sum(1 for a in attempts if a.status == status)

                assert rec.accepted == count("accepted")
                assert rec.suppressed == count("suppressed")
                for a in attempts:
                    if a.status == "suppressed":  # never sent, never reserved, never charged
                        assert a.contact_index in self.dnc
                        assert a.request is None and a.call_id is None and a.cost_micros is None
                        assert a.reserved_micros == 0
                assert rec.rejected == count("rejected")
                assert rec.in_doubt == count("in_doubt")
                assert rec.settled == len(settled)
                assert rec.live == len(holding)
                assert rec.live <= c.max_in_flight + sum(m.holds_reservation for m in late)
                assert rec.unresolved == count("sending")
                assert unresolved == {a.attempt_id for a in attempts if a.status == "sending"}

                # Invariant 3: every contact is in exactly one place, none dialled twice.
                assert pending == c.pending
                assert len(pending) == len(set(pending)) == rec.pending
                for index in range(c.contacts):
                    mine = [a for a in attempts if a.contact_index == index]
                    accepted = [a for a in mine if a.status == "accepted"]
                    assert len(accepted) <= 1, f"contact {index} accepted twice"
                    in_flight = [a for a in mine if a.status in LIVE]
                    final_reject = [
                        m
                        for m in c.attempts
                        if m.contact == index
                        and m.status == "rejected"
                        and m.reject_kind == "contact"
                    ]
                    suppressed = [a for a in mine if a.status == "suppressed"]
                    places = (index in pending) + len(in_flight) + len(accepted) + len(final_reject)
                    places += len(suppressed)
                    assert places == 1, (index, pending, mine)

                # Invariant 8: completed only when nothing is pending or in flight.
                if rec.state == "completed":
                    assert not pending and not any(a.status in LIVE for a in attempts)

            # Invariant 7: every accepted call ID maps back to its attempt; none invented.
            assert calls == expected_calls
            latest = [a for a in self.attempts() if a.status == "accepted"][-1:]
            for a in latest:  # and the store's own lookup agrees
                assert a.call_id is not None
                assert await store.attempt_for_call(a.call_id) == a.attempt_id
            assert unsettled == expected_unsettled

    return StoreMachine


def test_store_state_machine(redis_url: str) -> None:
    examples = int(os.environ.get("STORE_SM_EXAMPLES", "60"))
    # Only phases whose work max_examples bounds, also once a failure is found (see
    # the module docstring); shrinking is for replaying a reported seed.
    phases = [Phase.explicit, Phase.reuse, Phase.generate]
    if os.environ.get("STORE_SM_SHRINK") == "1":
        phases += [Phase.shrink, Phase.explain]
    run_seed = int(os.environ.get("STORE_SM_SEED") or secrets.randbits(64))
    try:
        run_state_machine_as_test(
            seed(run_seed)(build_machine(redis_url)),
            settings=settings(
                max_examples=examples,
                stateful_step_count=int(os.environ.get("STORE_SM_STEPS", "40")),
                deadline=None,
                database=None,
                phases=phases,
                suppress_health_check=[HealthCheck.too_slow],
            ),
        )
    except Exception as exc:
        exc.add_note(f"replay: STORE_SM_SEED={run_seed} (add STORE_SM_SHRINK=1 to shrink it)")
        raise
