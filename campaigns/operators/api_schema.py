"""The API's route table, and the OpenAPI document generated from it.

Each :class:`Endpoint` names its handler, the role it needs, the media types it
reads and writes, its parameters and the models of its bodies. The API builds
its routes, authorisation and media checks from this table
(:mod:`campaigns.operators.api`) and :func:`openapi` builds the document from the
same table and the models of :mod:`campaigns.operators.api_models` (pydantic's
``models_json_schema``), so nothing of the document is written by hand twice.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from campaigns.domain.spec import CampaignSpec, Contact
from campaigns.operators import api_models as m
from campaigns.operators.dnc import MAX_NUMBERS
from campaigns.operators.listing import DEFAULT_LIMIT, MAX_LIMIT
from campaigns.operators.outcomes import LISTED_OUTCOMES

__all__ = ["ENDPOINTS", "OPERATOR", "SPEC_EXAMPLE", "VIEWER", "Endpoint", "Param", "openapi"]

VIEWER = "viewer"
OPERATOR = "operator"
JSON = "application/json"
CSV = "text/csv"
_REF = "#/components/schemas/{model}"


@dataclass(frozen=True, slots=True)
class Param:
    """A path, query or header parameter, with the constraints the server enforces."""

    name: str
    where: Literal["path", "query", "header"]
    schema: dict[str, Any]
    description: str = ""
    required: bool = False

    def to_openapi(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "in": self.where, "schema": self.schema}
        if self.where == "path" or self.required:
            out["required"] = True
        if self.description:
            out["description"] = self.description
        return out


@dataclass(frozen=True, slots=True)
class Link:
    """An OpenAPI link: the campaign this answer names, for the next operation."""

    name: str
    operation_id: str
    campaign_id: str = "$response.body#/campaign_id"


@dataclass(frozen=True, slots=True)
class Endpoint:
    """One operation: what it is, who may call it, what it reads and answers."""

    method: str
    path: str
    operation_id: str
    """The handler's name in :mod:`campaigns.operators.api`."""
    summary: str
    role: str | None
    """None: open (health, the document)."""
    ok: dict[int, type[BaseModel] | None]
    errors: tuple[int, ...] = ()
    params: tuple[Param, ...] = ()
    body: type[BaseModel] | None = None
    consumes: tuple[str, ...] = (JSON,)
    produces: tuple[str, ...] = (JSON,)
    links: tuple[Link, ...] = ()
    idempotent: bool = True
    """POST with a body takes an Idempotency-Key (DELETE does not)."""
    ok_description: dict[int, str] = field(default_factory=dict)

    @property
    def takes_key(self) -> bool:
        return self.idempotent and self.method == "POST" and self.role == OPERATOR


# ---------------------------------------------------------------- parameters

CAMPAIGN_ID = Param(
    "campaign_id", "path", {"type": "string", "pattern": m.CAMPAIGN_ID_PATTERN}, "the campaign"
)
_TOKEN = {"type": "string", "pattern": m.TOKEN_PATTERN}
ATTEMPT_ID = Param("attempt_id", "path", _TOKEN, "the attempt (as in the report)")
EVENT_ID = Param("event_id", "path", _TOKEN, "the callback event")
IDEMPOTENCY_KEY = Param(
    "Idempotency-Key",
    "header",
    {"type": "string", "pattern": "^[!-~]{1,255}$"},
    "1-255 printable ASCII characters without spaces. The first 2xx answer is kept 24 h "
    "and given again (status and body, `Idempotent-Replayed: true`) to a request with the "
    "same key and the same body; another body is 409 `idempotency_key_reused`. A create "
    "without `campaign_id` takes its ID from the key.",
)
REQUEST_ID = Param(
    "X-Request-ID",
    "header",
    {"type": "string"},
    "echoed on the answer and logged when it is 1-200 printable ASCII characters "
    "without spaces; otherwise (or absent) one is made: never refused",
)
_BOOL = {"type": "string", "enum": ["true", "false"], "default": "false"}
_INSTANT = {"type": "string", "format": "date-time"}
LIST_PARAMS = (
    Param(
        "limit",
        "query",
        {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT, "default": DEFAULT_LIMIT},
    ),
    Param("cursor", "query", {"type": "string"}, "the previous page's `next_cursor`"),
    Param(
        "state",
        "query",
        {"type": "string", "pattern": "^(queued|running|paused|halted|completed|cancelled|,)*$"},
        "one state or several, comma-separated",
    ),
    Param("name", "query", {"type": "string", "maxLength": 200}, "name prefix"),
    Param("created_after", "query", _INSTANT, "RFC 3339 instant, exclusive"),
    Param("created_before", "query", _INSTANT, "RFC 3339 instant, exclusive"),
)

