"""``campaigns demo``: the whole dispatcher on one machine, no account needed.

An embedded Redis, the sandbox provider with a spend limit, and a real
``campaigns worker`` process. With the defaults a sample campaign runs into the
provider's spend control partway; the demo shows live progress and ends with a
summary of what happened, whatever the options made happen: it succeeds when
the campaign came to a stop (completed, or halted for a reason it names) with
every call the provider accepted recorded. When it fails it keeps the worker's
log and says where.
"""

from __future__ import annotations

import asyncio
import math
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from rich import box
from rich.console import Console
from rich.live import Live
from rich.table import Table

from campaigns.domain.lifecycle import FINAL_STATES, AttemptStatus, State
from campaigns.domain.money import format_money
from campaigns.domain.spec import parse_spec
from campaigns.operators.control import CampaignClient
from campaigns.operators.report import summary_lines
from campaigns.settings import Settings
from campaigns.store import CampaignRecord
from campaigns.testbed.redis_server import RedisServer
from campaigns.testbed.sandbox import SandboxServer

__all__ = ["run_demo"]

_API_KEY = "sandbox-demo-key-0001"
_CAMPAIGN = "demo-spring-renewals"
_CALLS_PER_SECOND = 8
_CALL_REAL_SECONDS = 0.6
_ENDINGS = {
    "spend_control_exceeded": (
        "The provider's spend control stopped the campaign; nothing was sent after it. "
        "In production an operator raises the limit, then runs campaigns resume {id} to "
        "finish the {pending} pending contacts."
    ),
    "budget_exhausted": (
        "The campaign's own budget ran out: the next call's worst case did not fit, so it "
        "halted before sending it. In production an operator raises the budget (a new "
        "campaign) for the {pending} pending contacts."
    ),
}


def _sample_spec(contacts: int) -> dict[str, Any]:
    numbers = [{"to": f"+1555123{i:04d}", "ref": f"cust_{i:04d}"} for i in range(2, contacts + 2)]
    numbers.append({"to": numbers[0]["to"], "ref": "duplicate-of-first"})
    return {
        "campaign_id": _CAMPAIGN,
        "name": "Spring renewals (demo)",
        "caller_id": "+15551230001",
        "currency": "EUR",
        "budget": "1.00",
        "rate": {"per_minute": "0.01", "increments": "60/60", "connect_fee": "0"},
        "max_call_seconds": 120,
        "pacing": {"calls_per_second": _CALLS_PER_SECOND, "batch_size": 5, "max_in_flight": 20},
        "contacts": numbers,
    }


def _progress(campaign: CampaignRecord) -> Table:
    table = Table(
        title=f"campaign {campaign.campaign_id} ({campaign.currency})",
        title_justify="left",
        box=box.SIMPLE_HEAD,
        pad_edge=False,
    )
    columns = ("state", "pending", "accepted", "rejected", "settled", "spent", "reserved", "budget")
    for name in columns:
        table.add_column(
            name,
            justify="right",
            no_wrap=True,
            min_width=max(len(name), 9 if name == "state" else 0),
        )

    def amount(micros: int) -> str:  # the title names the currency
        return format_money(micros, campaign.currency).split(" ", 1)[1]

    table.add_row(
        campaign.state,
        str(campaign.pending),
        str(campaign.accepted),
        str(campaign.rejected),
        str(campaign.settled),
        amount(campaign.spent_micros),
        amount(campaign.reserved_micros),
        amount(campaign.budget_micros),
    )
    return table


async def _watch(
    client: CampaignClient, sandbox: SandboxServer, console: Console, seconds: float
) -> tuple[CampaignRecord, bool]:
    """Show progress until the campaign stopped and settled (True), or time ran out."""
    deadline = time.monotonic() + seconds
    campaign = await client.get(_CAMPAIGN)
    with Live(_progress(campaign), console=console, refresh_per_second=8) as live:
        while time.monotonic() < deadline:
            campaign = await client.get(_CAMPAIGN)
            live.update(_progress(campaign))
            stopped = campaign.state in FINAL_STATES or campaign.state is State.HALTED
            if stopped and campaign.settled == campaign.accepted and campaign.live == 0:
                return campaign, True
            await asyncio.sleep(0.125)
    return campaign, False


