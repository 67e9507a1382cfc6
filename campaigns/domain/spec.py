"""The campaign spec: what another service or an operator submits.

Validation happens here and only here, before anything is written. Numbers
must be E.164 numbers that ``phonenumbers`` finds *possible* (strict validity
is opt-in: the seeds' fictional +1555 numbers are possible but not valid).
Money is a decimal string, or integer micros in a ``*_micros`` field; a JSON
float for money is refused.
"""

from __future__ import annotations

import csv
import hashlib
import json
import re
import uuid
from pathlib import Path
from typing import Annotated, Any, Self

import phonenumbers
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    field_validator,
    model_validator,
)

from campaigns.domain.money import MAX_MICROS, MoneyError, parse_micros
from campaigns.domain.rating import PRESETS, Increments, Rate, RateError

__all__ = [
    "AlertSpec",
    "CampaignSpec",
    "Contact",
    "Pacing",
    "RateSpec",
    "SpecError",
    "StoredSpec",
    "load_contacts_csv",
    "load_spec",
    "parse_spec",
]

_CAMPAIGN_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


class SpecError(ValueError):
    """Invalid input, with the field it is about. The CLI exits 2 on it."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}" if field else message)
        self.field = field
        self.message = message


def _decimal_string(value: object) -> object:
    """Money fields take decimal strings only; ints belong in ``*_micros``."""
    if isinstance(value, bool | float):
        raise ValueError("money must be a decimal string, not a JSON number")
    if isinstance(value, int):
        raise ValueError("money must be a decimal string (use the *_micros field for integers)")
    if isinstance(value, str):
        try:
            parse_micros(value)
        except MoneyError as exc:
            raise ValueError(str(exc)) from None
    return value


def _micros_int(value: object) -> object:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError("must be an integer number of micros")
    if value < 0:
        raise ValueError("must not be negative")
    if value > MAX_MICROS:
        raise ValueError("out of range")
    return value


DecimalMoney = Annotated[str, BeforeValidator(_decimal_string)]
Micros = Annotated[int, BeforeValidator(_micros_int)]


def normalize_number(value: str, *, strict: bool = False) -> str:
    """Return the E.164 form of a possible number, or raise ValueError."""
    if not isinstance(value, str) or not value.strip().startswith("+"):
        raise ValueError("must be an E.164 number starting with '+'")
    try:
        parsed = phonenumbers.parse(value.strip(), None)
    except phonenumbers.NumberParseException as exc:
        raise ValueError(f"not a phone number: {exc}") from None
    if not phonenumbers.is_possible_number(parsed):
        raise ValueError(f"{value!r} is not a possible phone number")
    if strict and not phonenumbers.is_valid_number(parsed):
        raise ValueError(f"{value!r} is not a valid phone number")
    return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Contact(_Strict):
    to: str
    ref: str = ""
    variables: dict[str, str | int | bool | None] = Field(default_factory=dict)

    @field_validator("ref")
    @classmethod
    def _ref_length(cls, value: str) -> str:
        if len(value) > 200:
            raise ValueError("must be at most 200 characters")
        return value


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
        given = [
            n
            for n in ("preset", "per_minute", "per_minute_micros", "per_second")
            if getattr(self, n) is not None
        ]
        if len(given) > 1:
            raise ValueError(f"give one price, not {' and '.join(given)}")
        if self.preset is not None and self.preset not in PRESETS:
            raise ValueError(f"unknown preset {self.preset!r}; known: {', '.join(PRESETS)}")
        if self.connect_fee is not None and self.connect_fee_micros is not None:
            raise ValueError("give connect_fee or connect_fee_micros, not both")
        try:
            Increments.parse(self.increments)
        except RateError as exc:
            raise ValueError(str(exc)) from None
        return self

    def to_rate(self) -> Rate:
        if self.preset is not None:
            return PRESETS[self.preset]
        if self.per_second is not None:
            per_minute = parse_micros(self.per_second) * 60
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
    calls_per_second: float = Field(5.0, gt=0, le=1000)
    batch_size: int = Field(10, ge=1, le=1000)
    max_in_flight: int = Field(50, ge=1, le=100_000)
    """Calls placed and not yet final (live channels), as providers limit them."""


class AlertSpec(_Strict):
    thresholds_percent: list[int] = Field(default_factory=lambda: [80, 100])
    webhook_url: str | None = None

    @field_validator("thresholds_percent")
    @classmethod
    def _percent(cls, value: list[int]) -> list[int]:
        if any(not 1 <= p <= 100 for p in value):
            raise ValueError("thresholds are percentages from 1 to 100")
        return sorted(set(value))


class CampaignSpec(_Strict):
    campaign_id: str = Field(default_factory=lambda: f"cmp_{uuid.uuid4().hex[:16]}")
    name: str = ""
    caller_id: str
    currency: str = "EUR"
    budget: DecimalMoney | None = None
    budget_micros: Micros | None = None
    rate: RateSpec = Field(default_factory=RateSpec)
    max_call_seconds: int = Field(120, ge=1, le=86_400)
    pacing: Pacing = Field(default_factory=Pacing)
    alerts: AlertSpec = Field(default_factory=AlertSpec)
    strict_numbers: bool = False
    contacts: list[Contact] = Field(default_factory=list)

    _duplicates_dropped: int = PrivateAttr(default=0)

    @field_validator("campaign_id")
    @classmethod
    def _campaign_id(cls, value: str) -> str:
        if not _CAMPAIGN_ID.match(value):
            raise ValueError("1-64 characters of letters, digits, '_', '.', '-'")
        return value

    @field_validator("currency")
    @classmethod
    def _currency(cls, value: str) -> str:
        if not re.fullmatch(r"[A-Z]{3}", value):
            raise ValueError("must be an ISO 4217 code such as 'EUR'")
        return value

    @model_validator(mode="after")
    def _normalize(self) -> Self:
        if (self.budget is None) == (self.budget_micros is None):
            raise _FieldError(
                "budget", "give exactly one of budget (decimal string) or budget_micros"
            )
        strict = self.strict_numbers
        try:
            caller = normalize_number(self.caller_id, strict=strict)
        except ValueError as exc:
            raise _FieldError("caller_id", str(exc)) from None
        object.__setattr__(self, "caller_id", caller)
        seen: set[str] = set()
        unique: list[Contact] = []
        for index, contact in enumerate(self.contacts):
            try:
                number = normalize_number(contact.to, strict=strict)
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
        """Stable hash of the normalized spec: same input, same campaign."""
        canonical = json.dumps(self.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()

    def with_contacts(self, contacts: list[Contact]) -> CampaignSpec:
        """A copy with more contacts (from a CSV file), validated like the rest."""
        data = self.model_dump(mode="json")
        data["contacts"] = data["contacts"] + [c.model_dump(mode="json") for c in contacts]
        merged = parse_spec(data)
        merged._duplicates_dropped += self._duplicates_dropped
        return merged


class _FieldError(ValueError):
    """A validation error raised from a model validator for a nested field."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