# ---------------------------------------------------------------- the table

_ERRORS = {
    401: "no token, or not a known one",
    403: "a viewer token on an operator endpoint",
    404: "no such campaign",
    406: "the Accept header refuses every media type this answers with",
    409: "the campaign is not in a state that allows this, or exists with another spec; "
    "or the Idempotency-Key was used with another request, or its first request still runs",
    413: "body too large",
    415: "the body is not of a media type this endpoint reads",
    422: "invalid input; `error.field` names the first field, `error.errors` every one; "
    "nothing was written",
    429: "over DISPATCHER_API_RATE_LIMIT requests a minute with this token",
    502: "the provider request failed",
    503: "Redis is not answering",
}
_ID = (CAMPAIGN_ID,)
_CHANGE = (403, 404, 409, 422)
_TO_CAMPAIGN = (
    Link("GetCampaign", "get_campaign"),
    Link("PauseCampaign", "pause"),
    Link("ResumeCampaign", "resume"),
    Link("CancelCampaign", "cancel"),
)
_SUBMITTED_LINKS = tuple(
    Link(link.name, link.operation_id, "$response.body#/campaign/campaign_id")
    for link in _TO_CAMPAIGN
)


def _change(verb: str, summary: str) -> Endpoint:
    return Endpoint(
        "POST",
        f"/v1/campaigns/{{campaign_id}}/{verb}",
        verb,
        summary,
        OPERATOR,
        {200: m.CampaignStatus},
        _CHANGE,
        _ID,
        links=_TO_CAMPAIGN,
        ok_description={200: "the status after the change"},
    )


