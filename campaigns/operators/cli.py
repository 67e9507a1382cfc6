"""The ``campaigns`` command: operators' view of the dispatcher.

Exit codes: 0 success; 2 invalid input, invalid settings or invalid options
(nothing written, the line names the field, setting or option); 1 any other
failure, such as Redis not answering within a few seconds. Always one clear
line on stderr, never a traceback, never a secret.
"""

from __future__ import annotations

import asyncio
import csv
import io
import json
import logging
import os
import sys
from collections.abc import Awaitable, Callable
from functools import wraps
from pathlib import Path
from typing import Any, ParamSpec, TextIO, TypeVar, cast

import click
import httpx
from redis.exceptions import RedisError
from rich.console import Console

from campaigns.connection import RedisLocation
from campaigns.domain.contacts import Contacts, Refusals
from campaigns.domain.errors import ProviderError
from campaigns.domain.inputs import strict_json
from campaigns.domain.lifecycle import HaltCode, OperatorAction, State
from campaigns.domain.money import format_money
from campaigns.domain.spec import SpecError, is_campaign_id
from campaigns.logs import (
    configure_logging,
    register_secret,
    scrub,
)
from campaigns.operators.control import (
    CampaignClient,
    ControlError,
    Explanation,
    InvalidRequest,
    check_redis,
    iso_time,
    status_json,
)
from campaigns.operators.estimate import estimate_contacts, rate_line
from campaigns.settings import Settings, unknown_settings
from campaigns.store import (
    BudgetChange,
    CampaignRecord,
    NotReplicated,
    StoreError,
    SubmitConflict,
)

__all__ = ["main"]

P = ParamSpec("P")
R = TypeVar("R")


REDIS_CHECK_SECONDS = 3.0
"""How long a command waits for Redis to answer before it gives up (exit 1)."""

_MAX_TOKEN = 200


class _Failed(click.ClickException):
    """One line on stderr, exit 1."""

    exit_code = 1

    def show(self, file: Any = None) -> None:
        click.echo(f"error: {scrub(self.message)}", err=True)


class _Invalid(_Failed):
    """Invalid input: one line on stderr, exit 2, nothing written."""

    exit_code = 2


_STORE_SETTINGS = "DISPATCHER_REDIS_URL, DISPATCHER_QUEUE_NAME"


def _example(*commands: str, settings: str | None = _STORE_SETTINGS) -> str:
    """A --help epilog: an example, and the settings the command reads."""
    lines = "\n".join(f"  $ {c}" for c in commands)
    reads = f"Reads {settings} (environment or .env)." if settings else "Reads no settings."
    return f"\b\nExample:\n{lines}\n\n{reads}"


def _Failure(message: str, code: int = 1) -> _Failed:
    return _Invalid(message) if code == 2 else _Failed(message)


def _echo(text: str) -> None:
    """Print one line of output with any registered secret masked."""
    click.echo(scrub(text))


class _Scrubbed(io.TextIOBase):
    """A text stream that masks registered secrets in whatever is written to it.

    Stored strings (a provider's halt message, rejected bodies) reach reports;
    each row is one write, so a secret in a row is masked whole.
    """

    def __init__(self, target: TextIO) -> None:
        self._target = target

    def write(self, text: str) -> int:
        self._target.write(scrub(text))
        return len(text)

    def flush(self) -> None:
        self._target.flush()

    def isatty(self) -> bool:
        return self._target.isatty()

    def writable(self) -> bool:
        return True


class _CampaignIdType(click.ParamType[str]):
    """A campaign ID as specs allow it, checked before anything touches Redis."""

    name = "campaign_id"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> str:
        if not is_campaign_id(value):
            self.fail("1-64 characters of letters, digits, '_', '.', '-'", param, ctx)
        return value


class _TokenType(click.ParamType[str]):
    """An attempt or call ID: 1-200 printable characters, no whitespace."""

    name = "id"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> str:
        if (
            not isinstance(value, str)
            or not 0 < len(value) <= _MAX_TOKEN
            or any(c.isspace() or not c.isprintable() for c in value)
        ):
            self.fail(f"1-{_MAX_TOKEN} printable characters without whitespace", param, ctx)
        return value


CAMPAIGN_ID = _CampaignIdType()
TOKEN = _TokenType()


class _Group(click.Group):
    """Usage errors as one line (exit 2) and no traceback for anything unexpected."""

    def make_context(
        self,
        info_name: str | None,
        args: list[str],
        parent: click.Context | None = None,
        **extra: Any,
    ) -> click.Context:
        try:
            return super().make_context(info_name, args, parent, **extra)
        except click.exceptions.NoArgsIsHelpError:
            raise
        except click.UsageError as exc:
            raise _usage(exc) from None

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except click.exceptions.NoArgsIsHelpError:
            raise
        except click.UsageError as exc:
            raise _usage(exc) from None
        except (click.ClickException, click.exceptions.Exit, click.Abort):
            raise
        except BrokenPipeError:
            _reader_left()
        except Exception as exc:
            logging.getLogger("campaigns.operators.cli").debug("unexpected failure", exc_info=True)
            raise _Failed(f"unexpected {type(exc).__name__}: {exc}") from None


def _reader_left() -> None:
    """Output piped into ``head`` or a pager that quit: end quietly, exit 0.

    Later writes and the flush at exit go to /dev/null instead of raising again.
    """
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    raise click.exceptions.Exit(0)


def _usage(exc: click.UsageError) -> _Invalid:
    path = exc.ctx.command_path if exc.ctx is not None else "campaigns"
    message = " ".join(exc.format_message().split())
    return _Invalid(f"{message} (see '{path} --help')")


def _settings() -> Settings:
    try:
        settings = Settings()
    except Exception as exc:  # pydantic ValidationError names the variable
        raise _Failure(f"invalid settings: {_first_setting_error(exc)}", 2) from None
    for secret in settings.secret_values():
        register_secret(secret)
    unknown = unknown_settings()
    if unknown:
        names = ", ".join(unknown)
        raise _Failure(f"invalid settings: {names}: not a DISPATCHER_* setting", 2)
    return settings


def start_checks(settings: Settings, *, provider: bool, redis: bool) -> None:
    """What a long-running process checks before it serves: the provider key
    (``provider``) and Redis answering within a few seconds (``redis``).

    Settings themselves (URLs parse, known names) are checked when they load.
    """
    if provider:
        _require_api_key(settings)
    if redis:
        location = RedisLocation.from_settings(settings)
        try:
            asyncio.run(check_redis(location, REDIS_CHECK_SECONDS))
        except ControlError as exc:
            raise _Failure(f"{exc} ({location.setting})") from None


def _require_port(host: str, port: int) -> None:
    """A server's --host/--port is free to listen on, or one line naming the option, exit 2."""
    from campaigns.ports import port_problem

    problem = port_problem(host, port)
    if problem is not None:
        name = "--host" if problem.startswith("cannot resolve") else "--port"
        raise _Failure(f"invalid value for '{name}': {problem}", 2)


