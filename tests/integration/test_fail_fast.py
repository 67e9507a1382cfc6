"""The real ``campaigns`` binary fails fast, in one line (issue #12, defects 2, 4 and 9).

An unreachable Redis used to hold ``campaigns status`` for about 20 minutes
(the pool's retry policy, meant for workers); a bad URL scheme,
``DISPATCHER_LOG_LEVEL=NOPE`` or ``ingress --tolerance 0`` ended in tracebacks;
``DISPATCHER_WEBHOOK_SECRET=`` started an ingress that checked no signature;
a key ending in a newline leaked in its escaped form. Now: exit 1 with one
line when Redis does not answer within a few seconds, exit 2 with one line
naming the setting or option for a configuration error, while a worker still
rides out a Redis that is not there yet.

The subprocess timeouts are only a safety net against a hang; the assertions
are on exit codes and output.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from redis.asyncio import Redis

from campaigns.settings import Settings
from campaigns.testbed.redis_server import RedisServer
from tests.conftest import spec_dict
from tests.support import CAMPAIGNS_BIN, WorkerProcess, wait_for

pytestmark = pytest.mark.integration

SAFETY_NET_SECONDS = 120
PASSWORD = "hunter2-redis-password"


def run(cwd: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """``campaigns ARGS`` with only the given DISPATCHER_* settings, from a directory
    without a ``.env`` file."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("DISPATCHER_")}
    clean.update(env)
    return subprocess.run(
        [CAMPAIGNS_BIN, *args],
        env=clean,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=SAFETY_NET_SECONDS,
        stdin=subprocess.DEVNULL,
    )


def one_error_line(result: subprocess.CompletedProcess[str]) -> str:
    assert "Traceback" not in result.stderr + result.stdout
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")
    return lines[0]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def refused(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
    except ConnectionRefusedError:
        return True
    return False


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A port that accepts connections and never answers (a hung or firewalled Redis)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(16)
        yield sock.getsockname()[1]


@pytest.mark.parametrize(
    "args",
    [("status", "spring"), ("list",), ("pause", "spring"), ("dead-letters",)],
    ids=["status", "list", "pause", "dead-letters"],
)
def test_unreachable_redis_is_one_line_and_exit_1(args: tuple[str, ...], tmp_path: Path) -> None:
    port = free_port()
    assert refused(port)
    result = run(tmp_path, *args, DISPATCHER_REDIS_URL=f"redis://:{PASSWORD}@127.0.0.1:{port}/0")
    assert result.returncode == 1
    line = one_error_line(result)
    assert f"cannot reach Redis at 127.0.0.1:{port}" in line
    assert PASSWORD not in result.stderr + result.stdout
    assert result.stdout == ""


def test_submit_fails_fast_too_and_writes_nothing(tmp_path: Path) -> None:
    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps(spec_dict("fast-fail", contacts=2)))
    port = free_port()
    result = run(tmp_path, "submit", str(spec), DISPATCHER_REDIS_URL=f"redis://127.0.0.1:{port}/0")
    assert result.returncode == 1
    assert "cannot reach Redis" in one_error_line(result)


def test_a_redis_that_never_answers_is_given_up_on(silent_port: int, tmp_path: Path) -> None:
    result = run(
        tmp_path, "status", "spring", DISPATCHER_REDIS_URL=f"redis://127.0.0.1:{silent_port}"
    )
    assert result.returncode == 1
    line = one_error_line(result)
    assert f"Redis at 127.0.0.1:{silent_port}" in line
    assert "no answer" in line or "Timeout" in line


def test_worker_check_fails_fast_on_an_unreachable_redis(tmp_path: Path) -> None:
    port = free_port()
    result = run(tmp_path, "worker", "--check", DISPATCHER_REDIS_URL=f"redis://127.0.0.1:{port}")
    assert result.returncode == 1
    assert "cannot reach Redis" in one_error_line(result)


