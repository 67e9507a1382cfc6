"""Fuzzing duplicate JSON keys at every reader: spec texts, jobs, webhooks, provider answers.

A JSON document is generated as a tree whose objects are lists of pairs, so one
object anywhere in it can name one of its keys a second time (with the same
value or another). Every reader must refuse such a document naming a
duplicated key, and read a document without one exactly as ``json.loads``:

- ``strict_json``: :class:`DuplicateKeyError` naming the key;
- ``parse_spec`` (API body, Python API) and ``load_spec`` (CLI file): SpecError
  naming the key, whatever else is wrong with the spec;
- ``parse_job`` (the queue): JobEnvelopeError naming it;
- the ingress's parse (webhooks): the 400 reason names it;
- a provider answer through ``_http.request``: ``invalid_response`` with its real status.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from campaigns.domain.errors import INVALID_RESPONSE, ProviderError
from campaigns.domain.inputs import DuplicateKeyError, strict_json
from campaigns.domain.spec import SpecError, load_spec, parse_spec
from campaigns.operators.ingress import _parse
from campaigns.providers._http import request
from campaigns.queue import JobEnvelopeError, parse_job
from tests.conftest import spec_dict
from tests.fuzz.conftest import FUZZ_PROFILE

PROFILE = settings.get_profile(FUZZ_PROFILE)

Pairs = list[tuple[str, Any]]
"""An object as pairs: its keys unique until one is duplicated."""

_keys = st.text(st.characters(codec="utf-8", exclude_categories=["Cs"]), max_size=8)
_scalars = st.none() | st.booleans() | st.integers(-(10**6), 10**6) | st.text(max_size=8)


def _objects(children: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    pairs = st.dictionaries(_keys, children, max_size=4).map(lambda d: _Obj(list(d.items())))
    return pairs | st.lists(children, max_size=4)


class _Obj:
    """A JSON object written pair by pair (json.dumps of a dict cannot repeat a key)."""

    def __init__(self, pairs: Pairs) -> None:
        self.pairs = pairs


_trees = st.recursive(_scalars, _objects, max_leaves=20)


def _encode(value: Any) -> str:
    if isinstance(value, _Obj):
        return "{" + ",".join(f"{json.dumps(k)}:{_encode(v)}" for k, v in value.pairs) + "}"
    if isinstance(value, list):
        return "[" + ",".join(_encode(v) for v in value) + "]"
    return json.dumps(value)


def _objects_in(value: Any) -> list[_Obj]:
    found: list[_Obj] = []
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, _Obj):
            found.append(item)
            stack.extend(v for _, v in item.pairs)
        elif isinstance(item, list):
            stack.extend(item)
    return found


@st.composite
def _with_duplicate(draw: st.DrawFn, root: Any = None) -> tuple[str, str]:
    """A document (``root`` or a drawn tree) with one key of one object given twice."""
    tree = root if root is not None else _Obj([("k", draw(_trees))])
    candidates = [o for o in _objects_in(tree) if o.pairs]
    target = draw(st.sampled_from(candidates))
    key, value = draw(st.sampled_from(target.pairs))
    again = draw(st.just(value) | _scalars)
    at = draw(st.integers(0, len(target.pairs)))
    target.pairs.insert(at, (key, again))
    return _encode(tree), key


def _as_tree(value: Any) -> Any:
    if isinstance(value, dict):
        return _Obj([(k, _as_tree(v)) for k, v in value.items()])
    if isinstance(value, list):
        return [_as_tree(v) for v in value]
    return value


@PROFILE
@given(_with_duplicate())
def test_strict_json_names_the_duplicated_key(case: tuple[str, str]) -> None:
    text, key = case
    with pytest.raises(DuplicateKeyError) as info:
        strict_json(text)
    assert info.value.key == key


@PROFILE
@given(_trees)
def test_without_a_duplicate_strict_json_reads_as_json_loads(tree: Any) -> None:
    text = _encode(tree)
    assert strict_json(text) == json.loads(text)


@PROFILE
@given(data=st.data())
def test_a_spec_with_a_duplicate_key_anywhere_is_refused_naming_it(
    data: st.DataObject, tmp_path_factory: pytest.TempPathFactory
) -> None:
    text, key = data.draw(_with_duplicate(_as_tree(spec_dict("fuzzdup", contacts=3))))
    with pytest.raises(SpecError) as info:
        parse_spec(text)
    assert f"duplicate key {key!r}"[:40] in str(info.value)
    path = Path(tmp_path_factory.mktemp("dup")) / "spec.json"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(SpecError) as from_file:
        load_spec(path)
    assert str(from_file.value) == str(info.value), "the file and text roads agree"


@PROFILE
@given(st.data())
def test_a_job_with_a_duplicate_key_is_not_a_job(data: st.DataObject) -> None:
    envelope = {
        "t": 1,
        "f": "record_call_event",
        "a": [data.draw(st.dictionaries(_keys, _trees.map(_plain), max_size=3))],
        "k": {},
        "et": 1,
    }
    text, _ = data.draw(_with_duplicate(_as_tree(envelope)))
    with pytest.raises(JobEnvelopeError, match="duplicate key"):
        parse_job(text.encode())


@PROFILE
@given(st.data())
def test_a_webhook_with_a_duplicate_key_is_refused_naming_it(data: st.DataObject) -> None:
    event = {
        "event": "call.completed",
        "call": {"id": "call_1", "status": "completed", "billsec_seconds": 5},
    }
    text, _ = data.draw(_with_duplicate(_as_tree(event)))
    reason = _parse(text.encode())
    assert isinstance(reason, str) and "duplicate key" in reason, reason


@PROFILE
@given(st.data(), st.sampled_from([200, 201, 202]))
async def test_a_provider_answer_with_a_duplicate_key_is_an_invalid_response(
    data: st.DataObject, status: int
) -> None:
    call = {
        "id": "call_1",
        "status": "queued",
        "cost_amount": None,
        "variables": {"attempt_id": "a"},
    }
    duplicate = data.draw(st.booleans())
    if duplicate:
        text, _ = data.draw(_with_duplicate(_as_tree(call)))
    else:
        text = json.dumps(call)

    def answer(_: httpx.Request) -> httpx.Response:
        return httpx.Response(status, content=text.encode())

    async with httpx.AsyncClient(transport=httpx.MockTransport(answer)) as client:
        if not duplicate:
            assert await request(client, "POST", "http://p.test/v1/calls") == call
            return
        with pytest.raises(ProviderError) as info:
            await request(client, "POST", "http://p.test/v1/calls")
    assert (info.value.status, info.value.code) == (status, INVALID_RESPONSE)
    assert "duplicate key" in info.value.message


def _plain(value: Any) -> Any:
    """A generated tree as plain JSON values (no duplicates)."""
    if isinstance(value, _Obj):
        return {k: _plain(v) for k, v in value.pairs}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


_answers = st.one_of(
    st.binary(max_size=200),
    _trees.map(_encode).map(str.encode),
    _with_duplicate().map(lambda case: case[0].encode()),
)


@PROFILE
@given(body=_answers, status=st.integers(200, 599))
async def test_any_provider_answer_is_json_or_a_provider_error_with_its_status(
    body: bytes, status: int
) -> None:
    """Whatever a provider sends, ``request`` returns strict JSON or raises
    ProviderError carrying the answer's real status; nothing else escapes."""

    def answer(_: httpx.Request) -> httpx.Response:
        return httpx.Response(status, content=body, headers={"Location": "http://x.test/?t=s"})

    async with httpx.AsyncClient(transport=httpx.MockTransport(answer)) as client:
        try:
            payload = await request(client, "POST", "http://p.test/v1/calls")
        except ProviderError as exc:
            assert exc.status == status
            if 300 <= status < 400:
                assert exc.code == "provider_redirect" and "t=s" not in exc.message
            elif status < 300:
                assert exc.code == INVALID_RESPONSE
            return
    assert status < 300
    assert payload == strict_json(body)
