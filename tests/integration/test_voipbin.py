"""The VoIPBIN dialect end to end: token auth, list answers, balance re-check."""

from __future__ import annotations

from collections.abc import Callable

from campaigns.domain.spec import parse_spec
from campaigns.operators.control import CampaignClient
from campaigns.settings import Settings
from campaigns.testbed.sandbox import SandboxServer
from tests.conftest import API_KEY, spec_dict
from tests.support import WorkerProcess, creates, wait_for


def _voipbin(settings: Settings, sandbox: SandboxServer) -> Settings:
    return settings.model_copy(
        update={"provider_dialect": "voipbin", "provider_url": f"{sandbox.url}/v1.0"}
    )


async def test_voipbin_campaign_completes_and_books_the_worst_case_without_durations(
    client: CampaignClient,
    sandbox: SandboxServer,
    settings: Settings,
    start_worker: Callable[..., WorkerProcess],
) -> None:
    sandbox.configure(balance_micros=10_000_000)
    worker = start_worker(_voipbin(settings, sandbox))
    await client.submit(parse_spec(spec_dict("vb", contacts=4, max_call_seconds=61)))

    async def done() -> bool:
        c = await client.get("vb")
        return c.state == "completed" and c.settled == 4

    await wait_for(done, timeout=40, what="completion")
    ledger = sandbox.ledger()
    assert len(ledger) == 4 and all(e["path"].startswith("/v1.0/calls") for e in ledger)
    campaign = await client.get("vb")
    # VoIPBIN reports no billed seconds: each call books its reservation (2 minutes).
    assert campaign.spent_micros == 4 * 20_000
    assert API_KEY not in worker.log_text(), "the token travels in the URL; it must not be logged"


async def test_voipbin_low_balance_halts_before_sending(
    client: CampaignClient,
    sandbox: SandboxServer,
    settings: Settings,
    start_worker: Callable[..., WorkerProcess],
) -> None:
    sandbox.configure(balance_micros=15_000)  # below one worst case of 20,000
    start_worker(_voipbin(settings, sandbox))
    await client.submit(parse_spec(spec_dict("vbpoor", contacts=3, max_call_seconds=61)))

    async def halted() -> bool:
        return (await client.get("vbpoor")).state == "halted"

    await wait_for(halted, timeout=30, what="halt")
    assert (await client.status("vbpoor"))["halt"]["code"] == "insufficient_balance"
    assert creates(sandbox.ledger(), "vbpoor") == [] and sandbox.ledger() == []
