"""A replicated Redis on loopback: one primary, replicas and ``redis-server --sentinel``s.

For the failover tests and benchmarks: real processes on free ports, each a
:class:`RedisServer`, so a test can SIGKILL, SIGSTOP or restart any of them.
The data nodes refuse writes when cut off from every replica
(``min-replicas-to-write``), as ``deploy/`` configures production.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from types import TracebackType
from typing import Self

import redis

from campaigns.testbed.redis_server import RedisServer, RedisServerError

__all__ = ["SentinelGroup"]

_HOST = "127.0.0.1"


class SentinelGroup:
    """``replicas`` replicas of one primary, watched by ``sentinels`` sentinels (quorum 2)."""

    def __init__(
        self,
        *,
        service: str = "dispatcher",
        replicas: int = 2,
        sentinels: int = 3,
        down_after_ms: int = 1000,
        failover_timeout_ms: int = 3000,
        min_replicas_to_write: int = 1,
        min_replicas_max_lag: int = 2,
        appendonly: bool = True,
    ) -> None:
        self.service = service
        self.down_after_ms = down_after_ms
        self.failover_timeout_ms = failover_timeout_ms
        self._data_config = {
            "min-replicas-to-write": str(min_replicas_to_write),
            "min-replicas-max-lag": str(min_replicas_max_lag),
            "repl-diskless-sync": "yes",
            "repl-diskless-sync-delay": "0",
        }
        self.nodes = [
            RedisServer(appendonly=appendonly, extra_config=dict(self._data_config))
            for _ in range(1 + replicas)
        ]
        self.sentinels = [RedisServer(sentinel_lines=[]) for _ in range(sentinels)]
        self._stopped: set[int] = set()

    # -- addresses -----------------------------------------------------------------

    @property
    def sentinel_setting(self) -> str:
        """``DISPATCHER_REDIS_SENTINELS`` for this group."""
        return ",".join(f"{_HOST}:{s.port}" for s in self.sentinels)

    def environment(self) -> dict[str, str]:
        """The settings a dispatcher process needs to find this group's primary."""
        return {
            "DISPATCHER_REDIS_SENTINELS": self.sentinel_setting,
            "DISPATCHER_REDIS_SENTINEL_MASTER": self.service,
        }

    def primary_port(self) -> int:
        """The primary's port, as the first sentinel that answers says."""
        for sentinel in self.sentinels:
            if not sentinel.running:
                continue
            with contextlib.suppress(redis.RedisError, OSError):
                client = redis.Redis(_HOST, sentinel.port, socket_timeout=1)
                with client:
                    addr = client.sentinel_get_master_addr_by_name(self.service)  # type: ignore[no-untyped-call]
                if addr:
                    return int(addr[1])
        raise RedisServerError("no sentinel answered with a primary")

    def primary(self) -> RedisServer:
        port = self.primary_port()
        return next(n for n in self.nodes if n.port == port)

    # -- lifecycle -----------------------------------------------------------------

    def start(self, timeout: float = 30.0) -> Self:
        primary, *replicas = self.nodes
        primary.start()
        for node in replicas:
            node.extra_config["replicaof"] = f"{_HOST} {primary.port}"
            node.start()
        for sentinel in self.sentinels:
            sentinel.sentinel_lines = [
                f"sentinel monitor {self.service} {_HOST} {primary.port} 2",
                f"sentinel down-after-milliseconds {self.service} {self.down_after_ms}",
                f"sentinel failover-timeout {self.service} {self.failover_timeout_ms}",
                f"sentinel parallel-syncs {self.service} {len(replicas)}",
            ]
            sentinel.start()
        self.wait_healthy(timeout)
        return self

    def wait_healthy(self, timeout: float = 30.0) -> None:
        """Until the primary has every running replica online and the sentinels see them."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with contextlib.suppress(RedisServerError, redis.RedisError, OSError, StopIteration):
                primary = self.primary()
                wanted = sum(1 for n in self.nodes if n.running and n is not primary)
                with redis.Redis(_HOST, primary.port, socket_timeout=1) as client:
                    info = client.info("replication")
                online = sum(
                    1
                    for key, value in info.items()
                    if key.startswith("slave") and isinstance(value, dict)
                    if value.get("state") == "online"
                )
                if info.get("role") == "master" and online >= wanted and self._sentinels_agree():
                    return
            time.sleep(0.05)
        raise RedisServerError(f"the sentinel group did not settle within {timeout}s")

    def _sentinels_agree(self) -> bool:
        ports = set()
        for sentinel in self.sentinels:
            if not sentinel.running:
                continue
            with redis.Redis(_HOST, sentinel.port, socket_timeout=1) as client:
                addr = client.sentinel_get_master_addr_by_name(self.service)
            ports.add(int(addr[1]) if addr else None)
        return len(ports) == 1

    def kill_primary(self) -> RedisServer:
        """SIGKILL the current primary (a lost host); returns it, stopped."""
        primary = self.primary()
        primary.kill()
        return primary

    def freeze_primary(self) -> RedisServer:
        """SIGSTOP the current primary (a hung VM, a partition): it keeps its sockets."""
        primary = self.primary()
        assert primary.pid is not None
        os.kill(primary.pid, signal.SIGSTOP)
        self._stopped.add(primary.pid)
        return primary

    def thaw(self, node: RedisServer) -> None:
        if node.pid is not None:
            os.kill(node.pid, signal.SIGCONT)
            self._stopped.discard(node.pid)

    def wait_for_new_primary(self, old_port: int, timeout: float = 30.0) -> int:
        """Until the sentinels name a primary other than ``old_port``; its port."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with contextlib.suppress(RedisServerError):
                port = self.primary_port()
                if port != old_port:
                    return port
            time.sleep(0.05)
        raise RedisServerError(f"no failover away from port {old_port} within {timeout}s")

    def rejoin(self, node: RedisServer) -> None:
        """Start a killed node again as a replica of the current primary."""
        node.extra_config["replicaof"] = f"{_HOST} {self.primary_port()}"
        node.restart(graceful=False)

    def close(self) -> None:
        for pid in list(self._stopped):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)
        for server in [*self.sentinels, *self.nodes]:
            server.close()

    def __enter__(self) -> Self:
        try:
            return self.start()
        except BaseException:
            self.close()
            raise

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
