"""The ``campaigns`` command: operators' view of the dispatcher.

Exit codes: 0 success, 2 invalid input (nothing written), 1 any other failure,
always with one clear line on stderr.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import Awaitable, Callable
from functools import wraps
from typing import Any, ParamSpec, TypeVar

import click
from rich.console import Console

from campaigns.domain.money import format_micros
from campaigns.domain.spec import SpecError, load_spec
from campaigns.logs import configure_logging, register_secret
from campaigns.operators.control import CampaignClient, ControlError, status_json
from campaigns.operators.estimate import estimate
from campaigns.settings import Settings
from campaigns.store import StoreError, SubmitConflict

__all__ = ["main"]

P = ParamSpec("P")
R = TypeVar("R")


class _Failed(click.ClickException):
    """One line on stderr, exit 1."""

    exit_code = 1

    def show(self, file: Any = None) -> None:
        click.echo(f"error: {self.message}", err=True)


class _Invalid(_Failed):
    """Invalid input: one line on stderr, exit 2, nothing written."""

    exit_code = 2


def _Failure(message: str, code: int = 1) -> _Failed:
    return _Invalid(message) if code == 2 else _Failed(message)


def _settings() -> Settings:
    try:
        settings = Settings()
    except Exception as exc:  # pydantic ValidationError names the variable
        raise _Failure(f"invalid settings: {_first_setting_error(exc)}", 2) from None
    register_secret(settings.provider_api_key.get_secret_value())
    return settings


def _first_setting_error(exc: Exception) -> str:
    errors = getattr(exc, "errors", None)
    if callable(errors):
        first = errors()[0]
        field = ".".join(str(p) for p in first["loc"])
        return f"DISPATCHER_{field.upper()}: {first['msg']}"
    return str(exc)


def _run(make: Callable[[CampaignClient], Awaitable[R]]) -> R:
    """Run one client call with clean error mapping."""

    async def go() -> R:
        client = await CampaignClient.connect(_settings())
        async with client:
            return await make(client)

    try:
        return asyncio.run(go())
    except SpecError as exc:
        raise _Failure(f"invalid input: {exc}", 2) from None
    except SubmitConflict as exc:
        raise _Failure(str(exc), 2) from None
    except (ControlError, StoreError, LookupError) as exc:
        raise _Failure(str(exc)) from None
    except OSError as exc:  # redis connection refused and friends
        raise _Failure(f"cannot reach Redis: {exc}") from None


def _cli_errors(fn: Callable[P, R]) -> Callable[P, R]:
    @wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return fn(*args, **kwargs)
        except SpecError as exc:
            raise _Failure(f"invalid input: {exc}", 2) from None

    return wrapper


@click.group()
@click.version_option(package_name="campaign-dispatcher")
def main() -> None:
    """Budget-safe outbound call campaign dispatcher."""
    settings_format = os.environ.get("DISPATCHER_LOG_FORMAT", "auto")
    configure_logging(os.environ.get("DISPATCHER_LOG_LEVEL", "WARNING"), settings_format)


@main.command()
@click.argument("spec_path", metavar="SPEC.json", type=click.Path(dir_okay=False))
@click.option(
    "--contacts", "contacts_csv", type=click.Path(dir_okay=False), help="contacts CSV (to,ref)"
)
@_cli_errors
def submit(spec_path: str, contacts_csv: str | None) -> None:
    """Validate and submit a campaign; same ID and spec again is a no-op."""
    spec = load_spec(spec_path, contacts_csv)
    result = _run(lambda c: c.submit(spec))
    verb = "submitted" if result.created else "already submitted (no change)"
    click.echo(
        f"{result.campaign_id}: {verb}, {result.contacts} contacts"
        f" ({result.duplicates_dropped} duplicates dropped)"
    )


@main.command()
@click.argument("campaign_id")
@click.option("--json", "as_json", is_flag=True, help="the status JSON of DESIGN.md")
def status(campaign_id: str, as_json: bool) -> None:
    """Show a campaign's state, counts and money."""
    campaign = _run(lambda c: c.get(campaign_id))
    if as_json:
        click.echo(json.dumps(status_json(campaign)))
        return
    from campaigns.operators.report import summary_lines

    for key, value in summary_lines(campaign):
        click.echo(f"{key:<18} {value}")


@main.command(name="list")
def list_() -> None:
    """List campaigns, oldest first."""
    campaigns = _run(lambda c: c.campaigns())
    click.echo(
        f"{'CAMPAIGN':<28} {'STATE':<10} {'CONTACTS':>8} {'PENDING':>8} {'ACCEPTED':>8} {'SPENT':>14}"
    )
    for c in campaigns:
        spent = f"{format_micros(c.spent_micros)} {c.currency}"
        click.echo(
            f"{c.campaign_id:<28} {c.state:<10} {c.contacts:>8} {c.pending:>8} {c.accepted:>8} {spent:>14}"
        )


def _state_command(verb: str, doc: str) -> None:
    @main.command(name=verb, help=doc)
    @click.argument("campaign_id")
    def command(campaign_id: str) -> None:
        state = _run(lambda c: getattr(c, verb)(campaign_id))
        click.echo(f"{campaign_id}: {state}")


_state_command("pause", "Pause: returns once no new create request can start.")
_state_command("resume", "Resume a paused or halted campaign (re-checks the budget).")
_state_command("cancel", "Cancel for good; calls already placed still settle.")