@pytest.mark.parametrize(
    ("args", "env", "named"),
    [
        (
            ("status", "x"),
            {"DISPATCHER_REDIS_URL": "http://127.0.0.1:6379/0"},
            "DISPATCHER_REDIS_URL",
        ),
        (
            ("status", "x"),
            {"DISPATCHER_REDIS_URL": "redis://127.0.0.1:6379/"},
            "DISPATCHER_REDIS_URL",
        ),
        (("status", "x"), {"DISPATCHER_LOG_LEVEL": "NOPE"}, "DISPATCHER_LOG_LEVEL"),
        (("list",), {"DISPATCHER_LOG_FORMAT": "xml"}, "DISPATCHER_LOG_FORMAT"),
        (("status", "x"), {"DISPATCHER_LEASE_SECONDS": "nan"}, "DISPATCHER_LEASE_SECONDS"),
        (("ingress", "--tolerance", "0"), {}, "--tolerance"),
        (("ingress", "--tolerance", "-5"), {}, "--tolerance"),
        (("ingress", "--port", "70000"), {}, "--port"),
        (("status", "abc\n"), {}, "CAMPAIGN_ID"),
        (("resolve", "a b", "--no-call"), {}, "ATTEMPT_ID"),
        (("no-such-command",), {}, "no-such-command"),
        (
            ("worker",),
            {"DISPATCHER_REDIS_URL": "redis://127.0.0.1:1"},
            "DISPATCHER_PROVIDER_API_KEY",
        ),
        (("reconcile", "x"), {}, "DISPATCHER_PROVIDER_API_KEY"),
        (("sandbox", "--config", "/nonexistent/sandbox.json"), {}, "--config"),
    ],
    ids=[
        "redis-scheme",
        "redis-no-db",
        "log-level",
        "log-format",
        "nan-lease",
        "tolerance-0",
        "tolerance-negative",
        "port",
        "campaign-id-newline",
        "attempt-id-space",
        "unknown-command",
        "worker-without-api-key",
        "reconcile-without-api-key",
        "sandbox-config-missing",
    ],
)
def test_configuration_errors_are_one_line_naming_it_and_exit_2(
    args: tuple[str, ...], env: dict[str, str], named: str, tmp_path: Path
) -> None:
    result = run(tmp_path, *args, **env)
    assert result.returncode == 2
    assert named in one_error_line(result)
    assert result.stdout == ""


@pytest.mark.parametrize("secret", ["", "  "], ids=["empty", "blank"])
def test_an_empty_webhook_secret_stops_the_ingress_before_it_listens(
    secret: str, tmp_path: Path
) -> None:
    """Issue #12, defect 2: it used to serve, accepting unsigned deliveries."""
    port = free_port()
    result = run(tmp_path, "ingress", "--port", str(port), DISPATCHER_WEBHOOK_SECRET=secret)
    assert result.returncode == 2
    assert "DISPATCHER_WEBHOOK_SECRET: must not be empty" in one_error_line(result)
    assert refused(port), "something is listening on the ingress port"


@pytest.mark.parametrize("command", [("worker",), ("status", "spring")], ids=["worker", "status"])
def test_an_api_key_ending_in_a_newline_is_refused_without_quoting_it(
    command: tuple[str, ...], tmp_path: Path
) -> None:
    """Issue #12, defect 4: the worker used to start and leak it as ``b'Bearer sandbox-key\\n'``."""
    result = run(tmp_path, *command, DISPATCHER_PROVIDER_API_KEY="sandbox-key\n")
    assert result.returncode == 2
    line = one_error_line(result)
    assert line.startswith("error: invalid settings: DISPATCHER_PROVIDER_API_KEY:")
    assert "sandbox-key" not in result.stderr + result.stdout


class FlakyListener:
    """Accepts connections on a port and drops them at once: Redis is not up yet."""

    def __init__(self, port: int) -> None:
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", port))
        self.sock.listen(64)
        self.sock.settimeout(0.2)
        self.accepted = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            self.accepted += 1
            conn.close()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self.sock.close()


async def test_the_cli_gives_up_while_a_worker_rides_it_out(
    settings: Settings,
    start_worker: Callable[..., WorkerProcess],
    tmp_path: Path,
) -> None:
    """Same Redis URL, Redis not there yet: the CLI says so in one line, the worker
    keeps retrying (its policy is unchanged) and serves once Redis comes up."""
    port = free_port()
    url = f"redis://127.0.0.1:{port}/0"
    listener = FlakyListener(port)
    try:
        worker = start_worker(settings.model_copy(update={"redis_url": url}))

        async def worker_retried() -> bool:
            assert worker.alive, worker.log_text()
            return listener.accepted >= 3

        await wait_for(worker_retried, timeout=60, what="the worker retrying its connection")

        cli = run(tmp_path, "status", "spring", DISPATCHER_REDIS_URL=url)
        assert cli.returncode == 1
        assert f"cannot reach Redis at 127.0.0.1:{port}" in one_error_line(cli)
        assert worker.alive, worker.log_text()
    finally:
        listener.close()

    with RedisServer(port=port) as server:
        redis = Redis.from_url(server.url)
        try:

            async def worker_connected() -> bool:
                assert worker.alive, worker.log_text()
                return bool(await redis.keys(f"{settings.queue_name}:health-check:*"))

            await wait_for(worker_connected, timeout=60, what="the worker's health check in Redis")
        finally:
            await redis.aclose()
        cli = run(tmp_path, "status", "spring", DISPATCHER_REDIS_URL=url)
        assert cli.returncode == 1
        assert one_error_line(cli) == "error: no campaign 'spring'"
        worker.terminate()
