"""SQL of the read side: topic summaries and keyset-ordered readings (one code path for both backends)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Select, and_, case, null, or_, select
from sqlalchemy.ext.asyncio import AsyncConnection

from sensorcloud.iot.cursor import Order, Position
from sensorcloud.iot.tables import readings, topics


@dataclass(frozen=True)
class TopicRow:
    topic: str
    device_id: str
    owner_id: int
    last_ts: datetime
    last_value: Any
    count: int


@dataclass(frozen=True)
class ReadingRow:
    ts: datetime
    key: str
    value: Any


def value_of(num: float | None, val: Any) -> Any:
    """A reading's value: the number when it has one, else its JSON value (string, bool, object)."""
    return num if num is not None else val


def _topic_query(owner_id: int | None) -> Select[Any]:
    query = select(
        topics.c.topic,
        topics.c.device_id,
        topics.c.owner_id,
        topics.c.last_ts,
        topics.c.last_num,
        topics.c.last_val,
        topics.c["count"],
    )
    return query if owner_id is None else query.where(topics.c.owner_id == owner_id)


def _topic_row(r: Any) -> TopicRow:
    return TopicRow(
        topic=r.topic,
        device_id=r.device_id,
        owner_id=r.owner_id,
        last_ts=r.last_ts,
        last_value=value_of(r.last_num, r.last_val),
        count=r.count,
    )


async def find_topic(conn: AsyncConnection, topic: str, owner_id: int | None) -> TopicRow | None:
    """The topic's summary, if it exists and (unless owner_id is None) belongs to that user."""
    result = await conn.execute(_topic_query(owner_id).where(topics.c.topic == topic))
    row = result.first()
    return None if row is None else _topic_row(row)


async def find_topics(conn: AsyncConnection, names: Sequence[str]) -> list[TopicRow]:
    """The summaries of those of `names` that exist, whoever owns them."""
    result = await conn.execute(_topic_query(None).where(topics.c.topic.in_(names)))
    return [_topic_row(r) for r in result]


async def list_topics(conn: AsyncConnection, owner_id: int | None) -> list[TopicRow]:
    result = await conn.execute(_topic_query(owner_id).order_by(topics.c.topic))
    return [_topic_row(r) for r in result]


async def existing_topics(conn: AsyncConnection, names: Iterable[str], owner_id: int | None) -> set[str]:
    """Those of `names` that exist and belong to the user (any user's when owner_id is None)."""
    wanted = sorted(set(names))
    if not wanted:
        return set()
    query = select(topics.c.topic).where(topics.c.topic.in_(wanted))
    if owner_id is not None:
        query = query.where(topics.c.owner_id == owner_id)
    return set((await conn.execute(query)).scalars())


async def readings_page(
    conn: AsyncConnection,
    topic: str,
    *,
    start: datetime | None,
    end: datetime | None,
    order: Order,
    after: Position | None,
    limit: int,
) -> Sequence[ReadingRow]:
    """Up to `limit` readings of [start, end) in (ts, dedup_key) order, strictly after `after`.

    Keyset pagination: a page never repeats a reading and skips none that existed before the
    position, whatever is inserted meanwhile. The position test is written as a range on ts
    (which the (topic, ts) index serves) refined by the key for equal timestamps.
    """
    ts, key = readings.c.ts, readings.c.dedup_key
    conditions = [readings.c.topic == topic]
    if start is not None:
        conditions.append(ts >= start)
    if end is not None:
        conditions.append(ts < end)
    if after is not None:
        if order == "asc":
            conditions.append(and_(ts >= after.ts, or_(ts > after.ts, key > after.key)))
        else:
            conditions.append(and_(ts <= after.ts, or_(ts < after.ts, key < after.key)))
    ordering = (ts.asc(), key.asc()) if order == "asc" else (ts.desc(), key.desc())
    # val only where num is NULL: a numeric reading's val is never decoded (it is JSON 'null' on SQLite)
    val = case((readings.c.num.is_(None), readings.c.val), else_=null()).label("val")
    query = select(ts, key, readings.c.num, val).where(*conditions).order_by(*ordering).limit(limit)
    result = await conn.execute(query)
    return [ReadingRow(ts=r.ts, key=r.dedup_key, value=value_of(r.num, r.val)) for r in result]
