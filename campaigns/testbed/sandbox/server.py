"""Running the sandbox: in a background thread for tests, or in the foreground.

The thread variant binds its own socket on port 0 first, so the URL is known
before uvicorn starts and parallel test runs never fight over a port.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from types import TracebackType
from typing import Any

import httpx
import uvicorn
from starlette.types import ASGIApp

from campaigns.testbed.sandbox.app import create_app
from campaigns.testbed.sandbox.config import SandboxConfig
from campaigns.testbed.sandbox.state import SandboxState

__all__ = ["SandboxServer", "ThreadedServer", "serve"]


def _bind(host: str, port: int) -> socket.socket:
    """A listening TCP socket with Nagle off.

    The explicit IPPROTO_TCP matters: asyncio only sets TCP_NODELAY on
    accepted sockets whose proto says TCP, and without it every keep-alive
    response stalls ~40 ms on Nagle plus delayed ACK.
    """
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.bind((host, port))
    sock.set_inheritable(True)
    return sock


class ThreadedServer:
    """Any ASGI app served by uvicorn on loopback in a daemon thread.

    Also handy for tiny helper apps in tests, such as a webhook receiver.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        health_path: str | None = None,
        startup_timeout: float = 10.0,
    ) -> None:
        self.app = app
        self.host = host
        self.port = port
        self.health_path = health_path
        self.startup_timeout = startup_timeout
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._sock: socket.socket | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> None:
        """Start serving and return once the server answers."""
        if self._thread is not None:
            raise RuntimeError("server already started")
        self._sock = _bind(self.host, self.port)
        self.port = self._sock.getsockname()[1]
        config = uvicorn.Config(
            self.app,
            log_level="warning",
            lifespan="on",
            timeout_graceful_shutdown=1,
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self._server.run,
            kwargs={"sockets": [self._sock]},
            name=f"uvicorn-{self.port}",
            daemon=True,
        )
        self._thread.start()
        deadline = time.monotonic() + self.startup_timeout
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"server on {self.url} did not start")
            time.sleep(0.01)
        if self.health_path is not None:
            response = httpx.get(self.url + self.health_path, timeout=self.startup_timeout)
            response.raise_for_status()

    def stop(self) -> None:
        """Ask uvicorn to exit, cut hanging requests after 1 s, and join the thread."""
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=10)
            if self._thread.is_alive() and self._server is not None:
                self._server.force_exit = True
                self._thread.join(timeout=5)
        if self._sock is not None:
            self._sock.close()
        self._server = self._thread = self._sock = None

    def __enter__(self) -> ThreadedServer:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


class SandboxServer(ThreadedServer):
    """The sandbox provider on ``127.0.0.1:<free port>``; ``.state`` is live."""

    def __init__(
        self,
        config: SandboxConfig | None = None,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        state: SandboxState | None = None,
    ) -> None:
        app = create_app(config, state=state)
        super().__init__(app, host=host, port=port, health_path="/_sandbox/health")
        self.state: SandboxState = app.state.sandbox

    def __enter__(self) -> SandboxServer:
        self.start()
        return self

    # In-process shortcuts to the control API, for tests in the same process.

    def configure(self, **fields: Any) -> SandboxConfig:
        """Same as ``PATCH /_sandbox/config``; raises SandboxConfigError."""
        return self.state.apply_patch(fields)

    def reset(self, *, config: bool = False) -> None:
        """Same as ``POST /_sandbox/reset``."""
        self.state.reset(config=config)

    def ledger(self) -> list[dict[str, Any]]:
        """Same as ``GET /_sandbox/ledger`` (the ``requests`` list)."""
        return self.state.ledger_snapshot()

    def calls(self) -> list[dict[str, Any]]:
        """Same as ``GET /_sandbox/calls`` (the ``data`` list)."""
        return self.state.calls_snapshot()


def serve(host: str, port: int, config: SandboxConfig) -> None:
    """Run the sandbox in the foreground until interrupted (Ctrl-C).

    Logs the URL through uvicorn's logger (configured by ``uvicorn.Config``),
    so it shows up next to uvicorn's own startup lines; port 0 picks a free one.
    """
    sock = _bind(host, port)
    uv_config = uvicorn.Config(create_app(config), log_level="info", lifespan="on")
    bound = sock.getsockname()[1]
    logging.getLogger("uvicorn.error").info(
        "sandbox provider listening on http://%s:%d", host, bound
    )
    try:
        uvicorn.Server(uv_config).run(sockets=[sock])
    finally:
        sock.close()
