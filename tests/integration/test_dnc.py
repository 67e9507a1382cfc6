"""The do-not-call list on the session's real Redis: the operator functions and the
real ``campaigns dnc`` binary. Bad input at every entry point: exit 2, one line
naming the argument or the file, line and column, and nothing written."""

from __future__ import annotations

import io
import json
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import redis as redis_sync
from redis.asyncio import Redis

from campaigns.domain.spec import SpecError
from campaigns.operators import dnc as ops
from campaigns.settings import Settings
from campaigns.store import Keys, Store
from campaigns.store import dnc as store_dnc
from campaigns.store.dnc import DoNotCallList
from tests.support import CAMPAIGNS_BIN, worker_env

KEYS = Keys()


@pytest.fixture
async def dnc(settings: Settings) -> AsyncIterator[DoNotCallList]:
    redis: Redis = Redis.from_url(settings.redis_url)
    yield ops.list_for(Store(redis))
    await redis.aclose()


def listed(settings: Settings) -> set[str]:
    with redis_sync.Redis.from_url(settings.redis_url, decode_responses=True) as r:
        return set(r.smembers(KEYS.dnc))  # type: ignore[arg-type]


def every_key(settings: Settings) -> dict[bytes, Any]:
    with redis_sync.Redis.from_url(settings.redis_url) as r:
        return {key: r.dump(key) for key in sorted(r.keys("*"))}  # type: ignore[union-attr]


def cli(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [CAMPAIGNS_BIN, "dnc", *args],
        env=worker_env(settings),
        capture_output=True,
        text=True,
        timeout=60,
    )


def rows(count: int, start: int = 0) -> bytes:
    return b"".join(b"+1555124%04d\n" % i for i in range(start, start + count))


# ---------------------------------------------------------------- operator functions


async def test_add_is_idempotent_and_counts_only_new_numbers(
    dnc: DoNotCallList, settings: Settings
) -> None:
    first = await ops.add(dnc, ["+15551230002", "+1 555 123 0003", "+15551230002"])
    assert first.numbers == ["+15551230002", "+15551230003"]
    assert first.to_json() == {"numbers": first.numbers, "added": 2, "already_listed": 0}
    again = await ops.add(dnc, ["+1 (555) 123-0003", "+15551230004"])
    assert again.changed == 1
    assert listed(settings) == {"+15551230002", "+15551230003", "+15551230004"}
    assert await dnc.count() == 3


async def test_remove_of_an_absent_number_is_no_error(
    dnc: DoNotCallList, settings: Settings
) -> None:
    await ops.add(dnc, ["+15551230002", "+15551230003"])
    change = await ops.remove(dnc, ["+1 555 123 0002", "+15551239999"])
    assert change.to_json() == {
        "numbers": ["+15551230002", "+15551239999"],
        "removed": 1,
        "not_listed": 1,
    }
    assert listed(settings) == {"+15551230003"}
    assert (await ops.remove(dnc, ["+15551239999"])).changed == 0


async def test_check_answers_in_canonical_form(dnc: DoNotCallList) -> None:
    await ops.add(dnc, ["+15551230002"])
    found = await ops.check(dnc, ["+1 555 123 0002", "+15551230003"])
    assert found == [("+15551230002", True), ("+15551230003", False)]


@pytest.mark.parametrize(
    ("values", "field"),
    [
        (["+15551230002", "15551230003"], "numbers.1"),
        (["+15551230002", "+1555"], "numbers.1"),
        (["nonsense", "+15551230002"], "numbers.0"),
        (["+15551230002", None], "numbers.1"),
        ([], "numbers"),
    ],
)
async def test_one_bad_number_and_nothing_changes(
    dnc: DoNotCallList, settings: Settings, values: list[Any], field: str
) -> None:
    await ops.add(dnc, ["+15551239999"])
    before = every_key(settings)
    for change in (ops.add, ops.remove, ops.check):
        with pytest.raises(SpecError) as caught:
            await change(dnc, values)
        assert caught.value.field == field
    assert every_key(settings) == before


