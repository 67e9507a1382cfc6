"""Fuzz the ``campaigns`` command line with hostile arguments and options.

Every command runs in-process (click's ``CliRunner``) against the session's
real Redis and sandbox, with one queued campaign ``spring`` to act on. The
contract for any argv:

- exit 0, 1 or 2, never an unhandled exception or a traceback;
- on failure exactly one line on stderr, ``error: ...``, and nothing on stdout;
- exit 2 names what was wrong (an option, an argument, a setting, a field);
- nothing written to Redis by a command that failed;
- the API key never printed.

Commands that would serve or replace the process (``ingress``, ``sandbox``,
``worker``, ``demo``) have their final step stubbed: the harness checks that
their arguments are validated, not that they serve.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
import structlog
from click.testing import CliRunner
from hypothesis import event, given, note, settings
from hypothesis import strategies as st
from redis import Redis

from campaigns import logs
from campaigns.domain.spec import parse_spec
from campaigns.operators.cli import main
from campaigns.operators.control import CampaignClient
from campaigns.settings import Settings
from tests.conftest import API_KEY, spec_dict
from tests.fuzz.conftest import FUZZ_PROFILE
from tests.support import worker_env

pytestmark = pytest.mark.integration

CAMPAIGN = "spring"
ID_COMMANDS = ("status", "pause", "resume", "cancel", "report", "reconcile", "history")
COMMANDS = (
    *ID_COMMANDS,
    "resolve",
    "dead-letters",
    "list",
    "submit",
    "estimate",
    "ingress",
    "sandbox",
    "worker",
    "demo",
    "dnc",
)
DNC_COMMANDS = ("add", "remove", "check", "import", "count", "list")
OPTIONS: dict[str, tuple[str, ...]] = {
    "status": ("--json",),
    "report": ("--format",),
    "reconcile": ("--json",),
    "history": ("--json",),
    "resolve": ("--call-id", "--no-call"),
    "dead-letters": ("--limit",),
    "submit": ("--contacts",),
    "estimate": ("--contacts", "--json"),
    "ingress": ("--host", "--port", "--tolerance"),
    "sandbox": ("--host", "--port", "--config"),
    "worker": ("--burst", "--check"),
    "demo": ("--contacts", "--spend-limit-calls"),
    "dnc add": ("--strict", "--json"),
    "dnc remove": ("--json",),
    "dnc check": ("--json",),
    "dnc import": ("--strict", "--json"),
    "dnc count": ("--json",),
    "dnc list": (),
}
FLAGS = {"--json", "--no-call", "--burst", "--check", "--strict"}

hostile_text = st.one_of(
    st.text(st.characters(codec=None), max_size=80),  # control characters, lone surrogates
    st.sampled_from(
        [
            "",
            " ",
            "-",
            "--",
            "abc\n",
            "spring\n",
            " spring",
            "a" * 65,
            "a" * 300,
            "a:b",
            "../../etc/passwd",
            "$(id)",
            "%s",
            "[/oops]",
            "\x1b[31mred",
            "0",
            "-1",
            "1e9",
            "65536",
            "86401",
            "nan",
            "x" * 5000,
        ]
    ),
)
campaign_ids = st.sampled_from([CAMPAIGN, "unknown-1", "Spring", "spring.v2"]) | hostile_text
phone_numbers = st.one_of(
    *[st.sampled_from(["+15551240009", "+1 555 124 0008", "+4930901820"])] * 3,
    st.sampled_from(["+1555", "15551240009", "+1 555 124 0008 x"]),
    hostile_text,
)


@st.composite
def argvs(draw: st.DrawFn, files: dict[str, str], only: str | None = None) -> list[str]:
    known = only is not None or draw(st.integers(0, 9)) > 0
    command = only or draw(st.sampled_from(COMMANDS) if known else hostile_text)
    argv = [command]
    if command in ID_COMMANDS:
        argv.append(draw(campaign_ids))
    elif command == "resolve":
        argv.append(draw(st.sampled_from([f"{CAMPAIGN}:000001:1"]) | hostile_text))
    elif command in ("submit", "estimate"):
        argv.append(draw(st.sampled_from(sorted(files.values())) | hostile_text))
    elif command == "dnc":
        sub = draw(st.sampled_from(DNC_COMMANDS) if draw(st.integers(0, 9)) else hostile_text)
        argv.append(sub)
        command = f"dnc {sub}"
        if sub in ("add", "remove", "check"):
            argv += draw(st.lists(phone_numbers, max_size=3))
        elif sub == "import":
            argv.append(draw(st.sampled_from(sorted(files.values())) | hostile_text))
    choices = OPTIONS.get(command, ("--json",))
    for option in draw(st.lists(st.sampled_from(choices), max_size=3)) if choices else []:
        argv.append(option)
        if option not in FLAGS:
            argv.append(draw(st.sampled_from(sorted(files.values())) | hostile_text))
    if draw(st.integers(0, 9)) == 0:
        argv.insert(draw(st.integers(0, len(argv))), draw(hostile_text))
    return argv


def snapshot(redis: Redis) -> dict[bytes, Any]:
    return {key: redis.dump(key) for key in sorted(redis.keys("*"))}  # type: ignore[union-attr]


@contextmanager
def process_state_restored() -> Iterator[None]:
    """The CLI configures logging onto its (captured) stderr and registers secrets."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    saved_structlog = structlog.get_config()
    saved_secrets = set(logs._SECRETS)
    try:
        yield
    finally:
        structlog.configure(**saved_structlog)
        root.handlers[:] = handlers
        root.setLevel(level)
        logs._SECRETS.clear()
        logs._SECRETS.update(saved_secrets)


