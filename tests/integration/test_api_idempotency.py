"""Idempotent creates (issue 19, item 1) over real HTTP, real Redis, a real worker and
the sandbox: a retried create (the same Idempotency-Key) makes one campaign and
dials each contact once; the key names the campaign when the spec has no ID."""

from __future__ import annotations

import asyncio
import copy
import json
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from campaigns import submit_campaign
from campaigns.domain.contacts import Contacts
from campaigns.domain.spec import SpecError, campaign_id_for_key, parse_spec
from campaigns.queue import open_queue
from campaigns.settings import Settings
from campaigns.store import Store, SubmitConflict
from campaigns.testbed.sandbox import SandboxServer
from tests.conftest import spec_dict
from tests.integration.test_api import OPERATOR, VIEWER, api_server, http, nothing_stored, store
from tests.support import CAMPAIGNS_BIN, WorkerProcess, creates, wait_for, worker_env

__all__ = ["api_server", "http", "store"]  # fixtures, shared with test_api


def keyed(key: str) -> dict[str, str]:
    return {**OPERATOR, "Idempotency-Key": key}


def without_id(contacts: int = 5, **overrides: Any) -> dict[str, Any]:
    spec = spec_dict(contacts=contacts, **overrides)
    del spec["campaign_id"]
    return spec


async def test_concurrent_retries_with_one_key_make_one_campaign_and_one_dial_each(
    http: httpx.AsyncClient,
    sandbox: SandboxServer,
    start_worker: Callable[..., WorkerProcess],
    store: Store,
) -> None:
    start_worker()
    spec = without_id(contacts=5)
    answers = await asyncio.gather(
        *(http.post("/v1/campaigns", headers=keyed("order-7781"), json=spec) for _ in range(8))
    )
    campaign_id = campaign_id_for_key("order-7781")
    assert {a.status_code for a in answers} == {201}, [a.text for a in answers]
    assert len({a.text for a in answers}) == 1, "every retry gets the first answer's body"
    assert [a.headers.get("idempotent-replayed") for a in answers].count(None) == 1
    assert answers[0].json()["campaign"]["campaign_id"] == campaign_id
    assert answers[0].headers["location"] == f"/v1/campaigns/{campaign_id}"
    assert await store.campaign_ids() == [campaign_id]

    async def completed() -> bool:
        status = (await http.get(f"/v1/campaigns/{campaign_id}", headers=VIEWER)).json()
        return bool(status["state"] == "completed")

    await wait_for(completed, timeout=40, what="completion")
    ledger = creates(sandbox.ledger(), campaign_id)
    dialled = sorted(json.loads(e["body"])["to"] for e in ledger)
    assert dialled == sorted(c["to"] for c in spec["contacts"]), "one dial per contact"

    later = await http.post("/v1/campaigns", headers=keyed("order-7781"), json=spec)
    assert (later.status_code, later.text) == (answers[0].status_code, answers[0].text)
    assert later.headers["idempotent-replayed"] == "true"
    assert len(creates(sandbox.ledger(), campaign_id)) == 5


async def test_the_same_values_in_other_spellings_are_the_same_request(
    http: httpx.AsyncClient, store: Store
) -> None:
    spec = without_id(schedule={"start_at": "2030-01-01T09:00:00+01:00"})
    first = await http.post("/v1/campaigns", headers=keyed("k-spell"), json=spec)
    assert first.status_code == 201, first.text
    respelt = copy.deepcopy(spec)
    respelt["budget"] = "50.0"
    respelt["rate"]["per_minute"] = "0.010"
    respelt["schedule"] = {"start_at": "2030-01-01T08:00:00Z"}
    again = await http.post("/v1/campaigns", headers=keyed("k-spell"), json=respelt)
    assert (again.status_code, again.text) == (201, first.text)
    # Without the key, by campaign ID: the same spec (200), not a conflict (409).
    respelt["campaign_id"] = campaign_id_for_key("k-spell")
    by_id = await http.post("/v1/campaigns", headers=OPERATOR, json=respelt)
    assert by_id.status_code == 200, by_id.text
    assert by_id.json()["created"] is False


async def test_one_key_with_another_body_is_409_naming_the_key(
    http: httpx.AsyncClient, store: Store
) -> None:
    first = await http.post("/v1/campaigns", headers=keyed("k-other"), json=without_id())
    assert first.status_code == 201
    other = await http.post(
        "/v1/campaigns", headers=keyed("k-other"), json=without_id(budget="60.00")
    )
    assert other.status_code == 409
    error = other.json()["error"]
    assert error["code"] == "idempotency_key_reused"
    assert error["field"] == "Idempotency-Key" and "k-other" in error["message"]
    assert await store.campaign_ids() == [campaign_id_for_key("k-other")]


async def test_a_create_with_neither_id_nor_key_is_refused_naming_both(
    http: httpx.AsyncClient, store: Store
) -> None:
    response = await http.post("/v1/campaigns", headers=OPERATOR, json=without_id())
    assert response.status_code == 422
    error = response.json()["error"]
    assert error["field"] == "campaign_id"
    assert "Idempotency-Key" in error["message"]
    bad_key = await http.post("/v1/campaigns", headers=keyed("a b"), json=without_id())
    assert bad_key.status_code == 422
    assert bad_key.json()["error"]["field"] == "Idempotency-Key"
    assert await nothing_stored(store)


