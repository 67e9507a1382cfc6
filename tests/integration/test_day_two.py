"""An operator's day two, through the CLI as typed and the API: budget and history."""

from __future__ import annotations

import asyncio
import json
import socket
import subprocess
import sys
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
from click.testing import CliRunner, Result

from campaigns.operators.api import create_api_app
from campaigns.operators.cli import main
from campaigns.operators.control import CampaignClient
from campaigns.settings import Settings
from campaigns.testbed.sandbox import SandboxServer
from tests.conftest import spec_dict
from tests.support import WorkerProcess, creates, wait_for, worker_env

OPERATOR_TOKEN = "operator-token-0123456789abcdef"
VIEWER_TOKEN = "viewer-token-0123456789abcdef"


def cli_for(settings: Settings) -> Callable[..., asyncio.Future[Result]]:
    """``campaigns ARGS`` in-process, in a thread (the command runs its own event loop)."""
    env = worker_env(settings, DISPATCHER_LOG_LEVEL="WARNING", USER="alice", LOGNAME="alice")

    def run(*args: str) -> asyncio.Future[Result]:
        return asyncio.ensure_future(
            asyncio.to_thread(CliRunner().invoke, main, list(args), env=env)
        )

    return run


async def _state(client: CampaignClient, campaign_id: str, state: str) -> bool:
    return (await client.get(campaign_id)).state == state


async def test_budget_raises_a_halted_campaign_and_history_records_it(
    client: CampaignClient,
    settings: Settings,
    sandbox: SandboxServer,
    start_worker: Callable[..., WorkerProcess],
    tmp_path: Path,
) -> None:
    cli = cli_for(settings)
    spec_path = tmp_path / "tight.json"
    # 61 s at 0.01/min reserves 20,000 micros a call; calls cost 10,000 each, so
    # 0.05 pays for four and halts budget_exhausted with 10,000 left.
    spec = spec_dict("tight", contacts=6, budget="0.05", max_call_seconds=61)
    spec_path.write_text(json.dumps(spec))
    start_worker()
    submitted = await cli("submit", str(spec_path))
    assert submitted.exit_code == 0, submitted.stderr
    await wait_for(lambda: _state(client, "tight", "halted"), timeout=30, what="halt")
    await wait_for(lambda: _unreserved(client, "tight"), timeout=30, what="calls settled")
    campaign = await client.get("tight")
    assert campaign.halt_code == "budget_exhausted"
    spent = campaign.spent_micros
    assert spent > 0

    bad = await cli("budget", "tight", "1.0000001")
    assert bad.exit_code == 2 and "AMOUNT" in bad.stderr and bad.stderr.count("\n") == 1
    missing = await cli("budget", "nobody", "1.00")
    assert missing.exit_code == 1 and "no campaign 'nobody'" in missing.stderr
    # Below what it spent: refused naming the amounts, nothing changed (exit 2).
    below = await cli("budget", "tight", "0.01")
    assert below.exit_code == 2 and below.stderr.count("\n") == 1
    assert "budget EUR 0.01 for campaign 'tight' is below" in below.stderr
    assert f"EUR {spent / 1e6:.2f} spent + EUR 0.00 reserved" in below.stderr
    assert (await client.get("tight")).budget_micros == 50_000

    raised = await cli("budget", "tight", "0.20")
    assert raised.exit_code == 0, raised.stderr
    assert f"tight: budget EUR 0.05 -> EUR 0.20 (spent EUR {spent / 1e6:.2f}" in raised.stdout
    assert "resumable: campaigns resume tight" in raised.stdout
    assert (await client.get("tight")).state == "halted", "raising a budget resumes nothing"

    resumed = await cli("resume", "tight")
    assert resumed.exit_code == 0, resumed.stderr
    await wait_for(lambda: _state(client, "tight", "completed"), timeout=30, what="completion")
    ledger = creates(sandbox.ledger(), "tight")
    assert len(ledger) == 6
    assert len({e["variables"]["contact_ref"] for e in ledger}) == 6, "nobody dialled twice"
    # A completed campaign's budget is history: refused as a state (exit 1).
    over = await cli("budget", "tight", "5.00")
    assert over.exit_code == 1 and "completed" in over.stderr

    # The original spec again is still a no-op: the fingerprint is the submitted spec's.
    again = await cli("submit", str(spec_path))
    assert again.exit_code == 0 and "already submitted" in again.stdout, again.stderr

    shown = await cli("history", "tight")
    assert shown.exit_code == 0, shown.stderr
    lines = shown.stdout.splitlines()
    assert [line.split()[2] for line in lines] == ["submit", "budget", "resume"]
    assert all(line.split()[1] == "cli:alice" for line in lines)
    assert "budget: EUR 0.05 -> EUR 0.20" in lines[1]
    assert "state: halted -> running, halt_code: budget_exhausted" in lines[2]
    listed = await cli("history", "tight", "--json")
    entries = [json.loads(line) for line in listed.stdout.splitlines()]
    assert entries[1]["before"] == {"budget_micros": 50_000}
    assert entries[1]["after"] == {"budget_micros": 200_000}

    # The provider gave every cost: no row carries the rate model's mark, so no footnote.
    await wait_for(lambda: _unreserved(client, "tight"), timeout=30, what="every call settled")
    report = await cli("report", "tight")
    assert report.exit_code == 0 and "Calls of tight" in report.stdout
    assert "cost booked by the rate model" not in report.stdout
    rows = json.loads((await cli("report", "tight", "--format", "json")).stdout)
    assert all(r["claimed_at"] and r["sent_at"] and r["ended_at"] for r in rows)
    none = await cli("dead-letters")
    assert none.exit_code == 0 and none.stdout == "" and "no dead letters" in none.stderr

    # Do-not-call changes are the account's: `campaigns dnc history`.
    assert (await cli("dnc", "add", "+15551239999")).exit_code == 0
    account = (await cli("dnc", "history", "--json")).stdout.splitlines()
    [change] = [json.loads(line) for line in account]
    assert change["action"] == "dnc_add" and change["actor"] == "cli:alice"
    assert change["after"]["numbers"] == ["+15551239999"] and change["after"]["added"] == 1


