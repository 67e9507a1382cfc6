"""``campaigns demo`` tells the truth for any option values (issue #13, point 5).

With a spend limit above what the campaign needs it used to complete its
campaign and then exit 1, "see the worker log", in a folder already deleted.
"""

from __future__ import annotations

import os
import re
import subprocess

import pytest

from tests.support import CAMPAIGNS_BIN, ROOT

pytestmark = pytest.mark.integration


def demo(*args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DISPATCHER_")}
    return subprocess.run(
        [CAMPAIGNS_BIN, "demo", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
        cwd=ROOT,
        stdin=subprocess.DEVNULL,
    )


def worker_log_dir(text: str) -> str:
    match = re.search(r"log (/\S+)/worker\.log", text)
    assert match, text
    return match.group(1)


def test_a_spend_limit_never_reached_is_a_completed_campaign_and_success() -> None:
    out = demo("--contacts", "6", "--spend-limit-calls", "100")
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    text = out.stdout
    assert "The campaign completed" in text
    assert "did not end as" not in text and "spend_control_exceeded" not in text
    assert "5 of 5 the provider accepted" in text  # one of six is an invalid number
    assert "EUR 1.00" in text  # money for people
    assert not os.path.exists(worker_log_dir(text))  # nothing left behind on success


def test_a_spend_limit_of_zero_halts_at_the_first_call_and_says_so() -> None:
    out = demo("--contacts", "3", "--spend-limit-calls", "0")
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    text = " ".join(out.stdout.split())
    assert "spend_control_exceeded" in text
    assert "0 of 0 the provider accepted" in text
    assert "The provider's spend control stopped the campaign" in text
    assert "This demo's Redis and sandbox stop with it" in text
