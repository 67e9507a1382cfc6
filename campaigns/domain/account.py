"""The account rule: can the provider account pay for what is about to be sent?

A campaign's own budget is checked by the claim script; this is the other
guard (seed 001: "check the balance before initiating calls", "add a buffer
(10-20 %)"). Every campaign on the account draws on one balance, so the
worst case of the next batch is added to what every campaign has already
reserved, tokens are spent first exactly as :meth:`Rate.charge` spends them,
and a buffer goes on top. Pure arithmetic on integers: no I/O here.
"""

from __future__ import annotations

from dataclasses import dataclass

from campaigns.domain.rating import Charge, Rate, ceil_div

__all__ = [
    "VOXPRIA_CREDITS_PER_MINUTE",
    "Commitment",
    "Need",
    "batch_charge",
    "credits_need",
    "credits_per_call",
    "micros_need",
    "with_buffer",
]

VOXPRIA_CREDITS_PER_MINUTE = 3
"""Seed 002: a voice call costs 3 credits per started minute."""


@dataclass(frozen=True, slots=True)
class Commitment:
    """What one campaign holds on the account: its reservations and how they were priced."""

    reserved_micros: int
    worst_case_micros: int
    max_call_seconds: int
    rate: Rate

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


def credits_per_call(max_call_seconds: int) -> int:
    """Voxpria's worst case of one call: 3 credits per started minute."""
    return VOXPRIA_CREDITS_PER_MINUTE * ceil_div(max(max_call_seconds, 1), 60)


def credits_need(
    *, max_call_seconds: int, calls: int, commitments: list[Commitment], buffer_percent: int
) -> Need:
    """The same rule in Voxpria credits (no tokens there)."""
    committed = sum(c.calls * credits_per_call(c.max_call_seconds) for c in commitments)
    batch = calls * credits_per_call(max_call_seconds)
    total = with_buffer(committed + batch, buffer_percent)
    return Need(committed, batch, 0, 0, buffer_percent, total)
