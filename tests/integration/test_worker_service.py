"""The worker as a service: JSON lines on stdout (arq's included), and Prometheus metrics
that match the sandbox's ledger."""

from __future__ import annotations

import json
import signal
import subprocess
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from campaigns.domain.spec import parse_spec
from campaigns.operators.control import CampaignClient
from campaigns.queue import settlement_queue
from campaigns.settings import Settings
from campaigns.testbed.sandbox import SandboxServer
from tests.api_process import free_port
from tests.conftest import spec_dict
from tests.support import CAMPAIGNS_BIN, ROOT, creates, wait_for, worker_env

CALL_COST = 10_000  # a 30 s sandbox call at 0.01/min, ceiling-rounded to one minute
BAD_NUMBER = "+15551240002"


class Worker:
    """``campaigns worker`` with stdout and stderr kept apart."""

    def __init__(self, settings: Settings, tmp_path: Path, **env: str) -> None:
        self.stdout_path = tmp_path / "worker.stdout"
        self.stderr_path = tmp_path / "worker.stderr"
        with self.stdout_path.open("wb") as out, self.stderr_path.open("wb") as err:
            self.proc = subprocess.Popen(
                [CAMPAIGNS_BIN, "worker"],
                env=worker_env(settings, **env),
                stdout=out,
                stderr=err,
                cwd=ROOT,
                start_new_session=True,
            )

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)

    def lines(self) -> list[str]:
        return self.stdout_path.read_text().splitlines()


@pytest.fixture
def workers(settings: Settings, tmp_path: Path) -> Iterator[list[Worker]]:
    started: list[Worker] = []
    yield started
    for worker in started:
        worker.stop()


async def _halted_campaign(client: CampaignClient, sandbox: SandboxServer, cid: str) -> None:
    """A campaign with a contact rejection, then a spend-control halt, all calls settled."""
    sandbox.configure(spend_limit_micros=3 * CALL_COST, invalid_numbers=[BAD_NUMBER])
    await client.submit(parse_spec(spec_dict(cid, contacts=8)))

    async def halted_and_settled() -> bool:
        campaign = await client.get(cid)
        return campaign.state == "halted" and campaign.settled == campaign.accepted == 3

    await wait_for(halted_and_settled, timeout=40, what="halt and settlement")


@pytest.mark.parametrize("level", ["INFO", "DEBUG"])
async def test_every_line_the_worker_prints_is_json(
    client: CampaignClient,
    sandbox: SandboxServer,
    settings: Settings,
    tmp_path: Path,
    workers: list[Worker],
    level: str,
) -> None:
    # "auto": stdout is a file here, not a terminal, so JSON without being told.
    worker = Worker(settings, tmp_path, DISPATCHER_LOG_FORMAT="auto", DISPATCHER_LOG_LEVEL=level)
    workers.append(worker)
    await _halted_campaign(client, sandbox, "logged")
    worker.stop()

    events: list[dict[str, Any]] = []
    for number, line in enumerate(worker.lines(), 1):
        try:
            event = json.loads(line)
        except ValueError:
            raise AssertionError(f"line {number} is not JSON: {line!r}") from None
        assert isinstance(event, dict), line
        events.append(event)
    assert worker.stderr_path.read_text() == "", "the worker writes to stdout only"

    names = Counter(e["event"] for e in events)
    started = Counter(e["queue"] for e in events if e["event"] == "worker_started")
    assert started == {settings.queue_name: 1, settlement_queue(settings.queue_name): 1}, (
        "each of the two workers (dispatch, settlement) starts once"
    )
    assert any(e["logger"].startswith("arq") for e in events), "arq's own lines are JSON too"
    assert names["call_accepted"] == 3
    assert names["contact_rejected"] == 1
    for event in events:
        if event["event"] in ("call_accepted", "contact_rejected", "campaign_halted"):
            assert event["campaign_id"] == "logged", event
        if event["event"] in ("call_accepted", "contact_rejected", "call_settled"):
            assert event["attempt_id"].startswith("logged:"), event

    job_lines = [e for e in events if e["logger"] == "arq.worker" and " → " in e["event"]]
    if level == "INFO":
        assert job_lines == [], "per-job chatter belongs at debug"
        assert all(e["level"] != "debug" for e in events)
    else:
        assert job_lines, "at debug, arq's job lines are there"
        assert {e["level"] for e in job_lines} == {"debug"}
        dispatch = [e for e in job_lines if "dispatch_campaign" in e["event"]]
        assert dispatch
        assert all(e["campaign_id"] == "logged" for e in dispatch)


def _scrape(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    samples: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def _value(samples: dict[Any, float], name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


async def test_metrics_match_the_sandbox_ledger(
    client: CampaignClient,
    sandbox: SandboxServer,
    settings: Settings,
    tmp_path: Path,
    workers: list[Worker],
) -> None:
    port = free_port()
    workers.append(Worker(settings, tmp_path, DISPATCHER_METRICS_PORT=str(port)))
    await _halted_campaign(client, sandbox, "metered")

    ledger = creates(sandbox.ledger(), "metered")
    by_answer = Counter((e["status"], e["error_code"]) for e in ledger)
    assert by_answer == {
        (201, None): 3,
        (422, "invalid_destination"): 1,
        (403, "spend_control_exceeded"): 1,
    }

    samples = _scrape(port)
    create = "dispatcher_create_requests_total"
    assert _value(samples, create, outcome="accepted", code="") == 3
    assert _value(samples, create, outcome="contact", code="invalid_destination") == 1
    assert _value(samples, create, outcome="halt", code="spend_control_exceeded") == 1
    total = sum(v for (name, _), v in samples.items() if name == create)
    assert total == len(ledger)
    latency = "dispatcher_provider_request_seconds_count"
    assert _value(samples, latency, operation="create") == len(ledger)
    assert _value(samples, "dispatcher_campaign_halts_total", code="spend_control_exceeded") == 1
    assert _value(samples, "dispatcher_settlements_total", result="ok") == 3
    assert _value(samples, "dispatcher_campaigns_running") == 0
    assert not [key for key in samples if key[0] == "dispatcher_campaign_spent_micros"]

    # A running campaign has its money series, and loses them when it stops running.
    sandbox.configure(spend_limit_micros=None)
    slow = spec_dict("slow", contacts=50)
    slow["pacing"] = {"calls_per_second": 2, "batch_size": 2, "max_in_flight": 50}
    await client.submit(parse_spec(slow))

    async def money_shown() -> dict[Any, float] | None:
        samples = _scrape(port)
        labels = {"campaign_id": "slow", "currency": "EUR"}
        shown = _value(samples, "dispatcher_campaign_budget_micros", **labels) == 50_000_000
        spent = _value(samples, "dispatcher_campaign_spent_micros", **labels)
        return samples if shown and spent > 0 else None

    samples = await wait_for(money_shown, timeout=30, what="the running campaign's gauges")
    assert _value(samples, "dispatcher_campaigns_running") == 1
    assert _value(samples, "dispatcher_leases_held", holder="any_worker") <= 1

    await client.cancel("slow")

    async def money_gone() -> bool:
        samples = _scrape(port)
        return not [k for k in samples if k[0] == "dispatcher_campaign_budget_micros"]

    await wait_for(money_gone, timeout=30, what="the cancelled campaign's gauges to go")
    after = _scrape(port)
    assert sum(v for (name, _), v in after.items() if name == create) == len(
        creates(sandbox.ledger(), "metered")
    ) + len(creates(sandbox.ledger(), "slow"))
