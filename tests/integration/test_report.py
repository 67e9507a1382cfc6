"""``campaigns report`` as operators run it: JSON, CSV and table, against real data.

A small mixed campaign (accepted calls, contact-class rejections, settled
costs) is dispatched in-process against the sandbox over HTTP; a large one is
written straight into the store, since only the report's streaming is tested.
"""

from __future__ import annotations

import asyncio
import csv
import io
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest

from campaigns.domain.lifecycle import Move
from campaigns.domain.money import format_money
from campaigns.domain.spec import parse_spec
from campaigns.engine.dispatch import Dispatcher
from campaigns.engine.settlement import Settler
from campaigns.operators.control import CampaignClient
from campaigns.providers import Provider, make_provider
from campaigns.settings import Settings
from campaigns.testbed.sandbox import SandboxServer
from tests.conftest import API_KEY, spec_dict
from tests.support import CAMPAIGNS_BIN, ROOT, claim_next, creates, wait_for, worker_env

# The dashboard fields of seed 000, in the order of DESIGN.md.
DESIGN_FIELDS = [
    "attempt_id",
    "ref",
    "to",
    "status",
    "call_id",
    "error_code",
    "request",
    "final_status",
    "billsec",
    "cost_micros",
    "currency",
    "claimed_at",
    "sent_at",
    "answered_at",
    "ended_at",
]


@pytest.fixture
async def provider(settings: Settings) -> AsyncIterator[Provider]:
    p = make_provider(settings)
    yield p
    await p.aclose()


async def run_cli(settings: Settings, *args: str, **env: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        CAMPAIGNS_BIN,
        *args,
        env=worker_env(settings, **env),
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), timeout=60)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def mixed_campaign(
    client: CampaignClient, sandbox: SandboxServer, provider: Provider, settings: Settings
) -> dict[str, Any]:
    """Six contacts: four accepted and settled (one busy), two rejected for the contact."""
    spec = spec_dict("mixed", contacts=6)
    numbers = [c["to"] for c in spec["contacts"]]
    sandbox.configure(
        call_seconds=75,
        invalid_numbers=[numbers[1]],
        blocked_numbers=[numbers[4]],
        per_number={numbers[3]: {"final_status": "busy"}},
    )
    await client.submit(parse_spec(spec))
    dispatcher = Dispatcher(client.store, provider, client.queue, settings)
    seq = 1
    for _ in range(20):
        result = await dispatcher.run_batch("mixed", seq)
        if result.next_seq is None:
            break
        seq = result.next_seq
    assert result.outcome == "completed"
    settler = Settler(client.store, provider, settings)

    async def settled() -> bool:
        await settler.poll_due()
        return (await client.get("mixed")).settled == 4

    await wait_for(settled, timeout=10, what="mixed campaign settled")
    return spec


async def test_json_report_is_the_flat_array_of_design_fields(
    client: CampaignClient, sandbox: SandboxServer, provider: Provider, settings: Settings
) -> None:
    spec = await mixed_campaign(client, sandbox, provider, settings)
    code, out, err = await run_cli(settings, "report", "mixed", "--format", "json")
    assert code == 0, err
    rows = json.loads(out)
    assert isinstance(rows, list)
    assert len(rows) == 6
    for row in rows:
        assert isinstance(row, dict)
        assert list(row) == DESIGN_FIELDS
        assert all(not isinstance(v, dict | list) for v in row.values()), "flat rows"
        assert row["currency"] == "EUR"
    assert API_KEY not in out + err

    ledger = {e["idempotency_key"]: e for e in creates(sandbox.ledger(), "mixed")}
    assert len(ledger) == 6
    by_to = {row["to"]: row for row in rows}
    numbers = [c["to"] for c in spec["contacts"]]
    for i, to in enumerate(numbers):
        row = by_to[to]
        sent = ledger[row["attempt_id"]]
        assert row["ref"] == f"cust_{i}"
        assert row["request"] == sent["body"], "the exact bytes sent"
        if i in (1, 4):
            assert row["status"] == "rejected"
            assert row["error_code"] == ("invalid_destination" if i == 1 else "blocked_destination")
            assert sent["error_code"] == row["error_code"]
            assert row["call_id"] is None
            assert row["cost_micros"] is None, "a rejected attempt is never charged"
            assert row["final_status"] is None
            assert row["billsec"] is None
        else:
            assert row["status"] == "accepted"
            assert row["error_code"] is None
            assert row["call_id"] == sent["call_id"]
            busy = i == 3
            assert row["final_status"] == ("busy" if busy else "completed")
            assert row["billsec"] == (0 if busy else 75)
            assert row["cost_micros"] == (0 if busy else 20_000)
            assert row["ended_at"] is not None, "the provider's end time"
        assert row["claimed_at"] <= row["sent_at"], "claimed, then sent (our clock)"

    campaign = await client.get("mixed")
    accepted_cost = sum(r["cost_micros"] for r in rows if r["status"] == "accepted")
    assert accepted_cost == campaign.spent_micros == 3 * 20_000