def _require_metrics_port(settings: Settings) -> None:
    from campaigns.ports import port_problem

    if settings.metrics_port is None:
        return
    problem = port_problem("0.0.0.0", settings.metrics_port)
    if problem is not None:
        raise _Failure(f"invalid settings: DISPATCHER_METRICS_PORT: {problem}", 2)


def _require_api_key(settings: Settings) -> None:
    """Commands that talk to the provider need its key: unset, every request would
    carry ``Authorization: Bearer `` and fail with an obscure protocol error."""
    if not settings.provider_api_key.get_secret_value():
        raise _Failure(
            "invalid settings: DISPATCHER_PROVIDER_API_KEY: must be set to talk to the provider",
            2,
        )


def _first_setting_error(exc: Exception) -> str:
    """The first problem, as ``DISPATCHER_<NAME>: <why>``; never the value (it may be secret)."""
    errors = getattr(exc, "errors", None)
    if callable(errors):
        first = errors(include_input=False)[0]
        field = ".".join(str(p) for p in first["loc"])
        message = str(first["msg"]).removeprefix("Value error, ")
        # A rule across settings names them itself.
        return f"DISPATCHER_{field.upper()}: {message}" if field else message
    return f"cannot read settings: {type(exc).__name__}: {exc}"


def _run(make: Callable[[CampaignClient], Awaitable[R]]) -> R:
    """Run one client call with clean error mapping."""

    async def go() -> R:
        client = await CampaignClient.connect(_settings(), check_timeout=REDIS_CHECK_SECONDS)
        async with client:
            return await make(client)

    try:
        return asyncio.run(go())
    except SpecError as exc:
        raise _Failure(f"invalid input: {exc}", 2) from None
    except SubmitConflict as exc:
        raise _Failure(str(exc), 2) from None
    except InvalidRequest as exc:
        raise _Failure(f"invalid input: {exc}", 2) from None
    except (ControlError, StoreError, LookupError) as exc:
        raise _Failure(str(exc)) from None
    except BrokenPipeError:
        raise  # the reader left (``| head``): handled quietly by the group
    except NotReplicated as exc:
        raise _Failure(f"not done: {exc}; run the command again") from None
    except RedisError as exc:  # Redis went away after the first check
        raise _Failure(f"Redis failed: {type(exc).__name__}: {exc}") from None
    except OSError as exc:  # writing the output, most likely: not Redis's fault
        raise _Failure(f"{type(exc).__name__}: {exc}") from None
    except httpx.HTTPError as exc:
        raise _Failure(f"provider request failed: {type(exc).__name__}: {exc}") from None


def _cli_errors(fn: Callable[P, R]) -> Callable[P, R]:
    @wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return fn(*args, **kwargs)
        except SpecError as exc:
            raise _Failure(f"invalid input: {exc}", 2) from None

    return wrapper


@click.group(cls=_Group)
@click.version_option(package_name="campaign-dispatcher")
def main() -> None:
    """Budget-safe outbound call campaign dispatcher."""
    # From the settings, so .env counts too; commands log only warnings unless told.
    settings = _settings()
    level = settings.log_level if "log_level" in settings.model_fields_set else "WARNING"
    configure_logging(level, settings.log_format)


class _RejectsFile(Refusals):
    """``--skip-invalid``: every refused row, with its line and reason, to a CSV file
    (rewritten on each pass over the contacts, so each row appears once)."""

    HEADER = ("line", "column", "reason", "to", "ref")

    def __init__(self, path: Path) -> None:
        super().__init__()
        self.path = path
        self._file: TextIO | None = None
        self._writer: Any = None

    def begin(self, path: Path) -> None:
        super().begin(path)
        self.close()
        try:
            self._file = self.path.open("w", encoding="utf-8", newline="")
        except OSError as exc:
            shown = repr(str(self.path))[1:-1]
            raise SpecError("--rejects", f"cannot write {shown}: {exc.strerror or exc}") from None
        self._writer = csv.writer(self._file, lineterminator="\n")
        self._writer.writerow(self.HEADER)

    def refuse(self, line: int, column: str, reason: str, to: str, ref: str) -> None:
        super().refuse(line, column, reason, to, ref)
        self._writer.writerow((line, column, reason, to, ref))

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def line(self) -> str:
        rows = f"{self.count:,} row{'' if self.count == 1 else 's'}"
        return f"{rows} refused, written to {repr(str(self.path))[1:-1]}"


def _contacts_options(fn: Callable[P, R]) -> Callable[P, R]:
    """``--contacts``, ``--skip-invalid`` and ``--rejects`` (submit and estimate)."""
    fn = click.option(
        "--rejects",
        "rejects_path",
        type=click.Path(dir_okay=False),
        help="with --skip-invalid: where the refused rows go (default: CONTACTS.rejects.csv)",
    )(fn)
    fn = click.option(
        "--skip-invalid",
        is_flag=True,
        help="write bad CSV rows (line, column, reason) to a rejects CSV and go on; "
        "default: the first bad row refuses the whole file",
    )(fn)
    return click.option(
        "--contacts",
        "contacts_csv",
        type=click.Path(dir_okay=False),
        help="contacts CSV (to,ref; other columns become variables)",
    )(fn)


def _load_contacts(
    spec_path: str, contacts_csv: str | None, skip_invalid: bool, rejects_path: str | None
) -> tuple[Contacts, _RejectsFile | None]:
    if rejects_path is not None and not skip_invalid:
        raise _Failure("--rejects needs --skip-invalid (see '--help')", 2)
    if skip_invalid and contacts_csv is None:
        raise _Failure("--skip-invalid needs --contacts FILE.csv (see '--help')", 2)
    rejects = None
    if skip_invalid and contacts_csv is not None:
        source = Path(contacts_csv)
        default = source.with_name(f"{source.stem}.rejects.csv")
        rejects = _RejectsFile(Path(rejects_path) if rejects_path else default)
    return Contacts.load(spec_path, contacts_csv, rejects), rejects


