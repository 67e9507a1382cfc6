"""A MiniVoice-shaped provider on a real loopback socket that misbehaves on demand.

A raw asyncio TCP server (its own thread and event loop, so the code under
test shares nothing with it) that reads each HTTP/1.1 request and answers as
``mode`` says:

- ``ok``: ``201`` with a call object (an ``id`` per request);
- ``trickle_headers``: the status line and headers, one byte every ``trickle_seconds``;
- ``trickle_body``: headers at once, then the body one byte at a time;
- ``huge_body``: ``201`` and ``huge_bytes`` of JSON-looking filler, without a
  Content-Length (``huge_length=True`` announces it), as fast as the client reads;
- ``redirect``: ``redirect_status`` (302, 307...) to ``redirect_to``;
- ``invalid_json``: ``200`` with a body that is not JSON;
- ``no_id``: ``200 {"status":"queued"}``;
- ``duplicate_id``: ``201`` whose call object names ``id`` twice;
- ``gzip_bomb``: ``201``, ``Content-Encoding: gzip``, ``huge_bytes`` inflated
  from a few hundred KB (whatever encoding the client asked for);
- ``huge_error``: ``huge_error_status`` (429...) with ``Retry-After: 7`` and a
  ``huge_bytes`` body.

Every request is recorded (method, path, headers) and so is how many body
bytes each answer got out before the client went away.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import itertools
import json
import threading
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field

__all__ = ["HostileProvider", "Received", "gzip_bomb", "hostile_provider"]

_REASONS = {
    429: "Too Many Requests",
    500: "Internal Server Error",
    200: "OK",
    201: "Created",
    301: "Moved",
    302: "Found",
    303: "See Other",
    307: "Temporary Redirect",
    308: "Permanent Redirect",
}


@dataclass(frozen=True, slots=True)
class Received:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class HostileProvider:
    mode: str = "ok"
    trickle_seconds: float = 0.5
    huge_bytes: int = 200 * 1024 * 1024
    huge_length: bool = False
    huge_error_status: int = 429
    redirect_status: int = 302
    redirect_to: str = "http://127.0.0.1:9/v1/calls"
    received: list[Received] = field(default_factory=list)
    body_bytes_sent: list[int] = field(default_factory=list)
    url: str = ""
    _ids: Iterator[int] = field(default_factory=lambda: itertools.count(1))

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(
            ConnectionError, asyncio.IncompleteReadError, OSError, asyncio.CancelledError
        ):
            head = await reader.readuntil(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")
            method, path, _ = lines[0].split(" ", 2)
            headers = {
                k.strip().lower(): v.strip()
                for k, _, v in (line.partition(":") for line in lines[1:] if line)
            }
            body = await reader.readexactly(int(headers.get("content-length", "0")))
            self.received.append(Received(method, path, headers, body))
            await self._answer(reader, writer, method, body)
        with contextlib.suppress(ConnectionError, OSError):
            writer.close()

    def _call(self, body: bytes) -> bytes:
        try:
            sent = json.loads(body) if body else {}
        except ValueError:
            sent = {}
        call = {
            "id": f"call_hostile_{next(self._ids)}",
            "status": "queued",
            "direction": "outbound",
            "to": sent.get("to", ""),
            "variables": sent.get("variables", {}),
        }
        return json.dumps(call).encode()

    async def _answer(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        method: str,
        body: bytes,
    ) -> None:
        mode = self.mode
        if mode == "ok":
            await self._send(writer, 201, self._call(body))
        elif mode == "invalid_json":
            await self._send(writer, 200, b"<html>Service temporarily unavailable</html>")
        elif mode == "no_id":
            await self._send(writer, 200, b'{"status":"queued"}')
        elif mode == "duplicate_id":
            await self._send(writer, 201, b'{"id":"call_a","status":"queued","id":"call_b"}')
        elif mode == "redirect":
            await self._send(writer, self.redirect_status, b"", {"Location": self.redirect_to})
        elif mode == "trickle_headers":
            answer = _head(201, {"Content-Length": "2"}) + b"{}"
            await self._trickle(reader, writer, answer, counted=False)
        elif mode == "trickle_body":
            payload = self._call(body)
            writer.write(_head(201, {"Content-Length": str(len(payload))}))
            await writer.drain()
            await self._trickle(reader, writer, payload, counted=True)
        elif mode == "huge_body":
            await self._huge(writer)
        elif mode == "huge_error":
            await self._huge(writer, self.huge_error_status, {"Retry-After": "7"})
        elif mode == "gzip_bomb":
            await self._send(writer, 201, gzip_bomb(self.huge_bytes), {"Content-Encoding": "gzip"})
        else:
            raise ValueError(f"unknown mode {mode!r}")

    async def _send(
        self,
        writer: asyncio.StreamWriter,
        status: int,
        payload: bytes,
        extra: dict[str, str] | None = None,
    ) -> None:
        headers = {
            "Content-Type": "application/json",
            "Content-Length": str(len(payload)),
            **(extra or {}),
        }
        writer.write(_head(status, headers) + payload)
        await writer.drain()
        self.body_bytes_sent.append(len(payload))

    async def _trickle(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        data: bytes,
        *,
        counted: bool,
    ) -> None:
        sent = 0
        try:
            for index in range(len(data)):
                if reader.at_eof():
                    break  # the client gave up and closed
                writer.write(data[index : index + 1])
                await writer.drain()
                sent += 1
                await asyncio.sleep(self.trickle_seconds)
        finally:
            if counted:
                self.body_bytes_sent.append(sent)

    async def _huge(
        self, writer: asyncio.StreamWriter, status: int = 201, extra: dict[str, str] | None = None
    ) -> None:
        headers = {"Content-Type": "application/json", **(extra or {})}
        if self.huge_length:
            headers["Content-Length"] = str(self.huge_bytes)
        writer.write(_head(status, headers))
        chunk = b'{"id":"call_huge","pad":"' + b"x" * (64 * 1024 - 25)
        sent = 0
        try:
            while sent < self.huge_bytes:
                piece = chunk[: self.huge_bytes - sent]
                writer.write(piece)
                await writer.drain()  # as fast as the client reads, no faster
                sent += len(piece)
        finally:
            self.body_bytes_sent.append(sent)

    def creates(self) -> list[Received]:
        return [r for r in self.received if r.method == "POST" and r.path == "/v1/calls"]


@functools.cache
def gzip_bomb(size: int) -> bytes:
    """A gzip member that inflates to ``size`` bytes of JSON-looking filler (cached)."""
    packer = zlib.compressobj(9, zlib.DEFLATED, 31)  # 31: a gzip header and trailer
    parts = [packer.compress(b'{"id":"call_bomb","pad":"')]
    block = b"x" * (1024 * 1024)
    for start in range(0, size, len(block)):
        parts.append(packer.compress(block[: size - start]))
    parts.append(packer.flush())
    return b"".join(parts)


def _head(status: int, headers: dict[str, str]) -> bytes:
    lines = [f"HTTP/1.1 {status} {_REASONS.get(status, 'Status')}", "Connection: close"]
    lines += [f"{k}: {v}" for k, v in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


@contextlib.contextmanager
def hostile_provider(**options: object) -> Iterator[HostileProvider]:
    """A running HostileProvider (``options`` set its fields); stopped on exit."""
    provider = HostileProvider(**options)  # type: ignore[arg-type]
    loop = asyncio.new_event_loop()
    ready = threading.Event()
    server: asyncio.Server | None = None

    async def start() -> None:
        nonlocal server
        server = await asyncio.start_server(provider._handle, "127.0.0.1", 0)
        provider.url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
        ready.set()

    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    asyncio.run_coroutine_threadsafe(start(), loop).result(5)
    ready.wait(5)
    try:
        yield provider
    finally:

        async def stop() -> None:
            assert server is not None
            server.close()
            for task in asyncio.all_tasks():
                if task is not asyncio.current_task():
                    task.cancel()

        asyncio.run_coroutine_threadsafe(stop(), loop).result(5)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(5)
        loop.close()
