"""The campaign spec: what another service or an operator submits.

Validation happens here (and, for a contacts CSV, row by row in
:mod:`campaigns.domain.contacts`, with the same rules) before anything is
visible. Numbers
must be E.164 numbers that ``phonenumbers`` finds *possible* (strict validity
is opt-in: the seeds' fictional +1555 numbers are possible but not valid).
Money is a decimal string, or integer micros in a ``*_micros`` field; a JSON
float for money is refused, and so is a rate whose worst case (price times max
call length + connect fee) passes the micros ceiling. Every error is a
:class:`SpecError` naming the field, so the CLI exits 2 with one line and
nothing is written: input is hostile until proven otherwise (anchored regexes
use ``fullmatch``, since ``$`` lets a trailing newline through; text must be
valid Unicode; files must be UTF-8).
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Annotated, Any, Self, TypeGuard

import httpx
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    field_validator,
    model_validator,
)

from campaigns.domain.inputs import DuplicateKeyError, SpecError, strict_json
from campaigns.domain.inputs import decode_utf8 as _decode_utf8
from campaigns.domain.inputs import show as _show
from campaigns.domain.money import MAX_MICROS, MoneyError, parse_micros
from campaigns.domain.numbers import is_region, normalize_number
from campaigns.domain.policy import CallingWindow, RetryPolicy, RuleError, Schedule, parse_instant
from campaigns.domain.rating import PRESETS, Increments, Rate, RateError

__all__ = [
    "AlertSpec",
    "CallSpec",
    "CallbacksSpec",
    "CampaignSpec",
    "Contact",
    "Pacing",
    "RateSpec",
    "SpecError",
    "StoredSpec",
    "campaign_id_for_key",
    "check_idempotency_key",
    "identify",
    "is_campaign_id",
    "load_contacts_csv",
    "load_spec",
    "parse_spec",
]

_CAMPAIGN_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}", re.ASCII)


def is_campaign_id(value: object) -> TypeGuard[str]:
    """The campaign-ID rule (1-64 of letters, digits, ``_ . -``; no ``:``, which
    separates the parts of an attempt ID), for every entry point that takes one."""
    return isinstance(value, str) and _CAMPAIGN_ID.fullmatch(value) is not None


"""Used with ``fullmatch`` only: ``$`` would accept a trailing newline."""
_CURRENCY = re.compile(r"[A-Z]{3}", re.ASCII)
_INCREMENTS = re.compile(r"[ \t]*[0-9]{1,6}[ \t]*/[ \t]*[0-9]{1,6}[ \t]*", re.ASCII)
"""ASCII digits, at most 999999 s each: ``\\d`` would take other scripts' digits."""
_REF_MAX = 200


def _decimal_string(value: object) -> object:
    """Money fields take decimal strings only; ints belong in ``*_micros``."""
    if isinstance(value, bool | float):
        raise ValueError("money must be a decimal string, not a JSON number")
    if isinstance(value, int):
        raise ValueError("money must be a decimal string (use the *_micros field for integers)")
    if isinstance(value, str):
        try:
            parse_micros(value)
        except (MoneyError, ArithmeticError) as exc:
            raise ValueError(str(exc)) from None
    return value


def _micros_int(value: object) -> object:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError("must be an integer number of micros")
    if value < 0:
        raise ValueError("must not be negative")
    if value > MAX_MICROS:
        raise ValueError(f"out of range (at most {MAX_MICROS} micros)")
    return value


