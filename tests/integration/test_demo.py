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
