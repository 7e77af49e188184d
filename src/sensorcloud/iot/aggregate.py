"""Time-bucketed aggregates of a topic's numeric readings, computed by the database.

Buckets are fixed widths aligned to ORIGIN (a Monday, 00:00 UTC), so a day bucket starts at
midnight UTC and a week bucket on a Monday. Only the bucket expression differs between the
backends. first/last read one reading per bucket from either end of its range in the (topic, ts)
index, so the scan itself computes no more than avg/min/max/count.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Integer, String, bindparam, text
from sqlalchemy.ext.asyncio import AsyncConnection

from sensorcloud.core.db import UTCDateTime

FUNCTIONS = ("avg", "min", "max", "count", "first", "last")
ORIGIN = datetime(2000, 1, 3, tzinfo=UTC)
ORIGIN_EPOCH = int(ORIGIN.timestamp())

_PG_BUCKET = "date_bin(CAST(:width AS integer) * interval '1 second', ts, CAST(:origin AS timestamptz))"
# Whole seconds are enough for widths of 1 s and more; unixepoch() (SQLite 3.38+) parses twice as
# fast as strftime('%s'). The double modulo floors correctly before the origin too.
MODERN_SQLITE = sqlite3.sqlite_version_info >= (3, 38)


def _sqlite_bucket(modern: bool) -> str:
    epoch = "unixepoch(ts)" if modern else "CAST(strftime('%s', ts) AS INTEGER)"
    return f"{epoch} - ((({epoch} - :origin_epoch) % :width) + :width) % :width"


_WHERE = "topic = :topic AND ts >= :start AND ts < :end AND num IS NOT NULL"
_SIMPLE = {"avg": "avg(num)", "min": "min(num)", "max": "max(num)", "count": "count(num)"}
# The bucket's range, clamped to the query's, in each backend's terms (SQLite: text in the stored
# 'YYYY-MM-DD HH:MM:SS.ffffff' form, which sorts like the time it shows).
_PG_RANGE = (
    "r.ts >= GREATEST(agg.b, CAST(:start AS timestamptz)) AND r.ts < "
    "LEAST(agg.b + CAST(:width AS integer) * interval '1 second', CAST(:end AS timestamptz))"
)
_SQLITE_TEXT = "strftime('%Y-%m-%d %H:%M:%S', {epoch}, 'unixepoch') || '.000000'"
_SQLITE_RANGE = (
    f"r.ts >= max({_SQLITE_TEXT.format(epoch='agg.b')}, :start) AND "
    f"r.ts < min({_SQLITE_TEXT.format(epoch='agg.b + :width')}, :end)"
)
_EDGE = (
    "(SELECT r.num FROM readings r WHERE r.topic = :topic AND {range} AND r.num IS NOT NULL "
    "ORDER BY r.ts {direction}, r.dedup_key {direction} LIMIT 1)"
)


# a bucket's start (UTC) and {function: value}; a plain tuple, made 365 times for a year of days
Bucket = tuple[datetime, dict[str, Any]]


def build_sql(dialect: str, functions: Sequence[str]) -> str:
    """The aggregate query for the backend, computing only the functions asked for."""
    postgres = dialect == "postgresql"
    bucket = _PG_BUCKET if postgres else _sqlite_bucket(MODERN_SQLITE)
    edge_range = _PG_RANGE if postgres else _SQLITE_RANGE
    # count is always computed: it keeps the select list valid when only first/last are asked for
    inner = [f"{_SIMPLE[f]} AS a_{f}" for f in FUNCTIONS[:4] if f in functions or f == "count"]
    outer = [f"a_{f}" for f in FUNCTIONS[:4] if f in functions]
    for fn, direction in (("first", "ASC"), ("last", "DESC")):
        if fn in functions:
            outer.append(_EDGE.format(range=edge_range, direction=direction) + f" AS a_{fn}")
    # only the fixed fragments above are joined here; every value is a bound parameter
    sql = f"SELECT {bucket} AS b, ts, num FROM readings WHERE {_WHERE}"  # noqa: S608
    sql = f"SELECT b, {', '.join(inner)} FROM ({sql}) s GROUP BY b"  # noqa: S608
    return f"WITH agg AS ({sql}) SELECT b, {', '.join(outer)} FROM agg ORDER BY b"  # noqa: S608


async def aggregate(
    conn: AsyncConnection,
    topic: str,
    start: datetime,
    end: datetime,
    width: int,
    functions: Sequence[str],
) -> list[Bucket]:
    """Buckets of `width` seconds over [start, end) holding at least one numeric reading, oldest first."""
    dialect = conn.dialect.name
    statement = text(build_sql(dialect, functions)).bindparams(
        bindparam("topic", type_=String()),
        bindparam("start", type_=UTCDateTime()),
        bindparam("end", type_=UTCDateTime()),
        bindparam("width", type_=Integer()),
    )
    params: dict[str, Any] = {"topic": topic, "start": start, "end": end, "width": width}
    if dialect == "postgresql":
        params["origin"] = ORIGIN
    else:
        params["origin_epoch"] = ORIGIN_EPOCH
    result = await conn.execute(statement, params)
    # the columns after b are the functions asked for, in FUNCTIONS' order (build_sql)
    wanted = [f for f in FUNCTIONS if f in functions]
    if dialect == "postgresql":  # timestamptz, in UTC: asyncpg gives it with tzinfo UTC
        return [(b, dict(zip(wanted, values, strict=True))) for b, *values in result]
    # SQLite: epoch seconds
    return [
        (datetime.fromtimestamp(int(b), UTC), dict(zip(wanted, values, strict=True))) for b, *values in result
    ]
