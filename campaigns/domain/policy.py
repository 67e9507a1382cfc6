"""Contact policy in the spec: calling window, schedule, retries by outcome, zone groups.

The spec names the rules; this module checks them (every error names its
field, so a bad rule is refused at submit with nothing written) and turns them
into what the store and the dispatcher use:

- :class:`CallingWindow` becomes a :class:`~campaigns.domain.window.Window`;
  with ``timezone: "recipient"`` each number's zones come from phonenumbers'
  time-zone map (:class:`ZoneGroups`), a number that maps to none uses
  ``default_timezone``. Contacts are partitioned at submit into *zone groups*
  (group id -> sorted zone names), so the dispatcher computes which groups are
  open (Lua never does time-zone math) and the claim pops from open ones only.
- :class:`Schedule`: nothing is sent before ``start_at``; at ``end_at`` the
  contacts never dialled are marked expired and the campaign completes.
- :class:`RetryPolicy`: a final call status named there schedules the
  contact's next attempt after ``after_seconds``, while the contact has had
  fewer than ``max_attempts`` attempts (the first included). ``completed`` is
  never retried.

A window's end before its start is a window crossing midnight (``20:00`` to
``02:00``), not an error; a window whose start equals its end, and a schedule
whose ``end_at`` is not after its ``start_at``, are refused.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime
from typing import Any, Self
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from phonenumbers import COUNTRY_CODE_TO_REGION_CODE, PhoneNumber
from phonenumbers import timezone as phone_timezone
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from campaigns.domain.window import DAY_NAMES, Window, zone

__all__ = [
    "RECIPIENT",
    "RETRYABLE_STATUSES",
    "CallingWindow",
    "RetryPolicy",
    "RetryRule",
    "RuleError",
    "Schedule",
    "ZoneGroups",
    "contact_number",
    "parse_instant",
    "timing_problem",
]

RECIPIENT = "recipient"
"""``calling_window.timezone`` value: each number's own zones."""

RETRYABLE_STATUSES = ("busy", "no_answer", "failed", "canceled")
"""Final call statuses a retry rule may name (``completed`` is the call that happened)."""

_CLOCK = re.compile(r"([01][0-9]|2[0-4]):([0-5][0-9])", re.ASCII)
_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}", re.ASCII)
_MAX_RESTRICTED = 1000
_UNKNOWN_ZONE = "Etc/Unknown"


