"""Filter dates (core.timeparse): absolute dates, calendar durations, named anchors and
the errors a user sees for anything else. No database, no Prefect."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from core.timeparse import ANCHORS, parse_duration, parse_instant

# A Tuesday afternoon at the end of March.
NOW = datetime(2026, 3, 31, 15, 30, 45, 123456, tzinfo=UTC)


@pytest.mark.parametrize(
    ("text", "now", "expected"),
    [
        ("-P1M", NOW, datetime(2026, 2, 28, 15, 30, 45, 123456, tzinfo=UTC)),
        ("-P1M", datetime(2024, 3, 31, tzinfo=UTC), datetime(2024, 2, 29, tzinfo=UTC)),
        ("P1M", datetime(2026, 1, 31, tzinfo=UTC), datetime(2026, 2, 28, tzinfo=UTC)),
        ("-P2M", datetime(2026, 5, 31, tzinfo=UTC), datetime(2026, 3, 31, tzinfo=UTC)),
        ("-P1Y", datetime(2024, 2, 29, tzinfo=UTC), datetime(2023, 2, 28, tzinfo=UTC)),
        ("P1Y", datetime(2024, 2, 29, tzinfo=UTC), datetime(2025, 2, 28, tzinfo=UTC)),
        ("-P1Y1M", datetime(2026, 3, 31, tzinfo=UTC), datetime(2025, 2, 28, tzinfo=UTC)),
        ("P2W", NOW, NOW + timedelta(weeks=2)),
        ("-P1DT6H", NOW, NOW - timedelta(days=1, hours=6)),
        ("PT30M", NOW, NOW + timedelta(minutes=30)),
        ("+P1D", NOW, NOW + timedelta(days=1)),
        ("-P1D", NOW, NOW - timedelta(days=1)),
        ("-P200Y", datetime(2026, 1, 1, tzinfo=UTC), datetime(1826, 1, 1, tzinfo=UTC)),
        ("P2400M", datetime(2026, 1, 1, tzinfo=UTC), datetime(2226, 1, 1, tzinfo=UTC)),
        ("-P73000D", datetime(2026, 1, 1, tzinfo=UTC), datetime(1826, 2, 19, tzinfo=UTC)),
    ],
)
def test_durations_are_calendar_arithmetic_clamped_at_month_ends(
    text: str, now: datetime, expected: datetime
) -> None:
    got = parse_instant(text, now)
    assert got == expected
    assert type(got) is datetime and got.tzinfo is UTC


def test_duration_is_relative_to_now_in_any_offset_and_naive_now_is_utc() -> None:
    paris = NOW.astimezone(timezone(timedelta(hours=2)))
    assert parse_instant("-P1M", paris) == datetime(2026, 2, 28, 15, 30, 45, 123456, tzinfo=UTC)
    assert parse_instant("-P1D", NOW.replace(tzinfo=None)) == NOW - timedelta(days=1)


def test_parse_duration_keeps_the_sign_and_calendar_units() -> None:
    duration = parse_duration("-P1Y2M")
    assert duration is not None and (duration.years, duration.months) == (-1, -2)
    assert parse_duration("2026-01-01") is None


ANCHOR_CASES = [
    ("now", NOW),
    ("today", datetime(2026, 3, 31, tzinfo=UTC)),
    ("start_of_day", datetime(2026, 3, 31, tzinfo=UTC)),
    ("yesterday", datetime(2026, 3, 30, tzinfo=UTC)),
    ("start_of_previous_day", datetime(2026, 3, 30, tzinfo=UTC)),
    ("start_of_week", datetime(2026, 3, 30, tzinfo=UTC)),  # Monday
    ("start_of_previous_week", datetime(2026, 3, 23, tzinfo=UTC)),
    ("start_of_month", datetime(2026, 3, 1, tzinfo=UTC)),
    ("start_of_previous_month", datetime(2026, 2, 1, tzinfo=UTC)),
    ("start_of_year", datetime(2026, 1, 1, tzinfo=UTC)),
    ("start_of_previous_year", datetime(2025, 1, 1, tzinfo=UTC)),
]


@pytest.mark.parametrize(("anchor", "expected"), ANCHOR_CASES)
def test_named_anchors_are_the_start_of_utc_calendar_periods(
    anchor: str, expected: datetime
) -> None:
    assert parse_instant(anchor, NOW) == expected
    assert parse_instant(f" {anchor.upper()} ", NOW) == expected


def test_every_documented_anchor_has_a_case() -> None:
    assert sorted(a for a, _ in ANCHOR_CASES) == sorted(ANCHORS)


@pytest.mark.parametrize(
    ("now", "anchor", "expected"),
    [
        # a Monday is its own start of week; Sunday belongs to the week that began on Monday
        (datetime(2026, 3, 30, 0, 0, tzinfo=UTC), "start_of_week", datetime(2026, 3, 30)),
        (datetime(2026, 3, 29, 23, 59, tzinfo=UTC), "start_of_week", datetime(2026, 3, 23)),
        (datetime(2026, 1, 1, 0, 0, tzinfo=UTC), "start_of_previous_month", datetime(2025, 12, 1)),
        (datetime(2026, 1, 1, 0, 0, tzinfo=UTC), "yesterday", datetime(2025, 12, 31)),
        (datetime(2026, 1, 1, 8, 0, tzinfo=UTC), "start_of_previous_week", datetime(2025, 12, 22)),
        # "now" in another offset: anchors are UTC days (23:30 at +02:00 is 21:30 UTC)
        (
            datetime(2026, 4, 1, 1, 30, tzinfo=timezone(timedelta(hours=2))),
            "start_of_month",
            datetime(2026, 3, 1),
        ),
    ],
)
def test_anchors_at_period_boundaries(now: datetime, anchor: str, expected: datetime) -> None:
    assert parse_instant(anchor, now) == expected.replace(tzinfo=UTC)


def test_last_month_is_previous_month_start_to_this_month_start() -> None:
    after = parse_instant("start_of_previous_month", NOW)
    before = parse_instant("start_of_month", NOW)
    assert (after, before) == (datetime(2026, 2, 1, tzinfo=UTC), datetime(2026, 3, 1, tzinfo=UTC))


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-01-01", datetime(2026, 1, 1, tzinfo=UTC)),
        ("2026-01-01T00:00:00Z", datetime(2026, 1, 1, tzinfo=UTC)),
        ("2026-01-01T00:00:00z", datetime(2026, 1, 1, tzinfo=UTC)),
        ("2026-01-01T12:30:00", datetime(2026, 1, 1, 12, 30, tzinfo=UTC)),
        ("2026-01-01T02:00:00+02:00", datetime(2026, 1, 1, tzinfo=UTC)),
        (" 2026-06-30T23:59:59.5Z ", datetime(2026, 6, 30, 23, 59, 59, 500000, tzinfo=UTC)),
    ],
)
def test_absolute_dates_ignore_now_and_naive_means_utc(text: str, expected: datetime) -> None:
    assert parse_instant(text, NOW) == expected


@pytest.mark.parametrize(
    "text",
    [
        "-P999999999999D",
        "P99999999999999999999Y",
        "PT4294967296S",  # would wrap to zero in pendulum's compiled parser
        "-P201Y",
        "P2412M",
        "-P73100D",
        "PT999999999H",
    ],
)
def test_durations_beyond_200_years_are_refused_with_the_limit(text: str) -> None:
    with pytest.raises(ValueError, match="out of range") as exc:
        parse_instant(text, NOW)
    assert "200 years" in str(exc.value) and "1..9999" in str(exc.value)


@pytest.mark.parametrize(
    ("now", "text"),
    [
        (datetime(9999, 12, 15, tzinfo=UTC), "P1M"),
        (datetime(1, 1, 15, tzinfo=UTC), "-P1M"),
        (datetime(1, 1, 15, tzinfo=UTC), "start_of_previous_month"),
        (datetime(1, 1, 1, tzinfo=UTC), "yesterday"),
    ],
)
def test_results_outside_years_1_to_9999_are_refused(now: datetime, text: str) -> None:
    with pytest.raises(ValueError, match=r"out of range .*1\.\.9999"):
        parse_instant(text, now)


@pytest.mark.parametrize(
    ("value", "why"),
    [
        ("", "empty"),
        ("   ", "empty"),
        ("P", "empty duration"),
        ("-PT", "empty duration"),
        ("P1.5M", "not a valid ISO 8601 duration"),
        ("P1D2M", "not a valid ISO 8601 duration"),
        ("P1W2D", "mixes weeks"),
        ("-P1D/2026-01-01", "is an interval"),
        ("P1Y/P2Y", "is an interval"),
        ("1D", "not a date"),
        ("last month", "not a date"),
        ("start_of_week-P1D", "not a date"),
        ("2026-13-01", "not a date"),
        ("2026-02-30T00:00:00Z", "not a date"),
        ("\ud800", "not valid text"),
        ("2026-01-01\udcff", "not valid text"),
        ("x" * 65, "longer than 64"),
        (None, "not NoneType"),
        (20260101, "not int"),
        (["-P1D"], "not list"),
    ],
)
def test_garbage_is_a_value_error_listing_the_accepted_forms(value: object, why: str) -> None:
    with pytest.raises(ValueError) as exc:
        parse_instant(value, NOW)  # type: ignore[arg-type]
    message = str(exc.value)
    assert why in message
    for form in ("2026-01-01T00:00:00Z", "2026-01-01", "-P1D", "-P1M", "start_of_month"):
        assert form in message
    message.encode("utf-8")  # safe to put in a JSON response or a log line


def test_relative_forms_default_to_the_current_time() -> None:
    before = datetime.now(UTC)
    got = parse_instant("-PT1H")
    assert before - timedelta(hours=1) <= got <= datetime.now(UTC) - timedelta(hours=1)