NAMES_SOMETHING = (
    "'--",  # an option: Invalid value for '--port'
    "'CAMPAIGN_ID'",
    "'ATTEMPT_ID'",
    "'SPEC.json'",
    "'NUMBER...'",
    "'FILE.csv'",
    "DISPATCHER_",
    "No such command",
    "Missing command",
    "No such option",
    "unexpected extra argument",
    "requires an argument",
    "give exactly one of",
    "invalid input: ",
    "invalid --config: ",
)


@pytest.fixture
def files(tmp_path: Path) -> dict[str, str]:
    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps(spec_dict("fuzz-submit", contacts=2)))
    garbage = tmp_path / "garbage.json"
    garbage.write_bytes(b"\xff\xfe{not json")
    csv = tmp_path / "contacts.csv"
    csv.write_text("to,ref\n+15551240001,a\n")
    dnc = tmp_path / "dnc.csv"
    dnc.write_text("number\n+15551240002\n+1 555 124 0003\n")
    dnc_bad = tmp_path / "dnc-bad.csv"
    dnc_bad.write_text("number\n+15551240004\n+1555\n")
    return {
        "spec": str(spec),
        "garbage": str(garbage),
        "csv": str(csv),
        "dnc": str(dnc),
        "dnc-bad": str(dnc_bad),
        "dir": str(tmp_path),
        "missing": str(tmp_path / "missing.json"),
    }


@pytest.fixture
def cli_env(settings: Settings) -> dict[str, str | None]:
    """Only DISPATCHER_* variables: the session's, and none from the outer environment."""
    env: dict[str, str | None] = {k: None for k in os.environ if k.startswith("DISPATCHER_")}
    ours = worker_env(settings, DISPATCHER_LOG_LEVEL="WARNING")
    env.update({k: v for k, v in ours.items() if k.startswith("DISPATCHER_")})
    return env


PROFILE = settings.get_profile(FUZZ_PROFILE)


@pytest.mark.parametrize("only", [None, "dnc"], ids=["all", "dnc"])
@settings(PROFILE, max_examples=PROFILE.max_examples * 3)
@given(data=st.data())
def test_fuzz_cli_arguments(
    data: st.DataObject,
    only: str | None,
    settings: Settings,
    files: dict[str, str],
    cli_env: dict[str, str | None],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Every command; then the ``dnc`` group alone (its sub-commands are a small share)."""
    monkeypatch.chdir(tmp_path)  # no .env file
    invoke_and_check(data.draw(argvs(files, only)), settings, cli_env)


def invoke_and_check(argv: list[str], settings: Settings, cli_env: dict[str, str | None]) -> None:
    note(repr(argv))
    redis = Redis.from_url(settings.redis_url)
    try:
        redis.flushdb()
        asyncio.run(_submit(settings))
        before = snapshot(redis)

        ran: list[str] = []

        def reached(name: str) -> Any:
            def stub(*args: Any, **kwargs: Any) -> Any:
                ran.append(name)
                return True  # a server that started and stopped cleanly

            return stub

        with (
            process_state_restored(),
            # worker, sandbox and demo hand over to another program with execv.
            mock.patch("os.execv", side_effect=reached("exec")),
            mock.patch("campaigns.operators.ingress.serve_ingress", side_effect=reached("ingress")),
        ):
            result = CliRunner().invoke(main, argv, env=cli_env)
        after = snapshot(redis)
    finally:
        redis.close()

    out, err = result.stdout, result.stderr
    label = argv[0] if argv[0] in COMMANDS else "other"
    if label == "dnc" and len(argv) > 1:
        label += f" {argv[1] if argv[1] in DNC_COMMANDS else 'other'}"
    event(f"{label}: exit {result.exit_code}")
    note(f"exit {result.exit_code}\nstdout: {out[:300]!r}\nstderr: {err[:300]!r}")
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(
        result.exception
    )
    assert result.exit_code in (0, 1, 2)
    assert "Traceback" not in out + err
    assert API_KEY not in out + err
    if result.exit_code == 0:
        return
    assert not ran, f"{ran} started although the command failed"
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("error: ") and len(lines[0]) > len("error: ")
    assert out == ""
    assert after == before, "a failed command wrote to Redis"
    if result.exit_code == 2:
        assert any(name in lines[0] for name in NAMES_SOMETHING), lines[0]


async def _submit(settings: Settings) -> None:
    client = await CampaignClient.connect(settings)
    async with client:
        await client.submit(parse_spec(spec_dict(CAMPAIGN, contacts=3)))
        await client.store.redis.sadd(client.store.keys.dnc, "+15551240009")