ENDPOINTS: tuple[Endpoint, ...] = (
    Endpoint(
        "GET", "/healthz", "healthz", "`ok` while Redis answers (else 503)", None, {200: m.Health}
    ),
    Endpoint("GET", "/v1/openapi.json", "openapi", "This document", None, {200: None}),
    Endpoint(
        "GET", "/v1/whoami", "whoami", "The role of the presented token", VIEWER, {200: m.Whoami}
    ),
    Endpoint(
        "GET",
        "/v1/campaigns",
        "list_campaigns",
        "One page of campaigns' statuses, oldest first (ties by ID); follow `next_cursor` "
        "until it is null. A filtered page may hold fewer than `limit` (each page reads at "
        "most 2000 campaigns of the index)",
        VIEWER,
        {200: m.CampaignList},
        (422,),
        LIST_PARAMS,
    ),
    Endpoint(
        "POST",
        "/v1/campaigns",
        "submit",
        "Validate and submit a campaign; the same ID and spec again is a no-op (200). "
        "Without `campaign_id` the ID is derived from the Idempotency-Key; with neither: 422",
        OPERATOR,
        {201: m.Submitted, 200: m.Submitted},
        (403, 409, 413, 422),
        body=CampaignSpec,
        links=_SUBMITTED_LINKS,
        ok_description={201: "submitted", 200: "already submitted with this spec: nothing changed"},
    ),
    Endpoint(
        "GET",
        "/v1/campaigns/{campaign_id}",
        "get_campaign",
        "A campaign's status",
        VIEWER,
        {200: m.CampaignStatus},
        (404, 422),
        _ID,
    ),
    Endpoint(
        "PATCH",
        "/v1/campaigns/{campaign_id}",
        "patch_campaign",
        "Change the budget, pacing, schedule, calling window or name in one step against "
        "what the dispatcher claims with (a lower rate holds from the next request on), "
        "each change recorded in the history. Validated as at submit (every invalid field "
        "in one 422); `pacing` is merged over the current pacing; `schedule` and "
        "`calling_window` may be null (removed); a budget below spent + reserved is "
        "refused (422) naming both; over: 409",
        OPERATOR,
        {200: m.CampaignStatus},
        (403, 404, 409, 413, 422),
        _ID,
        body=m.CampaignChange,
        ok_description={200: "the status after the change"},
    ),
    Endpoint(
        "DELETE",
        "/v1/campaigns/{campaign_id}",
        "delete_campaign",
        "Delete a completed or cancelled campaign whose calls are all final: every key of "
        "it goes (export its report first)",
        OPERATOR,
        {200: m.Deleted},
        _CHANGE,
        _ID,
        idempotent=False,
    ),
    _change("pause", "Pause; answers once no create request can start"),
    _change("resume", "Resume a paused or halted campaign (re-checks the budget)"),
    _change("cancel", "Cancel for good; calls already placed still settle"),
    Endpoint(
        "GET",
        "/v1/campaigns/{campaign_id}/report",
        "get_report",
        "Without `limit` and `cursor`: every attempt, a JSON array (default) or CSV, "
        "streamed (the full export). With either: one JSON page of at most `limit` rows in "
        "report order and `next_cursor` (null: no row left now); a page reads only its own "
        "attempts",
        VIEWER,
        {200: m.Report},
        (404, 422),
        (
            CAMPAIGN_ID,
            Param("format", "query", {"type": "string", "enum": ["json", "csv"]}),
            Param(
                "limit",
                "query",
                {"type": "integer", "minimum": 1, "maximum": 1000},
                "rows a page (JSON only; 100 when only `cursor` is given)",
            ),
            Param("cursor", "query", {"type": "string"}, "the previous page's `next_cursor`"),
        ),
        produces=(JSON, CSV),
    ),
    Endpoint(
        "GET",
        "/v1/campaigns/{campaign_id}/outcomes",
        "get_outcomes",
        "How the calls ended: counts by final status, average billed seconds, settled spend "
        "per answered call; one pass over the campaign's attempts",
        VIEWER,
        {200: m.Outcomes},
        (404, 422),
        _ID,
    ),
    Endpoint(
        "GET",
        "/v1/campaigns/{campaign_id}/reconcile",
        "get_reconcile",
        "Settled total beside the provider's usage for the campaign's window",
        VIEWER,
        {200: m.ReconcileAnswer},
        (404, 422, 502),
        _ID,
    ),
    Endpoint(
        "GET",
        "/v1/campaigns/{campaign_id}/history",
        "get_history",
        "Every operator action on the campaign, oldest first (the newest 1000)",
        VIEWER,
        {200: m.History},
        (404, 422),
        (CAMPAIGN_ID, Param("limit", "query", {"type": "integer", "minimum": 1, "maximum": 1000})),
    ),
    Endpoint(
        "POST",
        "/v1/campaigns/{campaign_id}/contacts",
        "add_contacts",
        "Add contacts to a campaign that is not over (queued, running, paused, halted): "
        "checked as at submit (every invalid one in one 422, nothing added), numbers the "
        "campaign has dropped and counted; the do-not-call and suppress lists apply as for "
        "submitted contacts; over: 409. A body of `text/csv` is the contacts CSV of "
        "docs/spec.md",
        OPERATOR,
        {200: m.ContactsAdded},
        (403, 404, 409, 413, 422),
        _ID,
        body=m.AddContacts,
        consumes=(JSON, CSV),
    ),
    Endpoint(
        "GET",
        "/v1/campaigns/{campaign_id}/contacts",
        "get_contacts",
        "The contacts of one outcome, as the contacts CSV `campaigns submit --contacts` "
        "reads (or a spec's contacts array)",
        VIEWER,
        {200: m.ContactList},
        (404, 422),
        (
            CAMPAIGN_ID,
            Param(
                "status",
                "query",
                {"type": "string", "enum": [str(o) for o in LISTED_OUTCOMES]},
                required=True,
            ),
            Param("format", "query", {"type": "string", "enum": ["csv", "json"], "default": "csv"}),
        ),
        produces=(CSV, JSON),
    ),
    Endpoint(
        "GET",
        "/v1/campaigns/{campaign_id}/callbacks",
        "campaign_callbacks",
        "The campaign's failed callback events and newest delivery results",
        VIEWER,
        {200: m.CallbackLog},
        (404, 422),
        (CAMPAIGN_ID, Param("failed", "query", _BOOL, "only the failed events")),
    ),
    Endpoint(
        "POST",
        "/v1/campaigns/{campaign_id}/callbacks/{event_id}/replay",
        "replay_callback",
        "Send a failed callback event again, under the same event ID",
        OPERATOR,
        {200: m.CallbackReplayed},
        (403, 404, 422),
        (CAMPAIGN_ID, EVENT_ID),
    ),
    Endpoint(
        "POST",
        "/v1/estimate",
        "post_estimate",
        "Worst-case cost of a spec (nothing is written)",
        VIEWER,
        {200: m.EstimateAnswer},
        (413, 422),
        body=CampaignSpec,
    ),
    Endpoint(
        "GET",
        "/v1/dead-letters",
        "dead_letters",
        "Jobs and events that could not be applied, newest first",
        VIEWER,
        {200: m.DeadLetters},
        (422,),
        (
            Param(
                "limit",
                "query",
                {"type": "integer", "minimum": 1, "maximum": 10_000, "default": 20},
            ),
        ),
    ),
    Endpoint(
        "POST",
        "/v1/attempts/{attempt_id}/resolve",
        "resolve",
        "Settle an attempt in doubt: the call found, or no call at all",
        OPERATOR,
        {200: m.Resolved},
        _CHANGE,
        (ATTEMPT_ID,),
        body=m.Resolve,
    ),
    Endpoint(
        "GET",
        "/v1/dnc",
        "dnc_count",
        "How many numbers the do-not-call list holds",
        VIEWER,
        {200: m.DncCount},
    ),
    Endpoint(
        "POST",
        "/v1/dnc/add",
        "dnc_add",
        "Add numbers to the do-not-call list, all or none; once answered, no claim picks them",
        OPERATOR,
        {200: m.DncAdded},
        (403, 413, 422),
        body=m.DncNumbersStrict,
    ),
    Endpoint(
        "POST",
        "/v1/dnc/remove",
        "dnc_remove",
        "Remove numbers from the do-not-call list, all or none",
        OPERATOR,
        {200: m.DncRemoved},
        (403, 413, 422),
        body=m.DncNumbers,
    ),
    Endpoint(
        "POST",
        "/v1/dnc/import",
        "dnc_import",
        "Import a CSV (a `number` or `to` column): every row is checked before any is "
        "merged; one bad row and nothing is added",
        OPERATOR,
        {200: m.DncImported},
        (403, 413, 422),
        (Param("strict", "query", _BOOL, "refuse anything that is not already E.164"),),
        body=m.DncCsv,
        consumes=(CSV, "text/plain", "application/octet-stream"),
    ),
    Endpoint(
        "GET",
        "/v1/dnc/{number}",
        "dnc_check",
        "Whether a number (E.164, `+` as `%2B` or literal) is on the do-not-call list",
        VIEWER,
        {200: m.DncCheck},
        (422,),
        (Param("number", "path", m.E164_SCHEMA),),
    ),
)
"""Every operation of the API (the live page's files are not part of it). Literal
paths come before a parameter's (``/v1/dnc/add`` before ``/v1/dnc/{number}``): the
router's 405 then names the literal path's methods in ``Allow``."""

