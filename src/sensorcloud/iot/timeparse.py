"""Dates and bucket widths as the API accepts them: ISO-8601 dates and date-times, `30s`/`5m`/`1h`/`1d`."""

from __future__ import annotations

import math
import re
from datetime import UTC, date, datetime, timedelta

# A time zone written `+01:00` in a query string arrives as ` 01:00` when the client did not encode
# the plus sign; the space can only be that here, so it is read back as a plus.
_UNENCODED_PLUS = re.compile(r"(T[\d:.,]+) (\d{2}(?::?\d{2})?)$")
# What a path segment must look like to be taken as a date in the seed's /iot/{topic}/{start}/{end}.
DATE_LIKE = re.compile(r"^\d{4}-?\d{2}-?\d{2}(?:[T ].*)?$")
_INTERVAL = re.compile(r"^([1-9]\d{0,6})(s|m|h|d|w)$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}

AUTO_LADDER = tuple(
    s * n
    for s, n in (
        (1, 1),
        (1, 5),
        (1, 10),
        (1, 30),
        (60, 1),
        (60, 5),
        (60, 10),
        (60, 30),
        (3600, 1),
        (3600, 3),
        (3600, 6),
        (3600, 12),
        (86400, 1),
        (86400, 7),
    )
)
AUTO_TARGET_BUCKETS = 500
MAX_BUCKETS = 5000
MAX_INTERVAL_S = 366 * 86400


class BadValue(ValueError):
    """A date or interval the API cannot read; the message says what is expected."""


def parse_when(text: str, *, end_of_day: bool = False) -> datetime:
    """An ISO-8601 date or date-time as an aware UTC datetime (no zone means UTC).

    A bare date is the start of that day, or with `end_of_day` the start of the next one
    (an inclusive end date then covers the whole day).
    """
    raw = text.strip()
    if not raw or len(raw) > 64:
        raise BadValue("expected an ISO-8601 date or date-time, e.g. 2024-05-01 or 2024-05-01T12:00:00Z")
    raw = _UNENCODED_PLUS.sub(r"\1+\2", raw)
    try:
        if _is_bare_date(raw):
            day = date.fromisoformat(raw)
            start = datetime(day.year, day.month, day.day, tzinfo=UTC)
            return start + timedelta(days=1) if end_of_day else start  # OverflowError on 9999-12-31
        value = datetime.fromisoformat(raw)
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    except (ValueError, OverflowError):
        raise BadValue(
            f"{text!r} is not an ISO-8601 date or date-time (e.g. 2024-05-01 or 2024-05-01T12:00:00Z)"
        ) from None


def parse_inclusive_end(text: str) -> datetime:
    """An inclusive end as an exclusive bound: a date covers its whole day, a date-time its instant."""
    end = parse_when(text, end_of_day=True)
    if _is_bare_date(text):
        return end
    try:
        return end + timedelta(microseconds=1)
    except OverflowError:
        raise BadValue(f"{text!r} is out of range") from None


def _is_bare_date(text: str) -> bool:
    raw = text.strip()
    return len(raw) <= 10 and "T" not in raw.upper()


def parse_interval(text: str) -> int:
    """A bucket width such as `30s`, `5m`, `1h`, `1d` or `1w`, in seconds."""
    match = _INTERVAL.match(text.strip().lower())
    if match is None:
        raise BadValue(
            "interval must be a number and a unit (s, m, h, d or w), e.g. 30s, 5m, 1h, 1d; or auto"
        )
    seconds = int(match[1]) * _UNITS[match[2]]
    if seconds > MAX_INTERVAL_S:
        raise BadValue("interval may be at most 366d")
    return seconds


def interval_label(seconds: int) -> str:
    """The shortest way to write a width: 60 -> 1m, 90 -> 90s, 86400 -> 1d."""
    for unit in ("w", "d", "h", "m"):
        if seconds % _UNITS[unit] == 0:
            return f"{seconds // _UNITS[unit]}{unit}"
    return f"{seconds}s"


def auto_interval(start: datetime, end: datetime) -> int:
    """The smallest width of the ladder that cuts [start, end) into about 500 buckets at most."""
    span = (end - start).total_seconds()
    for width in AUTO_LADDER:
        if math.ceil(span / width) <= AUTO_TARGET_BUCKETS:
            return width
    return AUTO_LADDER[-1]


def bucket_count(start: datetime, end: datetime, width: int) -> int:
    """How many buckets of `width` seconds [start, end) touches at most."""
    return math.ceil((end - start).total_seconds() / width) + 1
