"""The calling-window calculator on a fixed clock: DST, several zones, restricted
dates, windows crossing midnight; zone groups from phonenumbers' time-zone map."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import phonenumbers
import pytest
from phonenumbers import PhoneNumberType
from phonenumbers import timezone as phone_timezone

from campaigns.domain.policy import CallingWindow, ZoneGroups
from campaigns.domain.window import Window, drain_time, zone

NY = zone("America/New_York")
LA = zone("America/Los_Angeles")


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def rules(**fields: object) -> Window:
    data: dict[str, object] = {"start": "09:00", "end": "20:00", "timezone": "UTC"}
    data.update(fields)
    return CallingWindow.model_validate(data).window()


def test_start_is_inside_and_end_is_outside() -> None:
    window = rules()
    tz = zone("UTC")
    assert not window.open_in(tz, utc("2026-06-10T08:59:59"))
    assert window.open_in(tz, utc("2026-06-10T09:00:00"))
    assert window.open_in(tz, utc("2026-06-10T19:59:59"))
    assert not window.open_in(tz, utc("2026-06-10T20:00:00"))
    assert window.next_open_in(tz, utc("2026-06-10T20:00:00")) == utc("2026-06-11T09:00:00")


def test_days_name_the_local_day() -> None:
    window = rules(days=["mon", "tue", "wed", "thu", "fri"], timezone="America/New_York")
    # Friday 2026-06-12 21:00 in New York is Saturday 01:00 UTC: closed, and the
    # next opening is Monday 09:00 EDT.
    assert not window.open_in(NY, utc("2026-06-13T01:00:00"))
    assert window.next_open_in(NY, utc("2026-06-13T01:00:00")) == utc("2026-06-15T13:00:00")
    # Sunday 2026-06-14 23:30 UTC is Sunday 19:30 in New York: closed (a weekend day).
    assert not window.open_in(NY, utc("2026-06-14T23:30:00"))


def test_the_same_wall_clock_window_moves_with_dst() -> None:
    window = rules(timezone="America/New_York")
    # EST (UTC-5) on Saturday 2026-03-07, EDT (UTC-4) from Sunday 2026-03-08.
    assert window.next_open_in(NY, utc("2026-03-07T05:00:00")) == utc("2026-03-07T14:00:00")
    assert window.next_open_in(NY, utc("2026-03-08T05:00:00")) == utc("2026-03-08T13:00:00")
    # And back on 2026-11-01.
    assert window.next_open_in(NY, utc("2026-10-31T05:00:00")) == utc("2026-10-31T13:00:00")
    assert window.next_open_in(NY, utc("2026-11-01T06:00:00")) == utc("2026-11-01T14:00:00")


def test_a_start_in_the_skipped_hour_opens_when_the_clock_jumps() -> None:
    window = rules(start="02:30", end="05:00", timezone="America/New_York")
    # 2026-03-08: 02:00 EST jumps to 03:00 EDT (07:00 UTC); 02:30 never happens.
    opening = window.next_open_in(NY, utc("2026-03-08T05:00:00"))
    assert opening == utc("2026-03-08T07:00:00")
    assert opening.astimezone(NY).strftime("%H:%M %Z") == "03:00 EDT"
    assert not window.open_in(NY, utc("2026-03-08T06:59:59"))


def test_a_start_in_the_repeated_hour_opens_at_its_first_occurrence() -> None:
    window = rules(start="01:30", end="03:00", timezone="America/New_York")
    # 2026-11-01: 01:30 EDT (05:30 UTC) comes first, then 01:30 EST (06:30 UTC).
    assert window.next_open_in(NY, utc("2026-11-01T04:00:00")) == utc("2026-11-01T05:30:00")
    assert window.open_in(NY, utc("2026-11-01T06:45:00"))  # 01:45 EST, still open
    assert not window.open_in(NY, utc("2026-11-01T08:00:00"))  # 03:00 EST


def test_a_window_crossing_midnight_belongs_to_the_day_it_opens() -> None:
    window = rules(start="20:00", end="02:00", days=["fri"])
    tz = zone("UTC")
    assert window.overnight
    assert window.open_in(tz, utc("2026-11-27T21:00:00"))  # Friday evening
    assert window.open_in(tz, utc("2026-11-28T01:59:00"))  # Saturday, early
    assert not window.open_in(tz, utc("2026-11-28T02:00:00"))
    assert not window.open_in(tz, utc("2026-11-28T21:00:00"))  # Saturday evening
    assert not window.open_in(tz, utc("2026-11-27T01:00:00"))  # Friday early: Thursday's
    assert window.next_open_in(tz, utc("2026-11-28T03:00:00")) == utc("2026-12-04T20:00:00")


def test_a_window_crossing_midnight_across_a_dst_change() -> None:
    window = rules(start="22:00", end="03:00", timezone="America/New_York")
    # The night of 2026-03-07: 22:00 EST opens (03:00 UTC); the jump makes the
    # night an hour shorter: 03:00 EDT is 07:00 UTC, so 06:59 UTC is open.
    assert window.next_open_in(NY, utc("2026-03-07T20:00:00")) == utc("2026-03-08T03:00:00")
    assert window.open_in(NY, utc("2026-03-08T06:59:00"))
    assert not window.open_in(NY, utc("2026-03-08T07:00:00"))


def test_restricted_dates_close_the_day_and_the_night_running_into_it() -> None:
    window = rules(start="20:00", end="02:00", restricted_dates=["2026-12-25"])
    tz = zone("UTC")
    assert window.open_in(tz, utc("2026-12-24T21:00:00"))
    assert not window.open_in(tz, utc("2026-12-25T01:00:00"))  # Christmas, after midnight
    assert not window.open_in(tz, utc("2026-12-25T21:00:00"))  # the window opening on it
    assert not window.open_in(tz, utc("2026-12-26T01:00:00"))  # its tail
    assert window.next_open_in(tz, utc("2026-12-25T00:00:00")) == utc("2026-12-26T20:00:00")
    day = rules(restricted_dates=["2026-12-25"])
    assert day.next_open_in(tz, utc("2026-12-25T10:00:00")) == utc("2026-12-26T09:00:00")


def test_restricted_dates_are_local_dates() -> None:
    window = rules(timezone="Pacific/Auckland", restricted_dates=["2026-12-25"])
    auckland = zone("Pacific/Auckland")
    # 2026-12-24T22:00Z is 11:00 on the 25th in Auckland (NZDT, UTC+13).
    assert not window.open_in(auckland, utc("2026-12-24T22:00:00"))
    assert window.open_in(auckland, utc("2026-12-23T22:00:00"))


def test_several_zones_open_only_together() -> None:
    window = rules(timezone="America/New_York")
    # June: New York is open 13:00-24:00 UTC, Los Angeles 16:00-03:00 UTC.
    assert window.open_in(NY, utc("2026-06-10T14:00:00"))
    assert not window.open_everywhere([NY, LA], utc("2026-06-10T14:00:00"))
    assert window.next_open([NY, LA], utc("2026-06-10T10:00:00")) == utc("2026-06-10T16:00:00")
    assert window.open_everywhere([NY, LA], utc("2026-06-10T23:59:00"))
    # After midnight UTC New York has closed though Los Angeles is still open.
    assert window.next_open([NY, LA], utc("2026-06-11T00:30:00")) == utc("2026-06-11T16:00:00")


def test_zones_whose_windows_never_overlap_never_open() -> None:
    window = rules(start="09:00", end="10:00")
    far_apart = [zone("Pacific/Kiritimati"), zone("Pacific/Pago_Pago")]  # UTC+14 and UTC-11
    assert window.next_open(far_apart, utc("2026-06-10T00:00:00")) is None


def test_an_all_day_window_ends_at_midnight() -> None:
    window = rules(start="00:00", end="24:00", days=["sat", "sun"])
    tz = zone("UTC")
    assert window.open_in(tz, utc("2026-11-28T00:00:00"))
    assert window.open_in(tz, utc("2026-11-29T23:59:59"))
    assert not window.open_in(tz, utc("2026-11-30T00:00:00"))


def test_window_needs_days_and_distinct_times() -> None:
    with pytest.raises(ValueError, match="equal"):
        Window(frozenset({0}), 3600, 3600)
    with pytest.raises(ValueError, match="days"):
        Window(frozenset(), 0, 3600)
    assert Window(frozenset({0}), 0, 3600, frozenset({date(2026, 1, 1)})).start == 0


def test_zone_groups_come_from_the_number() -> None:
    rules_ = CallingWindow.model_validate(
        {"start": "09:00", "end": "20:00", "default_timezone": "Europe/Paris"}
    )
    groups = ZoneGroups(rules_)
    new_york = groups.group_of("+12125550100")
    los_angeles = groups.group_of("+13105550100")
    unknown = groups.group_of("+15551240001")  # fictional: maps to no zone
    north_dakota = groups.group_of("+17015550100")
    assert groups.zones[new_york] == ("America/New_York",)
    assert groups.zones[los_angeles] == ("America/Los_Angeles",)
    assert groups.zones[unknown] == ("Europe/Paris",)
    assert groups.zones[north_dakota] == ("America/Denver", "America/North_Dakota/Center")
    assert groups.group_of("+12125550199") == new_york
    assert len(set(groups.zones)) == len(groups.zones) == 4


def test_zone_groups_follow_phonenumbers_exactly_whatever_the_number_type() -> None:
    """The number's type matters, not only its prefix: a Russian mobile's prefix
    names one zone, phonenumbers gives the country's sixteen (it may be anywhere)."""
    rules_ = CallingWindow.model_validate(
        {"start": "09:00", "end": "20:00", "default_timezone": "UTC"}
    )
    groups = ZoneGroups(rules_)
    mobile = groups.zones[groups.group_of("+79123456789")]
    assert len(mobile) == 16 and "Europe/Moscow" in mobile
    checked = 0
    for region in sorted(phonenumbers.SUPPORTED_REGIONS):
        for kind in (PhoneNumberType.FIXED_LINE, PhoneNumberType.MOBILE, PhoneNumberType.TOLL_FREE):
            example = phonenumbers.example_number_for_type(region, kind)
            if example is None:
                continue
            number = phonenumbers.format_number(example, phonenumbers.PhoneNumberFormat.E164)
            library = phone_timezone.time_zones_for_number(phonenumbers.parse(number, None))
            expected = tuple(sorted(z for z in library if z != "Etc/Unknown")) or ("UTC",)
            expected = tuple(z for z in expected if _known_zone(z)) or ("UTC",)
            assert groups.zones[groups.group_of(number)] == expected, number
            checked += 1
    assert checked > 500


