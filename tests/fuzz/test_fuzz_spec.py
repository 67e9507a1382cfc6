"""Fuzzing campaign specs: hostile values anywhere give a SpecError naming the field, or
a spec every later step can use.

A valid spec (the one the integration tests submit) has one to three of its fields
replaced, removed or added, with values drawn from generic hostile JSON (wrong types,
huge and non-finite numbers, lone surrogates, control characters, deep nesting) and
from near-misses of what each field expects (money with exponents and other scripts'
digits, IDs with a trailing newline, numbers with letters). Then:

- ``parse_spec`` returns a spec or raises :class:`SpecError`, nothing else;
- the error names a field the mutation touched (or one that depends on it), on one
  printable line, as the CLI prints it;
- a spec that passes is usable: IDs and currency fullmatch, money is an exact
  integer within the micros ceiling (checked against ``Decimal`` with traps on),
  the worst case of one call is too, the estimate runs, the spec is valid UTF-8 JSON
  and normalising it again changes nothing;
- the dict, JSON-text and file roads agree;
- at the real CLI, ``estimate`` and ``submit`` exit 0 or 2 with one line, write
  nothing on 2, and never print the API key.
"""

from __future__ import annotations

import itertools
import json
import math
import re
import subprocess
from decimal import Context, Decimal, Inexact, Rounded
from typing import Any

import httpx
import redis as redis_sync
from hypothesis import example, given, settings
from hypothesis import strategies as st

from campaigns.domain.money import MAX_MICROS, MICROS_PER_UNIT
from campaigns.domain.spec import CampaignSpec, SpecError, load_spec, parse_spec
from campaigns.operators.estimate import estimate
from campaigns.settings import Settings
from tests.conftest import API_KEY, spec_dict
from tests.fuzz.conftest import FUZZ_PROFILE
from tests.support import CAMPAIGNS_BIN, ROOT, worker_env

PROFILE = settings.get_profile(FUZZ_PROFILE)
CLI_PROFILE = settings(PROFILE, max_examples=max(6, PROFILE.max_examples // 10))
"""Each CLI example starts two processes: a tenth as many examples (at least 6)."""

_EXACT = Context(prec=200, Emin=-999, Emax=999, traps=[Inexact, Rounded])
DELETE = object()
"""A mutation that removes the key."""
DEPTH = 300
"""Deeper nesting is covered in the unit tests: past ~900 levels the CLI process (a
deeper stack) refuses the file as "nested too deeply" where pytest still parses it,
and hypothesis cannot print the example."""

# --- strategies -------------------------------------------------------------------

_odd_chars = st.sampled_from(
    [
        "\n",
        "\r",
        "\t",
        "\x00",
        "\x1b",
        "\x7f",
        "\u0085",
        "\u2028",
        "\u202e",
        "\ufeff",
        "\u200b",
        "\ud800",
        "\udfff",
        "\u0665",
        "\uff11",
        "[",
        "]",
        "/",
        ":",
        "=",
        "+",
        "-",
        "@",
        '"',
        "\\",
        ",",
        ".",
        "_",
        "e",
        " ",
    ]
)
hostile_text = st.one_of(
    st.text(max_size=30),
    st.text(st.one_of(_odd_chars, st.characters()), max_size=30),
    st.text(st.characters(categories=["Cs", "Cc", "Cf", "Zl", "Zp", "Nd"]), max_size=10),
    st.builds(lambda c, n: c * n, st.sampled_from(["x", "9", "\u00e9", "+"]), st.integers(0, 3000)),
)
money_text = st.one_of(
    st.from_regex(r"-?[0-9]{0,20}(\.[0-9]{0,12})?([eE][-+]?[0-9]{1,12})?", fullmatch=True),
    st.sampled_from(
        [
            "5.9999999999999999999999999999999",
            "1e-999999999",
            "1e999999",
            "\u0665",
            "1_000",
            "9007199254.740991",
            "9007199254.740992",
            "NaN",
            "-Infinity",
            " 1",
            "1\n",
            "+1",
            ".5",
            "5.",
            "0x10",
            "0.0000001",
        ]
    ),
    st.builds(lambda d, p: f"{d}.{p}", st.integers(0, 10**17), st.integers(0, 10**7)),
)
id_text = st.one_of(
    st.from_regex(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,70}", fullmatch=True),
    st.builds(lambda a, b: a + b, st.sampled_from(["abc", "x" * 64]), st.text(_odd_chars)),
)
phone_text = st.one_of(
    st.from_regex(r"\+?[0-9 ()\-.]{0,25}", fullmatch=True),
    st.builds(lambda a, b: a + b, st.just("+1555123"), st.text(_odd_chars, max_size=6)),
    st.builds(lambda d: "+" + d * 300, st.just("1")),
)
increments_text = st.one_of(
    st.from_regex(r"\s*[0-9\u0660-\u0669]{0,8}\s*/?\s*[0-9]{0,8}\s*", fullmatch=True),
    st.sampled_from(["60/60\n", "0/1", "1/0", "999999/999999", "1000000/1", "9" * 5000 + "/1"]),
)
huge_ints = st.one_of(
    st.integers(),
    st.sampled_from([MAX_MICROS, MAX_MICROS + 1, -1, 2**63, 2**64, 10**400, 0, 1, 86_400, 86_401]),
)
scalars = st.one_of(
    st.none(),
    st.booleans(),
    huge_ints,
    st.floats(allow_nan=True, allow_infinity=True),
    hostile_text,
)
json_values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(hostile_text, inner, max_size=3)
    ),
    max_leaves=6,
)


