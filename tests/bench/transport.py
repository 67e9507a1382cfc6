"""HTTP transports against the sandbox: create requests per second, n in flight.

Variants, interleaved round by round in one run:
- ``httpx``: ``httpx.AsyncClient`` with its default (httpcore) transport;
- ``aiohttp``: the same ``httpx.AsyncClient`` API over ``httpx_aiohttp.AiohttpTransport``;
- ``dispatcher``: the dispatcher's own provider client (``make_provider``), so the
  figure shows what the worker actually uses.

Each client runs in a process of its own (``python tests/bench/transport.py
client ...``), so the sandbox's and the client's CPU never share a GIL; a run
with two client processes at once shows whether the sandbox (one uvicorn
process) is the ceiling: if two clients together get no more than one, it is.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[2]
BODY = b'{"from":"+15551230001","to":"+15551240000","max_duration_seconds":120,"variables":{}}'

__all__ = ["VARIANTS", "run_clients"]

VARIANTS = ("httpx", "aiohttp", "dispatcher")


def _client(variant: str, url: str, api_key: str) -> Any:
    headers = {"Authorization": f"Bearer {api_key}"}
    if variant == "httpx":
        return httpx.AsyncClient(base_url=url, headers=headers, timeout=10)
    if variant == "aiohttp":
        from httpx_aiohttp import AiohttpTransport

        return httpx.AsyncClient(
            base_url=url, headers=headers, timeout=10, transport=AiohttpTransport()
        )
    from pydantic import SecretStr

    from campaigns.providers import make_provider
    from campaigns.settings import Settings

    return make_provider(
        Settings(provider_url=url, provider_api_key=SecretStr(api_key), _env_file=None)  # type: ignore[call-arg]
    )


async def _client_run(
    variant: str, url: str, api_key: str, n: int, inflight: int, tag: str
) -> float:
    """Requests per second for ``n`` creates, ``inflight`` at a time (after a warm-up)."""
    client = _client(variant, url, api_key)
    counter = iter(range(n))

    async def one(i: int) -> None:
        key = f"{tag}-{i}"
        if variant == "dispatcher":
            await client.create_call(BODY.decode(), key)
            return
        response = await client.post(
            "/v1/calls",
            content=BODY,
            headers={"Content-Type": "application/json", "Idempotency-Key": key},
        )
        response.raise_for_status()
        response.json()

    async def lane() -> None:
        for i in counter:
            await one(i)

    try:
        await asyncio.gather(*(one(-1 - j) for j in range(inflight)))  # open the connections
        start = time.perf_counter()
        await asyncio.gather(*(lane() for _ in range(inflight)))
        return n / (time.perf_counter() - start)
    finally:
        await client.aclose()


def run_clients(
    variant: str, url: str, api_key: str, n: int, inflight: int, tag: str, processes: int = 1
) -> list[float]:
    """Start ``processes`` client processes at once; each one's requests per second."""
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                __file__,
                "client",
                variant,
                url,
                api_key,
                str(n),
                str(inflight),
                f"{tag}-p{p}",
            ],
            stdout=subprocess.PIPE,
            cwd=ROOT,
            text=True,
        )
        for p in range(processes)
    ]
    rates = []
    for proc in procs:
        out, _ = proc.communicate(timeout=300)
        if proc.returncode != 0:
            raise RuntimeError(f"transport client {variant} exited {proc.returncode}")
        rates.append(float(json.loads(out)["rate"]))
    return rates


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    _, _, variant_, url_, key_, n_, inflight_, tag_ = sys.argv
    rate = asyncio.run(_client_run(variant_, url_, key_, int(n_), int(inflight_), tag_))
    print(json.dumps({"rate": rate}))
