"""Large contact lists: ``campaigns submit`` / ``estimate`` of a CSV, and a worker beside them.

Measured side by side in one run, against a Redis this script starts (never 6379):

1. a reference: a bare loop that reads the same CSV with the ``csv`` module
   (the floor for anything that looks at every row);
2. ``campaigns estimate SPEC --contacts FILE`` (validate, dedupe, count: no Redis);
3. ``campaigns submit SPEC --contacts FILE`` (the same, and stage the contacts);
4. the same submit of a list unlike the first (:func:`write_varied_csv`: every
   NANP area code, other regions' mobiles), its rate beside the first's;

each as a subprocess, in contacts per second, the peak RSS and CPU time of that process
(``/usr/bin/time``, else ``ru_maxrss`` from ``os.wait4``). Then the worker: a real
``campaigns worker`` beside a paused campaign of 10k, then of the full size,
pending contacts; its RSS (``VmRSS``/``VmHWM`` of ``/proc/PID/status``) after
it has taken the campaign's dispatch job and run its sweeper a few times, and
the peak RSS of ``campaigns status`` on that campaign.

    .venv/bin/python tests/bench/contacts.py [--quick]

``run(quick)`` returns the printable rows (for ``tests/bench/run.py``).
Targets (issues 7, 20): submit >= 100k contacts/s (either list), submitting process < 300 MB,
worker RSS growth from 10k to 1M pending < 10 MB.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

# Run as a script, so the repository root is not on the path.
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from campaigns.testbed.redis_server import RedisServer

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
CAMPAIGNS = str(BIN / "campaigns")
API_KEY = "sk_bench_contacts_5b1e"
WORKER_SETTLE_SECONDS = 6.0
"""How long the worker runs beside the paused campaign before its RSS is read:
the dispatch job is taken at once and the sweeper runs every second."""

_REFERENCE = (
    "import csv, sys\n"
    "with open(sys.argv[1], newline='', encoding='utf-8') as f:\n"
    "    print(sum(1 for _ in csv.reader(f)) - 1)\n"
)


@dataclass(frozen=True, slots=True)
class Timed:
    seconds: float
    peak_rss_kb: int
    stdout: str
    cpu_seconds: float
    """User + system CPU of the process and its children: what a busy machine does not
    inflate as much as the wall time (Redis's own CPU is not in it)."""


def write_csv(path: Path, rows: int) -> int:
    """``rows`` contacts (to, ref, one variable), 1 in 100 a repeat; returns the unique count."""
    unique = 0
    with path.open("w", encoding="utf-8", newline="") as out:
        out.write("to,ref,name\n")
        lines = []
        for i in range(rows):
            n = i - 1 if i % 100 == 99 else i
            unique += n == i
            lines.append(f"+1{212 + n % 7}{2_000_000 + n // 7:07d},cust_{i},Name {i}\n")
            if len(lines) == 10_000:
                out.writelines(lines)
                lines.clear()
        out.writelines(lines)
    return unique


VARIED_REGIONS = ("GB", "DE", "FR", "IT", "JP", "AU", "BR", "IN", "CN", "MX", "NG", "ZA")
"""Where the varied list's numbers outside the NANP come from (a mobile example each)."""


def write_varied_csv(path: Path, rows: int) -> int:
    """``rows`` contacts unlike :func:`write_csv`'s; returns the unique count.

    Every NANP area code 200-999 in turn (valid and unassigned alike) with a
    random exchange and line, 1 in 20 a mobile number of another region (its
    example number with random last digits), 1 in 100 a repeat, so no cache
    warmed by a few area codes flatters the rate.
    """
    import random

    import phonenumbers

    rnd = random.Random(20)
    mobile = phonenumbers.PhoneNumberType.MOBILE
    abroad = [
        phonenumbers.format_number(
            phonenumbers.example_number_for_type(region, mobile),
            phonenumbers.PhoneNumberFormat.E164,
        )[:-4]
        for region in VARIED_REGIONS
    ]
    seen: set[str] = set()
    with path.open("w", encoding="utf-8", newline="") as out:
        out.write("to,ref,name\n")
        lines: list[str] = []
        number = ""
        for i in range(rows):
            if i % 100 != 99:
                if i % 20 == 19:
                    number = f"{abroad[i // 20 % len(abroad)]}{rnd.randrange(10_000):04d}"
                else:
                    number = f"+1{200 + i % 800}{rnd.randrange(10_000_000):07d}"
            seen.add(number)
            lines.append(f"{number},cust_{i},Name {i}\n")
            if len(lines) == 10_000:
                out.writelines(lines)
                lines.clear()
        out.writelines(lines)
    return len(seen)


def write_spec(path: Path, campaign_id: str) -> None:
    spec = {
        "campaign_id": campaign_id,
        "caller_id": "+15551230001",
        "currency": "EUR",
        "budget": "1000000.00",
        "rate": {"per_minute": "0.01", "increments": "60/60"},
        "contacts": [],
    }
    path.write_text(json.dumps(spec))


def timed(command: Sequence[str], env: dict[str, str]) -> Timed:
    """Run a command to its end; wall time, CPU time and its own peak RSS.

    Under ``/usr/bin/time`` where there is one: a child forked from this
    process starts with this process's pages, which ``ru_maxrss`` would count.
    """
    with tempfile.TemporaryFile() as out, tempfile.NamedTemporaryFile() as err:
        meter = ["/usr/bin/time", "-q", "-f", "%U %S %M", "-o", err.name + ".rss"]
        wrapped = [*meter, *command] if Path("/usr/bin/time").exists() else list(command)
        started = time.perf_counter()
        proc = subprocess.Popen(wrapped, env=env, cwd=ROOT, stdout=out, stderr=err)
        _, status, usage = os.wait4(proc.pid, 0)
        seconds = time.perf_counter() - started
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        if proc.returncode != 0:
            tail = err.read().decode(errors="replace")[-500:]
            raise RuntimeError(f"{' '.join(command)} exited {proc.returncode}: {tail}")
        rss = Path(err.name + ".rss")
        if len(wrapped) > len(command):
            user, system, peak = rss.read_text().split()[-3:]
            cpu = float(user) + float(system)
        else:
            peak, cpu = str(usage.ru_maxrss), usage.ru_utime + usage.ru_stime
        rss.unlink(missing_ok=True)
        return Timed(seconds, int(peak), out.read().decode(errors="replace"), cpu)


def _env(redis_url: str, queue: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        DISPATCHER_REDIS_URL=redis_url,
        DISPATCHER_QUEUE_NAME=queue,
        DISPATCHER_PROVIDER_URL="http://127.0.0.1:9",  # never called: the campaign is paused
        DISPATCHER_PROVIDER_API_KEY=API_KEY,
        DISPATCHER_SWEEP_INTERVAL_SECONDS="1",
        DISPATCHER_LOG_LEVEL="WARNING",
    )
    return env


def _status_kb(pid: int) -> dict[str, int]:
    found: dict[str, int] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name in ("VmRSS", "VmHWM"):
            found[name] = int(value.split()[0])
    return found


def worker_rss(folder: Path, redis_url: str, csv_path: Path, campaign_id: str) -> dict[str, int]:
    """Submit and pause a campaign of ``csv_path``'s contacts, then run a worker beside it."""
    env = _env(redis_url, f"bench:{campaign_id}")
    spec = folder / f"{campaign_id}.json"
    write_spec(spec, campaign_id)
    timed([CAMPAIGNS, "submit", str(spec), "--contacts", str(csv_path)], env)
    timed([CAMPAIGNS, "pause", campaign_id], env)
    status = timed([CAMPAIGNS, "status", campaign_id], env)
    log = (folder / f"{campaign_id}.log").open("wb")
    worker = subprocess.Popen(
        [CAMPAIGNS, "worker"], env=env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT
    )
    try:
        deadline = time.monotonic() + WORKER_SETTLE_SECONDS
        while time.monotonic() < deadline:
            if worker.poll() is not None:
                raise RuntimeError(f"the worker exited {worker.returncode}; see {log.name}")
            time.sleep(0.2)
        return {**_status_kb(worker.pid), "status_peak": status.peak_rss_kb}
    finally:
        worker.terminate()
        try:
            worker.wait(30)
        except subprocess.TimeoutExpired:
            worker.kill()
            worker.wait(10)
        log.close()


def _cpu_seconds(pid: int | None) -> float:
    """User + system CPU a process has used so far (``/proc/PID/stat``); 0 without one."""
    if pid is None:
        return 0.0
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _rate(contacts: int, seconds: float) -> str:
    return f"{contacts / seconds / 1000:7.1f}k contacts/s"


def run(quick: bool) -> list[str]:
    """Printable rows: reference, estimate, submit (rate, peak RSS), worker RSS at two sizes."""
    rows = 100_000 if quick else 1_000_000
    small = 10_000
    out: list[str] = []
    with tempfile.TemporaryDirectory(prefix="bench-contacts-") as tmp:
        folder = Path(tmp)
        big_csv, small_csv = folder / "big.csv", folder / "small.csv"
        varied_csv = folder / "varied.csv"
        unique = write_csv(big_csv, rows)
        varied_unique = write_varied_csv(varied_csv, rows)
        small_unique = write_csv(small_csv, small)
        with RedisServer() as server:
            env = _env(server.url, "bench:contacts")
            spec = folder / "spec.json"
            write_spec(spec, "bench-submit")
            reference = timed([sys.executable, "-c", _REFERENCE, str(big_csv)], env)
            estimate = timed([CAMPAIGNS, "estimate", str(spec), "--contacts", str(big_csv)], env)
            redis_cpu = _cpu_seconds(server.pid)
            submit = timed([CAMPAIGNS, "submit", str(spec), "--contacts", str(big_csv)], env)
            redis_cpu = -redis_cpu + _cpu_seconds(server.pid)
            write_spec(spec, "bench-submit-varied")
            varied_redis_cpu = _cpu_seconds(server.pid)
            varied = timed([CAMPAIGNS, "submit", str(spec), "--contacts", str(varied_csv)], env)
            varied_redis_cpu = -varied_redis_cpu + _cpu_seconds(server.pid)
            for t, expected in ((submit, unique), (varied, varied_unique)):
                if f"{expected} contacts" not in t.stdout:
                    raise RuntimeError(f"submit reported {t.stdout.strip()!r}, not {expected}")
            out.append(f"contacts CSV, {rows} rows ({unique} unique), one process each:")
            for name, t in (
                ("csv.reader loop (reference)", reference),
                ("campaigns estimate", estimate),
                ("campaigns submit", submit),
                ("campaigns submit, varied", varied),
            ):
                out.append(
                    f"  {name:28} {t.seconds:6.2f} s  {_rate(rows, t.seconds)}"
                    f"  peak RSS {t.peak_rss_kb / 1024:6.1f} MB  CPU {t.cpu_seconds:5.2f} s"
                )
            out.append(f"  submit / reference time    {submit.seconds / reference.seconds:6.1f}x")
            out.append(f"  varied / bench list time   {varied.seconds / submit.seconds:6.2f}x")
            out.append(
                f"  Redis CPU during submit    {redis_cpu:6.2f} s, varied {varied_redis_cpu:6.2f} s"
            )
            low = worker_rss(folder, server.url, small_csv, "bench-worker-small")
            high = worker_rss(folder, server.url, big_csv, "bench-worker-big")
        out.append("a paused campaign: worker VmRSS, VmHWM; `campaigns status` peak RSS:")
        for pending, rss in ((small_unique, low), (unique, high)):
            out.append(
                f"  {pending:>8} pending  {rss['VmRSS'] / 1024:6.1f} MB  "
                f"{rss['VmHWM'] / 1024:6.1f} MB  {rss['status_peak'] / 1024:6.1f} MB"
            )
        out.append(f"  worker growth    {(high['VmRSS'] - low['VmRSS']) / 1024:+6.1f} MB")
    return out


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="100k rows instead of 1M")
    args = parser.parse_args(argv)
    for row in run(args.quick):
        print(row, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