class _Rules(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _seconds(value: str, field: str, *, allow_midnight_end: bool) -> int:
    match = _CLOCK.fullmatch(value)
    if match is None:
        raise ValueError(f"{field} must be a 24-hour time such as '09:00', got {value[:40]!r}")
    hours, minutes = int(match.group(1)), int(match.group(2))
    if hours == 24 and (minutes or not allow_midnight_end):
        raise ValueError(
            f"{field} must be at most 23:59" + (" (or 24:00)" if allow_midnight_end else "")
        )
    return hours * 3600 + minutes * 60


def _zone_name(value: str) -> str:
    if not value or len(value) > 64 or not value.isascii() or value.startswith(("/", ".")):
        raise ValueError(f"unknown time zone {value[:64]!r} (an IANA name such as 'Europe/Paris')")
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise ValueError(
            f"unknown time zone {value!r} (an IANA name such as 'Europe/Paris')"
        ) from None
    return value


class CallingWindow(_Rules):
    """When contacts may be called, on their local clocks (module docstring)."""

    days: list[str] = Field(default_factory=lambda: list(DAY_NAMES), min_length=1, max_length=7)
    start: str
    end: str
    timezone: str = RECIPIENT
    default_timezone: str | None = None
    restricted_dates: list[str] = Field(default_factory=list, max_length=_MAX_RESTRICTED)

    @field_validator("days")
    @classmethod
    def _days(cls, value: list[str]) -> list[str]:
        for day in value:
            if day not in DAY_NAMES:
                raise ValueError(f"unknown day {day[:20]!r}; days are {', '.join(DAY_NAMES)}")
        return [d for d in DAY_NAMES if d in value]

    @field_validator("start")
    @classmethod
    def _start(cls, value: str) -> str:
        _seconds(value, "start", allow_midnight_end=False)
        return value

    @field_validator("end")
    @classmethod
    def _end(cls, value: str) -> str:
        _seconds(value, "end", allow_midnight_end=True)
        return value

    @field_validator("timezone")
    @classmethod
    def _timezone(cls, value: str) -> str:
        return value if value == RECIPIENT else _zone_name(value)

    @field_validator("default_timezone")
    @classmethod
    def _default_timezone(cls, value: str | None) -> str | None:
        return None if value is None else _zone_name(value)

    @field_validator("restricted_dates")
    @classmethod
    def _dates(cls, value: list[str]) -> list[str]:
        for text in value:
            if not _DATE.fullmatch(text):
                raise ValueError(f"dates are YYYY-MM-DD, got {text[:40]!r}")
            try:
                date.fromisoformat(text)
            except ValueError:
                raise ValueError(f"{text!r} is not a calendar date") from None
        return sorted(set(value))

    @model_validator(mode="after")
    def _coherent(self) -> Self:
        start = _seconds(self.start, "start", allow_midnight_end=False)
        if start == _seconds(self.end, "end", allow_midnight_end=True):
            raise RuleError(
                "calling_window.end",
                "equals start: the window would never open (00:00 to 24:00 is all day)",
            )
        if self.timezone == RECIPIENT and self.default_timezone is None:
            raise RuleError(
                "calling_window.default_timezone",
                "required with timezone 'recipient': the zone of a number that maps to none",
            )
        return self

    def window(self) -> Window:
        return Window(
            days=frozenset(DAY_NAMES.index(d) for d in self.days),
            start=_seconds(self.start, "start", allow_midnight_end=False),
            end=_seconds(self.end, "end", allow_midnight_end=True),
            restricted=frozenset(date.fromisoformat(d) for d in self.restricted_dates),
        )


def parse_instant(value: str) -> datetime:
    """An RFC 3339 time with a zone offset (``2026-12-01T09:00:00Z``), as aware UTC."""
    text = value.strip()
    if len(text) > 40 or "T" not in text.upper():
        raise ValueError(f"must be an RFC 3339 time such as 2026-12-01T09:00:00Z, got {text!r}")
    try:
        moment = datetime.fromisoformat(text.upper().replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(
            f"must be an RFC 3339 time such as 2026-12-01T09:00:00Z, got {text!r}"
        ) from None
    if moment.tzinfo is None:
        raise ValueError(f"{text!r} needs a zone offset (Z or +01:00)")
    return moment.astimezone(UTC)


class Schedule(_Rules):
    """The campaign's own start and end (absolute instants)."""

    start_at: str | None = None
    end_at: str | None = None

    @field_validator("start_at", "end_at")
    @classmethod
    def _instant(cls, value: str | None) -> str | None:
        if value is not None:
            parse_instant(value)
        return value

    @model_validator(mode="after")
    def _order(self) -> Self:
        start, end = self.start_ms, self.end_ms
        if start is not None and end is not None and end <= start:
            raise RuleError("schedule.end_at", "must be after schedule.start_at")
        return self

    @property
    def start_ms(self) -> int | None:
        return None if self.start_at is None else _ms(parse_instant(self.start_at))

    @property
    def end_ms(self) -> int | None:
        return None if self.end_at is None else _ms(parse_instant(self.end_at))


def _ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


class RetryRule(_Rules):
    after_seconds: int = Field(ge=1, le=30 * 86_400)
    max_attempts: int = Field(ge=1, le=20)
    """Every attempt of the contact, the first included (1: never retried)."""


class RetryPolicy(_Rules):
    """Retry rules by final call status (``completed`` is never retried)."""

    busy: RetryRule | None = None
    no_answer: RetryRule | None = None
    failed: RetryRule | None = None
    canceled: RetryRule | None = None

    @model_validator(mode="before")
    @classmethod
    def _no_completed(cls, data: Any) -> Any:
        if isinstance(data, dict) and "completed" in data:
            raise RuleError(
                "retry.completed",
                "a completed call is never retried (it is the call that happened)",
            )
        return data

    def rules(self) -> dict[str, RetryRule]:
        return {s: r for s in RETRYABLE_STATUSES if (r := getattr(self, s)) is not None}

    def stored(self) -> dict[str, list[int]]:
        """``{status: [after_ms, max_attempts]}``: what the settle script reads."""
        return {s: [r.after_seconds * 1000, r.max_attempts] for s, r in self.rules().items()}

    @property
    def max_attempts(self) -> int:
        """The most attempts any contact can get."""
        return max([1, *(r.max_attempts for r in self.rules().values())])


class RuleError(ValueError):
    """A rule error naming its field (turned into SpecError by the spec's parser)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


class ZoneGroups:
    """Contacts partitioned by the zones their window is judged in.

    Group ids are dense integers in order of first appearance; ``zones[g]`` is
    group ``g``'s sorted zone names. Without a window there is one group with
    no zones (always open); with a fixed zone, one group with that zone. With
    ``recipient``, phonenumbers' ``time_zones_for_number`` decides, exactly as
    the library does: a number it does not recognise as valid (the fictional
    +1555 numbers) maps to none and uses ``default_timezone``; a non-geographic
    one (a mobile in most countries, a toll-free number) gets its country's
    zones. The answer depends on the number's type, which no prefix decides
    (a Russian mobile's prefix names one zone, the library gives sixteen), so
    it is not cached by prefix; the number is built from its E.164 digits
    instead of parsed (about 14 us a number, only with a recipient window).
    """

    def __init__(self, window: CallingWindow | None) -> None:
        self._recipient = window is not None and window.timezone == RECIPIENT
        self._default: tuple[str, ...] = ()
        if window is not None:
            fixed = window.default_timezone if self._recipient else window.timezone
            assert fixed is not None
            self._default = (fixed,)
        self.zones: list[tuple[str, ...]] = [] if self._recipient else [self._default]
        self._ids: dict[tuple[str, ...], int] = {} if self._recipient else {self._default: 0}
        self._known: dict[tuple[str, ...], tuple[str, ...]] = {}

    @classmethod
    def seeded(cls, window: CallingWindow | None, zones: tuple[tuple[str, ...], ...]) -> ZoneGroups:
        """The groups a campaign already has (``zone_groups``), for contacts added
        later: a number goes to its zones' group, a new one when no group has them."""
        groups = cls(window)
        if groups._recipient:
            groups.zones = [tuple(z) for z in zones if z]
            groups._ids = {z: i for i, z in enumerate(groups.zones)}
        return groups

    @property
    def by_recipient(self) -> bool:
        return self._recipient

    def group_of(self, number: str) -> int:
        """The group of a normalized E.164 number."""
        if not self._recipient:
            return 0
        names = _time_zones(number)
        found = self._known.get(names)
        if found is None:
            found = self._known[names] = self._usable(names)
        group = self._ids.get(found)
        if group is None:
            group = self._ids[found] = len(self.zones)
            self.zones.append(found)
        return group

    def _usable(self, names: tuple[str, ...]) -> tuple[str, ...]:
        """The zones zoneinfo knows, sorted; the default when there are none."""
        known = []
        for name in names:
            if name == _UNKNOWN_ZONE:
                continue
            try:
                zone(name)
            except (ZoneInfoNotFoundError, ValueError, OSError):
                continue
            known.append(name)
        return tuple(sorted(set(known))) or self._default


def contact_number(document: str) -> str:
    """The ``to`` of a stored contact's canonical JSON, without decoding it.

    Canonical JSON sorts its keys (``ref`` before ``to``) and escapes every
    quote inside a value, so the first ``"to":"`` is the key itself.
    """
    at = document.index('"to":"') + 6
    return document[at : document.index('"', at)]


def _time_zones(number: str) -> tuple[str, ...]:
    """phonenumbers' zones of a canonical E.164 number (``+`` and digits)."""
    digits = number[1:]
    for size in (1, 2, 3):
        code = int(digits[:size] or "0")
        if code in COUNTRY_CODE_TO_REGION_CODE:
            national = digits[size:]
            parsed = PhoneNumber(country_code=code, national_number=int(national or "0"))
            zeros = len(national) - len(national.lstrip("0"))
            if zeros and len(national) > 1:
                # As phonenumbers.parse keeps them (Italian numbers, for one).
                parsed.italian_leading_zero = True
                if zeros > 1:
                    parsed.number_of_leading_zeros = zeros
            return tuple(phone_timezone.time_zones_for_number(parsed))
    return ()


def timing_problem(
    schedule: Schedule | None,
    window: CallingWindow | None,
    groups: ZoneGroups,
    now: datetime,
) -> RuleError | None:
    """Why nothing could ever be dialled, by the clock, or None.

    A schedule whose ``end_at`` has passed; a calling window that opens for no
    zone group (no contact) between now (or ``start_at``) and ``end_at``.
    Submit refuses such a spec naming the field; estimate says so.
    """
    end_ms = None if schedule is None else schedule.end_ms
    if end_ms is None:
        return None
    assert schedule is not None and schedule.end_at is not None
    if end_ms <= _ms(now):
        return RuleError(
            "schedule.end_at",
            f"{schedule.end_at} has already passed: no contact could be dialled",
        )
    if window is None or not groups.zones:
        return None
    start = max(now, datetime.fromtimestamp((schedule.start_ms or 0) / 1000, UTC))
    rule = window.window()
    for names in groups.zones:
        opening = rule.next_open([zone(name) for name in names], start)
        if opening is not None and _ms(opening) < end_ms:
            return None
    return RuleError(
        "calling_window",
        f"opens for no contact before schedule.end_at {schedule.end_at}: "
        "no contact could be dialled",
    )
