"""The OpenAPI document is generated from the route table and the models
(issue 19, item 3): checked in unchanged, enums from the domain, examples the
server's own parsers accept, every operation named and every reference resolved."""

from __future__ import annotations

import json
from typing import Any

from campaigns.domain.lifecycle import HaltCode, State
from campaigns.domain.spec import parse_spec
from campaigns.operators import api_models as m
from campaigns.operators.api_schema import ENDPOINTS, SPEC_EXAMPLE, openapi
from tests.support import ROOT


def refs(node: Any) -> set[str]:
    if isinstance(node, dict):
        found = {node["$ref"]} if isinstance(node.get("$ref"), str) else set()
        return found.union(*(refs(v) for v in node.values()))
    if isinstance(node, list):
        return set().union(*(refs(v) for v in node))
    return set()


def test_the_checked_in_document_is_the_generated_one() -> None:
    checked_in = json.loads((ROOT / "docs" / "openapi.json").read_text())
    assert checked_in == json.loads(json.dumps(openapi())), (
        "regenerate: python -m campaigns.operators.api > docs/openapi.json"
    )


def test_enums_are_the_domains_and_the_apis() -> None:
    schemas = openapi()["components"]["schemas"]
    assert schemas["State"]["enum"] == [s.value for s in State]
    assert schemas["HaltCode"]["enum"] == [c.value for c in HaltCode]
    assert schemas["ErrorCode"]["enum"] == [c.value for c in m.ErrorCode]


def test_every_operation_is_named_once_and_every_reference_resolves() -> None:
    document = openapi()
    names = [e.operation_id for e in ENDPOINTS]
    assert len(names) == len(set(names))
    defined = {f"#/components/schemas/{name}" for name in document["components"]["schemas"]}
    assert refs(document) <= defined
    linked = {
        link["operationId"]
        for item in document["paths"].values()
        for operation in item.values()
        for answer in operation["responses"].values()
        for link in answer.get("links", {}).values()
    }
    assert {"get_campaign", "pause", "resume", "cancel"} <= linked <= set(names)


def test_the_examples_are_accepted_by_the_servers_parsers() -> None:
    document = openapi()
    [spec] = document["components"]["schemas"]["CampaignSpec"]["examples"]
    assert spec == SPEC_EXAMPLE
    parse_spec(json.dumps(spec))
    for example in document["components"]["schemas"]["Resolve"]["examples"]:
        m.Resolve.model_validate(example)
    for example in document["components"]["schemas"]["CampaignChange"]["examples"]:
        m.CampaignChange.model_validate(example)
    m.DncNumbersStrict.model_validate({"numbers": [m.E164_EXAMPLE]})
