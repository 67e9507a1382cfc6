"""``campaigns api`` as a real process on a free port, for the API and page tests."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
from pathlib import Path

import httpx

from campaigns.settings import Settings
from tests.support import CAMPAIGNS_BIN, ROOT, worker_env

VIEWER_TOKEN = "viewer-7c1e0f9a2b4d6e8f"
OPERATOR_TOKEN = "operator-3a5c7e9f1b2d4f6a"
TOKENS = {VIEWER_TOKEN: "viewer", OPERATOR_TOKEN: "operator"}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class ApiProcess:
    """``campaigns api --port N`` with the test settings; its output goes to ``log_path``."""

    def __init__(
        self, settings: Settings, log_path: Path, *, command: str = "api", **extra_env: str
    ) -> None:
        """``command``: ``api``, or ``ingress`` (the webhook receiver, same ``/healthz``)."""
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        self._log = log_path.open("ab")
        env = worker_env(settings, DISPATCHER_API_TOKENS=json.dumps(TOKENS), **extra_env)
        self.proc = subprocess.Popen(
            [CAMPAIGNS_BIN, command, "--port", str(self.port)],
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            cwd=ROOT,
            start_new_session=True,
        )
        self._wait_ready(30.0)

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"campaigns api exited {self.proc.returncode}: {self.log()}")
            try:
                if httpx.get(f"{self.url}/healthz", timeout=1.0).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        self.stop()
        raise AssertionError(f"campaigns api not ready within {timeout}s: {self.log()}")

    def stop(self, timeout: float = 15) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)
        if not self._log.closed:
            self._log.close()

    def log(self) -> str:
        if not self._log.closed:
            self._log.flush()
        return self.log_path.read_text(errors="replace")


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}
