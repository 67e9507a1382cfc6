"""Duplicate JSON keys are refused at every entry point, naming the key, nothing written.

``json.loads`` (and pydantic) keep the last of two equal keys; a reviewer or a
gateway may read the first. ``{"budget": "1.00", "budget": "900000.00"}``
must never submit a 900,000 EUR campaign.
"""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest
from arq.connections import ArqRedis

from campaigns import SpecError, submit_campaign
from campaigns.domain.spec import load_spec, parse_spec
from campaigns.queue import JobEnvelopeError, parse_job
from campaigns.settings import Settings
from tests.conftest import spec_dict
from tests.integration.test_bad_input import _dbsize, _run
from tests.integration.test_ingress import (
    PATH,
    StartIngress,
    arq_pool,
    http,
    queued,
    signed,
    start_ingress,
)

pytestmark = pytest.mark.integration
_FIXTURES = (arq_pool, http, start_ingress)
"""The ingress tests' fixtures, used here by name."""


def _twice_budget() -> str:
    spec = {**spec_dict("dup", contacts=2), "budget": "1.00"}
    text = json.dumps(spec)
    return text[:-1] + ', "budget": "900000.00"}'


def test_cli_submit_and_estimate_refuse_a_duplicate_key(settings: Settings, tmp_path: Path) -> None:
    path = tmp_path / "spec.json"
    path.write_text(_twice_budget())
    for command in ("submit", "estimate"):
        out = _run(settings, command, str(path))
        assert out.returncode == 2, (command, out.stdout, out.stderr)
        assert out.stderr.strip().splitlines() == [out.stderr.strip()], out.stderr
        assert "duplicate key 'budget'" in out.stderr, out.stderr
        assert out.stdout == ""
    assert _dbsize(settings.redis_url) == 0, "nothing may be written"


async def test_the_python_api_refuses_a_duplicate_key_in_json_text(
    settings: Settings, tmp_path: Path
) -> None:
    with pytest.raises(SpecError, match="duplicate key 'budget'"):
        await submit_campaign(_twice_budget(), settings)
    nested = json.dumps(spec_dict("dup", contacts=2)).replace(
        '"to": "+', '"ref": "x", "ref": "y", "to": "+', 1
    )
    with pytest.raises(SpecError, match="duplicate key 'ref'"):
        parse_spec(nested.encode())
    (tmp_path / "s.json").write_text(nested)
    with pytest.raises(SpecError, match="duplicate key 'ref'"):
        load_spec(tmp_path / "s.json")
    assert _dbsize(settings.redis_url) == 0


def test_a_job_with_a_duplicate_key_is_not_a_job() -> None:
    good = {"t": 1, "f": "dispatch_campaign", "a": ["c", 1], "k": {}, "et": 1}
    assert parse_job(json.dumps(good).encode())["a"] == ["c", 1]
    twice = json.dumps(good)[:-1] + ', "a": ["other", 2]}'
    with pytest.raises(JobEnvelopeError, match="duplicate key 'a'"):
        parse_job(twice.encode())
    nested = json.dumps({**good, "a": [{"campaign_id": "c"}]}).replace(
        '{"campaign_id": "c"}', '{"campaign_id": "c", "campaign_id": "d"}'
    )
    with pytest.raises(JobEnvelopeError, match="duplicate key 'campaign_id'"):
        parse_job(nested.encode())


async def test_a_webhook_with_a_duplicate_key_is_400_and_nothing_is_enqueued(
    start_ingress: StartIngress,
    http: httpx.AsyncClient,
    arq_pool: ArqRedis,
    settings: Settings,
) -> None:
    ingress = start_ingress()
    body = (
        b'{"event":"call.completed","call":{"id":"call_1","status":"completed",'
        b'"billsec_seconds":5,"cost_amount":"0.01","billsec_seconds":86400,'
        b'"cost_currency":"EUR","to":"+15551230002"}}'
    )
    response = await http.post(ingress.url + PATH, content=body, headers=signed(body))
    assert response.status_code == 400, response.text
    assert "duplicate key 'billsec_seconds'" in response.text
    assert await queued(arq_pool, settings) == []