async def test_csv_report_has_a_header_and_one_row_per_attempt(
    client: CampaignClient, sandbox: SandboxServer, provider: Provider, settings: Settings
) -> None:
    await mixed_campaign(client, sandbox, provider, settings)
    code, out, err = await run_cli(settings, "report", "mixed", "--format", "csv")
    assert code == 0, err
    reader = csv.DictReader(io.StringIO(out))
    assert reader.fieldnames == DESIGN_FIELDS
    rows = list(reader)
    assert len(rows) == 6
    assert len({r["attempt_id"] for r in rows}) == 6
    rejected = [r for r in rows if r["status"] == "rejected"]
    assert len(rejected) == 2
    assert all(r["cost_micros"] == "" and r["call_id"] == "" for r in rejected)
    assert all(json.loads(r["request"])["to"] == r["to"] for r in rejected)
    accepted = [r for r in rows if r["status"] == "accepted"]
    assert sorted(r["cost_micros"] for r in accepted) == ["0", "20000", "20000", "20000"]


async def test_table_report_has_calls_rejections_and_a_settled_summary(
    client: CampaignClient, sandbox: SandboxServer, provider: Provider, settings: Settings
) -> None:
    await mixed_campaign(client, sandbox, provider, settings)
    code, out, err = await run_cli(settings, "report", "mixed", "--format", "table", COLUMNS="240")
    assert code == 0, err
    status = await client.status("mixed")
    rows = [r async for r in client.store.attempts("mixed")]
    accepted = [r for r in rows if r.status == "accepted"]
    rejected = [r for r in rows if r.status == "rejected"]

    calls_at = out.index("Calls of mixed")
    rejected_at = out.index("Rejected attempts (not charged)")
    summary_at = out.index("Summary (from settled totals)")
    assert calls_at < rejected_at < summary_at
    calls_section = out[calls_at:rejected_at]
    rejected_section = out[rejected_at:summary_at]
    for attempt in accepted:
        assert attempt.call_id is not None and attempt.call_id in calls_section
    for attempt in rejected:
        assert attempt.call_id is None
        assert attempt.attempt_id in rejected_section
        assert attempt.attempt_id not in calls_section
        assert attempt.error_code is not None and attempt.error_code in rejected_section
    assert "invalid_destination" in rejected_section and "blocked_destination" in rejected_section

    summary = out[summary_at:]
    spent = format_money(status["money"]["spent_micros"], "EUR")
    assert spent == "EUR 0.06"
    spent_line = next(line for line in summary.splitlines() if "spent (settled)" in line)
    assert spent in spent_line
    assert "completed" in summary
    assert API_KEY not in out + err