assert MAX_NUMBERS == m.MAX_NUMBERS


def _content(model: type[BaseModel], media: tuple[str, ...]) -> dict[str, Any]:
    """A body's content: JSON by the model; CSV (or other text) as a string."""
    content: dict[str, Any] = {}
    for kind in media:
        if kind == JSON:
            content[kind] = {"schema": {"$ref": _REF.format(model=model.__name__)}}
        else:
            content[kind] = {"schema": {"type": "string", "description": "CSV text"}}
    return content


def _operation(endpoint: Endpoint) -> dict[str, Any]:
    responses: dict[str, Any] = {}
    for status, model in endpoint.ok.items():
        described = endpoint.ok_description.get(status) or (
            (model.__doc__ or "").strip().split("\n")[0] if model is not None else ""
        )
        answer: dict[str, Any] = {"description": described or "the answer"}
        if model is not None:
            answer["content"] = _content(model, endpoint.produces)
        else:
            answer["content"] = {JSON: {"schema": {"type": "object"}}}
        if status == 201:
            answer["headers"] = {
                "Location": {"schema": {"type": "string"}, "description": "the campaign's URL"}
            }
        if endpoint.links:
            answer["links"] = {
                link.name: {
                    "operationId": link.operation_id,
                    "parameters": {"campaign_id": link.campaign_id},
                }
                for link in endpoint.links
            }
        responses[str(status)] = answer
    statuses = list(endpoint.errors)
    if endpoint.role is not None:
        statuses += [401, 406, 429, 503]
        if endpoint.body is not None or endpoint.takes_key:
            statuses += [415]
        if endpoint.takes_key:
            statuses += [409]
    for status in sorted(set(statuses)):
        answer = {
            "description": _ERRORS[status],
            "content": {JSON: {"schema": {"$ref": _REF.format(model="ErrorAnswer")}}},
        }
        if status == 429:
            answer["headers"] = {
                "Retry-After": {"schema": {"type": "integer"}, "description": "seconds"}
            }
        responses[str(status)] = answer
    params = [p.to_openapi() for p in endpoint.params]
    if endpoint.role is not None:
        params.append(REQUEST_ID.to_openapi())
    if endpoint.takes_key:
        params.append(IDEMPOTENCY_KEY.to_openapi())
    operation: dict[str, Any] = {
        "operationId": endpoint.operation_id,
        "summary": endpoint.summary,
        "parameters": params,
        "responses": responses,
    }
    if endpoint.role is not None:
        operation["description"] = (
            f"Role: `{endpoint.role}` (an `operator` token can do anything a `viewer` can)."
        )
        operation["security"] = [{"bearer": []}]
    if endpoint.body is not None:
        operation["requestBody"] = {
            "required": True,
            "content": _content(endpoint.body, endpoint.consumes),
        }
    return operation


