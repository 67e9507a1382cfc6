"""The sandbox provider in a process of its own, for benchmarks.

Benchmarks must not share a GIL (or an event loop) between the sandbox and the
client they measure, so the sandbox runs here as ``python tests/bench/
sandbox_process.py`` (the same ``SandboxServer`` the tests use, uvicorn on
loopback at warning level: no access log), and is driven over its
``/_sandbox`` control API: configure, reset, ledger.

It is a single uvicorn process on one core: whatever it can answer per second
is a ceiling for every figure measured against it (``transport`` measures it).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import TracebackType
from typing import Any

import httpx

from campaigns.testbed.sandbox import SandboxServer, parse_rfc3339

__all__ = ["SandboxProcess"]

ROOT = Path(__file__).resolve().parents[2]


class SandboxProcess:
    """``with SandboxProcess(api_key=...) as sandbox:`` then ``sandbox.url``."""

    def __init__(self, **config: Any) -> None:
        self.config = config
        self.url = ""
        self.proc: subprocess.Popen[str] | None = None
        self._control = httpx.Client(timeout=60)

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, __file__, json.dumps(self.config)],
            stdout=subprocess.PIPE,
            cwd=ROOT,
            text=True,
            start_new_session=True,
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline().strip()  # the child prints its URL once it answers
        if not line.startswith("http://"):
            self.stop()
            raise RuntimeError(f"sandbox process did not start (printed {line!r})")
        self.url = line

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)
        self._control.close()

    def configure(self, **fields: Any) -> None:
        self._control.patch(f"{self.url}/_sandbox/config", json=fields).raise_for_status()

    def reset(self) -> None:
        self._control.post(f"{self.url}/_sandbox/reset").raise_for_status()

    def ledger(self) -> list[dict[str, Any]]:
        response = self._control.get(f"{self.url}/_sandbox/ledger")
        response.raise_for_status()
        rows: list[dict[str, Any]] = response.json()["requests"]
        return rows

    def create_times(self, campaign_ids: set[str] | None = None) -> list[float]:
        """Epoch seconds at which answered create requests arrived (of these campaigns)."""
        return sorted(
            parse_rfc3339(row["received_at"])
            for row in self.ledger()
            if row.get("status") is not None
            and (
                campaign_ids is None
                or (row.get("variables") or {}).get("campaign_id") in campaign_ids
            )
        )

    def __enter__(self) -> SandboxProcess:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def _serve(config_json: str) -> None:
    server = SandboxServer()
    server.start()
    server.configure(**json.loads(config_json))
    print(server.url, flush=True)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        while True:
            time.sleep(3600)
    finally:
        server.stop()


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    _serve(sys.argv[1])