def _spec_error(exc: ValidationError) -> SpecError:
    errors = exc.errors()
    first = errors[0]
    field = ".".join(str(part) for part in first["loc"])
    message = first["msg"].removeprefix("Value error, ")
    original = (first.get("ctx") or {}).get("error")
    if isinstance(original, _FieldError):
        field = original.field
        message = original.message
    if first["type"] == "extra_forbidden":
        message = "unknown field"
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    return SpecError(field, message + more)


def parse_spec(data: Any) -> CampaignSpec:
    """Validate a decoded spec (dict) or a JSON text; raise SpecError naming the field."""
    try:
        if isinstance(data, str | bytes):
            return CampaignSpec.model_validate_json(data)
        return CampaignSpec.model_validate(data)
    except ValidationError as exc:
        raise _spec_error(exc) from None


def load_spec(path: str | Path, contacts_csv: str | Path | None = None) -> CampaignSpec:
    """Read a spec file (and optionally a contacts CSV) into a validated spec."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise SpecError("spec", f"cannot read {path}: {exc.strerror}") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise SpecError("spec", f"not valid JSON: {exc.msg} at line {exc.lineno}") from None
    if not isinstance(data, dict):
        raise SpecError("spec", "must be a JSON object")
    spec = parse_spec(data)
    if contacts_csv is not None:
        spec = spec.with_contacts(load_contacts_csv(contacts_csv))
    return spec


def load_contacts_csv(path: str | Path) -> list[Contact]:
    """Contacts from a CSV file with a ``to,ref`` header; other columns become variables."""
    try:
        with Path(path).open(newline="", encoding="utf-8") as handle:
            return _read_contacts(csv.DictReader(handle), str(path))
    except OSError as exc:
        raise SpecError("contacts", f"cannot read {path}: {exc.strerror}") from None


def _read_contacts(reader: csv.DictReader[str], path: str) -> list[Contact]:
    if reader.fieldnames is None or "to" not in reader.fieldnames:
        raise SpecError("contacts", f"{path}: the CSV header must include 'to' (e.g. 'to,ref')")
    contacts: list[Contact] = []
    for row in reader:
        line = reader.line_num
        if None in row:
            raise SpecError("contacts", f"{path} line {line}: more values than header columns")
        to = (row.pop("to") or "").strip()
        ref = (row.pop("ref", "") or "").strip()
        try:
            normalize_number(to)
        except ValueError as exc:
            raise SpecError(f"contacts[{path} line {line}].to", str(exc)) from None
        variables: dict[str, str | int | bool | None] = {k: v for k, v in row.items() if v}
        contacts.append(Contact(to=to, ref=ref, variables=variables))
    return contacts


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
    strict_numbers: bool = False

    _rate: Rate = PrivateAttr()

    def model_post_init(self, context: Any, /) -> None:
        self._rate = self.rate.to_rate()

    def rate_model(self) -> Rate:
        return self._rate
