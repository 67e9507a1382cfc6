"""Callbacks (issue 19, item 6): signed events to a real receiver that fails at first.

A real ``campaigns worker`` delivers; the receiver is a Starlette app on a loopback
port that checks each delivery's signature with the ingress's own check, refuses
the first deliveries of every event, and records what it got.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from pydantic import SecretStr
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from campaigns.domain.spec import parse_spec
from campaigns.engine.callbacks import CallbackDeliverer
from campaigns.operators.control import CampaignClient
from campaigns.operators.ingress import SIGNATURE_HEADER, verify_signature
from campaigns.settings import Settings
from campaigns.store import now_ms
from campaigns.store.callbacks import callback_store
from campaigns.testbed.sandbox import ThreadedServer
from tests.api_process import OPERATOR_TOKEN, VIEWER_TOKEN, ApiProcess, auth
from tests.conftest import spec_dict
from tests.support import CAMPAIGNS_BIN, WorkerProcess, wait_for, worker_env

SECRET = "callback-secret-0123456789"
FAST = {"DISPATCHER_CALLBACK_SECRET": SECRET, "DISPATCHER_CALLBACK_RETRY_SECONDS": "0.1"}


@dataclass
class Receiver:
    """Refuses the first ``fail_first`` deliveries of each event ID (503), then 200."""

    fail_first: int
    deliveries: list[tuple[str, bytes, int]] = field(default_factory=list)
    """(event ID, raw body, status answered), in arrival order."""
    bad_signatures: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    async def hook(self, request: Request) -> JSONResponse:
        body = await request.body()
        why = verify_signature(
            SECRET,
            request.headers.get(SIGNATURE_HEADER),
            body,
            now=time.time(),
            tolerance_seconds=300,
        )
        event_id = json.loads(body)["event_id"]
        with self.lock:
            if why is not None:
                self.bad_signatures.append(f"{event_id}: {why}")
            seen = sum(1 for e, _, _ in self.deliveries if e == event_id)
            status = 503 if seen < self.fail_first else 200
            self.deliveries.append((event_id, body, status))
        assert request.headers["X-Event-ID"] == event_id
        return JSONResponse({"ok": status == 200}, status_code=status)

    def accepted(self) -> dict[str, dict[str, Any]]:
        with self.lock:
            return {e: json.loads(b) for e, b, s in self.deliveries if s == 200}

    def bodies(self, event_id: str) -> list[bytes]:
        with self.lock:
            return [b for e, b, _ in self.deliveries if e == event_id]


def serve(receiver: Receiver) -> ThreadedServer:
    server = ThreadedServer(Starlette(routes=[Route("/cb", receiver.hook, methods=["POST"])]))
    server.start()
    return server


async def test_events_are_signed_retried_and_delivered_with_one_event_id_each(
    client: CampaignClient, start_worker: Callable[..., WorkerProcess]
) -> None:
    receiver = Receiver(fail_first=2)
    server = serve(receiver)
    try:
        start_worker(**FAST)
        spec = spec_dict("hooked", contacts=3)
        spec["callbacks"] = {"url": f"{server.url}/cb"}
        await client.submit(parse_spec(spec))

        async def settled() -> bool:
            c = await client.get("hooked")
            return c.state == "completed" and c.settled == 3

        await wait_for(settled, timeout=30, what="campaign completed and settled")

        async def all_delivered() -> bool:
            got = receiver.accepted()
            states = [e for e in got.values() if e["type"] == "campaign.state_changed"]
            finals = [e for e in got.values() if e["type"] == "attempt.final"]
            return len(finals) == 3 and any(e["to"] == "completed" for e in states)

        await wait_for(all_delivered, timeout=30, what="every event delivered")
        assert receiver.bad_signatures == []
        got = receiver.accepted()
        moves = sorted((e["from"], e["to"]) for e in got.values() if e["type"].startswith("camp"))
        assert moves == [("queued", "running"), ("running", "completed")]
        report = {a.attempt_id: a async for a in client.store.attempts("hooked")}
        for event_id, event in got.items():
            # Refused twice, then accepted: three deliveries, one body, one event ID.
            bodies = receiver.bodies(event_id)
            assert len(bodies) == 3 and len(set(bodies)) == 1, event_id
            if event["type"] != "attempt.final":
                assert event["halt"] is None
                continue
            attempt = report[event["attempt_id"]]
            assert event_id == f"{attempt.attempt_id}:settled"
            assert event["call_id"] == attempt.call_id and event["status"] == "completed"
            assert event["billsec"] == attempt.billsec
            assert event["cost_micros"] == attempt.cost_micros > 0
            assert event["cost"]["currency"] == "EUR"
        log = await _callbacks_json(client.settings, "hooked")
        assert log["failed"] == []
        results = {row["result"] for row in log["log"]}
        assert results == {"retrying", "delivered"}
    finally:
        server.stop()


async def test_a_halt_is_delivered_with_its_code_and_message(
    client: CampaignClient, start_worker: Callable[..., WorkerProcess]
) -> None:
    receiver = Receiver(fail_first=0)
    server = serve(receiver)
    try:
        start_worker(**FAST, DISPATCHER_CALLBACK_URL=f"{server.url}/cb")
        # The account-wide URL: the spec names none. Budget for one call's worst case.
        spec = spec_dict("halting", contacts=3, budget="0.02", max_call_seconds=120)
        await client.submit(parse_spec(spec))

        async def halted() -> dict[str, Any] | None:
            for event in receiver.accepted().values():
                if event["type"] == "campaign.state_changed" and event["to"] == "halted":
                    return event
            return None

        event = await wait_for(halted, timeout=30, what="the halt delivered")
        assert event["campaign_id"] == "halting"
        assert event["halt"]["code"] == "budget_exhausted"
        assert "worst case" in event["halt"]["message"]
    finally:
        server.stop()


async def test_failed_events_are_kept_and_replayed_from_the_cli(
    client: CampaignClient, start_worker: Callable[..., WorkerProcess], tmp_path: Path
) -> None:
    receiver = Receiver(fail_first=2)
    server = serve(receiver)
    try:
        start_worker(**FAST, DISPATCHER_CALLBACK_MAX_ATTEMPTS="2")
        spec = spec_dict("replayed", contacts=1)
        spec["callbacks"] = {"url": f"{server.url}/cb"}
        await client.submit(parse_spec(spec))

        async def failed() -> bool:
            # queued→running, the call, running→completed
            return len(await callback_store(client.store).failed("replayed")) >= 3

        await wait_for(failed, timeout=40, what="events given up after 2 deliveries")
        rows = (await _callbacks_json(client.settings, "replayed", "--failed"))["failed"]
        assert all(r["deliveries"] == 2 and r["last_error"] == "HTTP 503" for r in rows)
        assert receiver.accepted() == {}

        bad = _cli(client.settings, "callbacks", "replay")
        assert bad.returncode == 2 and "EVENT_ID or --all-failed" in bad.stderr
        missing = _cli(client.settings, "callbacks", "replay", "replayed:state:999")
        assert missing.returncode == 1 and "replayed:state:999" in missing.stderr

        first = rows[0]["event_id"]
        one = _cli(client.settings, "callbacks", "replay", first)
        assert one.returncode == 0, one.stderr
        await wait_for(lambda: _has(receiver, {first}), timeout=20, what="one replayed")
        rest = _cli(client.settings, "callbacks", "replay", "--all-failed")
        assert rest.returncode == 0, rest.stderr
        wanted = {r["event_id"] for r in rows}
        await wait_for(lambda: _has(receiver, wanted), timeout=20, what="all replayed")
        # Same event IDs as the failed deliveries: the receiver can drop what it has seen.
        assert set(receiver.accepted()) == wanted
        assert (await _callbacks_json(client.settings, "replayed", "--failed"))["failed"] == []
    finally:
        server.stop()


async def test_api_lists_failed_events_and_replays_one(
    client: CampaignClient, settings: Settings, tmp_path: Path
) -> None:
    """No worker: the failed event is made by the store's own give-up step."""
    store = client.store
    await client.submit(parse_spec(spec_dict("api-cb", contacts=1)))
    await client.pause("api-cb")
    outbox = callback_store(store)
    (event,) = await outbox.read_new(10)
    assert event.event_id == "api-cb:state:1"
    assert (event.fields["from"], event.fields["to"]) == ("queued", "paused")
    await outbox.give_up(event, error="HTTP 500", at_ms=now_ms())
    api = ApiProcess(settings, tmp_path / "api.log")
    try:
        async with httpx.AsyncClient(base_url=api.url, timeout=10) as http:
            url = "/v1/campaigns/api-cb/callbacks"
            listed = (await http.get(url, headers=auth(VIEWER_TOKEN))).json()
            assert [r["event_id"] for r in listed["failed"]] == ["api-cb:state:1"]
            assert listed["log"][0]["result"] == "failed"
            only = await http.get(url, params={"failed": "yes"}, headers=auth(VIEWER_TOKEN))
            assert only.status_code == 422 and only.json()["error"]["field"] == "failed"
            replay = f"{url}/api-cb:state:1/replay"
            viewer = await http.post(replay, headers=auth(VIEWER_TOKEN))
            assert viewer.status_code == 403
            other = await http.post(
                "/v1/campaigns/elsewhere/callbacks/api-cb:state:1/replay",
                headers=auth(OPERATOR_TOKEN),
            )
            assert other.status_code == 404
            done = await http.post(replay, headers=auth(OPERATOR_TOKEN))
            assert done.status_code == 200 and done.json()["replayed"] is True
            again = await http.post(replay, headers=auth(OPERATOR_TOKEN))
            assert again.status_code == 404
    finally:
        api.stop()
    (back,) = await outbox.read_new(10)
    assert back.event_id == "api-cb:state:1" and back.fields == event.fields
    assert await outbox.failed("api-cb") == [] and await outbox.all_failed() == []


