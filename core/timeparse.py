"""Dates in filters: ISO 8601 instants, plain dates, and durations relative to a run's time.

``"2026-01-01T00:00:00Z"`` and ``"2026-01-01"`` are absolute (naive means UTC);
``"-P1D"`` / ``"PT6H"`` are relative to ``now`` (a scheduled run's scheduled time), so a
nightly schedule can say ``{"$after": "-P1D"}`` for "since yesterday this time".
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta

_DURATION = re.compile(
    r"^(?P<sign>[+-])?P(?:(?P<weeks>\d+)W)?(?:(?P<days>\d+)D)?"
    r"(?:T(?:(?P<hours>\d+)H)?(?:(?P<minutes>\d+)M)?(?:(?P<seconds>\d+)S)?)?$"
)


def parse_duration(text: str) -> timedelta | None:
    """An ISO 8601 duration of weeks/days/hours/minutes/seconds, or None if ``text`` is not one."""
    m = _DURATION.match(text.strip())
    if not m or text.strip().rstrip("T").lstrip("+-") == "P":
        return None
    parts = {k: int(v) for k, v in m.groupdict().items() if k != "sign" and v}
    if not parts:
        return None
    delta = timedelta(**parts)
    return -delta if m.group("sign") == "-" else delta


def parse_instant(text: str, now: datetime | None = None) -> datetime:
    """Parse an absolute or relative instant; raises ValueError with the accepted forms."""
    if not isinstance(text, str) or not text.strip():
        raise ValueError("expected an ISO 8601 date-time such as 2026-01-01T00:00:00Z")
    delta = parse_duration(text)
    if delta is not None:
        return (now or datetime.now(UTC)).astimezone(UTC) + delta
    raw = text.strip()
    try:
        if len(raw) == 10:
            d = date.fromisoformat(raw)
            return datetime(d.year, d.month, d.day, tzinfo=UTC)
        value = datetime.fromisoformat(raw.replace("z", "Z"))
    except ValueError:
        raise ValueError(
            f"{text!r} is not a date: use ISO 8601 such as 2026-01-01T00:00:00Z, 2026-01-01,"
            " or a duration relative to the run such as -P1D"
        ) from None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
