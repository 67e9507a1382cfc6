"""Issue #13 through the real ``campaigns`` binary: an operator can tell what is
happening and why.

- a misconfiguration is caught at start, or halts with its own code, never
  looping as a provider outage;
- ``status`` and ``list`` say why a campaign is not sending, since when, how
  far it is, how fast it goes and when it should end;
- money reads as money (``EUR 1,234.57``), JSON keeps micros; ``submit``
  refuses a spec without contacts and warns about a budget below one call;
- the report names attempts being sent, fits a terminal, is plain text in a
  file, and ends quietly when its reader leaves.

Subprocess timeouts are only a safety net against a hang.
"""

from __future__ import annotations

import asyncio
import json
import os
import pty
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from campaigns.domain.lifecycle import BUDGET_EXHAUSTED_MESSAGE, REVIEW_MESSAGE, HaltCode, Move
from campaigns.domain.spec import parse_spec
from campaigns.engine.dispatch import Dispatcher
from campaigns.engine.settlement import Settler
from campaigns.operators.control import CampaignClient
from campaigns.providers.minivoice import MiniVoice
from campaigns.settings import Settings
from campaigns.store import now_ms
from campaigns.testbed.sandbox import SandboxServer
from tests.conftest import spec_dict
from tests.support import CAMPAIGNS_BIN, WorkerProcess, wait_for, worker_env

pytestmark = pytest.mark.integration

SAFETY_NET_SECONDS = 120


def cli(
    settings: Settings, *args: str, cwd: Path | None = None, **env: str
) -> subprocess.CompletedProcess[str]:
    """``campaigns ARGS`` as an operator runs it, with these settings in the environment."""
    return subprocess.run(
        [CAMPAIGNS_BIN, *args],
        env=worker_env(settings, **env),
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=SAFETY_NET_SECONDS,
        stdin=subprocess.DEVNULL,
    )


def one_error_line(result: subprocess.CompletedProcess[str]) -> str:
    assert "Traceback" not in result.stderr + result.stdout
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")
    return lines[0]


def status(settings: Settings, campaign_id: str) -> dict[str, Any]:
    result = cli(settings, "status", campaign_id, "--json")
    assert result.returncode == 0, result.stderr
    parsed: dict[str, Any] = json.loads(result.stdout)
    return parsed


# --- 1. refuse to start wrong ---------------------------------------------------------


@pytest.mark.parametrize("where", ["environment", ".env"])
def test_a_misspelt_setting_is_refused_by_name(
    settings: Settings, tmp_path: Path, where: str
) -> None:
    """``DISPATCHER_REDIS_URI`` used to be ignored (and 127.0.0.1:6379 used)."""
    if where == ".env":
        (tmp_path / ".env").write_text("DISPATCHER_REDIS_URI=redis://10.0.0.9:6379/0\n")
        result = cli(settings, "list", cwd=tmp_path)
    else:
        result = cli(settings, "list", cwd=tmp_path, DISPATCHER_REDIS_URI="redis://10.0.0.9/0")
    assert result.returncode == 2
    assert one_error_line(result) == (
        "error: invalid settings: DISPATCHER_REDIS_URI (did you mean DISPATCHER_REDIS_URL?): "
        "not a DISPATCHER_* setting"
    )
    assert result.stdout == ""