async def _unreserved(client: CampaignClient, campaign_id: str) -> bool:
    return (await client.get(campaign_id)).reserved_micros == 0


async def test_budget_and_history_over_the_api(client: CampaignClient, settings: Settings) -> None:
    from campaigns.domain.spec import parse_spec

    api_settings = settings.model_copy(update={"api_tokens": None})
    app = create_api_app(api_settings, {OPERATOR_TOKEN: "operator", VIEWER_TOKEN: "viewer"})
    await client.submit(parse_spec(spec_dict("api-budget", contacts=2, budget="1.00")))
    transport = httpx.ASGITransport(app=app)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=transport, base_url="http://api") as http,
    ):
        operator = {"Authorization": f"Bearer {OPERATOR_TOKEN}"}
        viewer = {"Authorization": f"Bearer {VIEWER_TOKEN}"}
        url = "/v1/campaigns/api-budget"
        refused = await http.patch(url, json={"budget": "2.00"}, headers=viewer)
        assert refused.status_code == 403
        done = await http.patch(url, json={"budget": "2.50"}, headers=operator)
        assert done.status_code == 200, done.text
        assert done.json()["money"]["budget_micros"] == 2_500_000
        micros = await http.patch(url, json={"budget_micros": 3_000_000}, headers=operator)
        assert micros.json()["money"]["budget_micros"] == 3_000_000
        for body, field in (
            ({"budget": 2}, "budget"),
            ({"budget": "-1"}, "budget"),
            ({"budget_micros": "5"}, "budget_micros"),
            ({"budget": "1", "budget_micros": 1}, "budget"),
            ({"colour": "x"}, "colour"),
        ):
            bad = await http.patch(url, json=body, headers=operator)
            assert bad.status_code == 422 and bad.json()["error"]["field"] == field, body
        # Reservations held count: a budget below spent + reserved is refused by name.
        await client.store.redis.hset(client.store.keys.meta("api-budget"), "reserved", 40_000)
        below = await http.patch(url, json={"budget": "0.03"}, headers=operator)
        assert below.status_code == 422
        assert below.json()["error"]["field"] == "budget"
        assert "EUR 0.04 reserved" in below.json()["error"]["message"]
        missing = await http.patch("/v1/campaigns/nobody", json={"budget": "1"}, headers=operator)
        assert missing.status_code == 404
        paused = await http.post(f"{url}/pause", headers=operator)
        assert paused.status_code == 200

        history = await http.get(f"{url}/history", headers=viewer)
        assert history.status_code == 200
        entries = history.json()["history"]
        assert [e["action"] for e in entries] == ["submit", "budget", "budget", "pause"]
        actor = entries[1]["actor"]
        assert actor.startswith("api:operator:") and OPERATOR_TOKEN not in actor
        assert entries[2]["before"] == {"budget_micros": 2_500_000}
        assert entries[3]["before"] == {"state": "queued"}
        assert entries[3]["after"] == {"state": "paused"}
        newest = await http.get(f"{url}/history?limit=1", headers=viewer)
        assert [e["action"] for e in newest.json()["history"]] == ["pause"]
        assert (await http.get(f"{url}/history?limit=0", headers=viewer)).status_code == 422
        assert (await http.get("/v1/campaigns/nobody/history", headers=viewer)).status_code == 404
        unsent = await http.get(f"{url}/contacts?status=unsent", headers=viewer)
        assert unsent.status_code == 200
        assert unsent.headers["content-type"].startswith("text/csv")
        assert unsent.text.splitlines() == ["to,ref", "+15551240000,cust_0", "+15551240001,cust_1"]
        as_json = await http.get(f"{url}/contacts?status=unsent&format=json", headers=viewer)
        assert [c["ref"] for c in as_json.json()] == ["cust_0", "cust_1"]
        for query, field in (("status=sleeping", "status"), ("status=busy&format=xml", "format")):
            bad = await http.get(f"{url}/contacts?{query}", headers=viewer)
            assert bad.status_code == 422 and bad.json()["error"]["field"] == field
        removed = await http.post(
            "/v1/dnc/remove", json={"numbers": ["+15551230009"]}, headers=operator
        )
        assert removed.status_code == 200
        [change] = await client.store.history.read(None)
        assert change["action"] == "dnc_remove" and change["actor"] == actor


