"""Bad input at every entry point: a clear error naming the field, exit 2, nothing written."""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import redis as redis_sync

from campaigns import SpecError, submit_campaign
from campaigns.domain.spec import parse_spec
from campaigns.operators.control import CampaignClient
from campaigns.queue import json_serializer
from campaigns.settings import Settings
from campaigns.testbed.sandbox import SandboxServer
from tests.conftest import spec_dict
from tests.support import CAMPAIGNS_BIN, WorkerProcess, wait_for, worker_env

BAD_SPECS: list[tuple[str, dict[str, Any], str]] = [
    ("float money", {"budget": 50.0}, "budget"),
    ("int money without _micros", {"budget": 50}, "budget"),
    ("sub-micro money", {"budget": "0.0000001"}, "budget"),
    ("unknown field", {"colour": "red"}, "colour"),
    ("impossible number", {"contacts": [{"to": "+1555"}]}, "contacts.0.to"),
    ("number without +", {"contacts": [{"to": "15551230002"}]}, "contacts.0.to"),
    (
        "unknown contact field",
        {"contacts": [{"to": "+15551230002", "nmae": "x"}]},
        "contacts.0.nmae",
    ),
    ("bad currency", {"currency": "euro"}, "currency"),
    ("bad campaign id", {"campaign_id": "a:b"}, "campaign_id"),
    ("bad increments", {"rate": {"per_minute": "0.01", "increments": "60-60"}}, "rate"),
    ("float rate", {"rate": {"per_minute": 0.01}}, "rate.per_minute"),
    ("zero pacing", {"pacing": {"calls_per_second": 0}}, "pacing.calls_per_second"),
    ("zero max seconds", {"max_call_seconds": 0}, "max_call_seconds"),
    ("callback url not http", {"callbacks": {"url": "ftp://hooks.example/cb"}}, "callbacks.url"),
    ("callback url relative", {"callbacks": {"url": "/cb"}}, "callbacks.url"),
    # The contact policy (issue 8): every invalid rule names its field.
    (
        "unknown day",
        {
            "calling_window": {
                "days": ["mon", "someday"],
                "start": "09:00",
                "end": "20:00",
                "timezone": "UTC",
            }
        },
        "calling_window.days",
    ),
    (
        "window start equals end",
        {"calling_window": {"start": "09:00", "end": "09:00", "timezone": "UTC"}},
        "calling_window.end",
    ),
    (
        "unknown zone",
        {"calling_window": {"start": "09:00", "end": "20:00", "timezone": "Mars/Olympus"}},
        "calling_window.timezone",
    ),
    (
        "recipient zone without a default",
        {"calling_window": {"start": "09:00", "end": "20:00", "timezone": "recipient"}},
        "calling_window.default_timezone",
    ),
    (
        "schedule ends before it starts",
        {"schedule": {"start_at": "2026-12-02T09:00:00Z", "end_at": "2026-12-01T09:00:00Z"}},
        "schedule.end_at",
    ),
    (
        "retry for completed",
        {"retry": {"completed": {"after_seconds": 60, "max_attempts": 2}}},
        "retry.completed",
    ),
    ("impossible suppress number", {"suppress": ["+1555"]}, "suppress.0"),
]


def _dbsize(url: str) -> int:
    with redis_sync.Redis.from_url(url) as r:
        return int(r.dbsize())


