"""Session fixtures: a real redis-server on a free port and the sandbox over HTTP."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from campaigns.operators.control import CampaignClient
from campaigns.settings import Settings
from campaigns.testbed.sandbox import SandboxServer
from tests.redis_fixtures import redis_server, redis_url
from tests.support import WorkerProcess, fast_settings

__all__ = ["redis_server", "redis_url"]

API_KEY = "sk_test_7f3a9c2e5b1d4f6a8c0e"


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--soak", action="store_true", help="run the long chaos soak")
    parser.addoption("--chaos-seed", type=int, default=None, help="replay a chaos run")


@pytest.fixture(scope="session")
def sandbox_server() -> Iterator[SandboxServer]:
    with SandboxServer() as server:
        yield server


@pytest.fixture
def sandbox(sandbox_server: SandboxServer) -> SandboxServer:
    sandbox_server.reset(config=True)
    sandbox_server.configure(api_key=API_KEY, call_duration_real_seconds=0.2)
    return sandbox_server


@pytest.fixture
def settings(redis_url: str, sandbox: SandboxServer) -> Settings:
    return fast_settings(redis_url, sandbox.url, API_KEY, "dispatcher:test")


@pytest.fixture
async def client(settings: Settings) -> AsyncIterator[CampaignClient]:
    client = await CampaignClient.connect(settings)
    yield client
    await client.aclose()


@pytest.fixture
def start_worker(settings: Settings, tmp_path: Path) -> Iterator[Callable[..., WorkerProcess]]:
    """Start real ``campaigns worker`` processes; all are stopped after the test."""
    started: list[WorkerProcess] = []

    def start(
        config: Settings | None = None, settings_class: str | None = None, **env: str
    ) -> WorkerProcess:
        log = tmp_path / f"worker-{len(started)}.log"
        proc = WorkerProcess(config or settings, log, settings_class=settings_class, **env)
        started.append(proc)
        return proc

    yield start
    for proc in started:
        proc.terminate()


def spec_dict(campaign_id: str = "spring", contacts: int = 5, **overrides: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "campaign_id": campaign_id,
        "name": "Spring renewals",
        "caller_id": "+15551230001",
        "currency": "EUR",
        "budget": "50.00",
        "rate": {"per_minute": "0.01", "increments": "60/60", "connect_fee": "0"},
        "max_call_seconds": 120,
        "pacing": {"calls_per_second": 50, "batch_size": 10, "max_in_flight": 50},
        "contacts": [
            {"to": f"+1555124{i:04d}", "ref": f"cust_{i}", "variables": {}} for i in range(contacts)
        ],
    }
    spec.update(overrides)
    return spec
