"""The account rule: can the provider account pay for what is about to be sent?

A campaign's own budget is checked by the claim script; this is the other
guard (the VoIPBIN billing tutorial: "check the balance before initiating calls", "add a buffer
(10-20 %)"). Every campaign on the account draws on one balance, so the
worst case of the next batch is added to what every campaign has already
reserved, tokens are spent first exactly as :meth:`Rate.charge` spends them,
and a buffer goes on top. Pure arithmetic on integers: no I/O here.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Literal

import phonenumbers
from phonenumbers.phonenumberutil import COUNTRY_CODE_TO_REGION_CODE

from campaigns.domain.rating import Charge, Rate, ceil_div

__all__ = [
    "DEFAULT_CREDIT_RATES",
    "Commitment",
    "CreditTable",
    "Need",
    "Rounding",
    "batch_charge",
    "credits_need",
    "destination",
    "micros_need",
    "parse_credit_rates",
    "with_buffer",
]

Rounding = Literal["minute", "second"]

DEFAULT_CREDIT_RATES = "US=2,CA=2,GB=3,default=10"
"""voxpria.com "Understanding Billing & Credits": US/Canada 1-2, UK 2-3, other
countries 3-10 credits a minute; each at the top of its range (the Credits API
page's flat 3 credits a minute is inside every range but the US/Canada one)."""

_COUNTRY = re.compile(r"[A-Z]{2}", re.ASCII)
_CALLING_CODE = re.compile(r"\+[1-9][0-9]{0,2}", re.ASCII)


def parse_credit_rates(text: str) -> tuple[dict[str, int], int]:
    """``"US=2,CA=2,+44=3,default=10"`` as ``({"US": 2, "CA": 2, "+44": 3}, 10)``.

    Keys are ISO 3166-1 alpha-2 countries or ``+`` calling codes; ``default``
    is required (the rate of every other destination). ValueError names the
    entry at fault.
    """
    rates: dict[str, int] = {}
    default: int | None = None
    for number, entry in enumerate((e.strip() for e in text.split(",")), 1):
        if not entry:
            continue
        key, sep, value = (part.strip() for part in entry.partition("="))
        if not sep or not value.isascii() or not value.isdigit() or len(value) > 6:
            raise ValueError(f"entry {number}: expected KEY=credits per minute, e.g. GB=3")
        if key == "default":
            default = int(value)
        elif _COUNTRY.fullmatch(key) or _CALLING_CODE.fullmatch(key):
            if key in rates:
                raise ValueError(f"entry {number}: {key} is given twice")
            rates[key] = int(value)
        else:
            raise ValueError(
                f"entry {number}: the key must be an ISO country (GB), a calling code (+44) "
                "or default"
            )
    if default is None:
        raise ValueError("needs a default=N entry: the rate of every other destination")
    return rates, default


_PLAIN = re.compile(r"\+([1-9][0-9]{2,19})", re.ASCII)
_SHARED_CACHE: dict[tuple[str, str, int], str | None] = {}
_SHARED_CACHE_MAX = 200_000
_SHARED_KEY_DIGITS = 7
"""A shared calling code's region is read from the national number's leading digits
(NANP: area code and exchange); seven digits and the length key the cache."""


def destination(number: str) -> tuple[str | None, str] | None:
    """``(ISO region or None, "+calling code")`` of an E.164 number, as
    ``phonenumbers.region_code_for_number`` answers; None if it does not parse.

    A calling code of one region answers without parsing (``phonenumbers`` does
    the same: no validation for a code of one region); a shared one (+1, +7,
    +44, ...) asks ``phonenumbers`` once per code, leading national digits and
    length, so a million contacts cost a few thousand parses, not a million.
    """
    plain = _PLAIN.fullmatch(number)
    if plain is None:
        return _parsed_destination(number)
    digits = plain.group(1)
    for size in (1, 2, 3):
        regions = COUNTRY_CODE_TO_REGION_CODE.get(int(digits[:size]))
        if regions is None:
            continue
        code = digits[:size]
        if len(regions) == 1:
            region = regions[0]
            return (None if region == "001" else region), f"+{code}"
        national = digits[size:]
        key = (code, national[:_SHARED_KEY_DIGITS], len(national))
        if key not in _SHARED_CACHE:
            if len(_SHARED_CACHE) >= _SHARED_CACHE_MAX:
                _SHARED_CACHE.clear()
            located = _parsed_destination(number)
            _SHARED_CACHE[key] = None if located is None else located[0]
        return _SHARED_CACHE[key], f"+{code}"
    return None


def _parsed_destination(number: str) -> tuple[str | None, str] | None:
    try:
        parsed = phonenumbers.parse(number, None)
    except phonenumbers.NumberParseException:
        return None
    region = phonenumbers.region_code_for_number(parsed)
    return (region if region and region != "001" else None), f"+{parsed.country_code}"


@dataclass(frozen=True, slots=True)
class CreditTable:
    """Voxpria credits a call can take, by destination (voxpria.com Billing & Credits).

    ``rates``: ISO country or ``+`` calling code -> credits per minute; a
    destination matched by several entries takes the highest (the worst case
    is what is reserved); one matched by none takes ``default``. Every attempt
    costs at least ``minimum`` credits, answered or not; ``rounding`` is what
    a minute means: ``minute`` bills each started minute whole, ``second``
    pro rata, rounded up to a whole credit per call.
    """

    rates: dict[str, int] = field(default_factory=dict)
    default: int = 10
    minimum: int = 1
    rounding: Rounding = "minute"

    @classmethod
    def parse(cls, text: str, minimum: int = 1, rounding: Rounding = "minute") -> CreditTable:
        rates, default = parse_credit_rates(text)
        return cls(rates, default, minimum, rounding)

    def rate_for(self, number: str) -> int:
        """Credits per minute to ``number`` (E.164), the highest entry that matches it."""
        located = destination(number)
        if located is None:
            return self.default
        region, code = located
        found = [self.rates[key] for key in (region, code) if key is not None and key in self.rates]
        return max(found) if found else self.default

    def call_credits(self, rate: int, seconds: int) -> int:
        """What one attempt of ``seconds`` (0: unanswered) takes at ``rate`` a minute."""
        seconds = max(seconds, 0)
        if self.rounding == "minute":
            used = rate * ceil_div(seconds, 60)
        else:
            used = ceil_div(rate * seconds, 60)
        return max(used, self.minimum)

    def worst_call(self, number: str, max_call_seconds: int) -> int:
        """The most one attempt to ``number`` can take: ``max_call_seconds`` at its rate."""
        return self.call_credits(self.rate_for(number), max(max_call_seconds, 1))

    def highest_rate(self, numbers: Iterable[str]) -> int:
        """The highest rate any of ``numbers`` can be billed at (``default`` if none)."""
        rates = {self.rate_for(n) for n in numbers}
        return max(rates) if rates else self.default

    @property
    def top_rate(self) -> int:
        """The highest rate of the table: what an unknown destination could cost."""
        return max([self.default, *self.rates.values()])


@dataclass(frozen=True, slots=True)
class Commitment:
    """What one campaign holds on the account: its reservations and how they were priced."""

    reserved_micros: int
    worst_case_micros: int
    max_call_seconds: int
    rate: Rate
    credits_per_call: int = 0
    """Voxpria: the most credits one of its calls can take (its highest destination rate)."""

    @property
    def calls(self) -> int:
        """Outstanding calls behind the reservation (each reserved its worst case)."""
        if self.reserved_micros <= 0:
            return 0
        if self.worst_case_micros <= 0:
            return 1
        return ceil_div(self.reserved_micros, self.worst_case_micros)

    @property
    def tokens(self) -> int:
        """The most tokens those calls can still take (token-eligible rates only)."""
        if self.rate.tokens_per_minute == 0:
            return 0
        minutes = ceil_div(self.rate.billed_seconds(max(self.max_call_seconds, 1)), 60)
        return self.calls * minutes * self.rate.tokens_per_minute


@dataclass(frozen=True, slots=True)
class Need:
    """The gate's arithmetic, kept whole so a halt message can name every part."""

    committed: int
    """Other calls' outstanding worst cases, in the balance's unit."""
    batch: int
    """The next batch's worst case after tokens, in the balance's unit."""
    batch_tokens: int
    """Tokens the next batch may spend."""
    tokens_free: int
    """Tokens left once outstanding token-eligible calls are counted."""
    buffer_percent: int
    total: int
    """``(committed + batch)`` plus the buffer, rounded up."""


def with_buffer(amount: int, percent: int) -> int:
    """``amount`` plus ``percent`` %, rounded up to a whole unit."""
    return ceil_div(amount * (100 + percent), 100)


def batch_charge(rate: Rate, max_call_seconds: int, calls: int, tokens: int) -> Charge:
    """The worst case of ``calls`` calls, each spending whole-minute tokens first.

    Call by call through :meth:`Rate.charge`, so a token-eligible rate covers
    the first calls' minutes with tokens and overflows to credit exactly as
    the provider bills it; a credit-only rate never touches the tokens.
    """
    seconds = max(max_call_seconds, 1)
    spent_tokens = credit = 0
    left = max(tokens, 0)
    for done in range(max(calls, 0)):
        charge = rate.charge(seconds, left)
        if charge.tokens == 0 and charge.credit_micros:
            # No token left for this call: the rest are all credit alike.
            credit += charge.credit_micros * (calls - done)
            break
        spent_tokens += charge.tokens
        credit += charge.credit_micros
        left -= charge.tokens
    return Charge(spent_tokens, credit)


def micros_need(
    *,
    rate: Rate,
    max_call_seconds: int,
    calls: int,
    tokens: int,
    commitments: list[Commitment],
    buffer_percent: int,
) -> Need:
    """Credit micros the account must hold before ``calls`` more calls go out.

    Outstanding calls count at their reserved worst case in credit, and the
    tokens they could still take are not offered to this batch: whichever
    call the provider bills first, the account stays covered.
    """
    committed = sum(c.reserved_micros for c in commitments)
    tokens_free = max(tokens - sum(c.tokens for c in commitments), 0)
    charge = batch_charge(rate, max_call_seconds, calls, tokens_free)
    total = with_buffer(committed + charge.credit_micros, buffer_percent)
    return Need(committed, charge.credit_micros, charge.tokens, tokens_free, buffer_percent, total)


def credits_need(
    *, per_call: int, calls: int, commitments: list[Commitment], buffer_percent: int
) -> Need:
    """The same rule in Voxpria credits (no tokens there): ``per_call`` is the worst
    case of one call of this campaign, each commitment's calls count at theirs."""
    committed = sum(c.calls * c.credits_per_call for c in commitments)
    batch = calls * per_call
    total = with_buffer(committed + batch, buffer_percent)
    return Need(committed, batch, 0, 0, buffer_percent, total)
