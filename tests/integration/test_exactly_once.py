"""One dial per contact against a provider without idempotency keys (as MiniVoice is).

Real workers, the sandbox ignoring ``Idempotency-Key``, a quarter of the create
answers slower than the client's timeout (the call is placed, the answer never
arrives in time), and MiniVoice's documented, signed ``call.created`` webhook
flowing from the sandbox through ``campaigns ingress`` to the workers: no number
is called twice, every call the provider placed is recorded or its attempt is in
doubt, and fewer than 1 in 20 of the ambiguous attempts are left in doubt.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable

from campaigns.domain.spec import parse_spec
from campaigns.operators.control import CampaignClient
from campaigns.operators.ingress import create_ingress_app_from_settings
from campaigns.settings import Settings
from campaigns.testbed.sandbox import SandboxServer, ThreadedServer
from tests.conftest import spec_dict
from tests.support import WorkerProcess, creates, wait_for

SECRET = "mv-whsec-exactly-once-0123456789"


async def test_slow_answers_without_keys_never_dial_a_number_twice(
    client: CampaignClient,
    sandbox: SandboxServer,
    settings: Settings,
    start_worker: Callable[..., WorkerProcess],
) -> None:
    contacts = 40
    sandbox.configure(
        seed=23,
        accept_then_hang_rate=0.25,
        hang_seconds=settings.provider_timeout_seconds + 1.5,
        call_duration_real_seconds=0.5,
    )
    assert sandbox.state.config.idempotency_keys is False, "the default: keys ignored"
    for _ in range(2):
        start_worker()
    spec = spec_dict("once", contacts=contacts)
    spec["pacing"] = {"calls_per_second": 20, "max_in_flight": 40, "max_concurrent_requests": 5}
    app = create_ingress_app_from_settings(settings, secret=SECRET)
    with ThreadedServer(app, health_path="/healthz") as ingress:
        sandbox.configure(webhook_url=f"{ingress.url}/webhooks", webhook_secret=SECRET)
        await client.submit(parse_spec(spec))

        async def done() -> bool:
            c = await client.get("once")
            return (
                c.state in ("completed", "halted")
                and c.unresolved == 0
                and (c.settled == c.accepted)
            )

        await wait_for(done, timeout=90, interval=0.25, what="campaign done")

    ledger = creates(sandbox.ledger(), "once")
    slow = [e for e in ledger if e["fault"] == "accept_then_hang"]
    assert len(slow) >= 5, f"the fault must bite: {len(slow)} slow answers"
    placed: dict[str, set[str]] = defaultdict(set)
    for call in sandbox.calls():
        if (call["variables"] or {}).get("campaign_id") == "once":
            placed[call["to"]].add(call["id"])
    twice = {to: ids for to, ids in placed.items() if len(ids) > 1}
    assert not twice, f"numbers called twice: {twice}"
    unrecorded = []
    for ids in placed.values():
        for call_id in ids:
            if await client.store.attempt_for_call(call_id) is None:
                unrecorded.append(call_id)
    campaign = await client.get("once")
    in_doubt = [a async for a in client.store.attempts("once") if a.status == "in_doubt"]
    assert len(unrecorded) <= len(in_doubt), f"placed calls with no recorded ID: {unrecorded}"
    assert len(in_doubt) * 20 <= max(len(slow), 20), (
        f"{len(in_doubt)} of {len(slow)} ambiguous attempts left in doubt with events flowing"
    )
    assert sum(len(ids) for ids in placed.values()) == campaign.accepted + len(unrecorded)
    if not in_doubt:
        assert campaign.state == "completed" and campaign.accepted == contacts
    by_event = [e for e in slow if await client.store.attempt_for_call(e["call_id"])]
    print(
        f"exactly-once: {contacts} contacts, {len(ledger)} create requests, {len(slow)} slow "
        f"answers, {len(by_event)} of them recorded from creation events, {len(in_doubt)} in doubt"
    )