async def test_an_event_taken_by_a_worker_that_died_is_sent_again_with_its_event_id(
    client: CampaignClient, settings: Settings
) -> None:
    """In process: a pass after the crash finds the event pending past its backoff."""
    receiver = Receiver(fail_first=0)
    server = serve(receiver)
    spec = {**spec_dict("crash", contacts=1), "callbacks": {"url": f"{server.url}/cb"}}
    await client.submit(parse_spec(spec))
    await client.pause("crash")
    outbox = callback_store(client.store)
    (taken,) = await outbox.read_new(10)  # a worker took it, then died before the POST
    fast = settings.model_copy(
        update={"callback_retry_seconds": 0.1, "callback_secret": SecretStr(SECRET)}
    )
    first, second = CallbackDeliverer(client.store, fast), CallbackDeliverer(client.store, fast)
    try:

        async def delivered(event_id: str) -> bool:
            # Two workers' passes at once: one runs, the other finds the lock taken.
            await asyncio.gather(first.run_once(), second.run_once())
            return event_id in receiver.accepted()

        await wait_for(lambda: delivered(taken.event_id), timeout=10, what="the taken event")
        await client.cancel("crash")
        await wait_for(lambda: delivered("crash:state:2"), timeout=10, what="the next event")
        await asyncio.gather(first.run_once(), second.run_once())
    finally:
        await first.aclose()
        await second.aclose()
        server.stop()
    assert receiver.accepted()[taken.event_id]["to"] == "paused"
    assert [len(receiver.bodies(e)) for e in ("crash:state:1", "crash:state:2")] == [1, 1]
    assert receiver.bad_signatures == []
    assert (await outbox.log("crash"))[-1]["delivery"] == 2  # taken once before the crash
    assert await outbox.waiting() == 0


async def _has(receiver: Receiver, event_ids: set[str]) -> bool:
    return event_ids <= set(receiver.accepted())


def _cli(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [CAMPAIGNS_BIN, *args],
        env=worker_env(settings),
        capture_output=True,
        text=True,
        timeout=30,
    )


async def _callbacks_json(settings: Settings, campaign_id: str, *flags: str) -> dict[str, Any]:
    done = _cli(settings, "callbacks", campaign_id, "--json", *flags)
    assert done.returncode == 0, done.stderr
    found: dict[str, Any] = json.loads(done.stdout)
    return found