def _run(settings: Settings, *args: str, **extra_env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [CAMPAIGNS_BIN, *args],
        env=worker_env(settings, **extra_env),
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize(("name", "patch", "field"), BAD_SPECS, ids=[b[0] for b in BAD_SPECS])
def test_cli_submit_and_estimate_refuse_bad_specs(
    settings: Settings, tmp_path: Path, name: str, patch: dict[str, Any], field: str
) -> None:
    spec = {**spec_dict("bad", contacts=2), **patch}
    path = tmp_path / "spec.json"
    path.write_text(json.dumps(spec))
    for command in ("submit", "estimate"):
        out = _run(settings, command, str(path))
        assert out.returncode == 2, (command, out.stdout, out.stderr)
        lines = out.stderr.strip().splitlines()
        assert len(lines) == 1, out.stderr
        assert field in lines[0], lines[0]
        assert out.stdout == ""
    assert _dbsize(settings.redis_url) == 0, "nothing may be written"


@pytest.mark.parametrize(("name", "patch", "field"), BAD_SPECS, ids=[b[0] for b in BAD_SPECS])
async def test_python_api_refuses_bad_specs(
    settings: Settings, name: str, patch: dict[str, Any], field: str
) -> None:
    spec = {**spec_dict("bad", contacts=2), **patch}
    with pytest.raises(SpecError) as caught:
        await submit_campaign(spec, settings)
    assert field in caught.value.field or field in str(caught.value)
    assert _dbsize(settings.redis_url) == 0


def test_cli_refuses_bad_files_and_csv(settings: Settings, tmp_path: Path) -> None:
    spec_path = tmp_path / "spec.json"
    spec_path.write_text(json.dumps(spec_dict("csv", contacts=1)))
    cases = {
        "missing.json": ([str(tmp_path / "missing.json")], "spec"),
        "not json": ([str(tmp_path / "garbage.json")], "spec"),
        "csv without header": (
            [str(spec_path), "--contacts", str(tmp_path / "nohead.csv")],
            "contacts",
        ),
        "csv bad number": ([str(spec_path), "--contacts", str(tmp_path / "badnum.csv")], "line 3"),
    }
    (tmp_path / "garbage.json").write_text("{not json")
    (tmp_path / "nohead.csv").write_text("+15551230002,x\n")
    (tmp_path / "badnum.csv").write_text("to,ref\n+15551230002,a\n12,b\n")
    for name, (args, needle) in cases.items():
        out = _run(settings, "submit", *args)
        assert out.returncode == 2, (name, out.stderr)
        assert len(out.stderr.strip().splitlines()) == 1, (name, out.stderr)
        assert needle in out.stderr, (name, out.stderr)
    assert _dbsize(settings.redis_url) == 0


def test_cli_refuses_bad_settings_and_flags(settings: Settings, tmp_path: Path) -> None:
    out = _run(settings, "status", "x", DISPATCHER_PROVIDER_DIALECT="carrier-pigeon")
    assert out.returncode == 2
    assert "DISPATCHER_PROVIDER_DIALECT" in out.stderr
    out = _run(settings, "resolve", "x:000001:1")
    assert out.returncode == 2 and "--call-id" in out.stderr
    out = _run(settings, "report", "x", "--format", "xml")
    assert out.returncode == 2


async def test_resubmitting_a_different_spec_is_refused(
    client: CampaignClient, settings: Settings, tmp_path: Path
) -> None:
    await client.submit(parse_spec(spec_dict("once", contacts=2)))
    before = _dbsize(settings.redis_url)
    path = tmp_path / "spec.json"
    path.write_text(json.dumps(spec_dict("once", contacts=2, budget="99.00")))
    out = _run(settings, "submit", str(path))
    assert out.returncode == 2 and "different spec" in out.stderr
    assert _dbsize(settings.redis_url) == before


async def test_worker_survives_garbage_jobs(
    client: CampaignClient,
    settings: Settings,
    sandbox: SandboxServer,
    start_worker: Callable[..., WorkerProcess],
) -> None:
    """Malformed payloads, unknown job names, half-deleted campaigns: one log line each."""
    worker = start_worker()
    r = client.queue.redis
    queue = settings.queue_name
    now = int(time.time() * 1000)

    async def raw_job(job_id: str, payload: bytes) -> None:
        await r.set(f"arq:job:{job_id}", payload, px=60_000)
        await r.zadd(queue, {job_id: now})

    await raw_job("garbage-bytes", b"\x80\x04not json at all")
    await raw_job(
        "unknown-fn", json_serializer({"t": 1, "f": "launch_missiles", "a": [], "k": {}, "et": now})
    )
    await raw_job(
        "bad-args",
        json_serializer({"t": 1, "f": "dispatch_campaign", "a": [42, "x"], "k": {}, "et": now}),
    )
    await raw_job(
        "bad-event",
        json_serializer({"t": 1, "f": "record_call_event", "a": ["{oops"], "k": {}, "et": now}),
    )
    # A campaign whose keys were half-deleted: meta gone, contacts left behind.
    await client.submit(parse_spec(spec_dict("halfgone", contacts=2)))
    await r.delete("dsp:c:halfgone:meta")
    await raw_job(
        "halfgone",
        json_serializer(
            {"t": 1, "f": "dispatch_campaign", "a": ["halfgone", 1], "k": {}, "et": now}
        ),
    )

    # The worker keeps serving: a good campaign still completes.
    await client.submit(parse_spec(spec_dict("healthy", contacts=3)))

    async def healthy_done() -> bool:
        return (await client.get("healthy")).state == "completed"

    await wait_for(healthy_done, timeout=30, what="the healthy campaign")
    assert worker.alive
    log = worker.log_text()
    assert '"job_quarantined"' in log and "garbage-bytes" in log
    assert "launch_missiles" in log and "not found" in log
    assert "campaign_id: expected a non-empty string" in log
    assert "dispatch_unknown_campaign" in log
    dead = await client.store.dead_letters()
    assert any("not JSON" in d["reason"] for d in dead)
