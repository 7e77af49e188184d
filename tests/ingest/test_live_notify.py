"""The live feed's NOTIFY payloads as the PostgreSQL writer builds them in SQL: the newest reading of
each topic in a committed batch, dates and values as the in-process feed writes them, every
notification under PostgreSQL's size limit; on the COPY path and on the merge path alike."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest

from sensorcloud.core.db import asyncpg_dsn
from sensorcloud.core.live import LIVE_CHANNEL, NOTIFY_LIMIT, OMITTED, LivePoint, decode_chunk, iso
from sensorcloud.ingest.store import PostgresReadingStore, Row, live_points

pytestmark = pytest.mark.postgres

NOW = datetime.now(UTC).replace(microsecond=0)


def row(key: str, topic: str, ts: datetime, value: Any) -> Row:
    numeric = isinstance(value, float)
    return Row(key, ts, topic, "d" * 16, value if numeric else None, None if numeric else value, NOW, 7)


@pytest.fixture
async def notified(pg_database_url: str) -> AsyncIterator[list[str]]:
    payloads: list[str] = []
    conn = await asyncpg.connect(asyncpg_dsn(pg_database_url))
    await conn.add_listener(LIVE_CHANNEL, lambda _c, _p, _ch, payload: payloads.append(str(payload)))
    yield payloads
    await conn.close()


async def settled(payloads: list[str]) -> list[LivePoint]:
    await asyncio.sleep(0.3)
    return [p for chunk in payloads for p in decode_chunk(chunk)]


def as_python(points: list[LivePoint]) -> dict[str, tuple[str, Any]]:
    return {p.topic: (p.date, p.value) for p in points}


async def test_newest_reading_per_topic_within_the_size_limit(
    pg_database_url: str, notified: list[str]
) -> None:
    store = PostgresReadingStore(pg_database_url)
    rows = []
    for i in range(600):  # several notifications' worth of small points, each topic twice
        topic = f"devices/{'d' * 16}/t{i:03d}"
        rows.append(row(f"a{i}", topic, NOW + timedelta(microseconds=i), float(i)))
        rows.append(row(f"b{i}", topic, NOW - timedelta(seconds=1), -1.0))  # older: not pushed
    rows += [
        row("big", "devices/x/big", NOW, "x" * 1000),  # over 1,900 bytes once encoded: alone
        row("huge", "devices/x/huge", NOW, {"v": "y" * 8000}),  # over the limit: without its value
        row("obj", "devices/x/obj", NOW + timedelta(microseconds=5), {"lat": 1.5, "on": True}),
        row("round", "devices/x/round", NOW, 40.0),
        row("tiny", "devices/x/tiny", NOW, 1.5e-7),
    ]
    try:
        await store.write(rows, [])
        points = await settled(notified)
        assert all(len(chunk.encode()) <= NOTIFY_LIMIT for chunk in notified)
        assert len(notified) > 2
        got = as_python(points)
        expected = {p.topic: (p.date, p.value) for p in live_points(rows)}
        expected["devices/x/huge"] = (iso(NOW), OMITTED)
        assert got == expected  # 40.0 arrives as 40: equal in Python, and in JSON the same number
        assert got["devices/x/obj"][0] == iso(NOW + timedelta(microseconds=5))
        assert got["devices/x/round"][0] == iso(NOW)  # no fraction when the microseconds are zero

        # a redelivered batch (the merge path) pushes only what is new to the table
        notified.clear()
        late = row("late", "devices/x/round", NOW + timedelta(seconds=1), 41.0)
        result = await store.write([*rows[:10], late], [])
        assert (result.inserted, result.duplicates) == (1, 10)
        assert as_python(await settled(notified)) == {"devices/x/round": (iso(late.ts), 41.0)}
    finally:
        await store.close()