DecimalMoney = Annotated[str, BeforeValidator(_decimal_string)]
Micros = Annotated[int, BeforeValidator(_micros_int)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Contact(_Strict):
    to: str
    ref: str = ""
    variables: dict[str, str | int | bool | None] = Field(default_factory=dict)

    @field_validator("ref")
    @classmethod
    def _ref_length(cls, value: str) -> str:
        if len(value) > _REF_MAX:
            raise ValueError(f"must be at most {_REF_MAX} characters, not {len(value)}")
        return value

    @field_validator("variables")
    @classmethod
    def _exact_numbers(
        cls, value: dict[str, str | int | bool | None]
    ) -> dict[str, str | int | bool | None]:
        """Integers every JSON reader holds exactly (Lua and JavaScript use doubles)."""
        for key, item in value.items():
            if isinstance(item, int) and not isinstance(item, bool) and abs(item) > MAX_MICROS:
                raise ValueError(
                    f"{_show(key, 40)!r} is out of range (integers up to ±{MAX_MICROS})"
                )
        return value


_PRICE_FIELDS = ("preset", "per_minute", "per_minute_micros", "per_second")


class RateSpec(_Strict):
    """A per-minute (or legacy per-second) price with increments and connect fee."""

    preset: str | None = None
    per_minute: DecimalMoney | None = None
    per_minute_micros: Micros | None = None
    per_second: DecimalMoney | None = None
    increments: str = "60/60"
    connect_fee: DecimalMoney | None = None
    connect_fee_micros: Micros | None = None

    @model_validator(mode="after")
    def _one_price(self) -> Self:
        given = [n for n in _PRICE_FIELDS if getattr(self, n) is not None]
        if len(given) > 1:
            raise ValueError(f"give one price, not {' and '.join(given)}")
        if self.preset is not None and self.preset not in PRESETS:
            raise ValueError(f"unknown preset {_show(self.preset)!r}; known: {', '.join(PRESETS)}")
        if self.connect_fee is not None and self.connect_fee_micros is not None:
            raise ValueError("give connect_fee or connect_fee_micros, not both")
        if not _INCREMENTS.fullmatch(self.increments):
            raise ValueError(
                f"increments must look like '60/60' (ASCII digits, at most 999999 s each), "
                f"got {_show(self.increments)!r}"
            )
        try:
            Increments.parse(self.increments)
        except RateError as exc:
            raise ValueError(str(exc)) from None
        return self

    @property
    def price_field(self) -> str:
        """The field that sets the price, for an error about the rate as a whole."""
        given = [n for n in _PRICE_FIELDS if getattr(self, n) is not None]
        return f"rate.{given[0]}" if given else "rate"

    def to_rate(self) -> Rate:
        """The rate model; :class:`MoneyError` if a price passes the micros ceiling."""
        if self.preset is not None:
            return PRESETS[self.preset]
        if self.per_second is not None:
            per_minute = parse_micros(self.per_second) * 60
            if per_minute > MAX_MICROS:
                raise MoneyError(
                    f"{self.per_second!r} per second is {per_minute} micros per minute, "
                    f"above the ceiling of {MAX_MICROS} micros"
                )
        elif self.per_minute is not None:
            per_minute = parse_micros(self.per_minute)
        elif self.per_minute_micros is not None:
            per_minute = self.per_minute_micros
        else:
            per_minute = PRESETS["pstn_outgoing"].per_minute_micros
        fee = self.connect_fee_micros or 0
        if self.connect_fee is not None:
            fee = parse_micros(self.connect_fee)
        return Rate(per_minute, Increments.parse(self.increments), fee)


class Pacing(_Strict):
    calls_per_second: float = Field(5.0, ge=0.001, le=1000)
    """At least one call per 1000 s: the dispatcher sleeps ``1 / calls_per_second``
    inside a batch and defers the next one by it, so 1e-300 would never wake."""
    batch_size: int = Field(10, ge=1, le=1000)
    max_in_flight: int = Field(50, ge=1, le=100_000)
    """Calls placed and not yet final (live channels), as providers limit them."""
    max_concurrent_requests: int = Field(4, ge=1, le=1000)
    """Create requests open at once. A provider ``L`` seconds away needs about
    ``calls_per_second * L`` to keep the pace (5/s at 250 ms: 2); past a halt-class
    answer up to ``max_concurrent_requests - 1`` requests already open still land,
    so the default, 4, keeps 10 calls/s across a 300 ms provider and bounds that."""
    weight: float = Field(1.0, gt=0, le=1000, allow_inf_nan=False)
    """This campaign's share of the account's ceilings (calls per second, live calls)
    when they bind, against the other campaigns sending: weight 2 gets twice weight
    1's calls (``campaigns/domain/sharing.py``). Unbound, each keeps its own pace."""


class CallSpec(_Strict):
    """What each call does once answered, in the provider's own terms; passed as
    given. Which fields a dialect needs (and refuses) is the dialect's business:
    ``record`` (MiniVoice), ``flow_id`` or ``actions`` (VoIPBIN), ``agent_id``
    (Voxpria)."""

    record: bool = False
    flow_id: str | None = Field(None, min_length=1, max_length=64)
    actions: list[dict[str, Any]] | None = Field(None, min_length=1, max_length=100)
    agent_id: str | None = Field(None, min_length=1, max_length=128)


def _http_url(value: str | None) -> str | None:
    """Checked at submit: a URL a delivery job cannot POST to would fail it on every retry."""
    if value is None:
        return None
    if len(value) > 2048 or not value.isascii() or not value.isprintable() or " " in value:
        raise ValueError("must be an http(s) URL of at most 2048 printable ASCII characters")
    try:
        url = httpx.URL(value)
    except (httpx.InvalidURL, ValueError) as exc:
        raise ValueError(f"not a URL: {exc}") from None
    if url.scheme not in ("http", "https") or not url.host:
        raise ValueError("must be an absolute http:// or https:// URL")
    if url.port is not None and not 1 <= url.port <= 65_535:
        raise ValueError(f"port {url.port} is out of range")
    return value


class AlertSpec(_Strict):
    thresholds_percent: list[int] = Field(default_factory=lambda: [80, 100])
    webhook_url: Annotated[str | None, AfterValidator(_http_url)] = None

    @field_validator("thresholds_percent")
    @classmethod
    def _percent(cls, value: list[int]) -> list[int]:
        if any(not 1 <= p <= 100 for p in value):
            raise ValueError("thresholds are percentages from 1 to 100")
        return sorted(set(value))


class CallbacksSpec(_Strict):
    """Where this campaign's signed events go (docs/callbacks.md); unset, the
    account's ``DISPATCHER_CALLBACK_URL``, if any."""

    url: Annotated[str | None, AfterValidator(_http_url)] = None


class CampaignSpec(_Strict):
    campaign_id: str = ""
    """Unset (``""``): derived from the create's idempotency key (:func:`identify`)."""
    name: str = ""
    caller_id: str
    currency: str
    budget: DecimalMoney | None = None
    budget_micros: Micros | None = None
    rate: RateSpec
    max_call_seconds: int = Field(120, ge=1, le=86_400)
    pacing: Pacing = Field(default_factory=Pacing)
    alerts: AlertSpec = Field(default_factory=AlertSpec)
    call: CallSpec = Field(default_factory=CallSpec)
    callbacks: CallbacksSpec = Field(default_factory=CallbacksSpec)
    strict_numbers: bool = False
    default_region: str | None = None
    """Read contact and suppress numbers without ``+`` as national numbers of this
    region (``US``, ``GB``); unset, every number must be E.164."""
    calling_window: CallingWindow | None = None
    schedule: Schedule | None = None
    retry: RetryPolicy | None = None
    suppress: list[str] = Field(default_factory=list, max_length=100_000)
    """Numbers this campaign never dials (beside the account's do-not-call list)."""
    contacts: list[Contact] = Field(default_factory=list)

    _duplicates_dropped: int = PrivateAttr(default=0)

    @model_validator(mode="before")
    @classmethod
    def _valid_unicode(cls, data: Any) -> Any:
        """Refuse lone surrogates (JSON ``"\\ud800"``): no UTF-8 store or terminal takes them."""
        where = _first_surrogate(data)
        if where is not None:
            raise _FieldError(where, "not valid Unicode (a lone surrogate such as \\ud800)")
        return data

    @model_validator(mode="before")
    @classmethod
    def _money_terms_given(cls, data: Any) -> Any:
        """No silent money defaults: the currency and the price are the spec's to say."""
        if isinstance(data, dict):
            if "currency" not in data:
                raise _FieldError(
                    "currency",
                    "required: the ISO 4217 code the budget and the rate are in, such as "
                    "'EUR' (there is no default currency)",
                )
            rate = data.get("rate")
            if rate is None or (
                isinstance(rate, dict) and not any(rate.get(n) is not None for n in _PRICE_FIELDS)
            ):
                raise _FieldError(
                    "rate",
                    "required: the price every reservation is computed at, such as "
                    '{"per_minute": "0.01", "increments": "60/60"} or {"preset": '
                    '"pstn_outgoing"} (there is no default rate)',
                )
        return data

    @field_validator("campaign_id")
    @classmethod
    def _campaign_id(cls, value: str) -> str:
        if not _CAMPAIGN_ID.fullmatch(value):
            raise ValueError("1-64 characters of letters, digits, '_', '.', '-'")
        return value

    @field_validator("default_region")
    @classmethod
    def _region(cls, value: str | None) -> str | None:
        if value is not None and not is_region(value):
            raise ValueError(
                f"{_show(value, 20)!r} is not a region phonenumbers knows "
                "(an ISO 3166 code such as 'US' or 'GB')"
            )
        return value

    @field_validator("currency")
    @classmethod
    def _currency(cls, value: str) -> str:
        if not _CURRENCY.fullmatch(value):
            raise ValueError("must be an ISO 4217 code such as 'EUR'")
        return value

    @model_validator(mode="after")
    def _normalize(self) -> Self:
        if (self.budget is None) == (self.budget_micros is None):
            raise _FieldError(
                "budget", "give exactly one of budget (decimal string) or budget_micros"
            )
        self._check_money()
        strict, region = self.strict_numbers, self.default_region
        try:
            caller = normalize_number(self.caller_id, strict=strict)
        except ValueError as exc:
            raise _FieldError("caller_id", str(exc)) from None
        object.__setattr__(self, "caller_id", caller)
        suppress: list[str] = []
        for index, entry in enumerate(self.suppress):
            try:
                suppress.append(normalize_number(entry, region=region))
            except ValueError as exc:
                raise _FieldError(f"suppress.{index}", str(exc)) from None
        object.__setattr__(self, "suppress", sorted(set(suppress)))
        seen: set[str] = set()
        unique: list[Contact] = []
        for index, contact in enumerate(self.contacts):
            try:
                number = normalize_number(contact.to, strict=strict, region=region)
            except ValueError as exc:
                raise _FieldError(f"contacts.{index}.to", str(exc)) from None
            if number in seen:
                continue
            seen.add(number)
            unique.append(
                contact if number == contact.to else contact.model_copy(update={"to": number})
            )
        self._duplicates_dropped = len(self.contacts) - len(unique)
        object.__setattr__(self, "contacts", unique)
        return self

    def _check_money(self) -> None:
        """Budget, rate and worst case exact and within the micros ceiling, or the field named.

        The worst case is what the dispatcher reserves per call: checked here,
        it can never first fail in a worker, holding a reservation.
        """
        try:
            self.budget_in_micros  # noqa: B018 - parsed for its error
        except (MoneyError, ArithmeticError) as exc:
            raise _FieldError("budget", str(exc)) from None
        field = self.rate.price_field
        try:
            rate = self.rate.to_rate()
        except (MoneyError, RateError, ArithmeticError) as exc:
            raise _FieldError(field, str(exc)) from None
        try:
            worst = rate.worst_case_micros(self.max_call_seconds)
        except (MoneyError, RateError, ArithmeticError) as exc:
            raise _FieldError(field, str(exc)) from None
        if worst > MAX_MICROS:
            raise _FieldError(
                field,
                f"the worst case of one call (the rate over max_call_seconds "
                f"{self.max_call_seconds}, plus the connect fee) is {worst} micros, "
                f"above the ceiling of {MAX_MICROS} micros",
            )

    @property
    def duplicates_dropped(self) -> int:
        return self._duplicates_dropped

    @property
    def budget_in_micros(self) -> int:
        if self.budget_micros is not None:
            return self.budget_micros
        assert self.budget is not None
        return parse_micros(self.budget)

    def rate_model(self) -> Rate:
        return self.rate.to_rate()

    def worst_case_call_micros(self) -> int:
        return self.rate_model().worst_case_micros(self.max_call_seconds)

    def fingerprint(self) -> str:
        """Stable hash of the normalized spec: same input, same campaign.

        Contact-policy fields left unset are not part of it, so a spec written
        before they existed keeps its fingerprint.
        """
        canonical = json.dumps(self.fingerprint_data(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()

    def fingerprint_data(
        self, *, exclude: set[str] | None = None, legacy: bool = False
    ) -> dict[str, Any]:
        """What :meth:`fingerprint` hashes: the JSON dump without the contact-policy
        fields left unset (``exclude``: fields a streaming hash adds itself), with
        values in one spelling (:func:`_canonical_values`), so ``"1.0"`` and
        ``"1.00"``, or one instant in two offsets, are the same spec. ``legacy``:
        the spellings as given, as fingerprints were made before (stored ones are
        still compared with it)."""
        data = self.model_dump(mode="json", exclude=exclude)
        if data.get("call") == CallSpec().model_dump(mode="json"):
            data.pop("call")  # a spec without one keeps the fingerprint it always had
        if data.get("callbacks") == CallbacksSpec().model_dump(mode="json"):
            data.pop("callbacks")
        for name in _POLICY_FIELDS:
            if not data.get(name):
                data.pop(name, None)
        return data if legacy else _canonical_values(data)

    def with_contacts(self, contacts: list[Contact]) -> CampaignSpec:
        """A copy with more contacts (from a CSV file), validated like the rest."""
        data = self.model_dump(mode="json")
        data["contacts"] = data["contacts"] + [c.model_dump(mode="json") for c in contacts]
        merged = parse_spec(data)
        merged._duplicates_dropped += self._duplicates_dropped
        return merged


_POLICY_FIELDS = ("calling_window", "schedule", "retry", "suppress", "default_region")
"""Dropped from the fingerprint when unset, so older specs keep theirs."""
_MONEY_FIELDS = ("budget", "per_minute", "per_second", "connect_fee")
_KEY_MAX = 255
_KEY_ID_PREFIX = "key_"


def _canonical_values(data: dict[str, Any]) -> dict[str, Any]:
    """The dumped spec with each value in one spelling: money as integer micros
    (``budget`` and ``budget_micros`` alike), increments without blanks, instants
    as UTC milliseconds. Everything else is canonical once validated (numbers
    are parsed, days and dates sorted, contacts' numbers in E.164)."""
    budget = data.pop("budget", None)
    if budget is not None:
        data["budget_micros"] = parse_micros(budget)
    rate = dict(data.get("rate") or {})
    for name in _MONEY_FIELDS[1:]:
        value = rate.pop(name, None)
        if value is not None:
            # per_second keeps its own name: a price per second is not one per minute.
            rate[name if name == "per_second" else f"{name}_micros"] = parse_micros(value)
    if "increments" in rate:
        rate["increments"] = "".join(str(rate["increments"]).split())
    data["rate"] = {k: v for k, v in rate.items() if v is not None}
    schedule = data.get("schedule")
    if isinstance(schedule, dict):
        data["schedule"] = {
            k: None if v is None else int(parse_instant(v).timestamp() * 1000)
            for k, v in schedule.items()
        }
    return data


def check_idempotency_key(key: str) -> str:
    """An idempotency key: 1-255 printable ASCII characters without spaces."""
    if not (0 < len(key) <= _KEY_MAX and key.isascii() and key.isprintable() and " " not in key):
        raise SpecError(
            "Idempotency-Key", f"1-{_KEY_MAX} printable ASCII characters without spaces"
        )
    return key


def campaign_id_for_key(key: str) -> str:
    """The campaign ID a create without one gets from its idempotency key: the
    same key always names the same campaign, in the API, the Python API, the job
    and the CLI alike (a hash, so any key makes a valid ID)."""
    digest = hashlib.sha256(check_idempotency_key(key).encode()).hexdigest()
    return f"{_KEY_ID_PREFIX}{digest[:32]}"


def identify(spec: CampaignSpec, idempotency_key: str | None) -> CampaignSpec:
    """The spec to create: its own ``campaign_id``, else the one derived from the
    idempotency key; neither is refused, naming both (a retried create without
    either would be a second campaign dialling everyone again)."""
    if idempotency_key is not None:
        check_idempotency_key(idempotency_key)
    if spec.campaign_id:
        return spec
    if idempotency_key is None:
        missing = "give one of campaign_id or an idempotency key"
        raise SpecError(
            "campaign_id",
            "give a campaign_id or an idempotency key (Idempotency-Key header, "
            "idempotency_key, --idempotency-key): a create with neither is not safe to retry",
            [("campaign_id", missing), ("Idempotency-Key", missing)],
        )
    copy = spec.model_copy(update={"campaign_id": campaign_id_for_key(idempotency_key)})
    copy._duplicates_dropped = spec.duplicates_dropped
    return copy


class _FieldError(ValueError):
    """A validation error raised from a model validator for a nested field."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


def _encodable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _first_surrogate(data: Any) -> str | None:
    """The dotted path of the first key or string that is not valid Unicode, if any.

    Iterative, so a deeply nested hostile document cannot exhaust the stack.
    """
    stack: list[tuple[str, Any]] = [("", data)]
    while stack:
        path, value = stack.pop()
        if isinstance(value, str):
            if not _encodable(value):
                return path or "spec"
        elif isinstance(value, dict):
            children: list[tuple[str, Any]] = []
            for key, child in value.items():
                name = _key(key)
                here = f"{path}.{name}" if path else name
                if isinstance(key, str) and not _encodable(key):
                    return here
                children.append((here, child))
            stack.extend(reversed(children))
        elif isinstance(value, list | tuple):
            stack.extend(
                reversed([(f"{path}.{i}" if path else str(i), c) for i, c in enumerate(value)])
            )
    return None


def _key(part: object) -> str:
    """One path component of a field name: printable, short, and never empty."""
    return _show(str(part), 40) or "''"


def _loc(parts: tuple[int | str, ...]) -> str:
    return ".".join(_key(part) for part in parts)


def _spec_error(exc: ValidationError) -> SpecError:
    found: list[tuple[str, str]] = []
    for error in exc.errors():
        field = _loc(error["loc"])
        message = error["msg"].removeprefix("Value error, ")
        original = (error.get("ctx") or {}).get("error")
        if isinstance(original, _FieldError | RuleError):
            field = original.field
            message = original.message
        if error["type"] == "extra_forbidden":
            message = "unknown field"
        found.append((field or "spec", _show(message, 400)))
    field, message = found[0]
    more = f" (and {len(found) - 1} more)" if len(found) > 1 else ""
    return SpecError(field, message + more, found)


def parse_spec(data: Any) -> CampaignSpec:
    """Validate a decoded spec (dict) or a JSON text; raise SpecError naming the field.

    A JSON text naming a key twice is refused naming the key (pydantic, like
    ``json.loads``, would keep the last: ``"budget"`` given twice submits the
    second amount while a reviewer reads the first).
    """
    try:
        if isinstance(data, str | bytes):
            _refuse_duplicate_keys(data)
            return CampaignSpec.model_validate_json(data)
        return CampaignSpec.model_validate(data)
    except ValidationError as exc:
        raise _spec_error(exc) from None


def _refuse_duplicate_keys(text: str | bytes) -> None:
    try:
        strict_json(text)
    except DuplicateKeyError as exc:
        raise SpecError("spec", f"{exc}: each key may appear once per object") from None
    except (ValueError, RecursionError):
        pass  # not JSON: pydantic's own parse says where


def load_spec(path: str | Path, contacts_csv: str | Path | None = None) -> CampaignSpec:
    """Read a spec file (and optionally a contacts CSV) into a validated spec.

    With a CSV every contact is held in the spec: fine for small files; the CLI
    submits and estimates through :class:`campaigns.domain.contacts.Contacts`,
    which reads the file in chunks.
    """
    shown = _show(str(path))
    try:
        raw = Path(path).read_bytes()
    except OSError as exc:
        raise SpecError("spec", f"cannot read {shown}: {exc.strerror or exc}") from None
    text = _decode_utf8(raw, shown, "spec")
    try:
        data = strict_json(text)
    except DuplicateKeyError as exc:
        raise SpecError("spec", f"{exc}: each key may appear once per object") from None
    except json.JSONDecodeError as exc:
        raise SpecError("spec", f"not valid JSON: {exc.msg} at line {exc.lineno}") from None
    except RecursionError:
        raise SpecError("spec", "not valid JSON: nested too deeply") from None
    except ValueError as exc:  # e.g. an integer of more than 4300 digits
        raise SpecError("spec", f"not valid JSON: {_show(str(exc), 120)}") from None
    if not isinstance(data, dict):
        raise SpecError("spec", "must be a JSON object")
    spec = parse_spec(data)
    if contacts_csv is not None:
        spec = spec.with_contacts(load_contacts_csv(contacts_csv, spec.default_region))
    return spec


def load_contacts_csv(path: str | Path, region: str | None = None) -> list[Contact]:
    """Contacts from a UTF-8 CSV file (see :func:`campaigns.domain.contacts.load_contacts_csv`)."""
    from campaigns.domain.contacts import load_contacts_csv as load

    return load(path, region)


class StoredSpec(BaseModel):
    """A submitted spec as the store keeps it: everything but the contacts.

    Read back from Redis by every part that needs a campaign's terms (pacing,
    caller ID, rate, alerts), so none of them indexes into a dict or rebuilds
    the rate itself: :meth:`rate_model` is built once, here.
    """

    model_config = ConfigDict(extra="ignore", frozen=True)

    campaign_id: str
    name: str = ""
    caller_id: str
    currency: str
    budget: str | None = None
    budget_micros: int | None = None
    rate: RateSpec = Field(default_factory=RateSpec)
    max_call_seconds: int
    pacing: Pacing = Field(default_factory=Pacing)
    alerts: AlertSpec = Field(default_factory=AlertSpec)
    call: CallSpec = Field(default_factory=CallSpec)
    callbacks: CallbacksSpec = Field(default_factory=CallbacksSpec)
    strict_numbers: bool = False
    default_region: str | None = None
    calling_window: CallingWindow | None = None
    schedule: Schedule | None = None
    retry: RetryPolicy | None = None

    _rate: Rate = PrivateAttr()

    def model_post_init(self, context: Any, /) -> None:
        self._rate = self.rate.to_rate()

    def rate_model(self) -> Rate:
        return self._rate
