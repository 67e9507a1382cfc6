"""Budget-safe outbound call campaign dispatcher.

The public API for other Python services::

    from campaigns import CampaignSpec, submit_campaign, CampaignClient

Everything else is reachable through its module (``campaigns.domain.rating``,
``campaigns.store``, ...), but only these names are promised to stay.
"""

from campaigns.domain.contacts import Contacts
from campaigns.domain.errors import ErrorClass, ProviderError, classify
from campaigns.domain.money import format_micros, parse_micros
from campaigns.domain.rating import PRESETS, Increments, Rate
from campaigns.domain.spec import CampaignSpec, Contact, SpecError, load_spec, parse_spec
from campaigns.operators.control import (
    CampaignClient,
    ControlError,
    NotFound,
    SubmitResult,
    submit_campaign,
)
from campaigns.operators.estimate import Estimate, estimate
from campaigns.settings import Settings

__all__ = [
    "PRESETS",
    "CampaignClient",
    "CampaignSpec",
    "Contact",
    "Contacts",
    "ControlError",
    "ErrorClass",
    "Estimate",
    "Increments",
    "NotFound",
    "ProviderError",
    "Rate",
    "Settings",
    "SpecError",
    "SubmitResult",
    "classify",
    "estimate",
    "format_micros",
    "load_spec",
    "parse_micros",
    "parse_spec",
    "submit_campaign",
]
