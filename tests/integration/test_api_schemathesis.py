"""Schemathesis against the live API (issue 19, item 3): every check, every phase
(the schema's examples, coverage, fuzzing, and the stateful phase that follows the
document's links from a create to get, pause, resume and cancel), as an operator
and as a viewer, with 0 failures; the API then has created, paused, resumed and
cancelled campaigns on those links (its log says so for each 2xx)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from campaigns.store import Store
from campaigns.testbed.redis_server import RedisServer
from campaigns.testbed.sandbox import SandboxServer
from tests.api_process import OPERATOR_TOKEN, VIEWER_TOKEN, ApiProcess
from tests.conftest import API_KEY
from tests.integration.test_api import store
from tests.support import ROOT, fast_settings

__all__ = ["store"]  # a fixture, shared with test_api

SCHEMATHESIS = Path(sys.executable).with_name("schemathesis")
CONFIG = Path(__file__).with_name("schemathesis.toml")


@pytest.fixture(scope="module")
def api_server(
    redis_server: RedisServer,
    sandbox_server: SandboxServer,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[ApiProcess]:
    """The API without its rate limit: schemathesis sends thousands of requests a minute."""
    settings = fast_settings(redis_server.url, sandbox_server.url, API_KEY, "dispatcher:test")
    log = tmp_path_factory.mktemp("api") / "api.log"
    server = ApiProcess(settings, log, DISPATCHER_API_RATE_LIMIT="0")
    yield server
    server.stop()


def run_schemathesis(api: ApiProcess, token: str, report: Path) -> str:
    """``schemathesis run --checks all`` over every phase; its output, asserting exit 0."""
    done = subprocess.run(
        [
            str(SCHEMATHESIS),
            "--config-file",
            str(CONFIG),
            "run",
            f"{api.url}/v1/openapi.json",
            "--url",
            api.url,
            "--checks",
            "all",
            "--phases",
            "examples,coverage,fuzzing,stateful",
            "--seed",
            "19",
            "--workers",
            "1",
            "--request-timeout",
            "20",
            "--no-color",
            "--report-dir",
            str(report),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=report,  # schemathesis keeps a cache in its working directory
        env={
            **os.environ,
            "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
            "SCHEMATHESIS_HOOKS": "tests.integration.schemathesis_hooks",
            "SCHEMATHESIS_TOKEN": token,
        },
    )
    assert done.returncode == 0, done.stdout[-20000:] + done.stderr[-5000:]
    return done.stdout


async def test_schemathesis_as_operator_steers_campaigns_through_the_links(
    api_server: ApiProcess, redis_url: str, store: Store, tmp_path: Path
) -> None:
    before = api_server.log()
    run_schemathesis(api_server, OPERATOR_TOKEN, tmp_path)
    # What the run did, as the API logged each change it answered 2xx to.
    done = api_server.log()[len(before) :]
    for event in ("submitted", "pause", "resume", "cancel"):
        assert f'"api_campaign_{event}"' in done, f"schemathesis never got a 2xx {event}"
    listed = await store.campaign_ids()
    assert listed, "no campaign left in Redis after the run"


async def test_schemathesis_as_viewer(
    api_server: ApiProcess, redis_url: str, tmp_path: Path
) -> None:
    run_schemathesis(api_server, VIEWER_TOKEN, tmp_path)
