"""Schemathesis hooks for tests/integration/test_api_schemathesis.py (loaded through
``SCHEMATHESIS_HOOKS``).

A create without ``campaign_id`` is named by its Idempotency-Key, and generated keys
repeat (``"0"`` is the simplest string the pattern allows): every create would name
one campaign, the first cancel would end it, and no later chain could pause or resume
it. So each valid key a create is sent with is made unique; an invalid one is left as
generated, for the negative checks.
"""

from __future__ import annotations

import itertools
import re
from typing import Any

import schemathesis

_KEY = re.compile(r"[!-~]{1,255}")
_SERIAL = itertools.count()


@schemathesis.hook
def before_call(context: Any, case: Any, kwargs: dict[str, Any]) -> None:
    """Before each create is sent (every phase, the stateful one too)."""
    if case.operation.method.upper() != "POST" or case.operation.path != "/v1/campaigns":
        return
    headers = kwargs.get("headers")
    key = headers.get("Idempotency-Key") if isinstance(headers, dict) else None
    if isinstance(headers, dict) and isinstance(key, str) and _KEY.fullmatch(key):
        headers["Idempotency-Key"] = f"{key[:200]}-{next(_SERIAL)}"
