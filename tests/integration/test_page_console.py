"""The live page as an operator's console, in headless Chromium (issue 21, point 7):
a waiting reason with its until-time, halt messages in money, a budget raised from
the page, a "not dialled" section apart from "in doubt", and a cancel that asks first."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import httpx

from campaigns.testbed.sandbox import SandboxServer
from tests.api_process import ApiProcess
from tests.browser import Browser
from tests.conftest import spec_dict
from tests.integration.test_page import OPERATOR, OPERATOR_TOKEN, _row, api, browser
from tests.support import WorkerProcess, creates

__all__ = ["api", "browser"]  # the fixtures, shared with test_page


async def test_page_console(
    api: ApiProcess,
    browser: Browser,
    sandbox: SandboxServer,
    start_worker: Callable[..., WorkerProcess],
) -> None:
    start_worker()
    later = (datetime.now(UTC) + timedelta(hours=2)).strftime("%Y-%m-%dT%H:%M:%SZ")
    waiting = spec_dict("later", contacts=2, schedule={"start_at": later})
    # 61 s at 0.01/min reserves 0.02 a call: 0.019 halts budget_exhausted at once.
    broke = spec_dict("broke", contacts=3, budget="0.019", max_call_seconds=61)
    listed = spec_dict("listed", contacts=3)
    listed["suppress"] = [listed["contacts"][1]["to"]]
    async with httpx.AsyncClient(base_url=api.url, timeout=30) as http:
        for spec in (waiting, broke, listed):
            answer = await http.post("/v1/campaigns", headers=OPERATOR, json=spec)
            assert answer.status_code == 201, answer.text

    browser.navigate(f"{api.url}/#token={OPERATOR_TOKEN}")
    # Waiting for the schedule: the reason and when it ends.
    note = browser.wait_until(
        f"{_row('later')}?.querySelector('.waiting[data-reason=not_started]')?.textContent",
        timeout=30,
        what="the waiting reason",
    )
    assert f"until {later}" in note
    # Halted on its budget: the message in money, never micros.
    halt = browser.wait_until(
        f"{_row('broke')}?.dataset.state === 'halted' && {_row('broke')}.querySelector('.halt').textContent",
        timeout=30,
        what="the budget halt",
    )
    assert "budget_exhausted" in halt and "micros" not in halt and "0.019" in halt, halt

    # Raise the budget from the report view, then resume from the row.
    browser.evaluate(f"{_row('broke')}.querySelector('button[data-action=report]').click()")
    browser.wait_until(
        "!document.getElementById('budget-form').hidden", timeout=10, what="the budget form"
    )
    browser.evaluate(
        "document.getElementById('budget-amount').value = '1.00';"
        "document.querySelector('button[data-action=budget]').click()"
    )
    browser.wait_until(
        f"{_row('broke')}.textContent.includes('of 1.00 EUR')"
        " && document.getElementById('error').textContent === ''",
        timeout=20,
        what="the new budget on the page",
    )
    browser.evaluate(f"{_row('broke')}.querySelector('button[data-action=resume]').click()")
    browser.wait_until(
        f"{_row('broke')}?.dataset.state === 'completed'", timeout=30, what="broke completed"
    )
    assert len(creates(sandbox.ledger(), "broke")) == 3

    # Not dialled apart from in doubt.
    browser.evaluate(f"{_row('listed')}.querySelector('button[data-action=report]').click()")
    never = browser.wait_until(
        "document.querySelectorAll('#notdialled tbody tr').length === 1"
        " && [...document.querySelector('#notdialled tbody tr').children].map(c => c.textContent)",
        timeout=30,
        what="the not-dialled section",
    )
    assert never[:3] == ["cust_1", listed["contacts"][1]["to"], "suppressed"], never
    assert browser.evaluate("document.querySelectorAll('#doubt tbody tr').length") == 0
    assert "1 suppressed" in browser.evaluate("document.getElementById('summary').textContent")

    # Cancel asks first: one click changes nothing, the second cancels.
    cancel = f"{_row('later')}.querySelector('button[data-action=cancel]')"
    browser.evaluate(f"{cancel}.click()")
    browser.wait_until(
        f"{cancel}.textContent === 'really cancel?'", timeout=10, what="the question"
    )
    assert browser.evaluate(f"{_row('later')}.dataset.state") != "cancelled"
    browser.evaluate(f"{cancel}.click()")
    browser.wait_until(
        f"{_row('later')}?.dataset.state === 'cancelled'", timeout=20, what="the cancel"
    )
    assert (
        browser.evaluate(f"{_row('later')}.querySelector('button[data-action=resume]')") is None
    ), "only the buttons that can work"

    # The pace against the configured one; outcome statistics in the report view.
    assert "pace 50/s" in browser.evaluate(f"{_row('listed')}.querySelector('.pace').textContent")
    outcomes = browser.evaluate("document.getElementById('outcomes').textContent")
    assert "2answered" in outcomes and "spend per answered call" in outcomes, outcomes

    # Filter by state and search by ID or name.
    browser.evaluate(
        "const s = document.getElementById('filter-state'); s.value = 'completed';"
        "s.dispatchEvent(new Event('change'))"
    )
    browser.wait_until(
        f"{_row('later')} === null && {_row('listed')} !== null", timeout=10, what="the filter"
    )
    browser.evaluate(
        "document.getElementById('filter-state').value = '';"
        "const q = document.getElementById('search'); q.value = 'brok';"
        "q.dispatchEvent(new Event('input'))"
    )
    browser.wait_until(
        f"{_row('listed')} === null && {_row('broke')} !== null", timeout=10, what="the search"
    )
