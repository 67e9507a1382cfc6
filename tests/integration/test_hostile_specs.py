"""Hostile specs and contacts CSVs at the real CLI: exit 2, one line naming the field,
nothing written to Redis (issue #12, defects 6, 8 and 10)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
import redis as redis_sync

from campaigns import SpecError, submit_campaign
from campaigns.settings import Settings
from tests.conftest import spec_dict
from tests.support import CAMPAIGNS_BIN, ROOT, worker_env


def _dbsize(url: str) -> int:
    with redis_sync.Redis.from_url(url) as r:
        return int(r.dbsize())


def _run(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [CAMPAIGNS_BIN, *args],
        env=worker_env(settings),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )


def _refused(out: subprocess.CompletedProcess[str], *needles: str) -> str:
    """Exit 2 and exactly one line on stderr holding every needle; no traceback."""
    assert out.returncode == 2, (out.returncode, out.stdout, out.stderr)
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1, out.stderr
    assert "Traceback" not in out.stderr
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    assert out.stdout == ""
    return lines[0]


def _spec_file(tmp_path: Path, **overrides: Any) -> Path:
    path = tmp_path / "spec.json"
    path.write_text(json.dumps(spec_dict("hostile", contacts=2, **overrides)))
    return path


# --- defect 6: a trailing newline in campaign_id -------------------------------------


@pytest.mark.parametrize("campaign_id", ["abc\n", "abc\r\n", "abc\n\n"])
def test_cli_submit_refuses_a_campaign_id_with_a_trailing_newline(
    settings: Settings, tmp_path: Path, campaign_id: str
) -> None:
    path = tmp_path / "spec.json"
    path.write_text(json.dumps(spec_dict(campaign_id, contacts=2)))
    for command in ("submit", "estimate"):
        _refused(_run(settings, command, str(path)), "campaign_id")
    assert _dbsize(settings.redis_url) == 0, "nothing may be written"


async def test_python_api_refuses_a_campaign_id_with_a_trailing_newline(
    settings: Settings,
) -> None:
    with pytest.raises(SpecError) as caught:
        await submit_campaign(spec_dict("abc\n", contacts=2), settings)
    assert caught.value.field == "campaign_id"
    with pytest.raises(SpecError):
        await submit_campaign(json.dumps(spec_dict("abc\n", contacts=2)), settings)
    assert _dbsize(settings.redis_url) == 0


# --- defect 10: money beyond exact micros ---------------------------------------------

MONEY = [
    pytest.param({"budget": "5.9999999999999999999999999999999"}, "budget", id="31-places"),
    pytest.param({"budget": "1e-999999999"}, "budget", id="tiny-exponent"),
    pytest.param({"budget": "\u0665"}, "budget", id="arabic-indic-five"),
    pytest.param({"budget": "1_000"}, "budget", id="underscore"),
    pytest.param(
        {"rate": {"per_second": "9007199254.740991"}, "max_call_seconds": 3600},
        "rate.per_second",
        id="per-second-worst-case",
    ),
    pytest.param(
        {"rate": {"per_minute_micros": 2**53 - 1}, "max_call_seconds": 3600},
        "rate.per_minute_micros",
        id="per-minute-micros-worst-case",
    ),
]


@pytest.mark.parametrize(("patch", "field"), MONEY)
def test_cli_refuses_inexact_money_naming_the_field(
    settings: Settings, tmp_path: Path, patch: dict[str, Any], field: str
) -> None:
    path = _spec_file(tmp_path, **patch)
    for command in ("submit", "estimate"):
        line = _refused(_run(settings, command, str(path)), f"{field}: ")
        assert "e+" not in line, "no float-formatted amount"
    assert _dbsize(settings.redis_url) == 0


# --- defect 8: the contacts CSV loader --------------------------------------------------


CSV_BAD = [
    pytest.param(
        b"to,ref\n+15551230002,a\n+15551230003,caf\xe9\n", ("line 3", "not UTF-8"), id="l1"
    ),
    pytest.param("to,ref\n+15551230002,a\n".encode("utf-16"), ("line 1", "not UTF-8"), id="utf16"),
    pytest.param(
        b"to,ref\n+15551230002," + b"x" * 131_073 + b"\n",
        ("line 2].ref", "longer than 131072 characters"),
        id="field-over-limit",
    ),
    pytest.param(
        b"to,ref\n+15551230002,a\n+15551230003," + b"r" * 201 + b"\n",
        ("line 3].ref", "200"),
        id="ref-over-200",
    ),
]


@pytest.mark.parametrize(("raw", "needles"), CSV_BAD)
def test_cli_submit_refuses_a_bad_contacts_csv_naming_file_and_line(
    settings: Settings, tmp_path: Path, raw: bytes, needles: tuple[str, ...]
) -> None:
    spec_path = _spec_file(tmp_path)
    csv_path = tmp_path / "contacts.csv"
    csv_path.write_bytes(raw)
    for command in ("submit", "estimate"):
        out = _run(settings, command, str(spec_path), "--contacts", str(csv_path))
        _refused(out, str(csv_path), *needles)
    assert _dbsize(settings.redis_url) == 0, "nothing may be written"


def test_cli_submit_reads_a_csv_with_a_utf8_bom(settings: Settings, tmp_path: Path) -> None:
    """Excel's "CSV UTF-8": the BOM used to hide the 'to' column."""
    spec_path = _spec_file(tmp_path)
    csv_path = tmp_path / "contacts.csv"
    csv_path.write_bytes(b"\xef\xbb\xbfto,ref\r\n+15551239998,a\r\n+15551239999,b\r\n")
    out = _run(settings, "submit", str(spec_path), "--contacts", str(csv_path))
    assert out.returncode == 0, out.stderr
    assert "hostile: submitted, 4 contacts" in out.stdout
