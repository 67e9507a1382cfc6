"""Lua scripts by name: loaded from ``lua/*.lua``, called with named KEYS and ARGV.

Each script file starts with its header::

    -- One line on what the script decides.
    -- KEYS: meta pending lease
    -- ARGV: campaign_id lease_token now
    -- USES: lifecycle

The loader prepends ``local K = {meta = KEYS[1], ...}`` and ``local A = {...}``,
so the body says ``K.meta`` and ``A.now``, never an index; a call passes every
name as a keyword and the wrapper puts them in order, so no call site repeats
the order either. ``USES: lifecycle`` includes ``lua/_lifecycle.lua``. State,
attempt-status and halt-code names are written ``${state_running}`` (only that
form: a bare ``$`` is a Lua pattern anchor) and filled
in from :mod:`campaigns.domain.lifecycle`; an unknown name fails at load.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Awaitable
from dataclasses import dataclass
from importlib import resources
from typing import Any, cast

from redis.asyncio import Redis
from redis.asyncio.client import Pipeline
from redis.exceptions import NoScriptError

from campaigns.domain.lifecycle import FINAL_CALL_STATUSES, lua_constants
from campaigns.store.keys import ATTEMPT_ID_LUA_FORMAT
from campaigns.store.replicas import ReplicaAck, confirmed

__all__ = ["Script", "ScriptError", "load_script"]

_HEADER = re.compile(r"^--\s*(KEYS|ARGV|USES):(.*)$")
_PLACEHOLDER = re.compile(r"\$\{(\w+)\}")
_Arg = str | int | float


class ScriptError(TypeError):
    """A script was called with names that do not match its header."""


@dataclass(frozen=True, slots=True)
class Script:
    name: str
    keys: tuple[str, ...]
    args: tuple[str, ...]
    source: str

    def bind(self, redis: Redis, confirm: ReplicaAck | None = None) -> _Bound:
        """The script on one client; with ``confirm``, every call waits for replicas."""
        return _Bound(self, redis, redis.register_script(self.source), confirm)


class _Bound:
    """A script registered on one client; call it with every KEYS and ARGV name."""

    def __init__(
        self, script: Script, redis: Redis, registered: Any, confirm: ReplicaAck | None
    ) -> None:
        self.script = script
        self._redis = redis
        self._registered = registered
        self._confirm = confirm

    async def __call__(self, **values: _Arg) -> Any:
        script = self.script
        given = set(values)
        wanted = set(script.keys) | set(script.args)
        if given != wanted:
            missing = ", ".join(sorted(wanted - given)) or "none"
            extra = ", ".join(sorted(given - wanted)) or "none"
            raise ScriptError(f"{script.name}: missing {missing}; unexpected {extra}")
        keys = [values[k] for k in script.keys]
        args = [values[a] for a in script.args]
        if self._confirm is None:
            return await cast(Awaitable[Any], self._registered(keys=keys, args=args))
        sha = self._registered.sha

        def write(pipe: Pipeline) -> None:
            pipe.execute_command("EVALSHA", sha, len(keys), *keys, *args)

        try:
            [result] = await confirmed(self._redis, self._confirm, write)
        except NoScriptError:
            # A restarted or newly promoted Redis has no scripts cached: load, run again.
            await cast(Awaitable[Any], self._redis.script_load(script.source))
            [result] = await confirmed(self._redis, self._confirm, write)
        return result


def _read(name: str) -> str:
    return resources.files("campaigns.store").joinpath("lua", f"{name}.lua").read_text("utf-8")


def _table(var: str, source: str, names: tuple[str, ...]) -> str:
    fields = ", ".join(f"{n} = {source}[{i}]" for i, n in enumerate(names, start=1))
    return f"local {var} = {{{fields}}}\n"


@functools.cache
def load_script(name: str) -> Script:
    """Read, check and assemble ``lua/<name>.lua`` (cached: scripts never change at run time)."""
    text = _read(name)
    header: dict[str, tuple[str, ...]] = {"KEYS": (), "ARGV": (), "USES": ()}
    for line in text.splitlines():
        match = _HEADER.match(line)
        if match:
            header[match.group(1)] = tuple(match.group(2).split())
        elif line.strip() and not line.startswith("--"):
            break
    keys, args = header["KEYS"], header["ARGV"]
    if set(keys) & set(args):
        raise ScriptError(f"{name}: a name is both a key and an argument")
    parts = [_read(f"_{used}") for used in header["USES"]]
    parts.append(_table("K", "KEYS", keys) + _table("A", "ARGV", args) + text)
    names = {
        **lua_constants(),
        "attempt_id_format": ATTEMPT_ID_LUA_FORMAT,
        "final_call_statuses": ", ".join(f"{s}=true" for s in sorted(FINAL_CALL_STATUSES)),
    }

    def fill(match: re.Match[str]) -> str:
        if match.group(1) not in names:
            raise ScriptError(f"{name}: unknown lifecycle name ${{{match.group(1)}}}")
        return names[match.group(1)]

    # Only ``${name}`` is filled in: a bare ``$`` is a Lua pattern anchor.
    source = _PLACEHOLDER.sub(fill, "\n".join(parts))
    return Script(name, keys, args, source)
