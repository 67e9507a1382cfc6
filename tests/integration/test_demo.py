"""`campaigns demo` works on its own: embedded Redis, sandbox, real worker."""

from __future__ import annotations

import os
import subprocess

from tests.support import CAMPAIGNS_BIN, ROOT


def test_demo_runs_into_spend_control_and_summarises() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DISPATCHER_")}
    out = subprocess.run(
        [CAMPAIGNS_BIN, "demo"], env=env, capture_output=True, text=True, timeout=180, cwd=ROOT
    )
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    text = out.stdout
    assert "spend_control_exceeded" in text
    assert "invalid_destination" in text
    assert "call IDs recorded" in text and "12 of 12 the provider accepted" in text
    assert "redis://127.0.0.1:6379" not in text


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _serve_and_probe(args: list[str], path: str, env: dict[str, str]) -> int:
    import time

    import httpx

    port = _free_port()
    proc = subprocess.Popen(
        [CAMPAIGNS_BIN, *args, "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                return httpx.get(f"http://127.0.0.1:{port}{path}", timeout=1).status_code
            except httpx.TransportError:
                time.sleep(0.1)
        raise AssertionError(f"{args[0]} never answered on {path}")
    finally:
        proc.terminate()
        proc.wait(10)


def test_sandbox_and_ingress_commands_serve(redis_url: str) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DISPATCHER_")}
    assert _serve_and_probe(["sandbox"], "/_sandbox/health", env) == 200
    env["DISPATCHER_REDIS_URL"] = redis_url
    env["DISPATCHER_WEBHOOK_SECRET"] = "whsec_test_0123456789"
    assert _serve_and_probe(["ingress"], "/healthz", env) == 200
