"""``campaigns usage``: the month's Talkdesk Billing Insights usage by type and product;
and the account balance read once, for ``campaigns estimate --account``."""

from __future__ import annotations

from typing import Any

from campaigns.domain.money import format_money
from campaigns.providers import make_provider
from campaigns.providers.balance import AccountBalance, make_balance_source
from campaigns.providers.billing_insights import MonthlyUsage, UsageError, usage_client
from campaigns.settings import Settings

__all__ = [
    "UsageError",
    "UsageNotConfigured",
    "fetch_month",
    "missing_usage_settings",
    "read_balance",
    "usage_json",
    "usage_lines",
]


class UsageNotConfigured(ValueError):
    """The usage source settings are missing; the message names the setting."""


async def fetch_month(settings: Settings, month: str) -> MonthlyUsage:
    """Every usage record of ``month`` (YYYY-MM) over all pages.

    Raises :class:`UsageNotConfigured`, or the client's
    :class:`~campaigns.providers.billing_insights.UsageError` (a 403 as
    :class:`~campaigns.providers.billing_insights.UsageRefused`).
    """
    missing = missing_usage_settings(settings)
    client = None if missing else usage_client(settings)
    if client is None:
        names = ", ".join(missing or ["DISPATCHER_USAGE_URL"])
        raise UsageNotConfigured(f"{names}: must be set for campaigns usage")
    try:
        return await client.monthly_usage(month)
    finally:
        await client.aclose()


def missing_usage_settings(settings: Settings) -> list[str]:
    """Every setting ``campaigns usage`` needs and does not have, named at once."""
    missing = [
        name
        for name, value in (
            ("DISPATCHER_USAGE_URL", settings.usage_url),
            ("DISPATCHER_USAGE_CLIENT_ID", settings.usage_client_id),
            ("DISPATCHER_USAGE_CLIENT_SECRET", settings.usage_client_secret),
        )
        if value is None
    ]
    if settings.usage_token_endpoint is None:
        missing.append("DISPATCHER_USAGE_TOKEN_URL (or DISPATCHER_USAGE_ACCOUNT_NAME)")
    return missing


def _groups(usage: MonthlyUsage) -> list[dict[str, Any]]:
    """Records summed by (type, product, currency), in a stable order."""
    groups: dict[tuple[str, str, str], dict[str, Any]] = {}
    for record in usage.records:
        key = (record.type, record.product_id, record.currency)
        group = groups.setdefault(
            key,
            {
                "type": record.type,
                "product_id": record.product_id,
                "description": record.description,
                "currency": record.currency,
                "records": 0,
                "total_micros": 0,
            },
        )
        group["records"] += 1
        group["total_micros"] += record.total_micros
    return [groups[k] for k in sorted(groups)]


def usage_json(usage: MonthlyUsage) -> dict[str, Any]:
    return {
        "month": usage.month,
        "accounts": usage.accounts,
        "filters": usage.filters,
        "pages": usage.pages,
        "records": len(usage.records),
        "totals_micros": usage.totals(),
        "by_product": _groups(usage),
    }


def usage_lines(usage: MonthlyUsage) -> list[str]:
    lines = [
        f"usage {usage.month} for {', '.join(usage.accounts)}: "
        f"{len(usage.records)} records on {usage.pages} pages"
    ]
    for group in _groups(usage):
        amount = format_money(group["total_micros"], group["currency"], exact=True)
        lines.append(
            f"  {group['type']:<16} {group['product_id'] or '-':<24} "
            f"{amount:>20}  ({group['records']} records)"
        )
    for currency, micros in sorted(usage.totals().items()):
        total = format_money(micros, currency, exact=True)
        lines.append(f"  {'total':<16} {'':<24} {total:>20}")
    return lines


async def read_balance(settings: Settings) -> AccountBalance | None:
    """The account's balance right now, from the configured source (``campaigns estimate --account``)."""
    provider = make_provider(settings)
    source = make_balance_source(settings, provider)
    try:
        return await source.fetch()
    finally:
        await source.aclose()
        await provider.aclose()
