"""Submitting a contacts CSV streams it into Redis: chunk by chunk, all or nothing.

The store stages each chunk as it is validated; a bad row in a later chunk
deletes what was staged and nothing is visible. A resubmit of the same input
(CSV or inline) is a no-op, a changed row a conflict. At the CLI, a bad row
late in a large file exits 2 naming the file, line and field.
"""

from __future__ import annotations

import csv
import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
import redis as redis_sync

from campaigns.domain.contacts import CHUNK_SIZE, Contacts
from campaigns.domain.spec import SpecError, load_spec, parse_spec
from campaigns.operators.control import CampaignClient
from campaigns.settings import Settings
from campaigns.store.records import SubmitConflict
from tests.conftest import spec_dict
from tests.support import CAMPAIGNS_BIN, ROOT, worker_env


def _dbsize(url: str) -> int:
    with redis_sync.Redis.from_url(url) as r:
        return int(r.dbsize())


def write_files(
    folder: Path, campaign_id: str, rows: int, *, bad_at: int | None = None, inline: int = 0
) -> tuple[Path, Path]:
    """A spec and a CSV of ``rows`` contacts, every 10th a repeat of the one before;
    ``bad_at``: that row's number is impossible."""
    spec_path = folder / f"{campaign_id}.json"
    spec_path.write_text(json.dumps(spec_dict(campaign_id, contacts=inline)))
    csv_path = folder / f"{campaign_id}.csv"
    with csv_path.open("w", newline="", encoding="utf-8") as out:
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(["to", "ref", "plan"])
        for i in range(rows):
            n = i - 1 if i % 10 == 9 else i
            to = "+1555" if i == bad_at else f"+1212{2_000_000 + n:07d}"
            writer.writerow([to, f"cust_{i}", "gold" if i % 3 else ""])
    return spec_path, csv_path


def keys_of(url: str, campaign_id: str) -> list[bytes]:
    with redis_sync.Redis.from_url(url) as r:
        return list(r.scan_iter(match=f"*{campaign_id}*"))


async def test_a_bad_row_in_the_second_chunk_writes_nothing(
    client: CampaignClient, settings: Settings, tmp_path: Path
) -> None:
    spec_path, csv_path = write_files(tmp_path, "late", CHUNK_SIZE * 2, bad_at=CHUNK_SIZE + 700)
    before = _dbsize(settings.redis_url)
    with pytest.raises(SpecError) as info:
        await client.submit(Contacts.load(spec_path, csv_path))
    assert info.value.field == f"contacts[{csv_path} line {CHUNK_SIZE + 702}].to"
    assert _dbsize(settings.redis_url) == before
    assert keys_of(settings.redis_url, "late") == []


async def test_csv_contacts_are_stored_deduplicated_in_order(
    client: CampaignClient, settings: Settings, tmp_path: Path
) -> None:
    rows = CHUNK_SIZE + 1234
    spec_path, csv_path = write_files(tmp_path, "many", rows, inline=3)
    result = await client.submit(Contacts.load(spec_path, csv_path))
    whole = load_spec(spec_path, csv_path)
    assert result.created
    assert (result.contacts, result.duplicates_dropped) == (
        len(whole.contacts),
        whole.duplicates_dropped,
    )
    assert result.duplicates_dropped == rows // 10
    campaign = await client.get("many")
    assert campaign.contacts == campaign.pending == len(whole.contacts)
    assert campaign.duplicates_dropped == rows // 10
    with redis_sync.Redis.from_url(settings.redis_url) as r:
        stored = r.hgetall(client.store.keys.campaign("many", "contacts"))
        pending = r.lrange(client.store.keys.campaign("many", "pending"), 0, -1)
        fingerprint = r.hget(client.store.keys.meta("many"), "fingerprint")
    assert [int(i) for i in pending] == list(range(len(whole.contacts)))
    assert [json.loads(stored[str(i).encode()]) for i in range(len(whole.contacts))] == [
        c.model_dump(mode="json") for c in whole.contacts
    ]
    assert fingerprint == whole.fingerprint().encode()
    assert keys_of(settings.redis_url, "staging") == []


async def test_resubmit_is_a_no_op_and_a_changed_row_a_conflict(
    client: CampaignClient, settings: Settings, tmp_path: Path
) -> None:
    spec_path, csv_path = write_files(tmp_path, "again", 50, inline=2)
    first = await client.submit(Contacts.load(spec_path, csv_path))
    assert first.created
    again = await client.submit(Contacts.load(spec_path, csv_path))
    assert not again.created
    assert (again.contacts, again.duplicates_dropped) == (first.contacts, first.duplicates_dropped)
    # The same contacts inline are the same campaign.
    inline = await client.submit(load_spec(spec_path, csv_path))
    assert not inline.created
    before = _dbsize(settings.redis_url)  # each resubmit of a queued campaign re-kicks it
    lines = csv_path.read_text().splitlines()
    lines[7] = lines[7].replace("cust_6", "cust_six")
    csv_path.write_text("\n".join(lines) + "\n")
    with pytest.raises(SubmitConflict):
        await client.submit(Contacts.load(spec_path, csv_path))
    with pytest.raises(SubmitConflict):
        await client.submit(parse_spec(spec_dict("again", contacts=2)))
    assert _dbsize(settings.redis_url) == before


def _submit_cli(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [CAMPAIGNS_BIN, "submit", *args],
        env=worker_env(settings),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_cli_names_a_bad_row_late_in_a_large_file(settings: Settings, tmp_path: Path) -> None:
    rows = 30_000
    spec_path, csv_path = write_files(tmp_path, "big", rows, bad_at=rows - 2)
    before = _dbsize(settings.redis_url)
    out = _submit_cli(settings, str(spec_path), "--contacts", str(csv_path))
    assert out.returncode == 2, out.stderr
    assert out.stderr.strip().splitlines() == [
        f"error: invalid input: contacts[{csv_path} line {rows}].to: "
        "'+1555' is not a possible phone number"
    ]
    assert _dbsize(settings.redis_url) == before


def test_cli_submit_and_estimate_report_the_same_counts(settings: Settings, tmp_path: Path) -> None:
    spec_path, csv_path = write_files(tmp_path, "counted", 2_000, inline=1)
    whole = load_spec(spec_path, csv_path)
    estimate = subprocess.run(
        [CAMPAIGNS_BIN, "estimate", str(spec_path), "--contacts", str(csv_path), "--json"],
        env=worker_env(settings),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert estimate.returncode == 0, estimate.stderr
    got: dict[str, Any] = json.loads(estimate.stdout)
    assert (got["contacts"], got["duplicates_dropped"]) == (
        len(whole.contacts),
        whole.duplicates_dropped,
    )
    out = _submit_cli(settings, str(spec_path), "--contacts", str(csv_path))
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines()[0] == (
        f"counted: submitted, {len(whole.contacts)} contacts "
        f"({whole.duplicates_dropped} duplicates dropped)"
    )
