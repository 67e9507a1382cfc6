"""Changing a campaign while it runs: PATCH /v1/campaigns/{id} and `campaigns change`.

Counted from the sandbox's ledger, as ``test_pacing.py`` counts: once the PATCH
lowering the rate has answered, no window holds more requests than the new rate
allows, and nothing is dialled beyond the new budget.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from campaigns.domain.spec import parse_spec
from campaigns.operators.api import create_api_app
from campaigns.operators.control import CampaignClient
from campaigns.settings import Settings
from campaigns.testbed.sandbox import SandboxServer, parse_rfc3339
from tests.conftest import spec_dict
from tests.integration.test_day_two import OPERATOR_TOKEN, VIEWER_TOKEN, cli_for
from tests.support import WorkerProcess, busiest_window, creates, wait_for

_JITTER = 0.15
"""As in test_pacing.py: the provider sees a request a claim, a stamp and an HTTP
trip after it was allowed to start."""
_OPERATOR = {"Authorization": f"Bearer {OPERATOR_TOKEN}"}


@pytest.fixture
async def http(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    api_settings = settings.model_copy(update={"api_tokens": None})
    app = create_api_app(api_settings, {OPERATOR_TOKEN: "operator", VIEWER_TOKEN: "viewer"})
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://api") as http,
    ):
        yield http


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


async def test_a_lower_rate_and_budget_hold_from_the_answer_on(
    client: CampaignClient,
    sandbox: SandboxServer,
    start_worker: Callable[..., WorkerProcess],
    http: httpx.AsyncClient,
) -> None:
    spec = spec_dict("slower", contacts=40, budget="10.00")
    spec["pacing"] = {"calls_per_second": 10, "max_concurrent_requests": 4}
    await client.submit(parse_spec(spec))
    start_worker()

    async def started() -> bool:
        return len(creates(sandbox.ledger(), "slower")) >= 6

    await wait_for(started, timeout=30, what="the campaign sending at 10/s")
    campaign = await client.get("slower")
    worst = campaign.worst_case_micros
    budget = campaign.spent_micros + campaign.reserved_micros + 3 * worst
    answer = await http.patch(
        "/v1/campaigns/slower",
        json={"pacing": {"calls_per_second": 2}, "budget_micros": budget},
        headers=_OPERATOR,
    )
    answered = time.time()
    assert answer.status_code == 200, answer.text
    assert answer.json()["money"]["budget_micros"] == budget

    async def stopped() -> bool:
        c = await client.get("slower")
        return c.state in ("halted", "completed") and c.reserved_micros == 0

    await wait_for(stopped, timeout=60, what="the campaign out of budget, calls settled")
    after = [
        parse_rfc3339(str(e["received_at"]))
        for e in creates(sandbox.ledger(), "slower")
        if parse_rfc3339(str(e["received_at"])) > answered
    ]
    assert len(after) >= 3, "the campaign kept sending at the new rate"
    assert busiest_window(after, 1.0 - _JITTER) <= 2, "faster than the new rate of 2/s"
    final = await client.get("slower")
    assert final.state == "halted" and final.halt_code == "budget_exhausted"
    assert final.spent_micros <= budget, "nothing beyond the new budget"
    accepted = [e for e in creates(sandbox.ledger(), "slower") if e["status"] == 201]
    assert len(accepted) == final.accepted
    assert final.accepted * 10_000 <= budget  # each sandbox call costs 10,000 micros
    assert final.spec.pacing.calls_per_second == 2
    [change] = [e for e in await client.history("slower") if e["action"] == "change"]
    assert change["before"]["pacing"]["calls_per_second"] == 10
    assert change["after"]["pacing"]["calls_per_second"] == 2
    assert change["actor"].startswith("api:operator:")


async def test_every_invalid_field_in_one_422_and_nothing_written(
    client: CampaignClient, http: httpx.AsyncClient
) -> None:
    await client.submit(parse_spec(spec_dict("strict", contacts=2)))
    meta_before = await client.store.redis.hgetall(client.store.keys.meta("strict"))
    history_before = await client.history("strict")
    past = datetime.now(UTC) - timedelta(hours=1)
    for body, fields in (
        (
            {
                "pacing": {"calls_per_second": 0, "max_concurrent_requests": "x", "weight": 0},
                "calling_window": {"start": "25:00", "end": "18:00", "timezone": "Mars/Base"},
                "colour": "red",
                "name": 7,
            },
            {
                "colour",
                "name",
                "pacing.calls_per_second",
                "pacing.max_concurrent_requests",
                "pacing.weight",
                "calling_window.start",
                "calling_window.timezone",
            },
        ),
        ({"schedule": {"end_at": _iso(past)}}, {"schedule.end_at"}),
        (
            {"schedule": {"start_at": _iso(past), "end_at": _iso(past - timedelta(hours=1))}},
            {"schedule.end_at"},
        ),
        (
            {"calling_window": {"start": "09:00", "end": "18:00"}},
            {"calling_window.default_timezone"},
        ),
        ({"budget": "1.00", "budget_micros": 1}, {"budget"}),
        ({}, {"body"}),
        ({"pacing": None}, {"pacing"}),
    ):
        bad = await http.patch("/v1/campaigns/strict", json=body, headers=_OPERATOR)
        assert bad.status_code == 422, (body, bad.text)
        named = {e["field"] for e in bad.json()["error"]["errors"]}
        assert named == fields, (body, named)
    assert await client.store.redis.hgetall(client.store.keys.meta("strict")) == meta_before
    assert await client.history("strict") == history_before

    # A window that never opens before the schedule ends is refused as at submit.
    soon = datetime.now(UTC) + timedelta(minutes=30)
    closed = {
        "schedule": {"end_at": _iso(soon)},
        "calling_window": {
            "start": "00:00",
            "end": "00:01",
            "timezone": "UTC",
            "restricted_dates": [(soon - timedelta(days=d)).date().isoformat() for d in (0, 1)],
        },
    }
    refused = await http.patch("/v1/campaigns/strict", json=closed, headers=_OPERATOR)
    assert refused.status_code == 422
    assert refused.json()["error"]["field"] == "calling_window"
    over = await client.cancel("strict")
    assert over
    gone = await http.patch("/v1/campaigns/strict", json={"name": "x"}, headers=_OPERATOR)
    assert gone.status_code == 409


async def test_change_from_the_cli(
    client: CampaignClient, settings: Settings, tmp_path: Path
) -> None:
    cli = cli_for(settings)
    await client.submit(parse_spec(spec_dict("typed", contacts=2)))
    meta_before = await client.store.redis.hgetall(client.store.keys.meta("typed"))
    window = tmp_path / "window.json"
    window.write_text(json.dumps({"start": "09:00", "end": "25:00", "timezone": "UTC"}))
    for args, field in (
        (["--rate", "0"], "pacing.calls_per_second"),
        (["--rate", "fast"], "--rate"),
        (["--concurrency", "0"], "pacing.max_concurrent_requests"),
        (["--weight", "0"], "pacing.weight"),
        (["--weight", "-1"], "pacing.weight"),
        (["--schedule-end", "yesterday"], "schedule.end_at"),
        (["--window", str(window)], "calling_window.end"),
        (["--window", str(tmp_path / "missing.json")], "--window"),
        ([], "change"),
    ):
        bad = await cli("change", "typed", *args)
        assert bad.exit_code == 2, (args, bad.output, bad.stderr)
        assert field in bad.stderr and bad.stderr.count("\n") == 1, (args, bad.stderr)
    assert await client.store.redis.hgetall(client.store.keys.meta("typed")) == meta_before

    window.write_text(json.dumps({"start": "09:00", "end": "18:00", "timezone": "Europe/Paris"}))
    end = _iso(datetime.now(UTC) + timedelta(days=3))
    done = await cli(
        "change",
        "typed",
        "--rate",
        "2.5",
        "--concurrency",
        "2",
        "--weight",
        "3",
        "--name",
        "Spring, slower",
        "--schedule-end",
        end,
        "--window",
        str(window),
    )
    assert done.exit_code == 0, done.stderr
    campaign = await client.get("typed")
    assert campaign.spec.pacing.calls_per_second == 2.5
    assert campaign.spec.pacing.max_concurrent_requests == 2
    assert campaign.spec.pacing.max_in_flight == 50, "pacing fields not given are kept"
    assert campaign.spec.pacing.weight == 3
    assert await client.store.redis.hget(client.store.keys.meta("typed"), "weight") == b"3.0"
    assert campaign.spec.name == "Spring, slower"
    assert campaign.end_at_ms is not None and campaign.zone_groups == (("Europe/Paris",),)
    assert campaign.spec.calling_window is not None
    [change] = [e for e in await client.history("typed") if e["action"] == "change"]
    assert change["actor"] == "cli:alice"
    assert set(change["after"]) == {"pacing", "name", "schedule", "calling_window"}
    # The fingerprint stays the submitted spec's: resubmitting it is still a no-op.
    again = await client.submit(parse_spec(spec_dict("typed", contacts=2)))
    assert not again.created


async def test_contacts_added_while_running_are_dialled_once_each(
    client: CampaignClient,
    sandbox: SandboxServer,
    start_worker: Callable[..., WorkerProcess],
    http: httpx.AsyncClient,
) -> None:
    spec = spec_dict("grows", contacts=20, suppress=["+15551249002"])
    spec["pacing"] = {"calls_per_second": 10}
    await client.submit(parse_spec(spec))
    await client.store.redis.sadd(client.store.keys.dnc, "+15551249001")
    start_worker()
    await wait_for(lambda: _sent(sandbox, "grows", 2), timeout=30, what="the campaign sending")
    url = "/v1/campaigns/grows/contacts"
    added = [{"to": f"+1555124900{i}", "ref": f"new_{i}"} for i in range(5)]
    again = [*added[:2], {"to": "+15551240000", "ref": "cust_0"}]  # 2 new ones + a submitted one
    key = {**_OPERATOR, "Idempotency-Key": "grow-1"}
    first = await http.post(url, json={"contacts": added}, headers=key)
    assert first.status_code == 200, first.text
    assert first.json()["added"] == 5 and first.json()["contacts"] == 25
    replayed = await http.post(url, json={"contacts": added}, headers=key)
    assert replayed.headers.get("Idempotent-Replayed") == "true"
    assert replayed.json() == first.json()
    reused = await http.post(url, json={"contacts": again}, headers=key)
    assert reused.status_code == 409
    csv_body = "to,ref\n" + "\n".join(f"{c['to']},{c['ref']}" for c in again) + "\n"
    dropped = await http.post(
        url, content=csv_body, headers={**_OPERATOR, "Content-Type": "text/csv"}
    )
    assert dropped.status_code == 200, dropped.text
    assert (dropped.json()["added"], dropped.json()["duplicates_dropped"]) == (0, 3)

    async def done() -> bool:
        return (await client.get("grows")).state == "completed"

    await wait_for(done, timeout=30, what="every contact final")
    dialled = [
        json.loads(e["body"])["to"]
        for e in creates(sandbox.ledger(), "grows")
        if e["status"] == 201
    ]
    assert len(dialled) == len(set(dialled)), "a contact dialled twice"
    assert set(dialled) == {f"+155512400{i:02d}" for i in range(20)} | {
        "+15551249000",
        "+15551249003",
        "+15551249004",
    }, "every added contact dialled, none on the do-not-call or suppress list"
    campaign = await client.get("grows")
    assert (campaign.contacts, campaign.suppressed) == (25, 2)
    assert campaign.estimated_micros == 25 * (campaign.estimated_micros // 25)
    [entry] = [e for e in await client.history("grows") if e["action"] == "add_contacts"]
    assert entry["before"] == {"contacts": 20} and entry["after"]["contacts"] == 25

    over = await http.post(url, json={"contacts": [{"to": "+15551249999"}]}, headers=_OPERATOR)
    assert over.status_code == 409, "a completed campaign is not reopened"


def _sent(sandbox: SandboxServer, campaign_id: str, count: int) -> Callable[[], object]:
    async def enough() -> bool:
        return len(creates(sandbox.ledger(), campaign_id)) >= count

    return enough()


async def test_bad_contacts_are_named_and_nothing_is_added(
    client: CampaignClient, settings: Settings, http: httpx.AsyncClient, tmp_path: Path
) -> None:
    await client.submit(parse_spec(spec_dict("careful", contacts=2)))
    meta_before = await client.store.redis.hgetall(client.store.keys.meta("careful"))
    url = "/v1/campaigns/careful/contacts"
    bad = await http.post(
        url,
        json={"contacts": [{"to": "+15551249000"}, {"to": "12"}, {"to": "+1555", "ref": 3}]},
        headers=_OPERATOR,
    )
    assert bad.status_code == 422
    named = {e["field"] for e in bad.json()["error"]["errors"]}
    assert named == {"contacts.1.to", "contacts.2.ref"}, named
    for body, field in (({"contacts": []}, "contacts"), ({"people": []}, "people")):
        refused = await http.post(url, json=body, headers=_OPERATOR)
        assert refused.status_code == 422 and refused.json()["error"]["field"] == field
    csv_bad = await http.post(
        url,
        content="to,ref\n+15551249000,a\nnope,b\n",
        headers={**_OPERATOR, "Content-Type": "text/csv"},
    )
    assert csv_bad.status_code == 422 and "line 3" in csv_bad.json()["error"]["field"]
    assert await client.store.redis.hgetall(client.store.keys.meta("careful")) == meta_before

    cli = cli_for(settings)
    rows = tmp_path / "more.csv"
    rows.write_text("to,ref\n+15551249000,a\nnope,b\n")
    refused_cli = await cli("add-contacts", "careful", str(rows))
    assert refused_cli.exit_code == 2 and "line 3" in refused_cli.stderr
    assert await client.store.redis.hgetall(client.store.keys.meta("careful")) == meta_before
    rows.write_text("to,ref\n+15551249000,a\n+15551240000,cust_0\n")
    added = await cli("add-contacts", "careful", str(rows), "--idempotency-key", "k1")
    assert added.exit_code == 0, added.stderr
    assert "1 contacts added, 1 dropped" in added.output
    repeated = await cli("add-contacts", "careful", str(rows), "--idempotency-key", "k1")
    assert repeated.exit_code == 0 and "1 contacts added" in repeated.output
    assert (await client.get("careful")).contacts == 3
    rows.write_text("to,ref\n+15551249001,b\n")
    conflict = await cli("add-contacts", "careful", str(rows), "--idempotency-key", "k1")
    assert conflict.exit_code == 2 and "--idempotency-key" in conflict.stderr
