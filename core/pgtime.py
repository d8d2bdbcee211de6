"""PostgreSQL's timestamps and dates beyond what Arrow's ISO 8601 parser and formatter handle.

PostgreSQL stores instants from 4713 BC to 294276 AD and dates to 5874897 AD, plus
``infinity`` and ``-infinity``; Arrow's parser reads four-digit years only (0001-9999) and its
formatter stops at about ±32767. Exports read and write the common case with Arrow, and hand
this module only the values Arrow refuses, one by one (they are rare: open-ended validity,
sentinel dates, data entry slips):

- PostgreSQL's text (``DateStyle`` ISO, which every export session sets) -> microseconds or
  days since 1970-01-01 (``parse_timestamp``, ``parse_date``);
- back to text in the export's ISO 8601 form, with Arrow's year style: astronomical years
  (1 BC is ``0000``), a ``-`` before years before it, at least four digits
  (``format_timestamp``, ``format_date``).

``infinity`` and ``-infinity`` are stored as the largest and smallest value a column can hold
but one: ``±(2**63 - 1)`` microseconds, ``±(2**31 - 1)`` days (DuckDB's encoding, so its
readers get them back as infinities; ``-2**63`` would be a pandas ``NaT``), and written as
PostgreSQL writes them. All arithmetic is on the proleptic Gregorian calendar, as PostgreSQL's.
"""

from __future__ import annotations

import re

from core.errors import ExportError

TIMESTAMP_INFINITY = 2**63 - 1
"""``infinity`` in a timestamp column, in microseconds (``-TIMESTAMP_INFINITY``: -infinity)."""
DATE_INFINITY = 2**31 - 1
"""``infinity`` in a date column, in days (``-DATE_INFINITY``: -infinity)."""

_US_PER_S = 1_000_000
_S_PER_DAY = 86_400

_TIMESTAMP = re.compile(
    r"(\d+)-(\d\d)-(\d\d) (\d\d):(\d\d):(\d\d)(?:\.(\d{1,6}))?"
    r"(?:([+-])(\d\d)(?::(\d\d))?(?::(\d\d))?)?( BC)?"
)
_DATE = re.compile(r"(\d+)-(\d\d)-(\d\d)( BC)?")


class UnrepresentableValue(ExportError):
    """A database value no export column type can hold (or PostgreSQL text it never writes)."""

    key = "unrepresentable_value"


def days_from_civil(year: int, month: int, day: int) -> int:
    """Days since 1970-01-01 of a proleptic Gregorian date (astronomical ``year``)."""
    year -= month <= 2
    era = year // 400
    yoe = year - era * 400
    doy = (153 * (month + (-3 if month > 2 else 9)) + 2) // 5 + day - 1
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    return era * 146_097 + doe - 719_468


def civil_from_days(days: int) -> tuple[int, int, int]:
    """The proleptic Gregorian (astronomical year, month, day) ``days`` after 1970-01-01."""
    days += 719_468
    era = days // 146_097
    doe = days - era * 146_097
    yoe = (doe - doe // 1460 + doe // 36_524 - doe // 146_096) // 365
    doy = doe - (365 * yoe + yoe // 4 - yoe // 100)
    mp = (5 * doy + 2) // 153
    day = doy - (153 * mp + 2) // 5 + 1
    month = mp + (3 if mp < 10 else -9)
    return yoe + era * 400 + (month <= 2), month, day


def _year(text: str, bc: str | None) -> int:
    year = int(text)
    return 1 - year if bc else year  # 1 BC is year 0


def parse_timestamp(text: str, column: str) -> int:
    """Microseconds since the epoch of PostgreSQL's text of a ``timestamp[tz]`` value."""
    if text in ("infinity", "-infinity"):
        return TIMESTAMP_INFINITY if text == "infinity" else -TIMESTAMP_INFINITY
    match = _TIMESTAMP.fullmatch(text)
    if match is None:
        raise UnrepresentableValue(
            f"column {column}: {text!r} is not a timestamp PostgreSQL writes"
        )
    year, month, day, hour, minute, second, fraction, sign, oh, om, os_, bc = match.groups()
    offset = int(oh or 0) * 3600 + int(om or 0) * 60 + int(os_ or 0)
    seconds = (
        days_from_civil(_year(year, bc), int(month), int(day)) * _S_PER_DAY
        + int(hour) * 3600
        + int(minute) * 60
        + int(second)
        - (-offset if sign == "-" else offset)
    )
    micros = seconds * _US_PER_S + int((fraction or "").ljust(6, "0"))
    if abs(micros) >= TIMESTAMP_INFINITY:
        raise UnrepresentableValue(
            f"column {column}: {text} is beyond the instants a timestamp column holds "
            "(64-bit microseconds since 1970: up to 294247-01-10 AD)"
        )
    return micros


def parse_date(text: str, column: str) -> int:
    """Days since 1970-01-01 of PostgreSQL's text of a ``date`` value."""
    if text in ("infinity", "-infinity"):
        return DATE_INFINITY if text == "infinity" else -DATE_INFINITY
    match = _DATE.fullmatch(text)
    if match is None:
        raise UnrepresentableValue(f"column {column}: {text!r} is not a date PostgreSQL writes")
    year, month, day, bc = match.groups()
    days = days_from_civil(_year(year, bc), int(month), int(day))
    if abs(days) >= DATE_INFINITY:  # PostgreSQL's dates end in 5874897 AD: never here
        raise UnrepresentableValue(f"column {column}: {text} is beyond a date column's range")
    return days


def _date_text(year: int, month: int, day: int) -> str:
    return f"{'-' if year < 0 else ''}{abs(year):04d}-{month:02d}-{day:02d}"


def format_timestamp(micros: int) -> str:
    """``YYYY-MM-DDTHH:MM:SS.ffffffZ`` (any year), or ``infinity`` / ``-infinity``."""
    if abs(micros) == TIMESTAMP_INFINITY:
        return "infinity" if micros > 0 else "-infinity"
    seconds, fraction = divmod(micros, _US_PER_S)
    days, second = divmod(seconds, _S_PER_DAY)
    hour, second = divmod(second, 3600)
    minute, second = divmod(second, 60)
    clock = f"{hour:02d}:{minute:02d}:{second:02d}.{fraction:06d}"
    return f"{_date_text(*civil_from_days(days))}T{clock}Z"


def format_date(days: int) -> str:
    """``YYYY-MM-DD`` (any year), or ``infinity`` / ``-infinity``."""
    if abs(days) == DATE_INFINITY:
        return "infinity" if days > 0 else "-infinity"
    return _date_text(*civil_from_days(days))