@main.command(
    epilog=_example(
        "campaigns submit spring.json --contacts contacts.csv",
        "campaigns submit spring.json --contacts export.csv --skip-invalid",
    )
)
@click.argument("spec_path", metavar="SPEC.json", type=click.Path(dir_okay=False))
@_contacts_options
@click.option(
    "--idempotency-key",
    "idempotency_key",
    metavar="KEY",
    help="derive the campaign ID from KEY when the spec has none (the same KEY is the "
    "same campaign, as the API's Idempotency-Key)",
)
@_cli_errors
def submit(
    spec_path: str,
    contacts_csv: str | None,
    skip_invalid: bool,
    rejects_path: str | None,
    idempotency_key: str | None,
) -> None:
    """Validate and submit a campaign; same ID and spec again is a no-op.

    A spec without campaign_id needs --idempotency-key (the ID is derived from
    it, so a re-run submits nothing twice); with neither it is refused. Refuses
    a spec without contacts; warns when the budget cannot pay for one call at
    its worst case (the campaign would halt before its first call). A bad CSV
    row refuses the whole file (exit 2, nothing written) unless --skip-invalid:
    then it goes to the rejects CSV and the rest is submitted.
    """
    loaded, rejects = _load_contacts(spec_path, contacts_csv, skip_invalid, rejects_path)
    contacts = loaded.identified(idempotency_key)
    spec = contacts.spec
    try:
        result = _run(lambda c: c.submit(contacts))
    finally:
        if rejects is not None:
            rejects.close()
    worst = spec.worst_case_call_micros()
    if spec.budget_in_micros < worst:
        cur = spec.currency
        click.echo(
            f"warning: budget {format_money(spec.budget_in_micros, cur)} cannot cover one call's "
            f"worst case ({format_money(worst, cur, exact=True)}, {spec.max_call_seconds} s): "
            "the campaign halts with budget_exhausted before its first call",
            err=True,
        )
    verb = "submitted" if result.created else "already submitted (no change)"
    refused = "" if rejects is None else f"; {rejects.line()}"
    _echo(
        f"{result.campaign_id}: {verb}, {result.contacts} contacts"
        f" ({result.duplicates_dropped} duplicates dropped){refused}"
    )
    rate = spec.rate_model()
    described = rate_line(
        spec.currency, rate.per_minute_micros, str(rate.increments), rate.connect_fee_micros
    )
    _echo(
        f"{result.campaign_id}: reserving at {described}; worst case per call "
        f"{format_money(worst, spec.currency, exact=True)} ({spec.max_call_seconds} s)"
    )


@main.command(epilog=_example("campaigns status spring-renewals --json"))
@click.argument("campaign_id", type=CAMPAIGN_ID)
@click.option(
    "--json", "as_json", is_flag=True, help="machine-readable: counts, money in micros, waiting"
)
def status(campaign_id: str, as_json: bool) -> None:
    """Show a campaign's state, why it is not sending, progress, ETA, counts and money."""

    async def read(client: CampaignClient) -> tuple[CampaignRecord, Explanation]:
        campaign = await client.get(campaign_id)
        return campaign, await client.explain(campaign)

    campaign, explanation = _run(read)
    if as_json:
        _echo(json.dumps(status_json(campaign, explanation)))
        return
    from campaigns.operators.report import summary_lines

    for key, value in summary_lines(campaign, explanation):
        _echo(f"{key:<18} {value}")


@main.command(name="list", epilog=_example("campaigns list --state running,paused --limit 20"))
@click.option("--json", "as_json", is_flag=True, help="one status JSON object per campaign")
@click.option("--limit", type=int, help="one page of at most this many (1-500), as the API's list")
@click.option("--cursor", help="the page after this one (the previous page's next cursor)")
@click.option("--state", help="only these states, comma-separated (running,paused)")
@click.option("--name", "name_prefix", help="only names starting with this")
@click.option("--created-after", help="only created after this RFC 3339 instant")
@click.option("--created-before", help="only created before this RFC 3339 instant")
def list_(
    as_json: bool,
    limit: int | None,
    cursor: str | None,
    state: str | None,
    name_prefix: str | None,
    created_after: str | None,
    created_before: str | None,
) -> None:
    """List campaigns, oldest first: state, progress, money, and why one waits.

    With any of the paging options: one page, as ``GET /v1/campaigns`` answers it
    (the same filters and cursor); the next page's cursor is printed last (with
    ``--json``: ``{"campaigns": [...], "next_cursor": ...}``)."""
    from campaigns.operators.listing import QueryError, campaign_page, parse_query

    given = {
        "limit": None if limit is None else str(limit),
        "cursor": cursor,
        "state": state,
        "name": name_prefix,
        "created_after": created_after,
        "created_before": created_before,
    }
    params = {key: value for key, value in given.items() if value is not None}
    paged = bool(params)
    try:
        query = parse_query(params, list(params))
    except QueryError as exc:
        field, message = exc.errors[0]
        raise _Failure(f"invalid value for '--{field.replace('_', '-')}': {message}", 2) from None
    next_cursor: str | None = None

    async def read(client: CampaignClient) -> list[tuple[CampaignRecord, Explanation]]:
        nonlocal next_cursor
        if not paged:
            return [(c, await client.explain(c)) for c in await client.campaigns()]
        found, next_cursor = await campaign_page(client.store, query)
        return [(c, await client.explain(c)) for c in found]

    rows = _run(read)
    if as_json:
        statuses = [status_json(c, e) for c, e in rows]
        _echo(
            json.dumps({"campaigns": statuses, "next_cursor": next_cursor} if paged else statuses)
        )
        return
    _echo(
        f"{'CAMPAIGN':<28} {'STATE':<10} {'DONE':>6} {'SPENT':>16} {'BUDGET':>16} "
        f"{'CALLS/MIN':>12}  WAITING / ETA"
    )
    for c, e in rows:
        if e.waiting is not None:
            note = e.waiting.reason
        elif e.eta_ms is not None:
            note = f"eta {iso_time(e.eta_ms)}"
        else:
            note = "-"
        if e.held_by is not None:
            note = f"held by {e.held_by}; {note}"
        pace = f"{e.calls_last_minute}/{e.calls_per_second * 60:g}"
        spent = format_money(c.spent_micros, c.currency)
        budget = format_money(c.budget_micros, c.currency)
        _echo(
            f"{c.campaign_id:<28} {c.state:<10} {e.percent_done:>5g}% {spent:>16} {budget:>16} "
            f"{pace:>12}  {note}"
        )
    if paged:
        _echo(f"next cursor: {next_cursor or '- (the list ends)'}")


def _state_command(verb: str, doc: str) -> None:
    @main.command(name=verb, help=doc, epilog=_example(f"campaigns {verb} spring-renewals"))
    @click.argument("campaign_id", type=CAMPAIGN_ID)
    def command(campaign_id: str) -> None:
        state = _run(lambda c: getattr(c, verb)(campaign_id))
        _echo(f"{campaign_id}: {state}")


_state_command("pause", "Pause: returns once no new create request can start.")
_state_command("resume", "Resume a paused or halted campaign (re-checks the budget).")
_state_command("cancel", "Cancel for good; calls already placed still settle.")


def _outcomes() -> tuple[str, ...]:
    from campaigns.operators.outcomes import LISTED_OUTCOMES

    return tuple(str(o) for o in LISTED_OUTCOMES)


class _AmountType(click.ParamType[int]):
    """An amount of money in the campaign's currency, as a decimal string: micros."""

    name = "amount"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> int:
        from campaigns.domain.money import MoneyError, parse_micros

        if isinstance(value, int):
            return value
        try:
            return parse_micros(value)
        except MoneyError as exc:
            self.fail(f"{exc} (an amount such as 250.00, in the campaign's currency)", param, ctx)