def _models() -> list[type[BaseModel]]:
    found: dict[str, type[BaseModel]] = {"ErrorAnswer": m.ErrorAnswer, "Contact": Contact}
    for endpoint in ENDPOINTS:
        for model in (*endpoint.ok.values(), endpoint.body):
            if model is not None:
                found[model.__name__] = model
    return list(found.values())


SPEC_EXAMPLE: dict[str, Any] = {
    "name": "Spring renewals",
    "caller_id": "+15551230001",
    "currency": "EUR",
    "budget": "50.00",
    "rate": {"per_minute": "0.01", "increments": "60/60"},
    "max_call_seconds": 120,
    "contacts": [{"to": "+15551240001", "ref": "cust_1"}, {"to": "+15551240002"}],
}
"""A spec the server accepts (a test submits it): the document's example. Without
``campaign_id``: each create with a new Idempotency-Key makes a new campaign."""


_SPEC_RULES = (
    "A campaign spec (docs/spec.md). Rules across fields, checked by the server (422 "
    "naming the field, every one in one answer): exactly one of `budget` (decimal "
    "string) or `budget_micros`; in `rate`, exactly one of `preset`, `per_minute`, "
    "`per_minute_micros` or `per_second`; `caller_id` and each contact's `to` a "
    "possible E.164 number (national numbers with `default_region`); `currency` ISO "
    "4217; `campaign_id` 1-64 of letters, digits, `_.-` (or none: derived from the "
    "Idempotency-Key)."
)


def openapi() -> dict[str, Any]:
    """The OpenAPI 3.1 document of this API (served at ``/v1/openapi.json``)."""
    models = _models()
    _, top = models_json_schema(
        [(model, "validation" if _is_body(model) else "serialization") for model in models],
        ref_template=_REF,
    )
    schemas: dict[str, Any] = dict(top.get("$defs", {}))
    schemas["CampaignSpec"]["examples"] = [SPEC_EXAMPLE]
    schemas["CampaignSpec"]["description"] = _SPEC_RULES
    paths: dict[str, Any] = {}
    for endpoint in ENDPOINTS:
        paths.setdefault(endpoint.path, {})[endpoint.method.lower()] = _operation(endpoint)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Campaign dispatcher API",
            "version": "1",
            "description": "Submit and steer call campaigns. Money is integer micros or "
            "decimal strings, never JSON numbers with a fraction. Generated from the "
            "route table and models of campaigns/operators/api_schema.py and "
            "api_models.py; see docs/api.md.",
        },
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
    }


def _is_body(model: type[BaseModel]) -> bool:
    return any(endpoint.body is model for endpoint in ENDPOINTS) or model is Contact
