"""Dates in filters: ISO 8601 instants and dates, calendar durations and named anchors.

Every form resolves to an aware UTC ``datetime``:

- **absolute**: ``"2026-01-01T00:00:00Z"``, ``"2026-01-01T02:00:00+02:00"`` or the plain date
  ``"2026-01-01"`` (midnight); a date-time without offset means UTC;
- **durations relative to** ``now`` (a scheduled run's scheduled time): ISO 8601 with an optional
  sign, ``"-P1D"``, ``"-P1M"``, ``"-P1Y"``, ``"P2W"``, ``"-P1DT6H"``, ``"PT30M"``. Years and months
  are calendar arithmetic, clamped to the month's end (2026-03-31 minus ``P1M`` is 2026-02-28),
  then weeks, days and time are exact. A duration is at most 200 years long and its result lies
  within years 1..9999;
- **named anchors**, midnight UTC at the start of a calendar period around ``now`` (weeks start
  on Monday, as in ISO 8601; names are case-insensitive):

  ============================  ==============================================
  ``now``                       ``now`` itself
  ``start_of_day``, ``today``   00:00 today
  ``start_of_week``             00:00 on this week's Monday
  ``start_of_month``            00:00 on the 1st of this month
  ``start_of_year``             00:00 on 1 January this year
  ``start_of_previous_day``,    00:00 yesterday
  ``yesterday``
  ``start_of_previous_week``    00:00 on last week's Monday
  ``start_of_previous_month``   00:00 on the 1st of last month
  ``start_of_previous_year``    00:00 on 1 January last year
  ============================  ==============================================

So a nightly schedule exports "since this time yesterday" with ``{"$after": "-P1D"}`` and a
monthly one exports "last month" with
``{"$after": "start_of_previous_month", "$before": "start_of_month"}``.

Durations are parsed by pendulum (ISO 8601 grammar, calendar arithmetic); anything that fails
raises ``ValueError`` whose message lists the accepted forms.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, date, datetime

import pendulum

MAX_DURATION_YEARS = 200
_MAX_TEXT = 64
# pendulum's compiled parser wraps integers past 2**32 silently (PT4294967296S parses as zero):
# a 10-digit number is beyond MAX_DURATION_YEARS in any unit, so it is refused up front.
_HUGE_NUMBER = re.compile(r"(?<![\d.,])\d{10,}")
_DAYS_PER_YEAR = 365.25
_Anchor = Callable[[pendulum.DateTime], pendulum.DateTime]


def _bad(text: str, why: str) -> ValueError:
    return ValueError(f"{text!r} {why}: {ACCEPTED_FORMS}")


def _out_of_range(text: str) -> ValueError:
    return _bad(
        text,
        f"is out of range (durations may span at most {MAX_DURATION_YEARS} years and must"
        " land within years 1..9999)",
    )


def parse_duration(text: str) -> pendulum.Duration | None:
    """A signed ISO 8601 duration (``-P1M``, ``PT6H``), or None if ``text`` does not start like
    one; raises ValueError for a malformed duration or one longer than 200 years."""
    raw = text.strip().upper()
    body = raw[1:] if raw[:1] in "+-" else raw
    if not body.startswith("P"):
        return None
    if _HUGE_NUMBER.search(body):
        raise _out_of_range(text)
    if body.rstrip("T") == "P":
        raise _bad(text, "is an empty duration")
    if "/" in body:
        raise _bad(text, "is an interval, not one instant")
    try:
        duration = pendulum.parse(body, exact=True)
    except (ValueError, OverflowError, TypeError):
        if "W" in body and len(re.findall("[YMWDHS]", body)) > 1:
            raise _bad(text, "mixes weeks with other units (write P9D, not P1W2D)") from None
        raise _bad(text, "is not a valid ISO 8601 duration") from None
    if not isinstance(duration, pendulum.Duration):
        raise _bad(text, "is not a valid ISO 8601 duration")
    if _span_in_years(duration) > MAX_DURATION_YEARS:
        raise _out_of_range(text)
    return -duration if raw.startswith("-") else duration


def _span_in_years(duration: pendulum.Duration) -> float:
    """The length in mean Gregorian years (pendulum's own totals count a month as 30 days)."""
    months = duration.years * 12 + duration.months
    exact_days = duration.total_days() - duration.years * 365 - duration.months * 30
    return abs(months / 12 + exact_days / _DAYS_PER_YEAR)


def _start(unit: str) -> _Anchor:
    def anchor(now: pendulum.DateTime) -> pendulum.DateTime:
        day = now.start_of("day")
        if unit == "week":  # ISO weeks, whatever pendulum's global week_starts_at says
            return day.subtract(days=day.weekday())
        return day if unit == "day" else day.start_of(unit)

    return anchor


def _previous(unit: str) -> _Anchor:
    def anchor(now: pendulum.DateTime) -> pendulum.DateTime:
        return _start(unit)(_start(unit)(now).subtract(days=1))

    return anchor


_ANCHORS: dict[str, _Anchor] = {
    "now": lambda now: now,
    "today": _start("day"),
    "yesterday": _previous("day"),
    **{f"start_of_{unit}": _start(unit) for unit in ("day", "week", "month", "year")},
    **{f"start_of_previous_{unit}": _previous(unit) for unit in ("day", "week", "month", "year")},
}
ANCHORS = tuple(_ANCHORS)


def _shift_by(duration: pendulum.Duration | None) -> _Anchor | None:
    return None if duration is None else lambda now: now + duration


ACCEPTED_FORMS = (
    "use an ISO 8601 date-time such as 2026-01-01T00:00:00Z, a date such as 2026-01-01,"
    " a duration relative to the run such as -P1D, -P1M, -P1Y, P2W, -P1DT6H or PT30M"
    f" (at most {MAX_DURATION_YEARS} years), or one of " + ", ".join(ANCHORS)
)


def _utc(value: datetime) -> datetime:
    """A plain aware UTC ``datetime`` (not a pendulum subclass), naive taken as UTC."""
    value = value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    return datetime(
        value.year,
        value.month,
        value.day,
        value.hour,
        value.minute,
        value.second,
        value.microsecond,
        tzinfo=UTC,
    )


def parse_instant(text: str, now: datetime | None = None) -> datetime:
    """Parse an absolute date, a duration relative to ``now`` or a named anchor to an aware UTC
    datetime; raises ValueError listing the accepted forms (see the module docstring).

    ``now`` defaults to the current time; a naive ``now`` is taken as UTC.
    """
    if not isinstance(text, str):
        raise ValueError(f"expected a date as text, not {type(text).__name__}: {ACCEPTED_FORMS}")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError(f"the date is not valid text: {ACCEPTED_FORMS}") from None
    raw = text.strip()
    if not raw:
        raise ValueError(f"the date is empty: {ACCEPTED_FORMS}")
    if len(raw) > _MAX_TEXT:
        raise ValueError(f"the date is longer than {_MAX_TEXT} characters: {ACCEPTED_FORMS}")

    relative = _ANCHORS.get(raw.lower()) or _shift_by(parse_duration(raw))
    if relative is not None:
        base = pendulum.instance(_utc(now or datetime.now(UTC)), tz=pendulum.UTC)
        try:
            return _utc(relative(base))
        except (ValueError, OverflowError):
            raise _out_of_range(text) from None

    try:
        if len(raw) == 10:
            d = date.fromisoformat(raw)
            return datetime(d.year, d.month, d.day, tzinfo=UTC)
        value = datetime.fromisoformat(raw.replace("z", "Z"))
    except ValueError:
        raise _bad(text, "is not a date") from None
    try:
        return _utc(value)
    except OverflowError:
        raise _out_of_range(text) from None