async def _main(contacts: int, spend_limit_calls: int, console: Console, workdir: Path) -> int:
    with RedisServer() as redis, SandboxServer() as sandbox:
        call_cost = 10_000  # a 30 s sandbox call at 0.01/min, ceiling-rounded
        sandbox.configure(
            api_key=_API_KEY,
            spend_limit_micros=spend_limit_calls * call_cost,
            call_seconds=30,
            call_duration_real_seconds=0.6,
            invalid_numbers=["+15551230004"],
        )
        settings = Settings(
            redis_url=redis.url,
            provider_url=sandbox.url,
            provider_api_key=_API_KEY,
            queue_name="dispatcher:demo",
            # The demo's Redis is its own, whatever the environment points at.
            redis_sentinels=None,
            redis_sentinel_master=None,
            redis_sentinel_password=None,
            redis_password=None,
            redis_min_replicas=0,
            _env_file=None,
        )
        console.print(f"[bold]redis[/]    {redis.url} (embedded, private)")
        console.print(f"[bold]provider[/] {sandbox.url} (sandbox, MiniVoice dialect)")
        console.print(
            f"[bold]account[/]  spend limit {format_money(spend_limit_calls * call_cost, 'EUR')} "
            f"(about {spend_limit_calls} calls), +15551230004 is an invalid destination"
        )
        env = {k: v for k, v in os.environ.items() if not k.startswith("DISPATCHER_REDIS_")}
        env.update(
            DISPATCHER_REDIS_URL=settings.redis_url,
            DISPATCHER_PROVIDER_URL=settings.provider_url,
            DISPATCHER_PROVIDER_API_KEY=_API_KEY,
            DISPATCHER_QUEUE_NAME=settings.queue_name,
            DISPATCHER_LOG_FORMAT="json",
            DISPATCHER_POLL_INTERVAL_SECONDS="0.3",
            DISPATCHER_POLL_MAX_INTERVAL_SECONDS="1.0",
        )
        log_path = workdir / "worker.log"
        with log_path.open("wb") as log:
            worker = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "campaigns.operators.cli",
                "worker",
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        console.print(f"[bold]worker[/]   pid {worker.pid}, log {log_path}")
        problems: list[str] = []
        try:
            client = await CampaignClient.connect(settings)
            async with client:
                spec = parse_spec(_sample_spec(contacts))
                result = await client.submit(spec)
                console.print(
                    f"\nsubmitted [bold]{result.campaign_id}[/]: {result.contacts} contacts, "
                    f"{result.duplicates_dropped} duplicate dropped; budget "
                    f"{format_money(spec.budget_in_micros, spec.currency)}, worst case per call "
                    f"{format_money(spec.worst_case_call_micros(), spec.currency)} "
                    f"({spec.max_call_seconds} s ceiling-rounded)\n"
                )
                # Paced at 8 calls a second, each call lasting 0.6 s: enough time
                # for any number of contacts, with room for settlement.
                seconds = 60 + math.ceil(1.5 * contacts / _CALLS_PER_SECOND)
                campaign, stopped = await _watch(client, sandbox, console, seconds)
                console.print()
                problems = await _summary(client, sandbox, campaign, console)
                if not stopped:
                    problems.insert(0, f"the campaign did not stop within {seconds} s")
        finally:
            if worker.returncode is None:
                try:
                    worker.send_signal(signal.SIGTERM)
                    await asyncio.wait_for(worker.wait(), 15)
                except ProcessLookupError:
                    pass  # it ended between the look and the signal
                except TimeoutError:
                    worker.kill()
            elif worker.returncode != 0:
                problems.insert(0, f"the worker exited with code {worker.returncode}")
        if problems:
            for problem in problems:
                console.print(f"[red]the demo did not end as it should: {problem}[/]")
            console.print(f"the worker's log is kept: {log_path}")
            return 1
        return 0


async def _summary(
    client: CampaignClient, sandbox: SandboxServer, campaign: CampaignRecord, console: Console
) -> list[str]:
    """Print what happened; return what is wrong with it (nothing, normally)."""
    ledger = sandbox.ledger()
    rejected: dict[str, int] = {}
    recorded: set[str] = set()
    async for attempt in client.store.attempts(campaign.campaign_id):
        if attempt.status is AttemptStatus.REJECTED:
            rejected[attempt.error_code or "?"] = rejected.get(attempt.error_code or "?", 0) + 1
        if attempt.call_id:
            recorded.add(attempt.call_id)
    accepted_ids = {e["call_id"] for e in ledger if e["status"] in (200, 201)}
    table = Table(title="Summary", title_justify="left", show_header=False)
    table.add_column("what")
    table.add_column("value")
    for key, value in summary_lines(campaign):
        table.add_row(key, value)
    for code, count in sorted(rejected.items()):
        table.add_row(f"rejected: {code}", str(count))
    table.add_row("create requests sent", str(len(ledger)))
    table.add_row(
        "call IDs recorded",
        f"{len(recorded & accepted_ids)} of {len(accepted_ids)} the provider accepted",
    )
    console.print(table)

    problems: list[str] = []
    if accepted_ids - recorded:
        problems.append(f"{len(accepted_ids - recorded)} accepted calls have no recorded ID")
    if campaign.spent_micros + campaign.reserved_micros > campaign.budget_micros:
        problems.append("spent and reserved money exceed the budget")
    code = campaign.halt_code or ""
    if campaign.state is State.COMPLETED:
        console.print(
            "\nThe campaign completed: every contact was dialled or refused for its number, "
            "and every call settled. (The spend limit was not reached: try a lower "
            "--spend-limit-calls to see the provider stop it.)"
        )
    elif campaign.state is State.HALTED:
        ending = _ENDINGS.get(code, "The campaign halted: {code}: {message}.")
        console.print(
            "\n"
            + ending.format(
                id=campaign.campaign_id,
                pending=campaign.pending,
                code=code,
                message=campaign.halt_message or "",
            )
            + " (This demo's Redis and sandbox stop with it.)"
        )
    else:
        problems.append(f"the campaign ended {campaign.state}, not completed or halted")
    return problems


def run_demo(contacts: int = 30, spend_limit_calls: int = 12) -> int:
    """Run the demo; the worker's log is deleted on success and kept on failure."""
    console = Console()
    workdir = Path(tempfile.mkdtemp(prefix="campaigns-demo-"))
    code = 1
    try:
        code = asyncio.run(_main(contacts, spend_limit_calls, console, workdir))
    finally:
        if code == 0:
            shutil.rmtree(workdir, ignore_errors=True)
    return code


def main(argv: list[str] | None = None) -> None:
    """``python -m campaigns.testbed.demo`` (what ``campaigns demo`` runs)."""
    import argparse

    parser = argparse.ArgumentParser(prog="campaigns demo")
    parser.add_argument("--contacts", type=int, default=30)
    parser.add_argument("--spend-limit-calls", type=int, default=12)
    args = parser.parse_args(argv)
    sys.exit(run_demo(contacts=args.contacts, spend_limit_calls=args.spend_limit_calls))


if __name__ == "__main__":
    main()
