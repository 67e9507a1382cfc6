"""Hypothesis profiles for the fuzzing harness.

The default profile fits CI; ``make fuzz`` (``FUZZ=long``) runs many more
examples per entry point. Every fuzz test asserts the same contract: a clear
error naming the field, nothing written (or every write consistent), the worker
alive, and no secret in any output.
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

settings.register_profile(
    "fuzz-ci",
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
    derandomize=False,
)
settings.register_profile(
    "fuzz-long",
    max_examples=int(os.environ.get("FUZZ_EXAMPLES", "2000")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)

FUZZ_PROFILE = "fuzz-long" if os.environ.get("FUZZ") == "long" else "fuzz-ci"
"""Fuzz tests decorate with ``@settings(settings.get_profile(FUZZ_PROFILE))``
(or load it per test) so the rest of the suite keeps hypothesis' defaults."""