def deep(value: Any, depth: int) -> Any:
    for _ in range(depth):
        value = [value]
    return value


anything = st.one_of(
    json_values,
    st.builds(deep, scalars, st.integers(50, DEPTH)),
    st.just(DELETE),
)

FIELD_VALUES: dict[str, st.SearchStrategy[Any]] = {
    "campaign_id": id_text,
    "name": hostile_text,
    "caller_id": phone_text,
    "currency": st.one_of(st.from_regex(r"[A-Za-z]{2,4}\n?", fullmatch=True), hostile_text),
    "budget": money_text,
    "budget_micros": huge_ints,
    "max_call_seconds": huge_ints,
    "strict_numbers": st.booleans(),
    "rate.preset": st.sampled_from(["pstn_outgoing", "vn", "tts", "gold", "vn\n"]),
    "rate.per_minute": money_text,
    "rate.per_minute_micros": huge_ints,
    "rate.per_second": money_text,
    "rate.increments": increments_text,
    "rate.connect_fee": money_text,
    "rate.connect_fee_micros": huge_ints,
    "pacing.calls_per_second": st.one_of(st.floats(), huge_ints),
    "pacing.batch_size": huge_ints,
    "pacing.max_in_flight": huge_ints,
    "alerts.thresholds_percent": st.lists(huge_ints, max_size=4),
    "alerts.webhook_url": st.one_of(
        hostile_text,
        st.builds(
            lambda s, t: s + t, st.sampled_from(["http://", "https://x", "ftp://"]), hostile_text
        ),
    ),
    "contacts.0.to": phone_text,
    "contacts.1.ref": st.one_of(hostile_text, st.text(min_size=195, max_size=205)),
    "contacts.0.variables": st.dictionaries(hostile_text, scalars, max_size=4),
    "contacts.1.variables.x": scalars,
    "contacts.2": json_values,
    "contacts": st.one_of(st.lists(json_values, max_size=3), json_values),
    "rate": json_values,
    "pacing": json_values,
    "alerts": json_values,
}
paths = st.one_of(st.sampled_from(sorted(FIELD_VALUES)), hostile_text.map(lambda k: f"extra:{k}"))


@st.composite
def mutation(draw: st.DrawFn) -> tuple[str, Any]:
    path = draw(paths)
    if path.startswith("extra:"):
        return path, draw(json_values)
    return path, draw(st.one_of(FIELD_VALUES[path], anything))


@st.composite
def hostile_specs(draw: st.DrawFn) -> tuple[dict[str, Any], list[str]]:
    """A valid spec with 1-3 mutations; returns it and the top-level keys touched."""
    data = spec_dict(f"fz{draw(st.integers(0, 10**6))}", contacts=3)
    touched: list[str] = []
    for path, value in draw(st.lists(mutation(), min_size=1, max_size=3)):
        if path.startswith("extra:"):
            key = path.removeprefix("extra:")
            touched.append(key)
            data[key] = value
            continue
        touched.append(path.split(".")[0])
        apply(data, path.split("."), value)
    return data, touched


def _child(node: Any, part: str) -> Any:
    if isinstance(node, dict):
        return node.setdefault(part, {})
    if isinstance(node, list) and part.isdigit() and int(part) < len(node):
        return node[int(part)]
    return None


def apply(data: Any, parts: list[str], value: Any) -> None:
    """Set (or delete) a dotted path, making missing objects on the way; a path
    through a value that is neither an object nor a list is skipped."""
    node = data
    *walk, last = parts
    for part in walk:
        node = _child(node, part)
    key: Any
    if isinstance(node, dict):
        key = last
    elif isinstance(node, list) and last.isdigit() and int(last) < len(node):
        key = int(last)
    else:
        return
    if value is DELETE:
        if isinstance(node, dict):
            node.pop(key, None)
        else:
            del node[key]
    else:
        node[key] = value


# --- the contract ------------------------------------------------------------------

