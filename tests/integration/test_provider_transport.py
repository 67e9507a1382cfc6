"""The provider client's transport (aiohttp under httpx) fails exactly as httpx's own.

Every network failure a create can meet is staged on a real loopback socket
and sent twice, through ``provider_client()`` and through a plain
``httpx.AsyncClient``: both must end in the same ProviderError code and the
same ambiguity (could the provider have placed the call?). A failure after the
request was sent must never read as "never reached the provider".
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
import threading
from collections.abc import Callable, Iterator

import httpx
import pytest
from pydantic import SecretStr

from campaigns.domain.errors import ProviderError
from campaigns.domain.lifecycle import HaltCode
from campaigns.providers import CreateRequest, MiniVoice
from campaigns.providers._http import provider_client, request
from campaigns.testbed.sandbox import SandboxServer

pytestmark = pytest.mark.integration

TIMEOUT = 0.5
Answer = Callable[[socket.socket], None]


def _drop(conn: socket.socket) -> None:
    conn.close()


def _reset(conn: socket.socket) -> None:
    conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    conn.close()


def _truncated(conn: socket.socket) -> None:
    conn.sendall(b'HTTP/1.1 201 Created\r\nContent-Length: 100\r\n\r\n{"id":')
    conn.close()


def _not_http(conn: socket.socket) -> None:
    conn.sendall(b"NOT HTTP\r\n\r\n")
    conn.close()


def _hang(conn: socket.socket) -> None:
    conn.settimeout(10 * TIMEOUT)
    with contextlib.suppress(OSError):
        while conn.recv(65536):  # the rest of the request, then until the client gives up
            pass
    conn.close()


def _ok(conn: socket.socket) -> None:
    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}")
    conn.close()


@contextlib.contextmanager
def _server(answer: Answer, received: list[bytes] | None = None) -> Iterator[str]:
    """A loopback server that reads one request per connection, then answers.

    ``received`` collects what arrived (a connection may open with nothing sent).
    """
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.1)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            data = conn.recv(65536)
            if data and received is not None:
                received.append(data)
            answer(conn)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    finally:
        stop.set()
        thread.join(5)
        listener.close()


@contextlib.contextmanager
def _refused() -> Iterator[str]:
    sock = socket.create_server(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    yield f"http://127.0.0.1:{port}"


@contextlib.contextmanager
def _unreachable() -> Iterator[str]:
    """A listener whose accept queue is full: the kernel drops our SYN, connect times out."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    address = listener.getsockname()
    fillers = []
    for _ in range(4):
        filler = socket.socket()
        filler.setblocking(False)
        with contextlib.suppress(BlockingIOError):
            filler.connect(address)
        fillers.append(filler)
    try:
        yield f"http://127.0.0.1:{address[1]}"
    finally:
        for filler in fillers:
            filler.close()
        listener.close()


async def _failure(client: httpx.AsyncClient, url: str) -> ProviderError:
    async with client:
        with pytest.raises(ProviderError) as info:
            await request(client, "POST", url + "/v1/calls", content=b"{}")
    return info.value


CASES: dict[str, tuple[Callable[[], contextlib.AbstractContextManager[str]], str, bool]] = {
    # name: (server, expected code, ambiguous: could the call exist?)
    "refused": (_refused, "connect_failed", False),
    "connect timeout": (_unreachable, "connect_failed", False),
    "no answer in time": (lambda: _server(_hang), "timeout", True),
    "closed without an answer": (lambda: _server(_drop), "network_error", True),
    "reset": (lambda: _server(_reset), "network_error", True),
    "truncated body": (lambda: _server(_truncated), "network_error", True),
    "not HTTP": (lambda: _server(_not_http), "network_error", True),
}


@pytest.mark.parametrize("case", list(CASES))
async def test_each_network_failure_reads_as_with_httpxs_own_transport(case: str) -> None:
    make_server, code, ambiguous = CASES[case]
    with make_server() as url:
        ours = await _failure(provider_client(timeout=TIMEOUT), url)
        theirs = await _failure(httpx.AsyncClient(timeout=TIMEOUT), url)
    assert (ours.status, ours.code, ours.ambiguous) == (None, code, ambiguous), ours
    assert (theirs.status, theirs.code, theirs.ambiguous) == (None, code, ambiguous), theirs


async def test_an_error_naming_the_url_never_names_its_query() -> None:
    """VoIPBIN's token is a query parameter; aiohttp puts whole URLs in some errors."""
    with _unreachable() as url:
        client = provider_client(timeout=TIMEOUT, params={"token": "tok_4f1e9a"})
        error = await _failure(client, url)
    assert error.code == "connect_failed"
    assert url.removeprefix("http://") in error.message
    assert "tok_4f1e9a" not in error.message


@pytest.mark.parametrize(
    ("headers", "url"),
    [
        ({"Authorization": "Bearer "}, None),  # an empty API key
        ({"Authorization": "Bearer a\nb"}, None),
        ({}, "ftp://127.0.0.1/v1/calls"),
    ],
)
async def test_a_request_httpx_refuses_to_send_is_refused_and_never_sent(
    headers: dict[str, str], url: str | None
) -> None:
    received: list[bytes] = []
    with _server(_ok, received) as base:
        for client in (provider_client(timeout=TIMEOUT), httpx.AsyncClient(timeout=TIMEOUT)):
            async with client:
                with pytest.raises(ProviderError) as info:
                    await request(client, "POST", url or base + "/v1/calls", headers=headers)
            assert info.value.code == HaltCode.REQUEST_UNSENDABLE
            assert not info.value.ambiguous
    assert received == [], "nothing may reach the provider"


async def test_one_client_keeps_its_connections_and_creates_calls(
    sandbox: SandboxServer,
) -> None:
    """The sandbox sees the requests as httpx sent them: headers, body, one key each."""
    sandbox.configure(api_key="k_transport", call_duration_real_seconds=0.05)
    provider = MiniVoice(sandbox.url, SecretStr("k_transport"), timeout=5)
    body = provider.build_create(
        CreateRequest(
            caller_id="+15551230001",
            to="+15551240000",
            max_duration_seconds=60,
            campaign_id="c",
            attempt_id="c:000001:1",
            contact_ref="",
            variables={},
        )
    )
    try:
        calls = await asyncio.gather(*(provider.create_call(body, f"key-{i}") for i in range(20)))
    finally:
        await provider.aclose()
    ledger = sandbox.ledger()
    assert len({c.call_id for c in calls}) == 20
    assert sorted(e["idempotency_key"] for e in ledger) == sorted(f"key-{i}" for i in range(20))
    assert {e["status"] for e in ledger} == {201}