async def test_table_report_keeps_call_ids_whole_at_80_columns(
    client: CampaignClient, sandbox: SandboxServer, provider: Provider, settings: Settings
) -> None:
    """Piped to a file or a pager the table is plain text: IDs (and costs) survive whole."""
    await mixed_campaign(client, sandbox, provider, settings)
    code, out, err = await run_cli(settings, "report", "mixed", "--format", "table", COLUMNS="80")
    assert code == 0, err
    for attempt in [r async for r in client.store.attempts("mixed")]:
        if attempt.status == "accepted":
            assert attempt.call_id is not None and attempt.call_id in out
            assert attempt.to in out


async def test_large_campaign_streams_csv_and_json(
    client: CampaignClient, settings: Settings
) -> None:
    n = 2_000
    spec = spec_dict(
        "big",
        contacts=n,
        budget="100.00",
        pacing={"calls_per_second": 1000, "batch_size": 1000, "max_in_flight": 100_000},
    )
    await client.submit(parse_spec(spec))
    store = client.store
    assert (await store.transition("big", Move.START))[0]
    assert await store.acquire_lease("big", "test-writer", 120)

    async def write_one(i: int) -> None:
        claim = await claim_next(store, "big", "test-writer")
        assert claim.outcome == "claimed" and claim.attempt is not None
        attempt_id = claim.attempt.attempt_id
        body = json.dumps({"to": claim.attempt.to, "n": i}, separators=(",", ":"))
        assert await store.stamp_send(attempt_id, body, "test-writer") == "ok"
        if i % 10 == 9:
            await store.record_rejected(attempt_id, "contact", "invalid_destination", "bad")
            return
        assert await store.record_accepted(attempt_id, f"call_big_{i:05d}", 3600) == "ok"
        if i % 2 == 0:
            result = await store.settle(
                attempt_id,
                final_status="completed",
                billsec=30,
                cost_micros=10_000,
                estimated=False,
                currency="EUR",
            )
            assert result == "ok"

    for start in range(0, n, 200):
        await asyncio.gather(*(write_one(i) for i in range(start, start + 200)))
    campaign = await client.get("big")
    assert campaign.accepted == 1_800 and campaign.rejected == 200
    assert campaign.settled == 1_000

    code, out, err = await run_cli(settings, "report", "big", "--format", "csv")
    assert code == 0, err
    rows = list(csv.DictReader(io.StringIO(out)))
    assert len(rows) == n
    assert len({r["attempt_id"] for r in rows}) == n
    assert sum(1 for r in rows if r["status"] == "rejected") == 200
    assert sum(1 for r in rows if r["cost_micros"] == "10000") == 1_000
    assert sum(int(r["cost_micros"] or 0) for r in rows) == campaign.spent_micros

    code, out, err = await run_cli(settings, "report", "big", "--format", "json")
    assert code == 0, err
    document = json.loads(out)
    assert len(document) == n
    assert [r["attempt_id"] for r in document] == [r["attempt_id"] for r in rows]


# --- issue 12: data from outside is never interpreted (defects 5 and 7) ----------------

FORMULAS = ["=1+1", "+1+1", "-2+3", "@SUM(1+1)", " =1+1", "\t=1+1", "\uff1d1+1"]
MARKUP = {"x": "[/oops]", "style": "[bold red]loud[/]", "emoji": ":smile:", "esc": "\x1b[2J"}


MARKUP_REF = " ".join(MARKUP.values())


async def hostile_campaign(
    client: CampaignClient,
    sandbox: SandboxServer,
    provider: Provider,
    settings: Settings,
    refs: list[str] = FORMULAS,
) -> dict[str, Any]:
    """Formula (or markup) refs and markup variables; every other contact rejected
    for the contact."""
    spec = spec_dict("hostile", contacts=len(refs))
    for contact, ref in zip(spec["contacts"], refs, strict=True):
        contact["ref"] = ref
        contact["variables"] = dict(MARKUP)
    numbers = [c["to"] for c in spec["contacts"]]
    sandbox.configure(call_seconds=75, invalid_numbers=numbers[1::2])
    await client.submit(parse_spec(spec))
    dispatcher = Dispatcher(client.store, provider, client.queue, settings)
    seq = 1
    for _ in range(20):
        result = await dispatcher.run_batch("hostile", seq)
        if result.next_seq is None:
            break
        seq = result.next_seq
    assert result.outcome == "completed"
    campaign = await client.get("hostile")
    assert campaign.rejected == len(numbers[1::2])
    return spec