RELATED = {
    "budget": {"budget_micros"},
    "budget_micros": {"budget"},
    "max_call_seconds": {"rate"},
    "strict_numbers": {"caller_id", "contacts"},
}


def shown_key(key: str) -> str:
    """How an error shows a key: escaped if unprintable, ``''`` if empty."""
    return (key if key.isprintable() else repr(key)[1:-1]) or "''"


def names(field: str, key: str) -> bool:
    shown = shown_key(key)
    if len(shown) > 40:  # long keys are cut short in messages
        return field.startswith(shown[:40])
    return field == shown or field.startswith((shown + ".", shown + "["))


def check_error(err: SpecError, touched: list[str]) -> None:
    """One printable line, naming a field the mutation touched."""
    text = str(err)
    assert text.isprintable(), repr(text)
    assert err.field, text
    allowed = set(touched)
    for key in touched:
        allowed |= RELATED.get(key, set())
    assert any(names(err.field, key) for key in allowed), (err.field, touched, text)


def exact(text: str) -> int:
    scaled = _EXACT.multiply(_EXACT.create_decimal(text), Decimal(MICROS_PER_UNIT))
    assert scaled == scaled.to_integral_value(), text
    return int(scaled)


def check_usable(spec: CampaignSpec) -> None:
    """What a valid spec promises to the store, the dispatcher and the report."""
    assert re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}", spec.campaign_id, re.ASCII)
    assert re.fullmatch(r"[A-Z]{3}", spec.currency, re.ASCII)
    budget = spec.budget_in_micros
    assert 0 <= budget <= MAX_MICROS
    if spec.budget is not None:
        assert budget == exact(spec.budget), "a budget is exact, never rounded"
    rate = spec.rate_model()
    for name in ("per_minute", "connect_fee"):
        given_text = getattr(spec.rate, name)
        if given_text is not None:
            assert exact(given_text) <= MAX_MICROS
    if spec.rate.per_second is not None:
        assert rate.per_minute_micros == exact(spec.rate.per_second) * 60
    assert 0 <= spec.worst_case_call_micros() <= MAX_MICROS
    assert 1 / spec.pacing.calls_per_second <= 1000, "the dispatcher sleeps this long"
    est = estimate(spec)
    assert est.worst_case_per_call_micros == spec.worst_case_call_micros()
    assert est.calls_within_budget <= est.contacts == len(spec.contacts)
    if spec.alerts.webhook_url is not None:  # what the alert job will POST to
        url = httpx.URL(spec.alerts.webhook_url)
        assert url.scheme in ("http", "https") and url.host
    dumped = spec.model_dump(mode="json")
    json.dumps(dumped, ensure_ascii=False).encode("utf-8")  # valid Unicode throughout
    for contact in spec.contacts:
        assert re.fullmatch(r"\+[0-9]{2,15}", contact.to), contact.to
        assert len(contact.ref) <= 200
        for value in contact.variables.values():
            if isinstance(value, int):
                assert abs(value) <= MAX_MICROS
    assert parse_spec(dumped).fingerprint() == spec.fingerprint(), "normalising is idempotent"


def outcome(data: Any) -> CampaignSpec | SpecError:
    try:
        return parse_spec(data)
    except SpecError as exc:
        return exc


@settings(PROFILE)
@given(hostile_specs())
@example(({**spec_dict("abc\n")}, ["campaign_id"]))
@example(({**spec_dict("x"), "budget": "5.9999999999999999999999999999999"}, ["budget"]))
@example(({**spec_dict("x"), "budget": "\u0665"}, ["budget"]))
@example(({**spec_dict("x"), "rate": {"per_second": "9007199254.740991"}}, ["rate"]))
@example(({**spec_dict("x"), "name": "\ud800"}, ["name"]))
@example(({**spec_dict("x"), "evil\nkey": 1}, ["evil\nkey"]))
def test_spec_is_valid_or_refused_naming_the_field(case: tuple[dict[str, Any], list[str]]) -> None:
    data, touched = case
    result = outcome(data)
    if isinstance(result, SpecError):
        check_error(result, touched)
    else:
        check_usable(result)


def _not_strict_json(text: str) -> bool:
    """Whether ``text`` holds a NaN or an Infinity (Python's json writes and reads them)."""

    def refuse(constant: str) -> Any:
        raise ValueError(constant)

    try:
        json.loads(text, parse_constant=refuse)
    except ValueError:
        return True
    return False


def _json_text(data: Any) -> str | None:
    try:
        return json.dumps(data)
    except (ValueError, RecursionError):  # an int past 4300 digits, nesting past the stack
        return None