async def test_what_was_never_dialled_pipes_into_a_new_campaign(
    client: CampaignClient,
    settings: Settings,
    sandbox: SandboxServer,
    start_worker: Callable[..., WorkerProcess],
    tmp_path: Path,
) -> None:
    """Halted by its budget, then cancelled: status says what was left and why, and
    ``campaigns contacts`` lists each outcome as a contacts file a new campaign takes."""
    cli = cli_for(settings)
    spec = spec_dict("first", contacts=10, budget="0.05", max_call_seconds=61)
    numbers = [c["to"] for c in spec["contacts"]]
    spec["contacts"][8]["variables"] = {"name": 'Ann, "the" first', "tier": 3}
    spec["suppress"] = [numbers[4]]
    sandbox.configure(
        per_number={
            numbers[1]: {"final_status": "no_answer", "billsec_seconds": 0},
            numbers[2]: {"final_status": "busy", "billsec_seconds": 0},
        },
        invalid_numbers=[numbers[3]],
    )
    # Completed calls cost 0.01 against a 0.02 worst case: 0.05 pays for contacts
    # 0, 5, 6 and 7 (1-3 cost nothing, 4 is suppressed); 8 and 9 are never dialled.
    spec_path = tmp_path / "first.json"
    spec_path.write_text(json.dumps(spec))
    start_worker()
    assert (await cli("submit", str(spec_path))).exit_code == 0
    await wait_for(lambda: _state(client, "first", "halted"), timeout=30, what="budget halt")
    await wait_for(lambda: _unreserved(client, "first"), timeout=30, what="calls settled")
    assert (await cli("cancel", "first")).exit_code == 0

    status = json.loads((await cli("status", "first", "--json")).stdout)
    assert status["counts"]["pending"] == 0
    assert status["counts"]["not_dialled"] == 3
    assert status["not_dialled"] == {"halted": 2, "suppressed": 1}
    text = (await cli("status", "first")).stdout
    assert "10 (0 pending)" in text and "3 (halted 2, suppressed 1)" in text

    async def listed(outcome: str, fmt: str = "csv") -> str:
        result = await cli("contacts", "first", "--status", outcome, "--format", fmt)
        assert result.exit_code == 0, result.stderr
        return result.stdout

    unsent = await listed("unsent")
    assert unsent.splitlines() == [
        "to,ref,name,tier",
        f'{numbers[8]},cust_8,"Ann, ""the"" first",3',
        f"{numbers[9]},cust_9,,",
    ]
    for outcome, index in (("no_answer", 1), ("busy", 2), ("failed", 3), ("suppressed", 4)):
        assert (await listed(outcome)).splitlines() == ["to,ref", f"{numbers[index]},cust_{index}"]
    assert (await listed("expired")).splitlines() == ["to,ref"]
    as_json = json.loads(await listed("unsent", "json"))
    assert as_json[0] == {
        "to": numbers[8],
        "ref": "cust_8",
        "variables": {"name": 'Ann, "the" first', "tier": 3},
    }
    bad = await cli("contacts", "first", "--status", "sleeping")
    assert bad.exit_code == 2 and "--status" in bad.stderr

    # The rest, as a new campaign: the CSV goes straight back in.
    rest_csv = tmp_path / "rest.csv"
    rest_csv.write_text(unsent)
    rest = spec_dict("rest", contacts=0)
    rest_path = tmp_path / "rest.json"
    rest_path.write_text(json.dumps(rest))
    submitted = await cli("submit", str(rest_path), "--contacts", str(rest_csv))
    assert submitted.exit_code == 0, submitted.stderr
    assert "rest: submitted, 2 contacts" in submitted.stdout
    await wait_for(lambda: _state(client, "rest", "completed"), timeout=30, what="the rest")
    dialled = creates(sandbox.ledger(), "rest")
    assert sorted(json.loads(e["body"])["to"] for e in dialled) == [numbers[8], numbers[9]]
    [ann, _] = await client.store.contact_documents("rest", [0, 1])
    assert ann is not None
    assert json.loads(ann)["variables"] == {"name": 'Ann, "the" first', "tier": "3"}


