"""The chaos suite's fault seam: a real arq worker that SIGKILLs itself at the worst moment.

``python -m tests.worker_main tests.chaos.faults.KillAfterSend`` runs the
production workers (dispatch and settlement, one process) with one change installed at startup: between the provider accepting a call
and the call ID being recorded, the process SIGKILLs itself with probability
``CHAOS_KILL_AFTER_SEND``. Production code carries no switch for this; it only
offers the seam (``Dispatcher.before_record``).
"""

from __future__ import annotations

import os
import random
import signal
from typing import Any

from campaigns.engine.dispatch import Dispatcher
from campaigns.providers import CallInfo
from campaigns.store import Attempt
from tests.seams import claim_keys
from tests.support import arq_settings
from worker.jobs import startup
from worker.settings import WorkerSettings

ENV = "CHAOS_KILL_AFTER_SEND"
KEYS_ENV = "CHAOS_PROVIDER_HONOURS_KEYS"
"""Set to 1: the provider object claims Idempotency-Key (``tests/seams.py``)."""


def _killer(probability: float, rng: random.Random) -> Any:
    def before_record(attempt: Attempt, call: CallInfo) -> None:
        if rng.random() < probability:
            os.kill(os.getpid(), signal.SIGKILL)

    return before_record


async def _startup(ctx: dict[str, Any]) -> None:
    await startup(ctx)
    dispatcher: Dispatcher = ctx["dispatcher"]
    dispatcher.before_record = _killer(float(os.environ.get(ENV, "0")), random.Random())
    if os.environ.get(KEYS_ENV) == "1":
        claim_keys(ctx)


KillAfterSend = arq_settings(WorkerSettings, on_startup=_startup)
