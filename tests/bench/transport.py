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
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

# Run as a script (the client processes), so the repository root is not on the path.
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.bench.common import API_KEY, CpuWindow, Ratio, Results, Row, progress
from tests.bench.sandbox_process import SandboxProcess

ROOT = Path(__file__).resolve().parents[2]

BODY = b'{"from":"+15551230001","to":"+15551240000","metadata":{}}'

__all__ = ["LABELS", "ClientRun", "bench_transport", "run_clients"]

LABELS = {
    "httpx": "httpx.AsyncClient, default transport",
    "aiohttp": "httpx.AsyncClient over httpx-aiohttp",
    "dispatcher": "the dispatcher's provider client",
}


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
        start, cpu = time.perf_counter(), time.process_time()
        await asyncio.gather(*(lane() for _ in range(inflight)))
        return n / (time.perf_counter() - start), (time.process_time() - cpu) * 1000 / n
    finally:
        await client.aclose()


@dataclass(frozen=True)
class ClientRun:
    rate: float
    """Requests per second."""
    cpu_ms: float
    """The client process's CPU milliseconds per request."""


def run_clients(
    variant: str, url: str, api_key: str, n: int, inflight: int, tag: str, processes: int = 1
) -> list[ClientRun]:
    """Start ``processes`` client processes at once; what each one measured."""
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
    runs = []
    for proc in procs:
        out, _ = proc.communicate(timeout=300)
        if proc.returncode != 0:
            raise RuntimeError(f"transport client {variant} exited {proc.returncode}")
        got = json.loads(out)
        runs.append(ClientRun(float(got["rate"]), float(got["cpu_ms"])))
    return runs


def bench_transport(quick: bool, rounds: int) -> Results:
    """Creates/s per transport at 1, 10, 50 in flight; then two clients at once."""
    n = 300 if quick else 2000
    results = Results()
    rows = {
        (v, k): Row("transport", f"{label}, {k} in flight", "creates/s")
        for k in (1, 10, 50)
        for v, label in LABELS.items()
    }
    with SandboxProcess(api_key=API_KEY, call_duration_real_seconds=0.05) as sandbox:
        sandbox_ms: dict[str, list[float]] = {}
        client_ms: dict[str, list[float]] = {}
        for r in range(rounds):
            for (variant, inflight), row in list(rows.items())[:: 1 if r % 2 == 0 else -1]:
                cpu = CpuWindow({"sandbox": sandbox.pid})
                cpu.open()
                got = run_clients(variant, sandbox.url, API_KEY, n, inflight, f"t{r}")
                row.values.append(got[0].rate)
                client_ms.setdefault(row.variant, []).append(got[0].cpu_ms)
                used, _, _ = cpu.close()
                ms = used["sandbox"] * 1000 / (n + inflight)
                sandbox_ms.setdefault(row.variant, []).append(ms)
                sandbox.reset()
                sandbox.configure(api_key=API_KEY, call_duration_real_seconds=0.05)
            progress(f"  transport round {r + 1}/{rounds} done")
        for row in rows.values():
            ms = min(sandbox_ms[row.variant])
            row.notes.append(
                f"CPU ms per create: client {statistics.median(client_ms[row.variant]):.2f}, "
                f"sandbox {ms:.2f} (one core of sandbox would answer ~{1000 / ms:,.0f}/s)"
            )
        for variant in () if quick else ("httpx", "aiohttp"):
            cpu = CpuWindow({"sandbox": sandbox.pid})
            cpu.open()
            pair = run_clients(variant, sandbox.url, API_KEY, n, 50, "pair", processes=2)
            used, busy, _ = cpu.close()
            row = Row(
                "transport", f"two clients at once, {variant}, 50 in flight each", "creates/s"
            )
            row.values.append(sum(run.rate for run in pair))
            ms = used["sandbox"] * 1000 / (2 * (n + 50))
            row.notes.append(
                f"CPU ms per create: clients {statistics.median(r.cpu_ms for r in pair):.2f}, "
                f"sandbox {ms:.2f}; machine busy {busy:.0%}"
            )
            results.rows.append(row)
            sandbox.reset()
            sandbox.configure(api_key=API_KEY, call_duration_real_seconds=0.05)
    results.rows[:0] = list(rows.values())
    for k in (1, 10, 50):
        results.ratios.append(
            Ratio(
                "transport",
                f"aiohttp / httpx at {k} in flight",
                rows[("aiohttp", k)].median / rows[("httpx", k)].median,
            )
        )
    return results


if __name__ == "__main__":
    _, _, variant_, url_, key_, n_, inflight_, tag_ = sys.argv
    rate, cpu_ms = asyncio.run(_client_run(variant_, url_, key_, int(n_), int(inflight_), tag_))
    print(json.dumps({"rate": rate, "cpu_ms": cpu_ms}))