async def test_real_lists_skip_invalid_rows_and_read_national_numbers(
    client: CampaignClient, settings: Settings, tmp_path: Path
) -> None:
    cli = cli_for(settings)
    contacts = tmp_path / "export.csv"
    contacts.write_text(
        "to,ref,name\n"
        "+15551240001,a,Ann\n"
        "(555) 124-0002,b,Bob\n"  # national: refused without default_region
        "+1555,c,Cy\n"  # not a possible number
        f"+15551240004,{'r' * 201},Di\n"  # ref too long
        "+15551240005,e,Ed,extra\n"  # more values than the header
        "+15551240001,a2,Ann again\n"  # a duplicate: dropped, not refused
        "+15551240006,f,Flo\n"
    )
    spec_path = tmp_path / "real.json"
    spec_path.write_text(json.dumps(spec_dict("real", contacts=0)))

    strict = await cli("submit", str(spec_path), "--contacts", str(contacts))
    assert strict.exit_code == 2 and strict.stderr.count("\n") == 1
    assert f"contacts[{contacts} line 3].to" in strict.stderr
    assert await client.store.campaign("real") is None, "nothing written"

    estimated = await cli(
        "estimate", str(spec_path), "--contacts", str(contacts), "--skip-invalid", "--json"
    )
    assert estimated.exit_code == 0, estimated.stderr
    assert json.loads(estimated.stdout)["refused_rows"] == 4
    rejects = tmp_path / "export.rejects.csv"
    assert rejects.exists()

    chosen = tmp_path / "refused.csv"
    skipped = await cli(
        "submit",
        str(spec_path),
        "--contacts",
        str(contacts),
        "--skip-invalid",
        "--rejects",
        str(chosen),
    )
    assert skipped.exit_code == 0, skipped.stderr
    assert "real: submitted, 2 contacts (1 duplicates dropped); 4 rows refused" in skipped.stdout
    rows = chosen.read_text().splitlines()
    assert rows[0] == "line,column,reason,to,ref"
    assert [r.split(",")[:2] for r in rows[1:]] == [
        ["3", "to"],
        ["4", "to"],
        ["5", "ref"],
        ["6", "row"],
    ]
    assert "default_region" in rows[1] and "more values than header columns" in rows[4]
    assert (await client.get("real")).contacts == 2
    again = await cli("submit", str(spec_path), "--contacts", str(contacts), "--skip-invalid")
    assert again.exit_code == 0 and "already submitted" in again.stdout
    assert len(rejects.read_text().splitlines()) == 5, "each refused row once"

    misuse = await cli("submit", str(spec_path), "--skip-invalid")
    assert misuse.exit_code == 2 and "--contacts" in misuse.stderr

    # National numbers with default_region: the region's own spelling, stored in E.164.
    national = spec_dict("national", contacts=0, default_region="GB")
    national["contacts"] = [{"to": "020 7946 0958", "ref": "ldn"}]
    national["suppress"] = ["07700 900123"]
    path = tmp_path / "national.json"
    path.write_text(json.dumps(national))
    gb = tmp_path / "gb.csv"
    gb.write_text("to,ref\n0161 496 0000,mcr\n+15551240009,us\n")
    done = await cli("submit", str(path), "--contacts", str(gb))
    assert done.exit_code == 0, done.stderr
    stored = await client.store.contact_documents("national", [0, 1, 2])
    assert [json.loads(d or "{}")["to"] for d in stored] == [
        "+442079460958",
        "+441614960000",
        "+15551240009",
    ]
    assert await client.store.redis.smembers(
        client.store.keys.campaign("national", "suppress")
    ) == {b"+447700900123"}
    wrong = dict(national, campaign_id="nowhere", default_region="XX")
    path.write_text(json.dumps(wrong))
    refused = await cli("submit", str(path))
    assert refused.exit_code == 2 and "default_region" in refused.stderr