FORMULA_START = ("=", "+", "-", "@", "\t", "\r", "\n", "\uff1d", "\uff0b", "\uff0d", "\uff20")


async def test_csv_report_neutralises_formulas_and_keeps_numbers(
    client: CampaignClient, sandbox: SandboxServer, provider: Provider, settings: Settings
) -> None:
    """Defect 5: a ref of =1+1, +1+1, -2+3 or @SUM(1+1) went into the CSV unchanged."""
    spec = await hostile_campaign(client, sandbox, provider, settings)
    code, out, err = await run_cli(settings, "report", "hostile", "--format", "csv")
    assert code == 0, err
    rows = list(csv.DictReader(io.StringIO(out, newline="")))
    assert sorted(r["ref"] for r in rows) == sorted("'" + ref for ref in FORMULAS)
    by_ref = {r["ref"][1:]: r for r in rows}
    for contact in spec["contacts"]:
        row = by_ref[contact["ref"]]
        assert row["to"] == contact["to"], "an E.164 number stays readable"
        assert row["to"].startswith("+1555")
    for row in rows:
        for name, cell in row.items():
            if cell.startswith(FORMULA_START) or cell.lstrip().startswith(FORMULA_START):
                assert name == "to" and cell[1:].isdigit(), (name, cell)
    assert sorted(r["cost_micros"] for r in rows if r["status"] == "accepted") == [""] * 4

    # JSON is for tools: the same values, unchanged.
    code, out, err = await run_cli(settings, "report", "hostile", "--format", "json")
    assert code == 0, err
    assert sorted(r["ref"] for r in json.loads(out)) == sorted(FORMULAS)


async def test_table_report_prints_markup_in_data_literally(
    client: CampaignClient, sandbox: SandboxServer, provider: Provider, settings: Settings
) -> None:
    """Defect 7: variables {"x": "[/oops]"} on a rejected attempt crashed the table.
    MiniVoice's request body carries the contact's ref, not its variables: the
    markup travels in the refs."""
    refs = [f"{MARKUP_REF} {i}" for i in range(len(FORMULAS))]
    await hostile_campaign(client, sandbox, provider, settings, refs)
    code, out, err = await run_cli(
        settings, "report", "hostile", "--format", "table", COLUMNS="2000"
    )
    assert code == 0, err
    assert "Traceback" not in err
    rejected = out[out.index("Rejected attempts (not charged)") : out.index("Summary")]
    assert rejected.count("[/oops]") == 3
    assert rejected.count("[bold red]loud[/]") == 3
    assert rejected.count(":smile:") == 3
    assert "\x1b" not in out, "an escape sequence in data never reaches the terminal"
    assert rejected.count("\\u001b[2J") == 3, "shown as the JSON escape it was sent as"

    # At the fallback width of a pipe the table must not crash either.
    code, out, err = await run_cli(settings, "report", "hostile", "--format", "table", COLUMNS="80")
    assert code == 0, err
    assert "invalid_destination" in out


async def test_a_damaged_attempt_is_one_line_not_a_traceback(
    client: CampaignClient, sandbox: SandboxServer, provider: Provider, settings: Settings
) -> None:
    """A status no script writes is damage: the report says which attempt, exit 1."""
    await hostile_campaign(client, sandbox, provider, settings)
    first = await anext(client.store.attempts("hostile"))
    await client.store.redis.hset(client.store.keys.attempt(first.attempt_id), "status", "bogus")
    for fmt in ("table", "csv", "json"):
        code, out, err = await run_cli(settings, "report", "hostile", "--format", fmt)
        assert code == 1, (fmt, out, err)
        assert len(err.strip().splitlines()) == 1, err
        assert first.attempt_id in err and "damaged" in err, err
        assert "Traceback" not in out + err