@main.command()
@click.argument("attempt_id")
@click.option("--call-id", help="the provider call this attempt became")
@click.option(
    "--no-call", is_flag=True, help="confirmed: no call was placed; dial the contact again"
)
def resolve(attempt_id: str, call_id: str | None, no_call: bool) -> None:
    """Resolve an attempt in doubt, after checking the provider's records."""
    if bool(call_id) == no_call:
        raise _Failure("give exactly one of --call-id or --no-call", 2)
    outcome = _run(lambda c: c.resolve(attempt_id, call_id=call_id))
    click.echo(f"{attempt_id}: {outcome}")


@main.command()
@click.argument("campaign_id")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["table", "csv", "json"]),
    default="table",
    show_default=True,
)
def report(campaign_id: str, fmt: str) -> None:
    """Every attempt: accepted calls with cost, rejected attempts with code and body."""
    from campaigns.operators import report as rep

    async def render(client: CampaignClient) -> None:
        campaign = await client.get(campaign_id)
        if fmt == "json":
            await rep.write_json(client.store, campaign, sys.stdout)
        elif fmt == "csv":
            await rep.write_csv(client.store, campaign, sys.stdout)
        else:
            await rep.write_table(client.store, campaign, Console())

    _run(render)


@main.command()
@click.argument("campaign_id")
@click.option("--json", "as_json", is_flag=True)
def reconcile(campaign_id: str, as_json: bool) -> None:
    """Settled total beside the provider's usage for the campaign's window."""
    from campaigns.operators.reconcile import reconcile as run_reconcile
    from campaigns.providers import make_provider

    async def go(client: CampaignClient) -> Any:
        provider = make_provider(client.settings)
        try:
            return await run_reconcile(client.store, provider, campaign_id)
        finally:
            await provider.aclose()

    result = _run(go)
    if as_json:
        click.echo(json.dumps(result.to_json()))
    else:
        for line in result.lines():
            click.echo(line)


@main.command(name="dead-letters")
@click.option("--limit", default=20, show_default=True, type=click.IntRange(1, 10_000))
def dead_letters(limit: int) -> None:
    """Call events that could not be applied, newest first (JSON lines)."""
    for entry in _run(lambda c: c.store.dead_letters(limit)):
        click.echo(json.dumps(entry))


@main.command(name="estimate")
@click.argument("spec_path", metavar="SPEC.json", type=click.Path(dir_okay=False))
@click.option("--contacts", "contacts_csv", type=click.Path(dir_okay=False))
@click.option("--json", "as_json", is_flag=True)
@_cli_errors
def estimate_(spec_path: str, contacts_csv: str | None, as_json: bool) -> None:
    """Worst-case cost of a spec before submitting it (nothing is written)."""
    result = estimate(load_spec(spec_path, contacts_csv))
    if as_json:
        click.echo(json.dumps(result.to_json()))
    else:
        for line in result.lines():
            click.echo(line)


@main.command()
@click.option("--burst", is_flag=True, help="process queued jobs, then exit")
@click.option("--check", is_flag=True, help="health check: exit 0 if a worker is alive")
def worker(burst: bool, check: bool) -> None:
    """Run the long-running arq worker (same as `arq worker.WorkerSettings`)."""
    _settings()
    args = [sys.executable, "-m", "arq", "worker.WorkerSettings"]
    if burst:
        args.append("--burst")
    if check:
        args.append("--check")
    sys.stdout.flush()
    sys.stderr.flush()
    # Replace this process: arq installs its own SIGTERM handling. Importing
    # ``worker`` from here would make the domain package depend on the glue.
    os.execv(sys.executable, args)


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8089, show_default=True, type=int)
@click.option(
    "--config", "config_path", type=click.Path(dir_okay=False), help="initial config JSON"
)
def sandbox(host: str, port: int, config_path: str | None) -> None:
    """Serve the sandbox provider (MiniVoice dialect) for demos and tests."""
    args = ["--host", host, "--port", str(port)]
    if config_path:
        args += ["--config", config_path]
    _exec_testbed("campaigns.testbed.sandbox", args)


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8090, show_default=True, type=int)
@click.option(
    "--tolerance", default=300, show_default=True, type=int, help="signature age limit (s)"
)
def ingress(host: str, port: int, tolerance: int) -> None:
    """Receive provider webhooks (HMAC-verified) and enqueue record_call_event jobs."""
    from campaigns.operators.ingress import serve_ingress

    settings = _settings()
    secret = settings.webhook_secret.get_secret_value() if settings.webhook_secret else None
    serve_ingress(host, port, settings, secret, tolerance_seconds=tolerance)


@main.command()
@click.option("--contacts", default=30, show_default=True, type=click.IntRange(1, 10_000))
@click.option("--spend-limit-calls", default=12, show_default=True, type=click.IntRange(0, 10_000))
def demo(contacts: int, spend_limit_calls: int) -> None:
    """End to end on an embedded Redis and the sandbox: no account, no services."""
    args = ["--contacts", str(contacts), "--spend-limit-calls", str(spend_limit_calls)]
    _exec_testbed("campaigns.testbed.demo", args)


def _exec_testbed(module: str, args: list[str]) -> None:
    """Hand over to a testbed program: the operators' package never imports the
    testbed (the testbed uses the operators' API, as any user would)."""
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(sys.executable, [sys.executable, "-m", module, *args])


if __name__ == "__main__":  # pragma: no cover
    main()