@main.command(epilog=_example("campaigns budget spring-renewals 250.00"))
@click.argument("campaign_id", type=CAMPAIGN_ID)
@click.argument("amount", metavar="AMOUNT", type=_AmountType())
def budget(campaign_id: str, amount: int) -> None:
    """Set a campaign's budget (AMOUNT in its currency, such as 250.00).

    Atomic against what the dispatcher reserves: refused (exit 2, nothing
    changed) below what the campaign spent plus what its live calls hold. A
    campaign halted budget_exhausted stays halted; resume it once the budget
    covers a call. Recorded in campaigns history. A later identical submit of
    the original spec stays a no-op: the budget is not part of the fingerprint
    check once the campaign exists (docs/operations.md).
    """

    async def change(client: CampaignClient) -> tuple[BudgetChange, CampaignRecord]:
        done = await client.budget(campaign_id, amount)
        return done, await client.get(campaign_id)

    done, campaign = _run(change)
    cur = campaign.currency

    def money(micros: int) -> str:
        return format_money(micros, cur, exact=True)

    _echo(
        f"{campaign_id}: budget {money(done.before)} -> {money(done.after)} "
        f"(spent {money(done.spent)}, reserved {money(done.reserved)})"
    )
    room = done.after - done.spent - done.reserved
    if room < campaign.worst_case_micros:
        click.echo(
            f"warning: the {money(room)} left cannot cover one call's worst case "
            f"({money(campaign.worst_case_micros)}): nothing more is dialled",
            err=True,
        )
    elif campaign.state is State.HALTED and campaign.halt_code == HaltCode.BUDGET_EXHAUSTED:
        _echo(f"{campaign_id}: halted budget_exhausted, resumable: campaigns resume {campaign_id}")


@main.command(
    epilog=_example(
        "campaigns change spring-renewals --rate 2 --concurrency 2",
        "campaigns change spring-renewals --schedule-end 2026-12-24T18:00:00Z --window window.json",
    )
)
@click.argument("campaign_id", type=CAMPAIGN_ID)
@click.option("--rate", type=float, help="calls per second (pacing.calls_per_second)")
@click.option(
    "--concurrency", type=int, help="create requests open at once (pacing.max_concurrent_requests)"
)
@click.option(
    "--weight",
    type=float,
    help="its share of the account's ceilings when they bind (pacing.weight)",
)
@click.option("--name", help="the campaign's name")
@click.option("--schedule-start", metavar="ISO", help="schedule.start_at, RFC 3339")
@click.option("--schedule-end", metavar="ISO", help="schedule.end_at, RFC 3339")
@click.option("--no-schedule", is_flag=True, help="remove the schedule")
@click.option(
    "--window",
    "window_path",
    metavar="FILE.json",
    type=click.Path(exists=True, dir_okay=False),
    help="a new calling_window (the spec's JSON object)",
)
@click.option("--no-window", is_flag=True, help="remove the calling window")
def change(
    campaign_id: str,
    rate: float | None,
    concurrency: int | None,
    weight: float | None,
    name: str | None,
    schedule_start: str | None,
    schedule_end: str | None,
    no_schedule: bool,
    window_path: str | None,
    no_window: bool,
) -> None:
    """Change a running campaign's pace, schedule, calling window or name.

    Validated as submit validates the spec (exit 2 naming the field, nothing
    written); applied in one step against what the dispatcher claims with: a
    lower rate holds from the next request on. Pacing fields not given keep
    their values; --schedule-start / --schedule-end change one end of the
    schedule and keep the other. Recorded in campaigns history; the budget is
    `campaigns budget`. A later identical submit of the original spec stays a
    no-op (docs/operations.md).
    """
    body: dict[str, Any] = {}
    pacing = {
        k: v
        for k, v in (
            ("calls_per_second", rate),
            ("max_concurrent_requests", concurrency),
            ("weight", weight),
        )
        if v is not None
    }
    if pacing:
        body["pacing"] = pacing
    if name is not None:
        body["name"] = name
    if no_window and window_path is not None:
        raise _Failure("invalid input: --window: give --window or --no-window, not both", 2)
    if no_window:
        body["calling_window"] = None
    elif window_path is not None:
        body["calling_window"] = _json_object(window_path, "--window")
    if no_schedule and (schedule_start or schedule_end):
        raise _Failure(
            "invalid input: --no-schedule: not with --schedule-start or --schedule-end", 2
        )
    if not body and not (no_schedule or schedule_start or schedule_end):
        raise _Failure(
            "invalid input: change: give at least one of --rate, --concurrency, --weight, --name, "
            "--schedule-start, --schedule-end, --no-schedule, --window, --no-window",
            2,
        )

    async def apply(client: CampaignClient) -> CampaignRecord:
        if no_schedule:
            body["schedule"] = None
        elif schedule_start or schedule_end:
            current = (await client.get(campaign_id)).spec.schedule
            schedule = {} if current is None else current.model_dump(mode="json")
            if schedule_start:
                schedule["start_at"] = schedule_start
            if schedule_end:
                schedule["end_at"] = schedule_end
            body["schedule"] = schedule
        await client.change(campaign_id, body)
        return await client.get(campaign_id)

    campaign = _run(apply)
    spec = campaign.spec
    parts = [f"{campaign_id}: changed {', '.join(sorted(body))}"]
    parts.append(
        f"pace {spec.pacing.calls_per_second:g}/s, {spec.pacing.max_concurrent_requests} "
        "requests open at most"
    )
    _echo("; ".join(parts))


