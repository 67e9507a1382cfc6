"""The contact policy's spec side: stored forms, fingerprints, the estimate, waits."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime

from campaigns.domain.spec import parse_spec
from campaigns.engine.policy import Wait
from campaigns.operators.estimate import estimate, policy_estimate
from tests.conftest import spec_dict


def test_a_spec_without_policy_keeps_its_fingerprint() -> None:
    spec = parse_spec(spec_dict("plain", contacts=2))
    data = spec.model_dump(mode="json")
    for name in (
        "calling_window",
        "schedule",
        "retry",
        "suppress",
        "default_region",
        "call",
        "callbacks",
    ):
        data.pop(name)
    assert spec.fingerprint_data(legacy=True) == data, "what campaigns stored before compared"
    canonical = json.dumps(spec.fingerprint_data(), sort_keys=True, separators=(",", ":"))
    assert spec.fingerprint() == hashlib.sha256(canonical.encode()).hexdigest()
    with_window = parse_spec(
        spec_dict(
            "plain",
            contacts=2,
            calling_window={"start": "09:00", "end": "20:00", "timezone": "UTC"},
        )
    )
    assert with_window.fingerprint() != spec.fingerprint()


def test_retry_rules_are_stored_for_the_settle_script() -> None:
    spec = parse_spec(
        spec_dict(
            "r",
            retry={
                "busy": {"after_seconds": 600, "max_attempts": 3},
                "failed": {"after_seconds": 5, "max_attempts": 1},
            },
        )
    )
    assert spec.retry is not None
    assert spec.retry.stored() == {"busy": [600_000, 3], "failed": [5_000, 1]}
    assert spec.retry.max_attempts == 3


def test_suppress_numbers_are_normalized_and_deduplicated() -> None:
    spec = parse_spec(spec_dict("s", suppress=["+1 555 124 0001", "+15551240001", "+15551240002"]))
    assert spec.suppress == ["+15551240001", "+15551240002"]


def test_the_estimate_counts_suppressed_contacts_attempts_and_the_next_opening() -> None:
    spec = parse_spec(
        spec_dict(
            "e",
            contacts=4,
            suppress=["+15551240001"],
            retry={"no_answer": {"after_seconds": 60, "max_attempts": 2}},
            calling_window={
                "start": "09:00",
                "end": "20:00",
                "timezone": "recipient",
                "default_timezone": "America/New_York",
            },
            schedule={"end_at": "2026-12-05T22:00:00Z"},
        )
    )
    found = policy_estimate(spec, now=datetime(2026, 12, 1, 3, 0, tzinfo=UTC))
    assert found is not None
    assert (found.suppressed_in_spec, found.contacts_to_call) == (1, 3)
    assert found.max_attempts_per_contact == 2
    assert found.worst_case_with_retries_micros == spec.worst_case_call_micros() * 3 * 2
    # +1555 numbers map to no zone: the default zone's 09:00 is 14:00 UTC in December.
    assert (found.zone_groups, found.window_open_now) == (1, False)
    assert found.next_window_opening == "2026-12-01T14:00:00Z"
    assert found.schedule_end_at == "2026-12-05T22:00:00Z"
    assert estimate(parse_spec(spec_dict("none"))).policy is None
    lines = "\n".join(estimate(spec).lines())
    assert "suppressed in spec    1 (3 contacts to call)" in lines


def test_a_wait_is_bounded_both_ways() -> None:
    assert Wait("window", None).defer_seconds(1_000, 60) == 60
    assert Wait("window", 1_000 + 3_600_000).defer_seconds(1_000, 60) == 60
    assert Wait("retry", 1_000 + 2_500).defer_seconds(1_000, 60) == 2.5
    assert Wait("retry", 500).defer_seconds(1_000, 60) == 0.2


def test_the_estimate_sizes_the_schedule_by_open_minutes_and_pace() -> None:
    spec = parse_spec(
        spec_dict(
            "sized",
            contacts=4,
            pacing={"calls_per_second": 0.001, "batch_size": 10, "max_in_flight": 50},
            calling_window={"start": "09:00", "end": "20:00", "timezone": "UTC"},
            schedule={"start_at": "2026-12-01T19:00:00Z", "end_at": "2026-12-01T21:00:00Z"},
        )
    )
    found = policy_estimate(spec, now=datetime(2026, 11, 30, tzinfo=UTC))
    assert found is not None
    # 19:00-20:00 is open (60 minutes), 20:00-21:00 closed: 3,600 s at 0.001 per second.
    assert (found.schedule_capacity_calls, found.expire_at_least) == (3, 1)