async def test_strict_add_refuses_possible_but_invalid_numbers(
    dnc: DoNotCallList, settings: Settings
) -> None:
    with pytest.raises(SpecError, match="not a valid phone number"):
        await ops.add(dnc, ["+4930901820", "+15551230002"], strict=True)
    assert listed(settings) == set()
    assert (await ops.add(dnc, ["+15551230002"])).changed == 1


async def test_list_reads_every_number_a_page_at_a_time(dnc: DoNotCallList) -> None:
    await ops.add(dnc, [f"+1555124{i:04d}" for i in range(2500)])
    found = [n async for n in dnc.numbers(page=100)]
    assert len(found) == 2500
    assert set(found) == {f"+1555124{i:04d}" for i in range(2500)}


# ---------------------------------------------------------------- import


async def test_import_into_an_empty_list_and_merge_into_a_full_one(
    dnc: DoNotCallList, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(ops, "IMPORT_CHUNK", 7)
    monkeypatch.setattr(store_dnc, "MERGE_STEP", 8)  # the second import merges in 4 steps
    first = await ops.import_csv(dnc, io.BytesIO(b"number\n" + rows(50)), shown="a.csv")
    assert first == ops.ImportResult(rows=50, numbers=50, added=50, listed=50)
    with redis_sync.Redis.from_url(settings.redis_url) as r:
        assert r.ttl(KEYS.dnc) == -1, "the staging set's expiry must not reach the list"
        assert r.keys("*") == [KEYS.dnc.encode()], "no staging set left behind"
    # Overlapping, with duplicate rows, through the merge path (the list exists).
    data = b"to,ref\n" + rows(30, start=40) + rows(5, start=40)
    second = await ops.import_csv(dnc, io.BytesIO(data), shown="b.csv")
    assert second == ops.ImportResult(rows=35, numbers=30, added=20, listed=70)
    assert listed(settings) == {f"+1555124{i:04d}" for i in range(70)}
    with redis_sync.Redis.from_url(settings.redis_url) as r:
        assert r.keys("*") == [KEYS.dnc.encode()]
    empty = await ops.import_csv(dnc, io.BytesIO(b"number\n"), shown="c.csv")
    assert empty == ops.ImportResult(rows=0, numbers=0, added=0, listed=70)


async def test_a_bad_row_late_in_a_large_file_writes_nothing(
    dnc: DoNotCallList, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(ops, "IMPORT_CHUNK", 100)
    await ops.add(dnc, ["+15551239999"])
    before = every_key(settings)
    data = b"number\n" + rows(5000) + b"+1555\n" + rows(10, start=6000)
    with pytest.raises(SpecError) as caught:
        await ops.import_csv(dnc, io.BytesIO(data), shown="big.csv")
    assert caught.value.field == "dnc[big.csv line 5002].number"
    assert every_key(settings) == before, "staged chunks must be deleted, the list untouched"


async def test_a_staged_import_is_invisible_until_merged(
    dnc: DoNotCallList, settings: Settings
) -> None:
    async with dnc.staged_import() as staged:
        await staged.stage(["+15551230002"])
        assert (await dnc.listed(["+15551230002"])) == [False]
        with redis_sync.Redis.from_url(settings.redis_url) as r:
            assert 0 < r.pttl(staged.key) <= 3_600_000, "a crashed import's set expires"
        result = await staged.commit()
    assert result.added == 1
    assert (await dnc.listed(["+15551230002"])) == [True]


# ---------------------------------------------------------------- the real binary


def test_cli_add_check_remove_count_list(settings: Settings, tmp_path: Path) -> None:
    out = cli(settings, "add", "+15551230002", "+1 555 123 0003")
    assert out.returncode == 0, out.stderr
    assert out.stdout == "added 2 numbers to the do-not-call list (0 already listed)\n"
    out = cli(settings, "add", "+15551230002", "--json")
    assert json.loads(out.stdout) == {
        "numbers": ["+15551230002"],
        "added": 0,
        "already_listed": 1,
    }
    out = cli(settings, "check", "+1 555 123 0002", "+15551230009")
    assert out.returncode == 0
    assert out.stdout == "+15551230002 listed\n+15551230009 not listed\n"
    out = cli(settings, "check", "+15551230009", "--json")
    assert out.returncode == 0, "check exits 0 for an unlisted number too"
    assert json.loads(out.stdout) == {"number": "+15551230009", "listed": False}
    out = cli(settings, "remove", "+15551230003", "+15551230009")
    assert out.stdout == "removed 1 number from the do-not-call list (1 not listed)\n"
    assert json.loads(cli(settings, "count", "--json").stdout) == {"count": 1}
    assert cli(settings, "count").stdout == "1 number\n"

    backup = tmp_path / "backup.csv"
    backup.write_text(cli(settings, "list").stdout)
    assert backup.read_text() == "number\n+15551230002\n"
    cli(settings, "remove", "+15551230002")
    out = cli(settings, "import", str(backup), "--json")
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout) == {"rows": 1, "numbers": 1, "added": 1, "listed": 1}
    assert listed(settings) == {"+15551230002"}


def test_cli_import_reports_rows_numbers_and_new(settings: Settings, tmp_path: Path) -> None:
    path = tmp_path / "suppressed.csv"
    path.write_bytes(b"\xef\xbb\xbfNumber,reason\r\n" + rows(3).replace(b"\n", b",asked\r\n"))
    out = cli(settings, "import", str(path))
    assert out.returncode == 0, out.stderr
    assert out.stdout == (
        f"{path}: 3 rows, 3 numbers, 3 new; the do-not-call list holds 3 numbers\n"
    )


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["add", "+15551230002", "12345"], "NUMBER 2: '12345': must be an E.164 number"),
        (["add", "+1555", "+15551230002"], "NUMBER 1: '+1555' is not a possible phone number"),
        (["add", "--strict", "+15551230002"], "NUMBER 1: '+15551230002' is not a valid"),
        (["remove", "+15551230002", "x"], "NUMBER 2"),
        (["check", ""], "NUMBER 1: no number"),
        (["add"], "Missing argument 'NUMBER...'"),
        (["import"], "Missing argument 'FILE.csv'"),
        (["import", "{dir}"], "'FILE.csv'"),
        (["import", "{dir}/missing.csv"], "cannot read"),
        (["import", "{dir}/late.csv"], "dnc[{dir}/late.csv line 3002].number: '+1555'"),
        (["import", "{dir}/header.csv"], "line 1: the header must have a 'number' or 'to'"),
        (["import", "{dir}/latin1.csv"], "line 3: not UTF-8 (byte 0xe9)"),
        ([], "Missing command"),
        (["frob"], "No such command 'frob'"),
    ],
)
def test_cli_bad_input_exits_2_naming_it_and_writes_nothing(
    settings: Settings, tmp_path: Path, args: list[str], needle: str
) -> None:
    (tmp_path / "late.csv").write_bytes(b"number\n" + rows(3000) + b"+1555\n" + rows(5, 5000))
    (tmp_path / "header.csv").write_bytes(b"phone\n+15551230002\n")
    (tmp_path / "latin1.csv").write_bytes(b"number\n+15551230002\nJos\xe9\n")
    with redis_sync.Redis.from_url(settings.redis_url) as r:
        r.sadd(KEYS.dnc, "+15551239999")
    before = every_key(settings)
    out = cli(settings, *[a.format(dir=tmp_path) for a in args])
    assert out.returncode == 2, (out.stdout, out.stderr)
    lines = out.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), out.stderr
    assert needle.format(dir=tmp_path) in lines[0]
    assert out.stdout == ""
    assert every_key(settings) == before
