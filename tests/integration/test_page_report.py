"""The live page's report view a page at a time, in headless Chromium (issue 21,
point 7): the first page of rows, next and previous, outcome statistics from the
API, and the page re-read only when the campaign moved, one request at a time."""

from __future__ import annotations

from typing import Any

from campaigns.store import Store
from tests.api_process import ApiProcess
from tests.browser import Browser
from tests.integration.test_api import store
from tests.integration.test_page import OPERATOR_TOKEN, _row, api, browser
from tests.integration.test_report_pages import write_report

__all__ = ["api", "browser", "store"]  # the fixtures, shared with test_page and test_api

SHOWN = "[...document.querySelectorAll('#report tbody tr')]"
"""Every row of the report view's four tables."""
FETCHES = """(() => {
  // Record each request's path and the most ever in flight at once.
  window.seen = []; window.inFlight = 0; window.mostInFlight = 0;
  const original = window.fetch;
  window.fetch = async (path, options) => {
    window.seen.push(String(path));
    window.mostInFlight = Math.max(window.mostInFlight, ++window.inFlight);
    try { return await original(path, options); } finally { window.inFlight--; }
  };
})()"""


def shown_rows(browser: Browser, count: int, what: str) -> list[Any]:
    """The first cells of the ``count`` rows shown, once there are that many."""
    return browser.wait_until(  # type: ignore[no-any-return]
        f"{SHOWN}.length === {count} && {SHOWN}.map(r => r.children[0].textContent)",
        timeout=20,
        what=what,
    )


def requests_to(browser: Browser, part: str) -> int:
    return int(browser.evaluate(f"window.seen.filter(p => p.includes('{part}')).length"))


async def test_report_view_pages(api: ApiProcess, browser: Browser, store: Store) -> None:
    rows = await write_report(store, "pages", 120, 3)
    browser.navigate(f"{api.url}/#token={OPERATOR_TOKEN}")
    browser.wait_until(f"{_row('pages')} !== null", timeout=30, what="the campaign row")
    browser.evaluate(FETCHES)
    browser.evaluate(f"{_row('pages')}.querySelector('button[data-action=report]').click()")

    first = shown_rows(browser, 50, "the first page")
    label = browser.evaluate("document.getElementById('report-page').textContent")
    assert label == "page 1: rows 1-50", label
    calls = [r.get("call_id") for r in rows[:50] if r["status"] == "accepted"]
    assert (
        browser.evaluate(
            "[...document.querySelectorAll('#calls tbody tr')].map(r => r.children[0].textContent)"
        )
        == calls
    )
    assert browser.evaluate("document.getElementById('report-prev').disabled")

    # Outcome statistics from the API (GET .../outcomes), not summed from this page.
    ended = [r for r in rows if "final_status" in r]
    answered = sum(r["final_status"] == "completed" for r in ended)
    outcomes = browser.evaluate("document.getElementById('outcomes').textContent")
    assert f"{answered}answered" in outcomes, outcomes
    assert requests_to(browser, "/outcomes") == 1

    # Not moved: later polls re-read neither the page nor the statistics.
    polls = requests_to(browser, "/v1/campaigns?")
    browser.wait_until(
        f"window.seen.filter(p => p.includes('/v1/campaigns?')).length >= {polls + 2}",
        timeout=20,
        what="two more polls",
    )
    assert requests_to(browser, "/report?") == 1 and requests_to(browser, "/outcomes") == 1

    # Next: rows 51-100; the statistics are not read again for another page.
    browser.evaluate("document.getElementById('report-next').click()")
    browser.wait_until(
        "document.getElementById('report-page').textContent === 'page 2: rows 51-100'",
        timeout=20,
        what="the second page",
    )
    second = shown_rows(browser, 50, "the second page's rows")
    assert set(second).isdisjoint(r for r in first if r.startswith("call-"))
    assert requests_to(browser, "/outcomes") == 1
    # The last page: 20 attempts and the 3 expired contacts, then no next.
    browser.evaluate("document.getElementById('report-next').click()")
    shown_rows(browser, 23, "the last page")
    assert browser.evaluate("document.getElementById('report-next').disabled")
    never = browser.evaluate("document.querySelectorAll('#notdialled tbody tr').length")
    assert never == 3

    # The campaign moves (its settled count): the page shown and the statistics are re-read.
    reads = requests_to(browser, "/report?")
    await store.redis.hincrby(store.keys.meta("pages"), "settled", 1)
    browser.wait_until(
        f"window.seen.filter(p => p.includes('/report?')).length > {reads}"
        " && window.seen.filter(p => p.includes('/outcomes')).length === 2",
        timeout=20,
        what="the re-read after a move",
    )
    last = browser.evaluate("window.seen.filter(p => p.includes('/report?')).at(-1)")
    assert "cursor=" in last, "the page shown is re-read, not the first"

    # Previous goes back; never two requests in flight.
    browser.evaluate("document.getElementById('report-prev').click()")
    browser.wait_until(
        "document.getElementById('report-page').textContent === 'page 2: rows 51-100'",
        timeout=20,
        what="back to the second page",
    )
    assert shown_rows(browser, 50, "the second page again") == second
    assert browser.evaluate("window.mostInFlight") == 1
