"""The lifecycle table as DESIGN.md states it, and the scripts that apply it."""

from __future__ import annotations

from importlib import resources

import pytest

from campaigns.domain.lifecycle import (
    ACTIVE_STATES,
    FINAL_STATES,
    AttemptStatus,
    HaltCode,
    Move,
    State,
    budget_allows,
    lua_constants,
)
from campaigns.store.keys import ATTEMPT_ID_LUA_FORMAT, Keys, attempt_id, campaign_of
from campaigns.store.scripts import ScriptError, load_script

Q, R, P, H, C, X = (
    State.QUEUED,
    State.RUNNING,
    State.PAUSED,
    State.HALTED,
    State.COMPLETED,
    State.CANCELLED,
)


@pytest.mark.parametrize(
    ("move", "from_states", "to", "requires"),
    [
        (Move.START, {Q}, R, None),
        (Move.PAUSE, {Q, R, P}, P, None),
        (Move.RESUME, {P, H}, R, None),
        (Move.CANCEL, {Q, R, P, H}, X, None),
        (Move.HALT, {R}, H, None),
        (Move.HALT_ON_SETTLEMENT, {Q, R, P}, H, None),
        (Move.COOL_DOWN, {R}, P, None),
        (Move.END_COOL_DOWN, {P}, R, HaltCode.PROVIDER_UNAVAILABLE),
    ],
)
def test_every_move(
    move: Move, from_states: set[State], to: State, requires: HaltCode | None
) -> None:
    assert (set(move.from_states), move.to, move.requires_halt_code) == (from_states, to, requires)


def test_final_states_are_left_by_no_move() -> None:
    assert {C, X} == FINAL_STATES
    assert {Q, R, P, H} == ACTIVE_STATES
    for move in Move:
        assert not move.from_states & FINAL_STATES, move


def test_values_are_the_stored_strings() -> None:
    # Stored in Redis and shown in status JSON: renaming one is a migration.
    assert [s.value for s in State] == [
        "queued",
        "running",
        "paused",
        "halted",
        "completed",
        "cancelled",
    ]
    assert [a.value for a in AttemptStatus] == [
        "sending",
        "accepted",
        "rejected",
        "in_doubt",
        "suppressed",
        "expired",
        "capped",
    ]
    assert lua_constants()["halt_budget_exhausted"] == "budget_exhausted"


@pytest.mark.parametrize(
    ("budget", "spent", "reserved", "worst", "allowed"),
    [(100, 0, 0, 100, True), (100, 1, 0, 100, False), (100, 40, 30, 30, True), (0, 0, 0, 1, False)],
)
def test_budget_rule(budget: int, spent: int, reserved: int, worst: int, allowed: bool) -> None:
    fits = budget_allows(budget=budget, spent=spent, reserved=reserved, worst_case=worst)
    assert fits is allowed


def _script_names() -> list[str]:
    folder = resources.files("campaigns.store").joinpath("lua")
    return sorted(
        p.name.removesuffix(".lua")
        for p in folder.iterdir()
        if p.name.endswith(".lua") and not p.name.startswith("_")
    )


@pytest.mark.parametrize("name", _script_names())
def test_every_script_loads_with_named_keys(name: str) -> None:
    script = load_script(name)
    assert script.keys, name
    assert "${" not in script.source  # every lifecycle name was filled in
    assert "KEYS[" not in script.source.split("local A = ", 1)[1].split("\n", 1)[1]


async def test_a_call_with_wrong_names_is_refused_before_redis() -> None:
    class NoRedis:
        def register_script(self, source: str) -> object:
            return lambda **_: pytest.fail("must not be called")

    bound = load_script("lease_release").bind(NoRedis())  # type: ignore[arg-type]
    with pytest.raises(ScriptError, match="missing token; unexpected tokn"):
        await bound(lease="k", tokn="t")


def test_attempt_id_format_is_the_scripts() -> None:
    assert attempt_id("spring", 7, 2) == "spring:000007:2"
    lua_format = ATTEMPT_ID_LUA_FORMAT % ("spring", 7, 2)
    assert attempt_id("spring", 7, 2) == lua_format
    assert campaign_of("spring:000007:2") == "spring"
    assert Keys("p").attempt("spring:000007:2") == "p:a:spring:000007:2"
