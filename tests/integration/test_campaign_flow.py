"""End to end: submit → real worker process → sandbox over HTTP → recorded IDs."""

from __future__ import annotations

from collections.abc import Callable

from campaigns.domain.spec import parse_spec
from campaigns.operators.control import CampaignClient
from campaigns.operators.report import report_rows
from campaigns.testbed.sandbox import SandboxServer
from tests.conftest import API_KEY, spec_dict
from tests.support import WorkerProcess, creates, wait_for


async def test_campaign_completes_and_every_call_id_matches_the_ledger(
    client: CampaignClient, sandbox: SandboxServer, start_worker: Callable[..., WorkerProcess]
) -> None:
    worker = start_worker()
    result = await client.submit(parse_spec(spec_dict("complete", contacts=12)))
    assert result.created

    async def settled() -> bool:
        c = await client.get("complete")
        return c.state == "completed" and c.settled == 12

    await wait_for(settled, timeout=40, what="all calls settled")
    campaign = await client.get("complete")
    ledger = creates(sandbox.ledger(), "complete")
    assert len(ledger) == 12
    assert all(e["status"] == 201 for e in ledger)
    rows = [row async for row in report_rows(client.store, campaign)]
    recorded = {row["call_id"] for row in rows}
    assert recorded == {e["call_id"] for e in ledger}
    assert len(recorded) == 12
    # 30 s calls at 0.01/min, ceiling to a minute: 10,000 micros each, settled.
    assert campaign.spent_micros == 12 * 10_000
    assert campaign.reserved_micros == 0
    assert {row["cost_micros"] for row in rows} == {10_000}

    # The completion triggers a reconciliation job once every call is settled.
    stored = await wait_for(
        lambda: client.store.last_reconciliation("complete"), timeout=30, what="reconciliation"
    )
    assert stored["settled_micros"] == stored["provider_micros"] == 12 * 10_000
    assert stored["variance_micros"] == 0 and stored["unsettled_calls"] == 0

    # SIGTERM stops the worker cleanly.
    assert worker.terminate() == 0
    log = worker.log_text()
    assert "worker_stopped" in log
    assert API_KEY not in log, "the API key reached a log line"
    assert '"campaign_id": "complete"' in log and '"attempt_id": "complete:000000:1"' in log


async def test_sigterm_hands_a_running_campaign_over_without_cutting_a_request(
    client: CampaignClient, sandbox: SandboxServer, start_worker: Callable[..., WorkerProcess]
) -> None:
    """A dispatch run lasts up to a job's time; on SIGTERM it stops claiming, its open
    requests are answered and recorded, the worker exits, and another worker goes on
    with the next run: no request cut off, so none re-sent."""
    sandbox.configure(latency_seconds=0.3)
    leaving = start_worker()
    spec = spec_dict("handover", contacts=30)
    spec["pacing"] = {"calls_per_second": 5, "max_concurrent_requests": 3}
    await client.submit(parse_spec(spec))

    async def started() -> bool:
        return (await client.get("handover")).accepted >= 3

    await wait_for(started, timeout=30, what="the first calls")
    assert leaving.terminate() == 0, "the worker left within arq's completion wait"
    campaign = await client.get("handover")
    assert campaign.unresolved == 0, "every open request was recorded before it left"
    start_worker()

    async def done() -> bool:
        return (await client.get("handover")).state == "completed"

    await wait_for(done, timeout=60, what="completion by the other worker")
    keys = [e["idempotency_key"] for e in creates(sandbox.ledger(), "handover")]
    assert len(keys) == len(set(keys)) == 30, "no request was cut off and sent again"
