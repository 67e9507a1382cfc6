"""A fake-but-faithful telephony provider for demos, tests and benchmarks.

Speaks the MiniVoice dialect (``/v1``), the VoIPBIN dialect (``/v1.0``) and
Voxpria's calls and credits (``/api/v1``) over real HTTP, with spend control, idempotency, webhooks and injectable
faults, plus a ``/_sandbox`` control API for tests.
"""

from __future__ import annotations

from campaigns.testbed.sandbox.app import create_app
from campaigns.testbed.sandbox.config import (
    FinalStatus,
    NumberOverride,
    RateConfig,
    SandboxConfig,
    SandboxConfigError,
    ScriptStep,
    load_config,
    patch_config,
)
from campaigns.testbed.sandbox.formats import amount_string, parse_rfc3339, rfc3339
from campaigns.testbed.sandbox.server import SandboxServer, ThreadedServer, serve
from campaigns.testbed.sandbox.state import LedgerEntry, SandboxCall, SandboxState, WebhookDelivery
from campaigns.testbed.sandbox.webhooks import (
    call_completed_payload,
    minivoice_event,
    minivoice_headers,
    sign_payload,
)

__all__ = [
    "FinalStatus",
    "LedgerEntry",
    "NumberOverride",
    "RateConfig",
    "SandboxCall",
    "SandboxConfig",
    "SandboxConfigError",
    "SandboxServer",
    "SandboxState",
    "ScriptStep",
    "ThreadedServer",
    "WebhookDelivery",
    "amount_string",
    "call_completed_payload",
    "create_app",
    "load_config",
    "minivoice_event",
    "minivoice_headers",
    "parse_rfc3339",
    "patch_config",
    "rfc3339",
    "serve",
    "sign_payload",
]
