"""Weights: campaigns share the account ceiling by ``pacing.weight`` when it binds.

Counted from the sandbox's ledger while every campaign is sending: a weight-3
campaign gets about three times a weight-1 campaign's calls (a generous
tolerance: shares are recomputed each second and the first ones go to whoever
asked first), and the ceiling is never exceeded in any window at the provider.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from importlib import resources

import redis
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from campaigns.domain.lifecycle import Move
from campaigns.domain.sharing import fair_level
from campaigns.domain.spec import parse_spec
from campaigns.operators.control import CampaignClient, explain
from campaigns.settings import Settings
from campaigns.store import now_ms
from campaigns.testbed.sandbox import SandboxServer, parse_rfc3339
from tests.conftest import spec_dict
from tests.support import WorkerProcess, busiest_window, creates, wait_for

_JITTER = 0.15
settings_for_redis = hypothesis_settings(
    max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


def _pace_source() -> str:
    """``_pace.lua``, the functions the claim includes (nothing run)."""
    return resources.files("campaigns.store").joinpath("lua", "_pace.lua").read_text("utf-8")


_WARM_UP = 2.0
"""Seconds after the last campaign's first request before its share is counted."""


async def test_weight_three_gets_three_times_weight_one_under_the_ceiling(
    client: CampaignClient,
    sandbox: SandboxServer,
    settings: Settings,
    start_worker: Callable[..., WorkerProcess],
) -> None:
    ceiling = 12
    sandbox.configure(latency_seconds=0.02)
    config = settings.model_copy(update={"provider_calls_per_second": float(ceiling)})
    start_worker(config)
    start_worker(config)
    weights = {"light0": 1, "light1": 1, "heavy0": 3, "heavy1": 3}
    for cid, weight in weights.items():
        spec = spec_dict(cid, contacts=200)
        spec["pacing"] = {"calls_per_second": 10, "max_concurrent_requests": 4, "weight": weight}
        await client.submit(parse_spec(spec))

    async def counted() -> bool:
        ledger = sandbox.ledger()
        firsts = [min(_times(creates(ledger, cid)), default=None) for cid in weights]
        if None in firsts:
            return False
        begin = max(t for t in firsts if t is not None) + _WARM_UP
        return sum(1 for e in ledger if parse_rfc3339(str(e["received_at"])) >= begin) >= 60

    await wait_for(counted, timeout=60, what="five seconds of every campaign sending")
    light = await client.explain(await client.get("light0"))
    ledger = sandbox.ledger()
    times = {cid: _times(creates(ledger, cid)) for cid in weights}
    begin = max(min(t) for t in times.values()) + _WARM_UP
    end = min(max(t) for t in times.values())
    got = {cid: sum(1 for t in ts if begin <= t <= end) for cid, ts in times.items()}
    heavy, light_calls = got["heavy0"] + got["heavy1"], got["light0"] + got["light1"]
    assert light_calls > 0, got
    assert 2.0 <= heavy / light_calls <= 4.5, f"weight 3 should get about 3x weight 1: {got}"
    everything = [t for ts in times.values() for t in ts]
    assert busiest_window(everything, 1.0 - _JITTER) <= ceiling

    shown = light.to_json()["progress"]
    assert 0 < shown["calls_last_minute"] < 10 * 60
    assert shown["weight"] == 1
    assert shown["held_by"] in ("weight_share", "account_ceiling"), shown
    for cid in weights:
        await client.cancel(cid)


def _times(entries: list[dict[str, object]]) -> list[float]:
    return [parse_rfc3339(str(e["received_at"])) for e in entries]


async def test_status_says_the_worker_had_no_room(client: CampaignClient) -> None:
    """``Store.note_held`` is the worker's hook: status names it while the
    campaign runs below its pace, and forgets it once a minute has passed."""
    await client.submit(parse_spec(spec_dict("roomless", contacts=3)))
    await client.store.transition("roomless", Move.START)
    await client.store.note_held("roomless", "worker_capacity")
    shown = (await client.explain(await client.get("roomless"))).to_json()["progress"]
    assert shown["held_by"] == "worker_capacity" and shown["calls_last_minute"] == 0
    later = now_ms() + 61_000
    again = await explain(client.store, await client.get("roomless"), client.settings, now=later)
    assert again.held_by is None


_LEVEL = (
    _pace_source()
    + """
local demands, weights = {}, {}
for i, pair in ipairs(cjson.decode(ARGV[2])) do
  demands[i] = pair[1] > 0 and pair[1] or math.huge
  weights[i] = pair[2]
end
return string.format('%.17g', water_level(tonumber(ARGV[1]), demands, weights))
"""
)


@settings_for_redis
@given(
    st.floats(0.1, 5000),
    st.lists(
        st.tuples(st.one_of(st.floats(0.01, 1000), st.just(0.0)), st.floats(0.1, 100)),
        min_size=1,
        max_size=40,
    ),
)
def test_the_claims_water_level_is_the_reference_one(
    redis_url: str, capacity: float, campaigns: list[tuple[float, float]]
) -> None:
    """The Lua the claim runs computes ``campaigns.domain.sharing.fair_level``."""
    with redis.Redis.from_url(redis_url) as plain:
        got = float(plain.eval(_LEVEL, 0, repr(capacity), json.dumps(campaigns)))
    demands = [d if d > 0 else math.inf for d, _ in campaigns]
    want = fair_level(capacity, demands, [w for _, w in campaigns])
    if math.isinf(want):
        assert got == -1
    else:
        assert math.isclose(got, want, rel_tol=1e-9), (got, want)