@main.command(
    "add-contacts",
    epilog=_example(
        "campaigns add-contacts spring-renewals more.csv --idempotency-key import-0412"
    ),
)
@click.argument("campaign_id", type=CAMPAIGN_ID)
@click.argument("csv_path", metavar="FILE.csv", type=click.Path(exists=True, dir_okay=False))
@click.option(
    "--idempotency-key",
    "idempotency_key",
    metavar="KEY",
    help="the same key and file again: the first answer, nothing added twice",
)
def add_contacts(campaign_id: str, csv_path: str, idempotency_key: str | None) -> None:
    """Add the contacts of a CSV (the format `submit --contacts` reads) to a
    campaign that is not over (queued, running, paused, halted).

    Every row is checked as at submit (exit 2 naming the line and column,
    nothing added); numbers the campaign already has are dropped and counted,
    so adding the same file again adds nothing. The do-not-call and suppress
    lists apply when each contact's turn comes. A completed or cancelled
    campaign takes none (exit 1). Recorded in campaigns history.
    """
    import hashlib

    from campaigns.domain.changes import added_contacts
    from campaigns.domain.contacts import load_contacts_csv
    from campaigns.domain.spec import check_idempotency_key
    from campaigns.store import IdempotencyConflict, IdempotencyRecords, Replay

    if idempotency_key is not None:
        try:
            check_idempotency_key(idempotency_key)
        except SpecError as exc:
            raise _Failure(f"invalid input: --idempotency-key: {exc.message}", 2) from None

    # The same key with the same campaign and file bytes is the same add.
    digest = hashlib.sha256(
        f"add-contacts {campaign_id}\n".encode() + Path(csv_path).read_bytes()
    ).hexdigest()

    async def add(client: CampaignClient) -> dict[str, Any]:
        spec = (await client.get(campaign_id)).spec
        given = added_contacts(
            [
                row.model_dump(mode="json")
                for row in load_contacts_csv(csv_path, spec.default_region)
            ],
            spec,
        )
        if idempotency_key is None:
            return (await client.add_contacts(campaign_id, given)).to_json()
        records = IdempotencyRecords(client.store.redis, client.store.keys)
        try:
            replay = await records.begin(idempotency_key, digest, wait_seconds=30)
        except IdempotencyConflict:
            raise SpecError(
                "--idempotency-key", f"{idempotency_key!r} was first used with another add"
            ) from None
        if replay is not None:
            return cast(dict[str, Any], json.loads(replay.body))
        try:
            done = (await client.add_contacts(campaign_id, given)).to_json()
        except BaseException:
            await records.release(idempotency_key)
            raise
        await records.keep(idempotency_key, digest, Replay(200, json.dumps(done), {}))
        return done

    done = _run(add)
    _echo(
        f"{campaign_id}: {done['added']} contacts added, {done['duplicates_dropped']} "
        f"dropped as numbers it already has; {done['contacts']} in all"
    )


def _json_object(path: str, option: str) -> dict[str, Any]:
    """A JSON object from a UTF-8 file, or exit 2 naming the option."""
    from campaigns.domain.inputs import decode_utf8

    shown = click.format_filename(path)
    try:
        raw = Path(path).read_bytes()
    except OSError as exc:
        raise _Failure(f"invalid input: {option}: cannot read {shown}: {exc.strerror}", 2) from None
    try:
        data = strict_json(decode_utf8(raw, shown, option))
    except SpecError as exc:
        raise _Failure(f"invalid input: {exc}", 2) from None
    except (ValueError, RecursionError) as exc:
        raise _Failure(f"invalid input: {option}: {shown} is not JSON: {exc}", 2) from None
    if not isinstance(data, dict):
        raise _Failure(f"invalid input: {option}: {shown} must hold a JSON object", 2)
    return data


@main.command(
    epilog=_example(
        "campaigns contacts spring-renewals --status unsent > rest.csv",
        "campaigns submit rest.json --contacts rest.csv",
    )
)
@click.argument("campaign_id", type=CAMPAIGN_ID)
@click.option(
    "--status",
    "outcome",
    required=True,
    type=click.Choice([str(o) for o in _outcomes()]),
    help="the contacts' outcome (their latest attempt)",
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["csv", "json"]),
    default="csv",
    show_default=True,
    help="csv: the contacts file submit --contacts reads; json: a spec's contacts array",
)
def contacts(campaign_id: str, outcome: str, fmt: str) -> None:
    """List a campaign's contacts by outcome, as a contacts file for a new campaign.

    unsent: never dialled (not reached yet, or left when the campaign was
    cancelled or halted); no_answer, busy, failed: how the last call ended (or
    the provider refused the contact); suppressed, expired, capped: the
    contact policy kept them from being dialled; answered: the call was answered.
    """
    from campaigns.domain.lifecycle import ContactOutcome
    from campaigns.operators.outcomes import write_contacts

    out = cast(TextIO, _Scrubbed(sys.stdout))

    async def write(client: CampaignClient) -> int:
        campaign = await client.get(campaign_id)
        return await write_contacts(
            client.store, campaign_id, campaign.contacts, ContactOutcome(outcome), fmt, out
        )

    _run(write)


@main.command(epilog=_example("campaigns history spring-renewals --json"))
@click.argument("campaign_id", type=CAMPAIGN_ID)
@click.option("--json", "as_json", is_flag=True, help="one JSON object per line, money in micros")
def history(campaign_id: str, as_json: bool) -> None:
    """Every operator action on a campaign, oldest first: when, who, before and after.

    Submit, pause, resume, cancel, budget and resolve; the actor is the CLI's
    login name or the API token's name. The newest 1000 actions are kept.
    """
    from campaigns.operators.history import history_line

    async def read(client: CampaignClient) -> tuple[list[dict[str, Any]], str]:
        entries = await client.history(campaign_id)
        return entries, (await client.get(campaign_id)).currency

    entries, currency = _run(read)
    for entry in entries:
        _echo(json.dumps(entry) if as_json else history_line(entry, currency))


@main.command(
    epilog=_example(
        "campaigns report spring-renewals > spring.csv", "campaigns delete spring-renewals"
    )
)
@click.argument("campaign_id", type=CAMPAIGN_ID)
def delete(campaign_id: str) -> None:
    """Delete a completed or cancelled campaign whose calls are all final: every key
    of it goes, report included (export it first). Refused (exit 1) otherwise."""
    deleted = _run(lambda c: c.delete(campaign_id))
    _echo(f"{campaign_id}: deleted ({deleted} keys)")


@main.command(epilog=_example("campaigns resolve spring-renewals:000004:1 --call-id call_8f2a"))
@click.argument("attempt_id", type=TOKEN)
@click.option("--call-id", type=TOKEN, help="the provider call this attempt became")
@click.option(
    "--no-call", is_flag=True, help="confirmed: no call was placed; dial the contact again"
)
def resolve(attempt_id: str, call_id: str | None, no_call: bool) -> None:
    """Resolve an attempt in doubt, after checking the provider's records."""
    if bool(call_id) == no_call:
        raise _Failure("give exactly one of --call-id or --no-call", 2)
    outcome = _run(lambda c: c.resolve(attempt_id, call_id=call_id))
    _echo(f"{attempt_id}: {outcome}")


@main.command(epilog=_example("campaigns report spring-renewals --format csv > calls.csv"))
@click.argument("campaign_id", type=CAMPAIGN_ID)
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

    out = cast(TextIO, _Scrubbed(sys.stdout))

    async def render(client: CampaignClient) -> None:
        campaign = await client.get(campaign_id)
        if fmt == "json":
            await rep.write_json(client.store, campaign, out)
        elif fmt == "csv":
            await rep.write_csv(client.store, campaign, out)
        elif out.isatty():
            explanation = await client.explain(campaign)
            await rep.write_table(client.store, campaign, Console(file=out), explanation)
        else:  # a file or a pipe: plain text, every column whole
            explanation = await client.explain(campaign)
            await rep.write_plain(client.store, campaign, out, explanation)

    _run(render)


