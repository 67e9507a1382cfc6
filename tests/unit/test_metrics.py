"""campaigns/metrics.py: what the recording API counts, and the deploy files that read it."""

from __future__ import annotations

import json
import re

import pytest
import yaml

from campaigns import metrics
from campaigns.domain.errors import ProviderError
from tests.support import ROOT


def value(name: str, **labels: str) -> float:
    found = metrics.REGISTRY.get_sample_value(name, labels)
    return 0.0 if found is None else found


async def _answer() -> str:
    return "call_1"


async def _refuse(status: int, code: str) -> str:
    raise ProviderError(status, code, "refused")


async def test_create_counts_each_outcome_and_times_it() -> None:
    accepted = value("dispatcher_create_requests_total", outcome="accepted", code="")
    halted = value(
        "dispatcher_create_requests_total", outcome="halt", code="spend_control_exceeded"
    )
    odd_class = ProviderError(422, "Bad Code\n", "").error_class
    odd = value("dispatcher_create_requests_total", outcome=odd_class, code="other")
    timed = value("dispatcher_provider_request_seconds_count", operation="create")

    assert await metrics.create(_answer()) == "call_1"
    with pytest.raises(ProviderError):
        await metrics.create(_refuse(403, "spend_control_exceeded"))
    with pytest.raises(ProviderError):
        # A provider's code outside the label shape is counted, as "other".
        await metrics.create(_refuse(422, "Bad Code\n"))

    assert value("dispatcher_create_requests_total", outcome="accepted", code="") == accepted + 1
    assert (
        value("dispatcher_create_requests_total", outcome="halt", code="spend_control_exceeded")
        == halted + 1
    )
    assert value("dispatcher_create_requests_total", outcome=odd_class, code="other") == odd + 1
    assert value("dispatcher_provider_request_seconds_count", operation="create") == timed + 3


def test_halts_are_counted_by_their_halt_code() -> None:
    review = value("dispatcher_campaign_halts_total", code="in_doubt_review")
    budget = value("dispatcher_campaign_halts_total", code="budget_exhausted")
    metrics.halt("needs_review")  # the claim's outcome for an in-doubt halt
    metrics.halt("budget_exhausted")
    assert value("dispatcher_campaign_halts_total", code="in_doubt_review") == review + 1
    assert value("dispatcher_campaign_halts_total", code="budget_exhausted") == budget + 1


def _registered() -> set[str]:
    names: set[str] = set()
    for family in metrics.REGISTRY.collect():
        names |= {sample.name for sample in family.samples} | {family.name}
        if family.type == "histogram":
            names |= {f"{family.name}_{s}" for s in ("bucket", "count", "sum")}
        if family.type == "counter":
            names.add(f"{family.name}_total")
    return names


def test_dashboard_queries_only_metrics_that_exist() -> None:
    dashboard = json.loads((ROOT / "deploy" / "grafana-dashboard.json").read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    used = {name for e in exprs for name in re.findall(r"\bdispatcher_[a-z_]+\b", e)}
    assert used, "the dashboard queries no dispatcher metric"
    assert used - _registered() == set()
    # every metric family has a panel
    families = {f.name for f in metrics.REGISTRY.collect()}
    assert {f for f in families if not any(f in e for e in exprs)} == set()


def test_scrape_config_and_k8s_agree_on_the_port() -> None:
    config = yaml.safe_load((ROOT / "deploy" / "prometheus.yml").read_text())
    assert {job["job_name"] for job in config["scrape_configs"]} >= {"campaigns-workers"}
    deployment = yaml.safe_load((ROOT / "deploy" / "k8s" / "worker-deployment.yaml").read_text())
    template = deployment["spec"]["template"]
    annotations = template["metadata"]["annotations"]
    container = template["spec"]["containers"][0]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    configmap = yaml.safe_load((ROOT / "deploy" / "k8s" / "dispatcher-configmap.yaml").read_text())
    assert annotations["prometheus.io/scrape"] == "true"
    assert int(annotations["prometheus.io/port"]) == ports["metrics"]
    assert int(configmap["data"]["DISPATCHER_METRICS_PORT"]) == ports["metrics"]
