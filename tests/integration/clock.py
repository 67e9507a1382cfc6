"""A real worker on another day: the contact policy's clock seam, for window tests.

``python -m tests.worker_main tests.integration.clock.ShiftedClock`` runs the
production workers with one change installed at startup: the dispatcher's
contact policy reads the time as the real clock plus the offset (ms) written
in the file ``POLICY_CLOCK_FILE``, so a test can put the worker a second
before a calling window closes, then on the next morning, without waiting
hours. Production code offers only the seam (``ContactPolicy.clock``).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from campaigns.engine.dispatch import Dispatcher
from campaigns.store import now_ms
from tests.support import arq_settings
from worker.jobs import startup
from worker.settings import WorkerSettings

ENV = "POLICY_CLOCK_FILE"


def shifted(path: Path) -> Any:
    def clock() -> int:
        try:
            offset = int(path.read_text() or "0")
        except (OSError, ValueError):
            offset = 0
        return now_ms() + offset

    return clock


async def _startup(ctx: dict[str, Any]) -> None:
    await startup(ctx)
    dispatcher: Dispatcher = ctx["dispatcher"]
    dispatcher.policy.clock = shifted(Path(os.environ[ENV]))


ShiftedClock = arq_settings(WorkerSettings, on_startup=_startup)