@main.command(
    epilog=_example(
        "campaigns reconcile spring-renewals --json",
        settings=f"{_STORE_SETTINGS}, DISPATCHER_PROVIDER_URL, DISPATCHER_PROVIDER_API_KEY, "
        "DISPATCHER_PROVIDER_DIALECT",
    )
)
@click.argument("campaign_id", type=CAMPAIGN_ID)
@click.option("--json", "as_json", is_flag=True)
def reconcile(campaign_id: str, as_json: bool) -> None:
    """Settled total beside the provider's usage for the campaign's window."""
    from campaigns.operators.reconcile import reconcile as run_reconcile
    from campaigns.providers import make_provider

    _require_api_key(_settings())

    async def go(client: CampaignClient) -> Any:
        from campaigns.providers.balance import voxpria_client

        provider = make_provider(client.settings)
        credits = voxpria_client(client.settings)
        try:
            return await run_reconcile(client.store, provider, campaign_id, credits)
        finally:
            await provider.aclose()
            if credits is not None:
                await credits.aclose()

    result = _run(go)
    if as_json:
        _echo(json.dumps(result.to_json()))
    else:
        for line in result.lines():
            _echo(line)
    if result.usage_error is not None:  # nothing was compared: not a success
        raise _Failure(f"the provider's usage could not be read: {result.usage_error}")


@main.command(name="dead-letters", epilog=_example("campaigns dead-letters --limit 5"))
@click.option("--limit", default=20, show_default=True, type=click.IntRange(1, 10_000))
def dead_letters(limit: int) -> None:
    """Call events that could not be applied, newest first (JSON lines).

    None at all: says so on stderr (stdout stays empty JSON lines), exit 0.
    """
    entries = _run(lambda c: c.store.dead_letters(limit))
    if not entries:
        click.echo("no dead letters: every event and job was applied", err=True)
    for entry in entries:
        _echo(json.dumps(entry))


@main.command(
    epilog=_example(
        "campaigns callbacks spring-renewals --failed",
        "campaigns callbacks replay spring-renewals:state:3",
        "campaigns callbacks replay --all-failed",
    )
)
@click.argument("target", metavar="ID|replay")
@click.argument("event_id", required=False, type=TOKEN)
@click.option("--failed", "failed_only", is_flag=True, help="only events whose delivery gave up")
@click.option("--all-failed", is_flag=True, help="with replay: every failed event of the account")
@click.option("--json", "as_json", is_flag=True)
def callbacks(
    target: str, event_id: str | None, failed_only: bool, all_failed: bool, as_json: bool
) -> None:
    """A campaign's callback deliveries (failed events, then the newest results), or
    replay failed events: ``callbacks replay EVENT_ID`` or ``callbacks replay --all-failed``.
    """
    from campaigns.store import now_ms
    from campaigns.store.callbacks import callback_store

    if target == "replay":
        if (event_id is None) == (not all_failed):
            raise _Failure("replay: give exactly one of EVENT_ID or --all-failed", 2)

        async def replay(client: CampaignClient) -> list[tuple[str, bool]]:
            log = callback_store(client.store)
            wanted = await log.all_failed() if event_id is None else [event_id]
            return [(e, await log.replay(e, now_ms=now_ms())) for e in wanted]

        results = _run(replay)
        for replayed, ok in results:
            _echo(f"{replayed}: {'replayed' if ok else 'not a failed event'}")
        if event_id is not None and not results[0][1]:
            raise _Failure(f"no failed callback event {event_id!r}")
        return
    if not is_campaign_id(target):
        raise _Failure(
            "ID: expected a campaign ID (1-64 characters of letters, digits, '_', '.', '-') "
            "or replay",
            2,
        )
    if event_id is not None or all_failed:
        raise _Failure("EVENT_ID and --all-failed go with replay only", 2)

    async def read(client: CampaignClient) -> dict[str, Any]:
        await client.get(target)
        log = callback_store(client.store)
        found: dict[str, Any] = {"campaign_id": target, "failed": await log.failed(target)}
        if not failed_only:
            found["log"] = await log.log(target)
        return found

    found = _run(read)
    if as_json:
        _echo(json.dumps(found))
        return
    _echo(f"failed: {len(found['failed'])}")
    for row in found["failed"]:
        _echo(
            f"  {row['event_id']:<40} {row['type']:<24} {row['deliveries']} deliveries, "
            f"last: {row['last_error']}  ({iso_time(row['failed_at'])})"
        )
    if "log" in found:
        _echo("newest deliveries:")
        for row in found["log"]:
            why = row.get("error") or row.get("status_code") or ""
            _echo(
                f"  {iso_time(row.get('at'))} {row['event_id']:<40} {row['result']:<10} "
                f"#{row.get('delivery', '-')} {why}"
            )


@main.command(
    name="estimate",
    epilog=_example(
        "campaigns estimate spring.json",
        "campaigns estimate spring.json --average-seconds 90 --account",
        settings="no settings; with --account DISPATCHER_BALANCE_SOURCE, "
        "DISPATCHER_BALANCE_BUFFER_PERCENT and the provider or Voxpria settings",
    ),
)
@click.argument("spec_path", metavar="SPEC.json", type=click.Path(dir_okay=False))
@_contacts_options
@click.option(
    "--average-seconds",
    type=click.IntRange(1, 86_400),
    help="expected cost at this average call length (tokens first)",
)
@click.option(
    "--account", is_flag=True, help="read the account's balance: does it cover it, with the buffer?"
)
@click.option("--json", "as_json", is_flag=True)
@_cli_errors
def estimate_(
    spec_path: str,
    contacts_csv: str | None,
    skip_invalid: bool,
    rejects_path: str | None,
    average_seconds: int | None,
    account: bool,
    as_json: bool,
) -> None:
    """Worst-case cost of a spec before submitting it (nothing is written to Redis)."""
    contacts, rejects = _load_contacts(spec_path, contacts_csv, skip_invalid, rejects_path)
    buffer = 10
    balance = None
    credit_table = None
    if account:
        from campaigns.operators.usage import read_balance

        settings = _settings()
        if settings.balance_source == "provider":
            _require_api_key(settings)
        buffer = settings.balance_buffer_percent
        credit_table = settings.credit_table
        try:
            balance = asyncio.run(read_balance(settings))
        except ProviderError as exc:
            raise _Failure(f"balance check failed: {exc}") from None
        if balance is None:
            raise _Failure(
                f"the {settings.provider_dialect} dialect reports no balance "
                "(DISPATCHER_BALANCE_SOURCE=voxpria reads Voxpria credits)",
                2,
            )
    try:
        result = estimate_contacts(
            contacts,
            average_seconds=average_seconds,
            balance=balance,
            buffer_percent=buffer,
            credit_table=credit_table,
        )
    finally:
        if rejects is not None:
            rejects.close()
    if as_json:
        shape = result.to_json()
        if rejects is not None:
            shape["refused_rows"] = rejects.count
        _echo(json.dumps(shape))
    else:
        for line in result.lines():
            _echo(line)
        if rejects is not None:
            _echo(f"refused rows: {rejects.line()}")