def test_the_log_level_comes_from_dotenv_too(settings: Settings, tmp_path: Path) -> None:
    """The CLI read DISPATCHER_LOG_LEVEL from the environment only, bypassing .env."""
    env = worker_env(settings)
    env.pop("DISPATCHER_LOG_LEVEL")
    (tmp_path / ".env").write_text("DISPATCHER_LOG_LEVEL=NOPE\n")
    result = subprocess.run(
        [CAMPAIGNS_BIN, "list"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=SAFETY_NET_SECONDS,
    )
    assert result.returncode == 2
    assert one_error_line(result).startswith("error: invalid settings: DISPATCHER_LOG_LEVEL: ")


def test_the_ingress_will_not_start_without_redis(settings: Settings, tmp_path: Path) -> None:
    dead = "redis://127.0.0.1:9/0"  # the discard port: nothing listens there
    result = cli(settings, "ingress", "--port", "1", cwd=tmp_path, DISPATCHER_REDIS_URL=dead)
    assert result.returncode == 1
    line = one_error_line(result)
    assert "cannot reach Redis at 127.0.0.1:9" in line and "DISPATCHER_REDIS_URL" in line


def test_the_worker_says_at_once_that_redis_is_not_there(
    settings: Settings, tmp_path: Path
) -> None:
    """It still rides a missing Redis out (issue #12), but says so on its first line."""
    env = worker_env(settings, DISPATCHER_REDIS_URL="redis://127.0.0.1:9/0")
    proc = subprocess.Popen(
        [CAMPAIGNS_BIN, "worker"],
        env=env,
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        assert proc.stderr is not None
        first = proc.stderr.readline()
        assert first.startswith("warning: cannot reach Redis at 127.0.0.1:9"), first
        assert "DISPATCHER_REDIS_URL" in first and "keeps retrying" in first
        assert proc.poll() is None
    finally:
        proc.terminate()
        proc.wait(SAFETY_NET_SECONDS)


async def test_a_rejected_api_key_halts_with_its_own_code(
    settings: Settings,
    client: CampaignClient,
    sandbox: SandboxServer,
    start_worker: Callable[..., WorkerProcess],
) -> None:
    """A 401 is a configuration error: one request, then halted, never a cool-down loop."""
    # One request at a time: with overlap, a second could start before the 401 is back.
    spec = spec_dict("keyed", contacts=3)
    spec["pacing"] = {**spec["pacing"], "max_concurrent_requests": 1}
    await client.submit(parse_spec(spec))
    wrong = settings.model_copy(update={"provider_api_key": SecretStr("not-the-sandbox-key")})
    start_worker(wrong)

    async def halted() -> dict[str, Any] | None:
        shown = await client.status("keyed")
        return shown if shown["state"] == "halted" else None

    shown = await wait_for(halted, timeout=60, what="the campaign to halt")
    assert shown["halt"]["code"] == HaltCode.PROVIDER_AUTH_FAILED
    assert "DISPATCHER_PROVIDER_API_KEY" in shown["halt"]["message"]
    assert shown["waiting"]["reason"] == "halted"
    assert [e["status"] for e in sandbox.ledger()] == [401]
    text = cli(settings, "status", "keyed")
    assert "provider_auth_failed" in text.stdout and "not-the-sandbox-key" not in text.stdout


async def test_a_header_the_client_cannot_send_halts_instead_of_cooling_down(
    settings: Settings, client: CampaignClient, sandbox: SandboxServer
) -> None:
    """The issue's loop: an empty key sends ``Bearer `` that h11 refuses locally. It was
    transient, so the campaign paused for provider_unavailable and resumed forever."""
    await client.submit(parse_spec(spec_dict("unsendable", contacts=2)))
    provider = MiniVoice(settings.provider_url, SecretStr(""), timeout=2)
    try:
        dispatcher = Dispatcher(client.store, provider, client.queue, settings)
        result = await dispatcher.run_batch("unsendable", 1)
    finally:
        await provider.aclose()
    assert result.outcome == "halt"
    campaign = await client.get("unsendable")
    assert campaign.state == "halted"
    assert campaign.halt_code == HaltCode.REQUEST_UNSENDABLE
    assert sandbox.ledger() == []  # nothing ever left
    attempts = [a async for a in client.store.attempts("unsendable")]
    assert [a.status for a in attempts] == ["rejected"]  # not in doubt: provably not sent
    assert attempts[0].error_code == HaltCode.REQUEST_UNSENDABLE


# --- 2. status explains itself --------------------------------------------------------


async def test_status_says_no_worker_then_operator_pause_then_cooldown(
    settings: Settings, client: CampaignClient
) -> None:
    await client.submit(parse_spec(spec_dict("idle", contacts=4)))
    shown = status(settings, "idle")
    assert shown["state"] == "queued"
    assert shown["waiting"]["reason"] == "no_worker"
    assert shown["progress"] == {
        "done": 0,
        "not_dialled": 0,
        "percent": 0.0,
        "calls_last_minute": 0,
        "configured_calls_per_second": 50.0,
        "weight": 1.0,
        "held_by": None,
    }
    assert shown["times"]["created_at"] is not None and shown["times"]["heartbeat_at"] is None
    # The keys other tools already read are unchanged.
    assert shown["counts"]["contacts"] == 4 and shown["money"]["budget_micros"] == 50_000_000

    await client.pause("idle")
    paused = status(settings, "idle")
    assert paused["waiting"]["reason"] == "paused_by_operator" and paused["halt"] is None
    assert "paused by an operator" in cli(settings, "status", "idle").stdout

    await client.store.transition("idle", Move.RESUME)
    until = now_ms() + 90_000
    await client.store.transition(
        "idle",
        Move.COOL_DOWN,
        halt_code=HaltCode.PROVIDER_UNAVAILABLE,
        halt_message="create request kept failing",
        cooldown_until_ms=until,
    )
    cooling = status(settings, "idle")
    assert cooling["state"] == "paused"
    assert cooling["waiting"]["reason"] == "cooldown"
    assert cooling["waiting"]["until"] is not None
    text = cli(settings, "status", "idle").stdout
    assert "automatic cool-down" in text and "from now" in text
    assert "paused by an operator" not in text


async def test_status_and_list_say_why_a_running_campaign_waits(
    settings: Settings,
    client: CampaignClient,
    sandbox: SandboxServer,
    start_worker: Callable[..., WorkerProcess],
) -> None:
    """Live calls at max_in_flight, and a budget held by live calls: both used to read
    just ``running``."""
    sandbox.configure(call_duration_real_seconds=120, call_seconds=30)
    full = spec_dict("full", contacts=5, pacing={"calls_per_second": 50, "max_in_flight": 2})
    # Worst case 0.02 a call (120 s at 0.01/min): room for two calls at a time.
    held = spec_dict("held", contacts=5, budget="0.05")
    await client.submit(parse_spec(full))
    await client.submit(parse_spec(held))
    start_worker()

    async def waiting(campaign_id: str, reason: str) -> dict[str, Any] | None:
        shown = await client.status(campaign_id)
        return shown if (shown["waiting"] or {}).get("reason") == reason else None

    shown = await wait_for(lambda: waiting("full", "max_in_flight"), timeout=60)
    assert shown["state"] == "running"
    assert shown["progress"]["done"] == 2 and shown["progress"]["percent"] == 40.0
    assert shown["progress"]["calls_last_minute"] == 2
    assert shown["eta"] is not None and shown["waiting"]["since"] is not None
    await wait_for(lambda: waiting("held", "budget_held"), timeout=60)

    from_cli = status(settings, "full")
    assert from_cli["waiting"]["reason"] == "max_in_flight"
    assert from_cli["times"]["heartbeat_at"] is not None
    text = cli(settings, "status", "full").stdout
    assert "max_in_flight" in text and "40% (2 of 5" in text and "eta " in text

    listed = cli(settings, "list", "--json")
    assert listed.returncode == 0, listed.stderr
    by_id = {c["campaign_id"]: c for c in json.loads(listed.stdout)}
    assert by_id["full"]["waiting"]["reason"] == "max_in_flight"
    assert by_id["held"]["waiting"]["reason"] == "budget_held"
    lines = cli(settings, "list").stdout.splitlines()
    assert lines[0].split()[:3] == ["CAMPAIGN", "STATE", "DONE"]
    row = {line.split()[0]: line for line in lines[1:]}
    assert row["full"].split()[1] == "running" and row["full"].endswith("max_in_flight")
    assert "EUR 0.05" in row["held"] and row["held"].endswith("budget_held")


# --- 3. money for people ----------------------------------------------------------------


async def test_status_writes_money_for_people_and_json_keeps_micros(
    settings: Settings, client: CampaignClient
) -> None:
    await client.submit(parse_spec(spec_dict("rich", contacts=1, budget="1234.5678")))
    text = cli(settings, "status", "rich").stdout
    assert "budget             EUR 1,234.57" in text
    assert status(settings, "rich")["money"]["budget_micros"] == 1_234_567_800


async def test_a_halt_message_in_micros_reads_as_money(
    settings: Settings, client: CampaignClient
) -> None:
    await client.submit(parse_spec(spec_dict("poor", contacts=2, budget="0.01")))
    await client.store.transition("poor", Move.START)
    await client.store.acquire_lease("poor", "t", 10)
    claim = await client.store.claim(
        "poor", "t", review_message=REVIEW_MESSAGE, budget_message=BUDGET_EXHAUSTED_MESSAGE
    )
    assert claim.outcome == "budget_exhausted"
    text = cli(settings, "status", "poor").stdout
    assert "remaining budget EUR 0.01 is below the worst case of one call (EUR 0.02)" in text
    assert "micros" not in text
    resumed = cli(settings, "resume", "poor")
    assert resumed.returncode == 1
    assert one_error_line(resumed) == (
        "error: cannot resume campaign 'poor': remaining budget EUR 0.01 "
        "is below one call's worst case (EUR 0.02)"
    )


def test_submit_refuses_a_spec_without_contacts(settings: Settings, tmp_path: Path) -> None:
    spec = tmp_path / "empty.json"
    spec.write_text(json.dumps(spec_dict("empty", contacts=0)))
    result = cli(settings, "submit", str(spec))
    assert result.returncode == 2
    assert one_error_line(result).startswith("error: invalid input: contacts: at least one")
    listed = cli(settings, "list", "--json")
    assert json.loads(listed.stdout) == []


def test_submit_warns_when_the_budget_cannot_cover_one_call(
    settings: Settings, tmp_path: Path
) -> None:
    spec = tmp_path / "tiny.json"
    spec.write_text(json.dumps(spec_dict("tiny", contacts=2, budget="0.01")))
    result = cli(settings, "submit", str(spec))
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("tiny: submitted")
    assert result.stderr.splitlines() == [
        "warning: budget EUR 0.01 cannot cover one call's worst case (EUR 0.02, 120 s): "
        "the campaign halts with budget_exhausted before its first call"
    ]


def test_cancelling_twice_is_a_no_op_like_pausing_twice(settings: Settings, tmp_path: Path) -> None:
    spec = tmp_path / "twice.json"
    spec.write_text(json.dumps(spec_dict("twice", contacts=1)))
    assert cli(settings, "submit", str(spec)).returncode == 0
    for verb in ("pause", "pause", "cancel", "cancel"):
        result = cli(settings, verb, "twice")
        assert result.returncode == 0, (verb, result.stderr)
    assert result.stdout == "twice: cancelled\n"


# --- 4. reports that read ---------------------------------------------------------------


async def sending_campaign(client: CampaignClient) -> str:
    """One attempt claimed (being sent), nothing recorded yet: a worker mid-request."""
    await client.submit(parse_spec(spec_dict("midway", contacts=3)))
    await client.store.transition("midway", Move.START)
    await client.store.acquire_lease("midway", "t", 10)
    claim = await client.store.claim(
        "midway", "t", review_message=REVIEW_MESSAGE, budget_message=BUDGET_EXHAUSTED_MESSAGE
    )
    assert claim.attempt is not None
    return claim.attempt.attempt_id


async def test_an_attempt_being_sent_is_not_called_in_doubt(
    settings: Settings, client: CampaignClient
) -> None:
    attempt_id = await sending_campaign(client)
    assert status(settings, "midway")["counts"]["in_doubt"] == 0
    rows = json.loads(cli(settings, "report", "midway", "--format", "json").stdout)
    assert [(r["attempt_id"], r["status"]) for r in rows] == [(attempt_id, "sending")]
    plain = cli(settings, "report", "midway").stdout
    assert "# Being sent (the provider's answer is not recorded yet)" in plain
    assert "In doubt" not in plain and attempt_id in plain


def run_in_terminal(settings: Settings, columns: int, *args: str) -> str:
    """The CLI on a pseudo-terminal ``columns`` wide, as an operator sees it."""
    leader, follower = pty.openpty()
    proc = subprocess.Popen(
        [CAMPAIGNS_BIN, *args],
        env=worker_env(settings, COLUMNS=str(columns), LINES="50", TERM="dumb"),
        stdout=follower,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
    )
    os.close(follower)
    chunks: list[bytes] = []
    while True:
        try:
            chunk = os.read(leader, 65536)
        except OSError:  # EIO: the child closed the terminal
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(leader)
    _, err = proc.communicate(timeout=SAFETY_NET_SECONDS)
    assert proc.returncode == 0, err
    return b"".join(chunks).decode()


async def test_the_table_fits_80_columns_and_never_drops_the_cost(
    settings: Settings, client: CampaignClient, sandbox: SandboxServer
) -> None:
    sandbox.configure(call_seconds=75)
    await client.submit(parse_spec(spec_dict("narrow", contacts=2)))
    provider = MiniVoice(settings.provider_url, settings.provider_api_key, timeout=2)
    try:
        dispatcher = Dispatcher(client.store, provider, client.queue, settings)
        assert (await dispatcher.run_batch("narrow", 1)).outcome == "completed"
        settler = Settler(client.store, provider, settings)

        async def settled() -> bool:
            await settler.poll_due()
            return (await client.get("narrow")).settled == 2

        await wait_for(settled, timeout=30)
    finally:
        await provider.aclose()
    for columns in (80, 60):
        shown = run_in_terminal(settings, columns, "report", "narrow")
        lines = shown.splitlines()
        assert all(len(line) <= columns for line in lines), shown
        for attempt in [a async for a in client.store.attempts("narrow")]:
            assert attempt.call_id is not None
            row = next(line for line in lines if attempt.call_id in line)
            assert row.rstrip().endswith("EUR 0.02")  # whole, never cut
        if columns == 80:
            assert "completed" in shown and "billed s" in shown


async def test_a_reader_that_leaves_ends_the_report_quietly(
    settings: Settings, client: CampaignClient
) -> None:
    """``report --format csv | head`` ended with "cannot reach Redis: Broken pipe"."""
    await sending_campaign(client)
    read_end, write_end = os.pipe()
    os.close(read_end)  # the reader is gone before the first line is written
    proc = await asyncio.create_subprocess_exec(
        CAMPAIGNS_BIN,
        "report",
        "midway",
        "--format",
        "csv",
        env=worker_env(settings),
        stdout=write_end,
        stderr=asyncio.subprocess.PIPE,
    )
    os.close(write_end)
    _, err = await asyncio.wait_for(proc.communicate(), SAFETY_NET_SECONDS)
    assert err.decode() == ""
    assert proc.returncode == 0


async def test_reconcile_without_the_providers_usage_is_a_failure(
    settings: Settings, client: CampaignClient
) -> None:
    """It printed "over None calls" and exited 0 when the usage could not be read."""
    await client.submit(parse_spec(spec_dict("unreconciled", contacts=1)))
    result = cli(
        settings, "reconcile", "unreconciled", DISPATCHER_PROVIDER_URL="http://127.0.0.1:9"
    )
    assert result.returncode == 1
    assert "None" not in result.stdout
    assert "provider usage    unavailable (network connect_failed" in result.stdout
    line = one_error_line(result)
    assert line.startswith("error: the provider's usage could not be read: network connect_failed")


def test_the_sandbox_accepts_the_configured_api_key(tmp_path: Path) -> None:
    """``campaigns sandbox`` ignored DISPATCHER_PROVIDER_API_KEY (and its own key,
    ``sandbox-key``, was documented nowhere)."""
    import socket
    import time

    import httpx

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = {k: v for k, v in os.environ.items() if not k.startswith("DISPATCHER_")}
    (tmp_path / ".env").write_text("DISPATCHER_PROVIDER_API_KEY=key-from-dotenv-0001\n")
    proc = subprocess.Popen(
        [CAMPAIGNS_BIN, "sandbox", "--port", str(port)],
        env=env,
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    body = {"from": "+15551230001", "to": "+15551230002"}

    def create(key: str) -> int:
        headers = {"Authorization": f"Bearer {key}", "Idempotency-Key": key}
        url = f"http://127.0.0.1:{port}/v1/calls"
        return httpx.post(url, json=body, headers=headers, timeout=5).status_code

    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                first = create("sandbox-key")
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline, "the sandbox never answered"
                time.sleep(0.1)
        assert first == 401
        assert create("key-from-dotenv-0001") in (200, 201)
    finally:
        proc.terminate()
        proc.wait(SAFETY_NET_SECONDS)


async def test_the_reads_behind_status_page_from_the_tail_and_bound_their_scan(
    client: CampaignClient,
) -> None:
    spec = spec_dict("many", contacts=450, pacing={"calls_per_second": 50, "max_in_flight": 1000})
    await client.submit(parse_spec(spec))
    store = client.store
    await store.transition("many", Move.START)
    await store.acquire_lease("many", "t", 30)
    times = []
    for _ in range(450):
        claim = await store.claim(
            "many", "t", review_message=REVIEW_MESSAGE, budget_message=BUDGET_EXHAUSTED_MESSAGE
        )
        assert claim.attempt is not None
        times.append((await store.attempt(claim.attempt.attempt_id)).created_at_ms)  # type: ignore[union-attr]
    newest_first = sorted(times, reverse=True)
    assert await store.recent_claims("many", 0, page=200) == newest_first
    cut = times[300]
    assert await store.recent_claims("many", cut, page=200) == [t for t in newest_first if t >= cut]
    assert await store.recent_claims("many", newest_first[0] + 1) == []

    # Whether a worker is alive is one read of one key, never a SCAN of these keys.
    assert await store.worker_alive("dispatcher:test", now_ms()) is False
    await store.note_worker_alive("dispatcher:test", "host", now_ms() + 60_000)
    assert await store.worker_alive("dispatcher:test", now_ms()) is True
    assert await store.worker_alive("dispatcher:test", now_ms() + 61_000) is False
    assert await store.worker_alive("dispatcher:other", now_ms()) is False


async def test_status_says_stalled_and_settling(settings: Settings, client: CampaignClient) -> None:
    """A worker is alive (its beat, as the worker writes it) but this campaign's
    dispatcher has not beaten for longer than the sweeper waits: stalled. All contacts
    claimed with calls still live: settling."""
    await client.submit(parse_spec(spec_dict("slow", contacts=2)))
    store = client.store
    await store.transition("slow", Move.START)
    await store.note_worker_alive(settings.queue_name, "host", now_ms() + 60_000)
    stale = now_ms() - 120_000
    await store.redis.hset(store.keys.meta("slow"), "heartbeat_at", str(stale))
    shown = status(settings, "slow")
    assert shown["waiting"]["reason"] == "stalled"
    assert shown["eta"] is not None  # the sweeper restarts it: the pace still applies

    await store.heartbeat("slow")
    assert status(settings, "slow")["waiting"] is None  # running and free to send
    assert "no: sending at the configured pace" in cli(settings, "status", "slow").stdout
    await store.acquire_lease("slow", "t", 10)
    for _ in range(2):
        claim = await store.claim(
            "slow", "t", review_message=REVIEW_MESSAGE, budget_message=BUDGET_EXHAUSTED_MESSAGE
        )
        assert claim.outcome == "claimed"
    shown = status(settings, "slow")
    assert shown["waiting"]["reason"] == "settling"
    assert shown["progress"]["percent"] == 100.0 and shown["progress"]["calls_last_minute"] == 2


async def test_a_queue_name_with_glob_characters_finds_only_its_own_workers(
    settings: Settings, client: CampaignClient
) -> None:
    from campaigns.operators.control import explain

    await client.submit(parse_spec(spec_dict("globbed", contacts=1)))
    campaign = await client.get("globbed")
    odd = settings.model_copy(update={"queue_name": "q[1]*"})
    await client.store.note_worker_alive("q1x", "host", now_ms() + 60_000)  # another queue's
    assert (await explain(client.store, campaign, odd)).waiting.reason == "no_worker"  # type: ignore[union-attr]
    await client.store.note_worker_alive("q[1]*", "host", now_ms() + 60_000)
    assert (await explain(client.store, campaign, odd)).waiting.reason == "queued"  # type: ignore[union-attr]


async def test_list_pages_with_the_apis_filters_and_cursor(
    settings: Settings, client: CampaignClient
) -> None:
    for name in ("page-a", "page-b", "page-c"):
        await client.submit(parse_spec(spec_dict(name, contacts=1)))
    first = cli(settings, "list", "--json", "--limit", "2", "--name", "Spring")
    assert first.returncode == 0, first.stderr
    page = json.loads(first.stdout)
    assert [c["campaign_id"] for c in page["campaigns"]] == ["page-a", "page-b"]
    after = ("--cursor", page["next_cursor"], "--name", "Spring")  # a cursor keeps its filters
    rest = json.loads(cli(settings, "list", "--json", *after).stdout)
    assert [c["campaign_id"] for c in rest["campaigns"]] == ["page-c"]
    assert rest["next_cursor"] is None
    running = cli(settings, "list", "--state", "running")
    assert running.returncode == 0 and running.stdout.splitlines()[1:] == [
        "next cursor: - (the list ends)"
    ]
    bad = cli(settings, "list", "--state", "sleeping")
    assert bad.returncode == 2
    assert one_error_line(bad).startswith("error: invalid value for '--state': unknown state")
