"""Budget-safe outbound call campaign dispatcher.

The public API for other Python services::

    from campaigns import CampaignSpec, submit_campaign, CampaignClient

Everything else is reachable through its module (``campaigns.rating``,
``campaigns.store``, ...), but only these names are promised to stay.
"""

from campaigns.control import CampaignClient, ControlError, NotFound, SubmitResult, submit_campaign
from campaigns.errors import ErrorClass, ProviderError, classify
from campaigns.estimate import Estimate, estimate
from campaigns.money import format_micros, parse_micros
from campaigns.rating import PRESETS, Increments, Rate
from campaigns.settings import Settings
from campaigns.spec import CampaignSpec, Contact, SpecError, load_spec, parse_spec

__all__ = [
    "PRESETS",
    "CampaignClient",
    "CampaignSpec",
    "Contact",
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
