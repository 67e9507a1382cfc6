"""The live campaign page in a real headless Chromium, against a real API, worker and sandbox.

Submit through the API and watch the progress bar reach completion without a
reload; pause from the page and see no create request after it in the sandbox
ledger; open the report view; a screenshot goes into the test's directory.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from campaigns.settings import Settings
from campaigns.testbed.sandbox import SandboxServer
from tests.api_process import OPERATOR_TOKEN, VIEWER_TOKEN, ApiProcess, auth
from tests.browser import Browser, chromium_path
from tests.conftest import spec_dict
from tests.support import WorkerProcess, creates, wait_for

OPERATOR = auth(OPERATOR_TOKEN)
BAD_NUMBER = "+15551240004"


@pytest.fixture
def api(settings: Settings, tmp_path: Path) -> Iterator[ApiProcess]:
    server = ApiProcess(settings, tmp_path / "api.log")
    yield server
    server.stop()


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[Browser]:
    executable = chromium_path()
    # CI installs Chromium (.ci/run); a machine without it fails here, it does not skip.
    assert executable is not None, "Chromium is needed: apt-get install chromium"
    browser = Browser(executable, tmp_path / "profile", tmp_path / "chromium.log")
    yield browser
    browser.close()


def _row(campaign_id: str) -> str:
    return f"document.querySelector('tr[data-campaign=\"{campaign_id}\"]')"


async def test_live_page(
    api: ApiProcess,
    browser: Browser,
    sandbox: SandboxServer,
    start_worker: Callable[..., WorkerProcess],
    tmp_path: Path,
) -> None:
    sandbox.configure(invalid_numbers=[BAD_NUMBER])
    start_worker()
    browser.navigate(f"{api.url}/#token={OPERATOR_TOKEN}")
    browser.wait_until(
        "document.getElementById('role')?.textContent === 'signed in as operator'",
        timeout=20,
        what="the page to sign in",
    )
    assert browser.evaluate("location.hash") == "", "the token leaves the address bar"
    browser.evaluate("window.sameDocument = 'yes'")

    # Submit through the API; the page shows it and its progress without a reload.
    spec = spec_dict("paged", contacts=12)
    spec["pacing"] = {"calls_per_second": 4, "batch_size": 4, "max_in_flight": 50}
    async with httpx.AsyncClient(base_url=api.url, timeout=30) as http:
        submitted = await http.post("/v1/campaigns", headers=OPERATOR, json=spec)
        assert submitted.status_code == 201, submitted.text

    accepted_width = (
        f"{_row('paged')}?.querySelector('span[data-part=accepted]')?.style.width ?? null"
    )
    widths: list[str | None] = []
    deadline = time.monotonic() + 60
    while True:
        width = browser.evaluate(accepted_width)
        if not widths or widths[-1] != width:
            widths.append(width)
        if browser.evaluate(f"{_row('paged')}?.dataset.state ?? null") == "completed":
            break
        assert time.monotonic() < deadline, f"the page never showed completion: {widths}"
        await asyncio.sleep(0.1)
    final = browser.wait_until(
        f"{_row('paged')}.querySelector('.counts').textContent",
        timeout=5,
        what="the counts",
    )
    assert "11 dialled" in final and "1 rejected" in final and "0 pending" in final, final
    assert len([w for w in widths if w not in (None, "0%")]) >= 2, (
        f"the bar moved in steps while the page was open: {widths}"
    )
    assert browser.evaluate("window.sameDocument") == "yes", "the page was reloaded"

    # Pause from the page: no create request after it.
    spec = spec_dict("pausable", contacts=60)
    spec["pacing"] = {"calls_per_second": 5, "batch_size": 5, "max_in_flight": 50}
    async with httpx.AsyncClient(base_url=api.url, timeout=30) as http:
        assert (await http.post("/v1/campaigns", headers=OPERATOR, json=spec)).status_code == 201

        async def some_sent() -> bool:
            return len(creates(sandbox.ledger(), "pausable")) >= 3

        await wait_for(some_sent, timeout=20, what="calls going out")
        browser.wait_until(
            f"{_row('pausable')} && !{_row('pausable')}.querySelector('button[data-action=pause]').disabled",
            timeout=10,
            what="an enabled pause button",
        )
        browser.evaluate(f"{_row('pausable')}.querySelector('button[data-action=pause]').click()")
        # The click's request has answered (the page clears its note) and the row shows it.
        browser.wait_until(
            f"{_row('pausable')}?.dataset.state === 'paused'"
            " && document.getElementById('error').textContent === ''",
            timeout=20,
            what="the page to show the pause done",
        )
        sent = len(creates(sandbox.ledger(), "pausable"))

        async def settled() -> bool:
            counts = (await http.get("/v1/campaigns/pausable", headers=OPERATOR)).json()["counts"]
            answered = counts["accepted"] + counts["rejected"] == sent
            return answered and counts["settled"] == counts["accepted"]

        await wait_for(settled, timeout=30, what="the calls placed before the pause to settle")
        assert len(creates(sandbox.ledger(), "pausable")) == sent, "a create request after pause"
        # Settlement shows on the page too: reservations released, spend booked.
        money = (await http.get("/v1/campaigns/pausable", headers=OPERATOR)).json()["money"]
        spent = f"{money['spent_micros'] // 10**6}.{money['spent_micros'] % 10**6 // 10**4:02d}"
        assert money["spent_micros"] % 10**4 == 0, "sandbox calls cost whole cents"
        browser.wait_until(
            f"{_row('pausable')}.textContent.includes('{spent} spent + 0.00 reserved')",
            timeout=10,
            what="the paused campaign's money, settled",
        )
        assert (
            browser.evaluate(
                f"{_row('pausable')}.querySelector('button[data-action=resume]').disabled"
            )
            is False
        )

    # The report view: calls with their dashboard fields, rejected attempts apart.
    browser.evaluate(f"{_row('paged')}.querySelector('button[data-action=report]').click()")
    browser.wait_until(
        "document.querySelectorAll('#calls tbody tr').length === 11",
        timeout=10,
        what="the report's calls",
    )
    rejected = browser.evaluate(
        "[...document.querySelectorAll('#rejected tbody tr')]"
        ".map(r => [...r.children].map(c => c.textContent))"
    )
    assert len(rejected) == 1
    assert rejected[0][1] == BAD_NUMBER
    assert rejected[0][2] == "invalid_destination"
    assert json.loads(rejected[0][3])["to"] == BAD_NUMBER, "the exact request body"
    first_call = browser.evaluate(
        "[...document.querySelector('#calls tbody tr').children].map(c => c.textContent)"
    )
    ledger_ids = {e["call_id"] for e in creates(sandbox.ledger(), "paged") if e["call_id"]}
    assert first_call[0] in ledger_ids
    assert first_call[1] == "outbound"
    assert first_call[6] == "EUR"
    cards = browser.evaluate("document.getElementById('summary').textContent")
    assert "rejected attempts" in cards and "spent (settled)" in cards
    assert browser.evaluate("window.sameDocument") == "yes", "the page was reloaded"

    shot = browser.screenshot(tmp_path / "campaign-page.png")
    assert shot.stat().st_size > 10_000
    print(f"screenshot: {shot}")

    # A viewer sees the campaigns but no buttons that change them.
    browser.navigate(f"{api.url}/#token={VIEWER_TOKEN}")
    browser.wait_until(
        "document.getElementById('role')?.textContent === 'signed in as viewer'"
        f" && {_row('paged')} !== null",
        timeout=20,
        what="the viewer's page",
    )
    assert browser.evaluate("document.querySelectorAll('button[data-action=pause]').length") == 0


async def test_the_page_polls_one_page_at_a_time_and_filters(
    api: ApiProcess, browser: Browser, sandbox: SandboxServer
) -> None:
    """No worker: the campaigns stay as submitted. The API is made slower than the
    poll interval (each fetch held 1.1 s in the page): polls still never overlap."""
    async with httpx.AsyncClient(base_url=api.url, timeout=30) as http:
        for name in ("north-1", "north-2", "south-1"):
            spec = spec_dict(name, name=f"{name} renewals")
            response = await http.post("/v1/campaigns", headers=OPERATOR, json=spec)
            assert response.status_code == 201, response.text
        cancelled = await http.post("/v1/campaigns/north-2/cancel", headers=OPERATOR)
        assert cancelled.status_code == 200, cancelled.text
    browser.navigate(f"{api.url}/#token={OPERATOR_TOKEN}")
    browser.wait_until(f"{_row('south-1')} !== null", timeout=20, what="the campaigns")
    browser.evaluate(
        """(() => {
          const real = window.fetch;
          window.lists = [];
          window.inFlight = 0;
          window.mostInFlight = 0;
          window.holdMs = 1100;
          window.fetch = async (url, options) => {
            const list = String(url).startsWith('/v1/campaigns?');
            if (list) {
              window.lists.push(String(url));
              window.inFlight += 1;
              window.mostInFlight = Math.max(window.mostInFlight, window.inFlight);
            }
            try {
              await new Promise((done) => setTimeout(done, window.holdMs));
              return await real(url, options);
            } finally {
              if (list) window.inFlight -= 1;
            }
          };
        })()"""
    )
    browser.wait_until("window.lists.length >= 3", timeout=20, what="three slow polls")
    assert browser.evaluate("window.mostInFlight") == 1, "two polls in flight at once"
    browser.evaluate("window.holdMs = 0")
    lists = browser.evaluate("window.lists")
    assert all("limit=25" in url for url in lists), lists

    browser.evaluate(
        "(() => { const s = document.getElementById('filter-state'); s.value = 'cancelled';"
        " s.dispatchEvent(new Event('change')); })()"
    )
    browser.wait_until(
        f"{_row('north-1')} === null && {_row('north-2')} !== null",
        timeout=20,
        what="only the cancelled campaign",
    )
    assert "state=cancelled" in browser.evaluate("window.lists[window.lists.length - 1]")
    browser.evaluate(
        "(() => { const s = document.getElementById('filter-state'); s.value = '';"
        " s.dispatchEvent(new Event('change'));"
        " const n = document.getElementById('filter-name'); n.value = 'north';"
        " n.dispatchEvent(new Event('change')); })()"
    )
    browser.wait_until(
        f"{_row('south-1')} === null && {_row('north-1')} !== null && {_row('north-2')} !== null",
        timeout=20,
        what="the campaigns named north...",
    )
    assert browser.evaluate("window.mostInFlight") == 1, "two polls in flight at once"
