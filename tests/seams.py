"""Worker seams for tests that need a provider which honours Idempotency-Key.

The real dialects say they do not (``Capabilities.idempotency_keys=False``), so
an ambiguous create is never re-sent. The same-key re-send path is still the
dispatcher's for a provider that does: ``python -m tests.worker_main
tests.seams.HonoursKeys`` runs the production workers with the provider object's capabilities claiming
keys (the sandbox must then be configured ``idempotency_keys=True``).
"""

from __future__ import annotations

import dataclasses
from typing import Any

from tests.support import arq_settings
from worker.jobs import startup
from worker.settings import WorkerSettings

HONOURS_KEYS = "tests.seams.HonoursKeys"


def claim_keys(ctx: dict[str, Any]) -> None:
    """Make the worker's one provider object (dispatcher and settler share it) claim keys."""
    provider = ctx["provider"]
    provider.capabilities = dataclasses.replace(provider.capabilities, idempotency_keys=True)


async def _startup(ctx: dict[str, Any]) -> None:
    await startup(ctx)
    claim_keys(ctx)


HonoursKeys = arq_settings(WorkerSettings, on_startup=_startup)