async def test_a_refused_answer_is_not_kept_so_the_key_can_be_retried(
    http: httpx.AsyncClient, store: Store
) -> None:
    bad = await http.post("/v1/campaigns", headers=keyed("k-fix"), json=without_id(budget="x"))
    assert bad.status_code == 422
    fixed = await http.post("/v1/campaigns", headers=keyed("k-fix"), json=without_id())
    assert fixed.status_code == 201, fixed.text


async def test_every_post_honours_the_key(http: httpx.AsyncClient, store: Store) -> None:
    body = {"numbers": ["+15551230002"]}
    first = await http.post("/v1/dnc/add", headers=keyed("dnc-1"), json=body)
    again = await http.post("/v1/dnc/add", headers=keyed("dnc-1"), json=body)
    assert first.json()["added"] == 1
    assert (again.status_code, again.text) == (200, first.text), "the first answer, not 'listed'"
    other = await http.post("/v1/dnc/remove", headers=keyed("dnc-1"), json=body)
    assert other.status_code == 409
    csv_body = b"number\n+15551230003\n"
    imported = [
        await http.post(
            "/v1/dnc/import",
            headers={**keyed("dnc-csv"), "Content-Type": "text/csv"},
            content=csv_body,
        )
        for _ in range(2)
    ]
    assert [r.status_code for r in imported] == [200, 200], imported[0].text
    assert imported[0].text == imported[1].text and imported[0].json()["added"] == 1
    estimate = await http.post("/v1/estimate", headers=VIEWER, json=without_id())
    assert estimate.status_code == 200
    assert estimate.json()["campaign_id"] is None, "no made-up ID"


async def test_python_api_and_job_derive_the_id_from_the_key(
    settings: Settings, store: Store, sandbox: SandboxServer
) -> None:
    with pytest.raises(SpecError) as refused:
        await submit_campaign(without_id(), settings)
    assert refused.value.field == "campaign_id"
    assert await nothing_stored(store)
    first = await submit_campaign(without_id(), settings, idempotency_key="py-1")
    again = await submit_campaign(without_id(budget="50.0"), settings, idempotency_key="py-1")
    assert first.campaign_id == again.campaign_id == campaign_id_for_key("py-1")
    assert (first.created, again.created) == (True, False)


async def test_a_campaign_stored_with_the_old_fingerprint_is_still_the_same_spec(
    settings: Settings, store: Store
) -> None:
    spec = spec_dict("legacy")
    await submit_campaign(spec, settings)
    legacy = Contacts(parse_spec(spec)).tally(legacy=True).fingerprint
    meta = store.keys.meta("legacy")
    await store.redis.hset(meta, "fingerprint", legacy)
    await store.redis.hdel(meta, "fingerprint_version")
    assert (await submit_campaign(spec, settings)).created is False
    with pytest.raises(SubmitConflict):
        await submit_campaign({**spec, "budget": "51"}, settings)


async def test_cli_submit_needs_an_id_or_a_key(
    settings: Settings, tmp_path: Path, store: Store
) -> None:
    path = tmp_path / "spec.json"
    path.write_text(json.dumps(without_id()))

    def submit(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [CAMPAIGNS_BIN, "submit", str(path), *args],
            env=worker_env(settings),
            capture_output=True,
            text=True,
            timeout=60,
        )

    refused = await asyncio.to_thread(submit)
    assert refused.returncode == 2, refused.stderr
    assert "campaign_id" in refused.stderr and "--idempotency-key" in refused.stderr
    assert await nothing_stored(store)
    first = await asyncio.to_thread(submit, "--idempotency-key", "cli-1")
    again = await asyncio.to_thread(submit, "--idempotency-key", "cli-1")
    campaign_id = campaign_id_for_key("cli-1")
    assert first.returncode == again.returncode == 0, first.stderr + again.stderr
    assert f"{campaign_id}: submitted" in first.stdout
    assert f"{campaign_id}: already submitted" in again.stdout


async def test_the_submit_job_derives_the_id_and_refuses_neither(
    settings: Settings, store: Store, start_worker: Callable[..., WorkerProcess]
) -> None:
    start_worker()
    queue = await open_queue(settings.redis_url, settings.queue_name)
    try:
        job = await queue.redis.enqueue_job(
            "submit_campaign", without_id(), "job-1", _queue_name=settings.queue_name
        )
        assert job is not None
        result = await job.result(timeout=30)
        assert result["campaign_id"] == campaign_id_for_key("job-1") and result["created"]
        refused = await queue.redis.enqueue_job(
            "submit_campaign", without_id(), _queue_name=settings.queue_name
        )
        assert refused is not None
        assert "campaign_id" in (await refused.result(timeout=30))["refused"]
    finally:
        await queue.aclose()
    assert await store.campaign_ids() == [campaign_id_for_key("job-1")]
