"""The sandbox ASGI app: the MiniVoice, VoIPBIN and Voxpria calls dialects, Voxpria
credits, Billing Insights usage, plus the control API."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from starlette.applications import Starlette

from campaigns.testbed.sandbox.billing_insights import billing_insights_routes
from campaigns.testbed.sandbox.config import SandboxConfig
from campaigns.testbed.sandbox.control import control_routes
from campaigns.testbed.sandbox.minivoice import minivoice_routes
from campaigns.testbed.sandbox.state import SandboxState
from campaigns.testbed.sandbox.voipbin import voipbin_routes
from campaigns.testbed.sandbox.voxpria import voxpria_routes
from campaigns.testbed.sandbox.voxpria_calls import voxpria_calls_routes
from campaigns.testbed.sandbox.webhooks import WebhookNotifier

__all__ = ["create_app"]


def create_app(
    config: SandboxConfig | None = None, *, state: SandboxState | None = None
) -> Starlette:
    """Build the app around ``state`` (or a fresh one from ``config``).

    The state is exposed as ``app.state.sandbox`` so a test that runs the
    server in a thread can read the ledger directly.
    """
    if state is None:
        state = SandboxState(config=config or SandboxConfig())
    elif config is not None:
        state.set_config(config)
    sandbox = state

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        notifier = WebhookNotifier(sandbox)
        await notifier.start()
        try:
            yield
        finally:
            await notifier.stop()

    app = Starlette(
        routes=[
            *minivoice_routes(),
            *voipbin_routes(),
            *voxpria_routes(),
            *voxpria_calls_routes(),
            *billing_insights_routes(),
            *control_routes(),
        ],
        lifespan=lifespan,
    )
    app.state.sandbox = sandbox
    return app