async def test_money_terms_are_said_and_a_schedule_that_cannot_dial_is_refused(
    client: CampaignClient,
    settings: Settings,
    start_worker: Callable[..., WorkerProcess],
    tmp_path: Path,
) -> None:
    cli = cli_for(settings)
    path = tmp_path / "spec.json"

    async def submit(spec: dict[str, object], *extra: str) -> Result:
        path.write_text(json.dumps(spec))
        return await cli(*extra, str(path)) if extra else await cli("submit", str(path))

    for field in ("rate", "currency"):
        spec = spec_dict("no-default", contacts=1)
        spec.pop(field)
        refused = await submit(spec)
        assert refused.exit_code == 2 and f"invalid input: {field}: required" in refused.stderr
        estimated = await submit(spec, "estimate")
        assert estimated.exit_code == 2 and f"{field}: required" in estimated.stderr
    assert await client.store.campaign("no-default") is None

    spec = spec_dict("said", contacts=1, rate={"per_minute": "0.012", "increments": "30/6"})
    done = await submit(spec)
    assert done.exit_code == 0, done.stderr
    assert (
        "said: reserving at EUR 0.012 per minute, 30/6 increments, connect fee EUR 0.00; "
        "worst case per call EUR 0.024 (120 s)"
    ) in done.stdout
    estimated = await submit(spec, "estimate")
    assert "EUR 0.012 per minute, 30/6 increments, connect fee EUR 0.00" in estimated.stdout

    now = datetime.now(UTC)
    ended = spec_dict("ended", contacts=1, schedule={"end_at": _iso(now - timedelta(minutes=1))})
    refused = await submit(ended)
    assert refused.exit_code == 2 and "schedule.end_at: " in refused.stderr
    assert "has already passed" in refused.stderr
    assert await client.store.campaign("ended") is None
    said = await submit(ended, "estimate")
    assert said.exit_code == 0 and "refused at submit     schedule.end_at" in said.stdout

    # A window from two to three hours from now, an end in one hour: it never opens.
    opens, closes = now + timedelta(hours=2), now + timedelta(hours=3)
    shut = spec_dict(
        "shut",
        contacts=1,
        schedule={"end_at": _iso(now + timedelta(hours=1))},
        calling_window={
            "start": opens.strftime("%H:%M"),
            "end": closes.strftime("%H:%M"),
            "timezone": "UTC",
        },
    )
    refused = await submit(shut)
    assert refused.exit_code == 2 and "invalid input: calling_window: opens for no contact" in (
        refused.stderr
    )
    assert await client.store.campaign("shut") is None
    as_json = json.loads((await cli("estimate", str(path), "--json")).stdout)
    assert as_json["policy"]["refused"].startswith("calling_window: opens for no contact")
    # The same window with an end after it opens is fine, and the ETA follows it:
    # one contact at 50/s is dialled the moment the window opens.
    shut["schedule"] = {"end_at": _iso(now + timedelta(hours=4))}
    assert (await submit(shut)).exit_code == 0
    start_worker()

    async def waits_for_window() -> bool:
        shown = await client.status("shut")
        return shown["waiting"] is not None and shown["waiting"]["reason"] == "window"

    await wait_for(waits_for_window, timeout=30, what="waiting for the window")
    shown = await client.status("shut")
    assert shown["eta"] == opens.strftime("%Y-%m-%dT%H:%M:00Z")


