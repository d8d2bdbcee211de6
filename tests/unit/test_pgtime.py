"""PostgreSQL's timestamps and dates past Arrow's range: calendar arithmetic, PostgreSQL's text
in, the export's text out, and the Arrow paths that hand over to them."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core.pgtime import (
    DATE_INFINITY,
    TIMESTAMP_INFINITY,
    UnrepresentableValue,
    civil_from_days,
    days_from_civil,
    format_date,
    format_timestamp,
    parse_date,
    parse_timestamp,
)
from core.types import Column
from exporters.base import iso_dates, iso_timestamps, pg_temporal

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
PG_FIRST_US = -210_866_803_200_000_000  # 4714-11-24 BC 00:00 UTC: PostgreSQL's first instant
FINITE_US = st.integers(-TIMESTAMP_INFINITY + 1, TIMESTAMP_INFINITY - 1)
INFINITIES = [-TIMESTAMP_INFINITY, TIMESTAMP_INFINITY]


def _pg_text(micros: int) -> str:
    """What PostgreSQL writes for ``micros`` (``DateStyle`` ISO, UTC): built from Python's
    calendar for years 1-9999, an independent oracle of the parser and formatter."""
    moment = EPOCH + timedelta(microseconds=micros)
    fraction = f".{moment.microsecond:06d}".rstrip("0").rstrip(".")
    return moment.strftime("%Y-%m-%d %H:%M:%S").rjust(19, "0") + fraction + "+00"


@settings(max_examples=300, deadline=None)
@given(day=st.dates())
def test_calendar_arithmetic_matches_pythons_for_years_1_to_9999(day: date) -> None:
    days = (day - date(1970, 1, 1)).days
    assert days_from_civil(day.year, day.month, day.day) == days
    assert civil_from_days(days) == (day.year, day.month, day.day)


@settings(max_examples=300, deadline=None)
@given(days=st.integers(-(2**40), 2**40))
def test_calendar_arithmetic_round_trips_any_day(days: int) -> None:
    assert days_from_civil(*civil_from_days(days)) == days


@settings(max_examples=300, deadline=None)
@given(moment=st.datetimes(timezones=st.just(UTC)))
def test_postgres_text_of_years_1_to_9999_parses_and_formats_as_python_does(
    moment: datetime,
) -> None:
    micros = (moment - EPOCH) // timedelta(microseconds=1)
    assert parse_timestamp(_pg_text(micros), "t") == micros
    expected = moment.strftime("%Y-%m-%dT%H:%M:%S").rjust(19, "0") + f".{moment.microsecond:06d}Z"
    assert format_timestamp(micros) == expected


def _as_postgres(micros: int) -> str:
    """PostgreSQL's text of an instant, from the export's text of it (astronomical year 0 is
    1 BC)."""
    if abs(micros) == TIMESTAMP_INFINITY:
        return "infinity" if micros > 0 else "-infinity"
    day, clock = format_timestamp(micros)[:-1].split("T")
    year, month_day = int(day[:-6]), day[-5:]
    if year > 0:
        return f"{year:04d}-{month_day} {clock}+00"
    return f"{1 - year:04d}-{month_day} {clock}+00 BC"


@settings(max_examples=300, deadline=None)
@given(micros=FINITE_US)
def test_any_instant_round_trips_through_postgres_text(micros: int) -> None:
    """Every instant a timestamp column holds, BC and six-digit years included."""
    assert parse_timestamp(_as_postgres(micros), "t") == micros


@pytest.mark.parametrize(
    ("text", "micros", "iso"),
    [
        ("infinity", TIMESTAMP_INFINITY, "infinity"),
        ("-infinity", -TIMESTAMP_INFINITY, "-infinity"),
        ("4714-11-24 00:00:00+00 BC", PG_FIRST_US, "-4713-11-24T00:00:00.000000Z"),
        ("0001-12-31 23:59:59.5+00 BC", -62_135_596_800_000_000 - 500_000, None),
        ("40000-01-01 12:34:56.789+00", None, "40000-01-01T12:34:56.789000Z"),
        ("2026-01-31 23:59:59+05:30", 1_769_884_199_000_000, "2026-01-31T18:29:59.000000Z"),
        ("1900-01-01 00:00:00+01:24:00", None, "1899-12-31T22:36:00.000000Z"),
        ("2026-01-31 23:59:59", 1_769_903_999_000_000, "2026-01-31T23:59:59.000000Z"),
    ],
)
def test_postgres_special_values(text: str, micros: int | None, iso: str | None) -> None:
    parsed = parse_timestamp(text, "t")
    if micros is not None:
        assert parsed == micros
    if iso is not None:
        assert format_timestamp(parsed) == iso


def test_an_instant_past_what_a_column_holds_is_refused_by_name() -> None:
    with pytest.raises(UnrepresentableValue, match="column valid_until: 294276-12-31"):
        parse_timestamp("294276-12-31 23:59:59.999999+00", "valid_until")
    with pytest.raises(UnrepresentableValue, match="column t: 'yesterday'"):
        parse_timestamp("yesterday", "t")


@pytest.mark.parametrize(
    ("text", "days", "iso"),
    [
        ("infinity", DATE_INFINITY, "infinity"),
        ("-infinity", -DATE_INFINITY, "-infinity"),
        ("0044-03-15 BC", days_from_civil(-43, 3, 15), "-0043-03-15"),
        ("12345-06-07", days_from_civil(12345, 6, 7), "12345-06-07"),
        ("1990-05-01", 7425, "1990-05-01"),
    ],
)
def test_postgres_dates(text: str, days: int, iso: str) -> None:
    assert parse_date(text, "d") == days
    assert format_date(days) == iso


@settings(max_examples=200, deadline=None)
@given(micros=st.lists(st.none() | FINITE_US | st.sampled_from(INFINITIES), max_size=30))
def test_iso_timestamps_write_every_value_as_the_reference_does(micros: list[int | None]) -> None:
    """Arrow's cast where it formats (checked against the reference, not assumed), the
    reference where it cannot (``infinity``, past ~32767 AD)."""
    array = pa.array(micros, pa.int64()).cast(pa.timestamp("us", tz="UTC"))
    expected = [None if m is None else format_timestamp(m) for m in micros]
    assert iso_timestamps(array).to_pylist() == expected


@settings(max_examples=200, deadline=None)
@given(days=st.lists(st.none() | st.integers(-DATE_INFINITY, DATE_INFINITY), max_size=30))
def test_iso_dates_write_every_value_as_the_reference_does(days: list[int | None]) -> None:
    array = pa.array(days, pa.int32()).cast(pa.date32())
    assert iso_dates(array).to_pylist() == [None if d is None else format_date(d) for d in days]


TS = Column("t", "T", "timestamp", None)
DAY = Column("d", "D", "date", None)


@settings(max_examples=200, deadline=None)
@given(
    micros=st.lists(
        st.none() | st.integers(PG_FIRST_US, TIMESTAMP_INFINITY - 1) | st.sampled_from(INFINITIES),
        max_size=30,
    )
)
def test_a_chunk_of_postgres_timestamps_reads_whatever_it_holds(micros: list[int | None]) -> None:
    """Arrow's fast cast when it can, value by value only for what it cannot read; a chunk
    mixing both reads every value where it was."""

    text = pa.array([None if m is None else _as_postgres(m) for m in micros], pa.string())
    read = pg_temporal(text, TS)
    assert read.type == pa.timestamp("us", tz="UTC")
    assert read.cast(pa.int64()).to_pylist() == micros


def test_a_chunk_of_postgres_dates_reads_whatever_it_holds() -> None:
    text = pa.array(["1990-05-01", None, "infinity", "0044-03-15 BC", "12345-06-07", "-infinity"])
    read = pg_temporal(text, DAY)
    assert read.type == pa.date32()
    assert iso_dates(read).to_pylist() == [
        "1990-05-01",
        None,
        "infinity",
        "-0043-03-15",
        "12345-06-07",
        "-infinity",
    ]


def test_a_value_postgres_never_writes_fails_the_chunk_naming_the_column() -> None:
    with pytest.raises(UnrepresentableValue, match="column t"):
        pg_temporal(pa.array(["2026-13-01 00:00:00+00", "infinity"]), TS)