def _known_zone(name: str) -> bool:
    try:
        zone(name)
    except (KeyError, ValueError, OSError):
        return False
    return True


def test_zone_groups_without_recipient_zones() -> None:
    assert ZoneGroups(None).zones == [()]
    assert ZoneGroups(None).group_of("+12125550100") == 0
    fixed = ZoneGroups(
        CallingWindow.model_validate({"start": "09:00", "end": "20:00", "timezone": "Asia/Tokyo"})
    )
    assert fixed.group_of("+12125550100") == 0
    assert fixed.zones == [("Asia/Tokyo",)]


# --- the ETA: contacts drained at the pace, only while their window is open ---------

MONDAY_8 = datetime(2026, 1, 5, 8, 0, tzinfo=UTC)
"""A Monday in winter, 08:00 UTC (New York is UTC-5)."""
NINE_TO_TEN = Window(frozenset(range(7)), 9 * 3600, 10 * 3600)


def test_drain_time_without_a_window_is_the_pace() -> None:
    assert drain_time(None, [[]], [600], 1.0, MONDAY_8) == MONDAY_8 + timedelta(minutes=10)
    assert drain_time(None, [[]], [0], 1.0, MONDAY_8) == MONDAY_8


def test_drain_time_waits_for_the_window_and_continues_the_next_day() -> None:
    utc = [zone("UTC")]
    assert drain_time(NINE_TO_TEN, [utc], [30], 1.0, MONDAY_8) == datetime(
        2026, 1, 5, 9, 0, 30, tzinfo=UTC
    )
    # 3600 s of calls, a 3600 s window: exactly the first hour; 5400 spill into Tuesday.
    assert drain_time(NINE_TO_TEN, [utc], [5400], 1.0, MONDAY_8) == datetime(
        2026, 1, 6, 9, 30, tzinfo=UTC
    )


def test_drain_time_follows_each_group_and_stops_at_the_end() -> None:
    groups = [[zone("UTC")], [zone("America/New_York")]]
    # London's group is done at 09:01; New York's window opens at 14:00 UTC.
    assert drain_time(NINE_TO_TEN, groups, [60, 120], 1.0, MONDAY_8) == datetime(
        2026, 1, 5, 14, 2, tzinfo=UTC
    )
    end = datetime(2026, 1, 5, 12, 0, tzinfo=UTC)
    assert drain_time(NINE_TO_TEN, groups, [60, 120], 1.0, MONDAY_8, end) == end


def test_drain_time_gives_up_beyond_its_horizon() -> None:
    closed = Window(frozenset({0}), 9 * 3600, 10 * 3600, frozenset({date(2026, 1, 5)}))
    assert drain_time(closed, [[zone("UTC")]], [10**9], 0.001, MONDAY_8) is None