def _iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def test_a_taken_port_is_one_line_naming_the_option_or_setting(settings: Settings) -> None:
    """Worker metrics, sandbox, api and ingress on a port something listens on: exit 2."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        env = worker_env(
            settings,
            DISPATCHER_METRICS_PORT=str(port),
            DISPATCHER_API_TOKENS=json.dumps({OPERATOR_TOKEN: "operator"}),
        )
        for argv, named in (
            (["worker"], "invalid settings: DISPATCHER_METRICS_PORT: cannot listen on"),
            (["sandbox", "--port", str(port)], "invalid value for '--port': cannot listen on"),
            (["api", "--port", str(port)], "invalid value for '--port': cannot listen on"),
            (["ingress", "--port", str(port)], "invalid value for '--port': cannot listen on"),
            (["api", "--host", "no-such-host.invalid"], "'--host': cannot resolve host"),
        ):
            result = CliRunner().invoke(main, argv, env=env)
            assert result.exit_code == 2, (argv, result.output)
            assert result.stderr.count("\n") == 1 and named in result.stderr, argv
        # The worker run directly (what `campaigns worker` execs) says the same.
        direct = subprocess.run(
            [sys.executable, "-m", "worker"], env=env, capture_output=True, text=True, timeout=60
        )
        assert direct.returncode == 2
        assert direct.stderr.strip().splitlines() == [
            f"error: invalid settings: DISPATCHER_METRICS_PORT: cannot listen on 0.0.0.0:{port}: "
            "Address already in use"
        ]
