"""Strict input everywhere: duplicate keys, constants, out-of-range amounts, future times."""

from __future__ import annotations

import json

import httpx
import pytest
from pydantic import SecretStr

from campaigns.domain.errors import INVALID_RESPONSE, ProviderError
from campaigns.domain.inputs import DuplicateKeyError, strict_json
from campaigns.domain.money import MAX_MICROS, MoneyError, bounded_whole
from campaigns.providers.balance import VoxpriaBalance
from campaigns.providers.base import MAX_CLOCK_AHEAD_MS, future_refusal
from campaigns.providers.voxpria import VoxpriaCredits


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ('{"budget": "1.00", "budget": "900000.00"}', "budget"),
        ('{"a": {"x": 1, "x": 1}}', "x"),  # equal values too: one key, once
        ('[{"ok": 1}, {"id": "a", "id": "b"}]', "id"),
        ('{"\\u0062udget": 1, "budget": 2}', "budget"),  # an escape is the same key
    ],
)
def test_a_duplicate_key_is_refused_naming_it(text: str, key: str) -> None:
    with pytest.raises(DuplicateKeyError) as info:
        strict_json(text)
    assert info.value.key == key
    assert f"duplicate key {key!r}" in str(info.value)


def test_strict_json_reads_what_json_reads_otherwise() -> None:
    text = '{"a": [1, 2.5, "x", null, true, {"b": {}}], "c": "é"}'
    assert strict_json(text) == json.loads(text)
    assert strict_json(text.encode()) == json.loads(text)
    for constant in ("NaN", "Infinity", "-Infinity"):
        with pytest.raises(ValueError, match="not a JSON number"):
            strict_json(f"[{constant}]")


def test_every_external_whole_amount_has_the_money_bounds() -> None:
    assert bounded_whole(MAX_MICROS, "x") == MAX_MICROS
    assert bounded_whole(-5, "x", minimum=-MAX_MICROS) == -5
    for bad in (MAX_MICROS + 1, 10**30, -1, True, 1.0, "5"):
        with pytest.raises(MoneyError, match=r"^balance: "):
            bounded_whole(bad, "balance")
    with pytest.raises(MoneyError, match="an integer of 3322 bits"):
        bounded_whole(10**1000, "balance")


@pytest.mark.parametrize("balance", [10**30, MAX_MICROS + 1])
async def test_a_voxpria_balance_beyond_the_bounds_is_an_invalid_response(balance: int) -> None:
    def answer(request: httpx.Request) -> httpx.Response:
        body = {"success": True, "data": {"balance": balance, "currency": "credits"}}
        return httpx.Response(200, content=json.dumps(body).encode())

    client = VoxpriaCredits(
        "http://voxpria.test", SecretStr("k"), transport=httpx.MockTransport(answer)
    )
    source = VoxpriaBalance(client)
    try:
        with pytest.raises(ProviderError) as info:
            await source.fetch()
    finally:
        await source.aclose()
    assert (info.value.status, info.value.code) == (200, INVALID_RESPONSE)
    assert "data.balance" in info.value.message and "out of range" in info.value.message


def test_future_refusal_allows_skew_up_to_the_bound() -> None:
    now = 1_700_000_000_000
    assert future_refusal(now - 10**9, now) == ""  # the past is not this check's business
    assert future_refusal(now + MAX_CLOCK_AHEAD_MS, now) == ""
    assert "timestamp: 301s ahead" in future_refusal(now + MAX_CLOCK_AHEAD_MS + 1000, now)
    assert "days ahead" in future_refusal(253_402_300_799_000, now, "timestamp")  # 9999-12-31