@settings(PROFILE)
@given(hostile_specs())
def test_dict_json_text_and_file_roads_agree(
    tmp_path_factory: Any, case: tuple[dict[str, Any], list[str]]
) -> None:
    """The Python API, a service's JSON text and the CLI's file give one verdict."""
    data, _ = case
    text = _json_text(data)
    if text is None:
        return
    by_dict = outcome(json.loads(text))
    by_text = outcome(text)
    path = tmp_path_factory.mktemp("spec") / "spec.json"
    path.write_text(text, encoding="utf-8")
    try:
        by_file: CampaignSpec | SpecError = load_spec(path)
    except SpecError as exc:
        by_file = exc
    verdicts = [isinstance(r, SpecError) for r in (by_dict, by_text, by_file)]
    assert len(set(verdicts)) == 1, (by_dict, by_text, by_file)
    if isinstance(by_dict, CampaignSpec):
        assert isinstance(by_text, CampaignSpec) and isinstance(by_file, CampaignSpec)
        # Without a campaign_id each road generates its own; the rest must agree.
        same = [s.model_copy(update={"campaign_id": "x"}) for s in (by_dict, by_text, by_file)]
        assert len({s.fingerprint() for s in same}) == 1


@st.composite
def spec_bytes(draw: st.DrawFn) -> bytes:
    """A valid spec file's bytes with bytes replaced, inserted or cut, or just noise."""
    if draw(st.booleans()):
        return draw(st.binary(max_size=200))
    raw = bytearray(json.dumps(spec_dict("fb", contacts=2)).encode())
    if draw(st.booleans()):
        raw = bytearray(b"\xef\xbb\xbf") + raw
    for _ in range(draw(st.integers(1, 4))):
        at = draw(st.integers(0, len(raw)))
        kind = draw(st.sampled_from(["replace", "insert", "cut"]))
        chunk = draw(st.binary(min_size=1, max_size=4))
        if kind == "replace":
            raw[at : at + len(chunk)] = chunk
        elif kind == "insert":
            raw[at:at] = chunk
        else:
            del raw[at : at + len(chunk)]
    return bytes(raw)


@settings(PROFILE)
@given(spec_bytes())
def test_spec_file_bytes_are_a_spec_or_an_error_naming_the_file(
    tmp_path_factory: Any, raw: bytes
) -> None:
    path = tmp_path_factory.mktemp("bytes") / "spec.json"
    path.write_bytes(raw)
    try:
        spec = load_spec(path)
    except SpecError as exc:
        assert str(exc).isprintable(), repr(str(exc))
        assert exc.field, str(exc)
        return
    check_usable(spec)


# --- the real CLI ----------------------------------------------------------------------

_unique = itertools.count()


def _dbsize(url: str) -> int:
    with redis_sync.Redis.from_url(url) as r:
        return int(r.dbsize())


@CLI_PROFILE
@given(hostile_specs())
@example(({**spec_dict("abc\n")}, ["campaign_id"]))
@example(({**spec_dict("x"), "rate": {"per_second": "9007199254.740991"}}, ["rate"]))
@example(({**spec_dict("x"), "": math.inf}, [""]))
def test_cli_estimate_and_submit_exit_0_or_2_with_one_line(
    settings: Settings, tmp_path_factory: Any, case: tuple[dict[str, Any], list[str]]
) -> None:
    data, touched = case
    if data.get("campaign_id") == spec_dict()["campaign_id"] or "campaign_id" not in touched:
        data["campaign_id"] = f"cli{next(_unique)}"  # a fresh campaign per example
    text = _json_text(data)
    if text is None:
        return
    path = tmp_path_factory.mktemp("cli") / "spec.json"
    path.write_text(text, encoding="utf-8")
    verdict = outcome(json.loads(text))
    # json.dumps writes NaN and Infinity, which JSON does not have: the CLI refuses
    # such a file as not JSON before any field is read.
    not_json = _not_strict_json(text)
    for command in ("estimate", "submit"):
        before = _dbsize(settings.redis_url)
        out = subprocess.run(
            [CAMPAIGNS_BIN, command, str(path)],
            env=worker_env(settings),
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert API_KEY not in out.stdout + out.stderr
        assert "Traceback" not in out.stderr, out.stderr
        if isinstance(verdict, SpecError):
            assert out.returncode == 2, (command, out.stdout, out.stderr)
            lines = out.stderr.strip().splitlines()
            assert len(lines) == 1, out.stderr
            assert ("not valid JSON" if not_json else verdict.field) in lines[0]
            assert _dbsize(settings.redis_url) == before, "nothing written on exit 2"
        elif out.returncode == 2:  # a hypothesis-made ID met again, with another spec
            assert command == "submit" and "different spec" in out.stderr, out.stderr
            assert _dbsize(settings.redis_url) == before
        else:
            assert out.returncode == 0, (command, out.stdout, out.stderr)