class _MonthType(click.ParamType[str]):
    name = "YYYY-MM"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> str:
        from campaigns.providers.billing_insights import MONTH

        if not isinstance(value, str) or not MONTH.fullmatch(value):
            self.fail("a month such as 2026-05 (YYYY-MM)", param, ctx)
        return value


@main.command(
    name="usage",
    epilog=_example(
        "campaigns usage --month 2026-05 --json",
        settings="DISPATCHER_USAGE_URL, DISPATCHER_USAGE_CLIENT_ID, "
        "DISPATCHER_USAGE_CLIENT_SECRET, DISPATCHER_USAGE_TOKEN_URL or "
        "DISPATCHER_USAGE_ACCOUNT_NAME, DISPATCHER_USAGE_ACCOUNTS",
    ),
)
@click.option("--month", required=True, type=_MonthType(), help="the month, YYYY-MM")
@click.option("--json", "as_json", is_flag=True)
def usage_(month: str, as_json: bool) -> None:
    """The month's Talkdesk Billing Insights usage by type and product, over every page.

    Without DISPATCHER_USAGE_ACCOUNTS, every account of the organisation. A 403
    (an account outside the organisation) exits 1 naming the accounts.
    """
    from campaigns.operators.usage import (
        UsageError,
        UsageNotConfigured,
        fetch_month,
        usage_json,
        usage_lines,
    )

    try:
        result = asyncio.run(fetch_month(_settings(), month))
    except UsageNotConfigured as exc:
        raise _Failure(f"invalid settings: {exc}", 2) from None
    except UsageError as exc:
        raise _Failure(f"usage source: {exc}") from None
    if as_json:
        _echo(json.dumps(usage_json(result)))
    else:
        for line in usage_lines(result):
            _echo(line)


@main.command(
    epilog=_example(
        "DISPATCHER_PROVIDER_API_KEY=... campaigns worker",
        settings="every DISPATCHER_* setting (docs/operations.md)",
    )
)
@click.option("--burst", is_flag=True, help="process queued jobs, then exit")
@click.option("--check", is_flag=True, help="health check: exit 0 if a worker is alive")
def worker(burst: bool, check: bool) -> None:
    """Run the long-running arq workers (``python -m worker``): dispatch and settlement.

    One process serves two queues, each with its own job slots: dispatch runs
    on DISPATCHER_QUEUE_NAME; call and account events, alerts, reconciliations
    and the crons on DISPATCHER_QUEUE_NAME:settlement, so settling a call never
    waits behind dispatch. They start and stop together; ``--check`` checks both.

    It is arq's worker with a guard: a job arq could not run (bad bytes, an
    unknown name, arguments that do not fit) is quarantined to the dead letters
    instead of killing the process. It refuses to start without
    DISPATCHER_PROVIDER_API_KEY; when Redis does not answer it says so at once
    and keeps retrying (it rides out Redis restarts); ``--check`` fails instead,
    so a health check answers in seconds.
    """
    settings = _settings()
    if not check:
        # A worker's log lines, from here on, are JSON on stdout (docs/operations.md).
        configure_logging(settings.log_level, settings.log_format, stream=sys.stdout)
    if check:
        start_checks(settings, provider=False, redis=True)
    else:
        _require_api_key(settings)
        _require_metrics_port(settings)
        try:
            start_checks(settings, provider=False, redis=True)
        except _Failed as exc:
            # Say so at once, then ride it out: Redis may simply be starting too.
            click.echo(f"warning: {scrub(exc.message)}; the worker keeps retrying", err=True)
    if check:
        args = [sys.executable, "-m", "worker", "--check"]
    else:
        args = [sys.executable, "-m", "worker"]
        if burst:
            args.append("--burst")
    sys.stdout.flush()
    sys.stderr.flush()
    # Replace this process: arq installs its own SIGTERM handling. Importing
    # ``worker`` from here would make the domain package depend on the glue.
    os.execv(sys.executable, args)


@main.command(
    epilog=_example(
        "DISPATCHER_PROVIDER_API_KEY=sandbox-key campaigns sandbox --port 8089",
        settings="DISPATCHER_PROVIDER_API_KEY, the key it accepts (default sandbox-key)",
    )
)
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8089, show_default=True, type=click.IntRange(1, 65535))
@click.option(
    "--config",
    "config_path",
    type=click.Path(exists=True, dir_okay=False, readable=True),
    help="initial config JSON",
)
def sandbox(host: str, port: int, config_path: str | None) -> None:
    """Serve the sandbox provider (MiniVoice dialect) for demos and tests."""
    args = ["--host", host, "--port", str(port)]
    key = _settings().provider_api_key.get_secret_value()
    _require_port(host, port)
    if key:  # the key the workers send, also from .env; never on a command line
        os.environ["DISPATCHER_PROVIDER_API_KEY"] = key
    if config_path:
        args += ["--config", config_path]
    _exec_testbed("campaigns.testbed.sandbox", args)


@main.command(
    epilog=_example(
        "DISPATCHER_WEBHOOK_SECRET=... campaigns ingress --host 0.0.0.0 --port 8090",
        settings=f"{_STORE_SETTINGS}, DISPATCHER_WEBHOOK_SECRET, DISPATCHER_PROVIDER_DIALECT",
    )
)
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8090, show_default=True, type=click.IntRange(1, 65535))
@click.option(
    "--tolerance",
    default=300,
    show_default=True,
    type=click.IntRange(1, 86_400),
    help="signature age limit (s)",
)
def ingress(host: str, port: int, tolerance: int) -> None:
    """Receive provider webhooks (HMAC-verified) and enqueue record_call_event jobs.

    Signed with DISPATCHER_WEBHOOK_SECRET; unset, deliveries are accepted unsigned
    (a warning at start). Set but empty is refused: it never means "unsigned".
    """
    from campaigns.operators.ingress import serve_ingress

    settings = _settings()
    _require_port(host, port)
    start_checks(settings, provider=False, redis=True)
    secret = None
    if settings.webhook_secret is not None:
        secret = settings.webhook_secret.get_secret_value()
    if not serve_ingress(host, port, settings, secret, tolerance_seconds=tolerance):
        raise _Failure("the ingress did not start (its log says why)")


@main.command(
    epilog=_example(
        "DISPATCHER_API_TOKENS=... campaigns api --host 0.0.0.0 --port 8091",
        settings=f"{_STORE_SETTINGS}, DISPATCHER_API_TOKENS, DISPATCHER_PROVIDER_URL, "
        "DISPATCHER_PROVIDER_API_KEY (reconcile)",
    )
)
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8091, show_default=True, type=click.IntRange(1, 65535))
def api(host: str, port: int) -> None:
    """Serve the HTTP API under /v1 and the live campaign page at / (docs/api.md).

    Bearer tokens and their roles (viewer, operator) come from DISPATCHER_API_TOKENS.
    """
    from campaigns.operators.api import serve_api

    settings = _settings()
    if not settings.api_roles():
        raise _Failure("invalid settings: DISPATCHER_API_TOKENS: must be set to serve the API", 2)
    _require_port(host, port)
    start_checks(settings, provider=False, redis=True)
    if not serve_api(host, port, settings):
        raise _Failure("the API did not start (its log says why)")


@main.command(epilog=_example("campaigns demo --contacts 50 --spend-limit-calls 20", settings=None))
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


# ---------------------------------------------------------------- do-not-call list


@main.group(
    name="dnc",
    cls=_Group,
    no_args_is_help=False,
    epilog=_example("campaigns dnc add +15551230002", "campaigns dnc import suppressed.csv"),
)
def dnc() -> None:
    """The account-wide do-not-call list: no campaign dials a number on it.

    Numbers are normalised as contacts are (E.164). Once add or import has
    returned, no claim can pick the number: every campaign, running or not.
    """


def _dnc_numbers(fn: Callable[P, R]) -> Callable[P, R]:
    return click.argument("numbers", nargs=-1, required=True, metavar="NUMBER...")(fn)


_STRICT_HELP = "refuse numbers phonenumbers finds possible but not valid (as strict_numbers)"


def _argument(index: int) -> str:
    """The i-th NUMBER argument (from 0), as an operator counts them."""
    return f"NUMBER {index + 1}"


def _count(n: int, noun: str) -> str:
    return f"{n:,} {noun}{'' if n == 1 else 's'}"


@dnc.command(name="add", epilog=_example("campaigns dnc add +15551230002 '+1 555 123 0003'"))
@_dnc_numbers
@click.option("--strict", is_flag=True, help=_STRICT_HELP)
@click.option("--json", "as_json", is_flag=True)
def dnc_add(numbers: tuple[str, ...], strict: bool, as_json: bool) -> None:
    """Add numbers, all or none.

    One bad number and none is added (exit 2). Returns once every claim sees them.
    """
    from campaigns.operators import dnc as ops

    change = _run(
        lambda c: ops.recorded(
            c,
            OperatorAction.DNC_ADD,
            ops.add(ops.list_for(c.store), numbers, strict=strict, name=_argument),
        )
    )
    _echo(json.dumps(change.to_json()) if as_json else change.line())


@dnc.command(name="remove", epilog=_example("campaigns dnc remove +15551230002"))
@_dnc_numbers
@click.option("--json", "as_json", is_flag=True)
def dnc_remove(numbers: tuple[str, ...], as_json: bool) -> None:
    """Remove numbers, all or none.

    One bad number and none is removed (exit 2); an unlisted number is no error.
    """
    from campaigns.operators import dnc as ops

    change = _run(
        lambda c: ops.recorded(
            c,
            OperatorAction.DNC_REMOVE,
            ops.remove(ops.list_for(c.store), numbers, name=_argument),
        )
    )
    _echo(json.dumps(change.to_json()) if as_json else change.line())


@dnc.command(name="check", epilog=_example("campaigns dnc check +15551230002"))
@_dnc_numbers
@click.option("--json", "as_json", is_flag=True, help='one {"number", "listed"} object per line')
def dnc_check(numbers: tuple[str, ...], as_json: bool) -> None:
    """Whether each number is listed.

    Exits 0 whether listed or not; 2 only for a number that is not one.
    """
    from campaigns.operators import dnc as ops

    found = _run(lambda c: ops.check(ops.list_for(c.store), numbers, name=_argument))
    for number, listed in found:
        if as_json:
            _echo(json.dumps({"number": number, "listed": listed}))
        else:
            _echo(f"{number} {'listed' if listed else 'not listed'}")


@dnc.command(name="import", epilog=_example("campaigns dnc import suppressed.csv --json"))
@click.argument("csv_path", metavar="FILE.csv", type=click.Path(dir_okay=False))
@click.option("--strict", is_flag=True, help=_STRICT_HELP)
@click.option("--json", "as_json", is_flag=True)
def dnc_import(csv_path: str, strict: bool, as_json: bool) -> None:
    """Add every number of a CSV file, all or nothing.

    A UTF-8 CSV whose header has a 'number' or a 'to' column (other columns are
    ignored). Every row is checked first; a bad one names the file, line and column and
    nothing is added. Large files stream: memory stays flat.
    """
    from campaigns.operators import dnc as ops

    shown = repr(csv_path)[1:-1]
    try:
        source = open(csv_path, "rb")  # noqa: SIM115 - closed by the with below
    except OSError as exc:
        raise _Failure(
            f"invalid input: dnc: cannot read {shown}: {exc.strerror or exc}", 2
        ) from None
    with source:
        result = _run(
            lambda c: ops.recorded(
                c,
                OperatorAction.DNC_IMPORT,
                ops.import_csv(ops.list_for(c.store), source, shown=shown, strict=strict),
            )
        )
    if as_json:
        _echo(json.dumps(result.to_json()))
        return
    _echo(
        f"{shown}: {_count(result.rows, 'row')}, {_count(result.numbers, 'number')}, "
        f"{result.added:,} new; the do-not-call list holds {_count(result.listed, 'number')}"
    )


@dnc.command(name="count", epilog=_example("campaigns dnc count --json"))
@click.option("--json", "as_json", is_flag=True)
def dnc_count(as_json: bool) -> None:
    """How many numbers the do-not-call list holds."""
    from campaigns.operators import dnc as ops

    listed = _run(lambda c: ops.list_for(c.store).count())
    _echo(json.dumps({"count": listed}) if as_json else _count(listed, "number"))


@dnc.command(name="history", epilog=_example("campaigns dnc history --json"))
@click.option("--json", "as_json", is_flag=True, help="one JSON object per line")
def dnc_history(as_json: bool) -> None:
    """Every change to the do-not-call list, oldest first: when, who, what (the newest 1000)."""
    from campaigns.operators.history import history_line

    entries = _run(lambda c: c.store.history.read(None))
    for entry in entries:
        _echo(json.dumps(entry) if as_json else history_line(entry, ""))


@dnc.command(name="list", epilog=_example("campaigns dnc list > dnc-backup.csv"))
def dnc_list() -> None:
    """Every listed number, as a CSV.

    A 'number' header, then one number a line in no particular order: what
    campaigns dnc import reads back.
    """
    from campaigns.operators import dnc as ops

    async def write(client: CampaignClient) -> None:
        _echo("number")
        async for number in ops.list_for(client.store).numbers():
            _echo(number)

    _run(write)


if __name__ == "__main__":  # pragma: no cover
    main()
