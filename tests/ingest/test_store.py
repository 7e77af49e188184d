"""The reading stores on SQLite and PostgreSQL: batches, idempotence, summaries, dead letters, partitions."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta, timezone

import pytest
from sqlalchemy import func, select, text

from sensorcloud.core.db import create_engine
from sensorcloud.ingest.models import Reading, Topic
from sensorcloud.ingest.store import (
    IN_FLIGHT_CONNECTIONS,
    DeadRow,
    PostgresReadingStore,
    ReadingStore,
    Row,
    SqliteReadingStore,
    in_key_order,
)

NOW = datetime.now(UTC).replace(microsecond=0)


def row(
    key: str, topic: str = "devices/a/t", ts: datetime = NOW, num: float | None = 1.0, val: object = None
) -> Row:
    return Row(
        dedup_key=key, ts=ts, topic=topic, device_id="a" * 16, owner_id=7, num=num, val=val, received_at=NOW
    )


@pytest.fixture
async def store(database_url: str) -> AsyncIterator[tuple[ReadingStore, str]]:
    engine = create_engine(database_url)
    s: ReadingStore = (
        SqliteReadingStore(engine)
        if database_url.startswith("sqlite")
        else PostgresReadingStore(database_url)
    )
    yield s, database_url
    await s.close()
    await engine.dispose()


async def query(url: str, sql: str) -> list[tuple[object, ...]]:
    engine = create_engine(url)
    try:
        async with engine.connect() as conn:
            return [tuple(r) for r in await conn.execute(text(sql))]
    finally:
        await engine.dispose()


def test_copy_goes_in_key_order_keeping_each_topics_arrival_order() -> None:
    # as a batch arrives: devices interleaved, each device's readings in time order
    arrived = [
        row(f"{device}{i}", topic=f"devices/{device}/t", ts=NOW + timedelta(seconds=i))
        for i in range(3)
        for device in "cab"
    ]
    ordered = in_key_order(arrived)
    assert [r.dedup_key for r in ordered] == ["a0", "a1", "a2", "b0", "b1", "b2", "c0", "c1", "c2"]
    assert sorted(ordered) == sorted(arrived)


async def test_batch_is_stored_and_redelivery_adds_nothing(store: tuple[ReadingStore, str]) -> None:
    s, url = store
    rows = [row(f"k{i}", ts=NOW + timedelta(seconds=i), num=float(i)) for i in range(50)]
    first = await s.write(rows, [])
    assert (first.inserted, first.duplicates) == (50, 0)
    again = await s.write([*rows[:20], row("new", ts=NOW + timedelta(seconds=99), num=99.0)], [])
    assert (again.inserted, again.duplicates) == (1, 20)
    assert await query(url, "SELECT count(*) FROM readings") == [(51,)]
    summary = await query(url, "SELECT topic, count, last_num, owner_id FROM topics")
    assert summary == [("devices/a/t", 51, 99.0, 7)]


async def test_duplicates_within_one_batch_count_once(store: tuple[ReadingStore, str]) -> None:
    s, url = store
    result = await s.write([row("same"), row("same"), row("other", topic="devices/a/h")], [])
    assert result.inserted == 2
    assert await query(url, "SELECT topic, count FROM topics ORDER BY topic") == [
        ("devices/a/h", 1),
        ("devices/a/t", 1),
    ]


async def test_older_reading_does_not_replace_latest(store: tuple[ReadingStore, str]) -> None:
    s, url = store
    await s.write([row("new", ts=NOW, num=2.0)], [])
    await s.write([row("old", ts=NOW - timedelta(hours=1), num=1.0)], [])
    assert await query(url, "SELECT last_num, count FROM topics") == [(2.0, 2)]


async def test_non_numeric_values_and_dead_letters(store: tuple[ReadingStore, str]) -> None:
    s, url = store
    dead = DeadRow(NOW, "devices/a/bad", "a" * 16, "invalid JSON", b"{nope", 5)
    await s.write(
        [row("s", num=None, val="on"), row("o", topic="devices/a/o", num=None, val={"x": 1})], [dead]
    )
    assert await query(url, "SELECT reason, payload_size FROM dead_letters") == [("invalid JSON", 5)]
    assert len(await query(url, "SELECT * FROM readings WHERE num IS NULL")) == 2


@pytest.mark.postgres
async def test_partitions_are_created_for_old_readings(pg_database_url: str) -> None:
    url = pg_database_url
    s = PostgresReadingStore(url)
    try:
        old = NOW - timedelta(days=400)
        await s.write([row("old", ts=old)], [])
        names = await query(
            url, "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid ORDER BY 1"
        )
        assert (f"readings_p{old.year:04d}_{old.month:02d}",) in names
        assert (f"readings_p{NOW.year:04d}_{NOW.month:02d}",) in names
    finally:
        await s.close()


async def test_retention_removes_old_readings(store: tuple[ReadingStore, str]) -> None:
    s, url = store
    await s.write([row("old", ts=NOW - timedelta(days=90)), row("new", ts=NOW)], [])
    removed = await s.apply_retention(30)
    assert removed >= 1
    assert await query(url, "SELECT dedup_key FROM readings") == [("new",)]


@pytest.mark.postgres
async def test_the_store_keeps_a_connection_open_for_each_batch_in_flight(pg_database_url: str) -> None:
    """The writer may have two batches in flight (a pause, a backlog): the second one finds its
    connection open, instead of waiting for one to be opened at the end of a burst."""
    s = PostgresReadingStore(pg_database_url)
    try:
        await s.write([row("k1")], [])
        database = pg_database_url.rsplit("/", 1)[1]
        rows = await query(
            pg_database_url,
            f"SELECT count(*) FROM pg_stat_activity WHERE datname = '{database}' AND pid <> pg_backend_pid()",
        )
        assert rows == [(IN_FLIGHT_CONNECTIONS,)]
    finally:
        await s.close()


@pytest.mark.postgres
async def test_every_column_round_trips_through_the_copy(pg_database_url: str) -> None:
    """PostgreSQL's rows come from ingest/copy_binary.py's own encoding: each value reads back as given."""
    url = pg_database_url
    s = PostgresReadingStore(url)
    ts = datetime(2026, 11, 27, 4, 5, 6, 123456, tzinfo=UTC)
    received = datetime(2026, 11, 27, 4, 5, 7, 1, tzinfo=UTC)
    earlier = datetime(2026, 10, 31, 23, 59, 59, 999999, tzinfo=UTC)  # another month: another partition
    values: list[tuple[float | None, object]] = [
        (-0.0, None),
        (1.5e-300, None),
        (-1.7976931348623157e308, None),
        (None, "on"),
        (None, "température ✓"),
        (None, True),
        (None, {"x": [1, 2.5, None], "é": "ü"}),
    ]
    rows = [
        Row(f"key-{i}", ts if i else earlier, f"devices/ä/t{i}", "dev-ü", num, val, received, 7)
        for i, (num, val) in enumerate(values)
    ]
    try:
        assert (await s.write(rows, [])).inserted == len(rows)
        stored = await query(
            url,
            "SELECT dedup_key, ts, topic, device_id, num, val, received_at FROM readings ORDER BY dedup_key",
        )
    finally:
        await s.close()
    expected = [(r.dedup_key, r.ts, r.topic, r.device_id, r.num, r.val, r.received_at) for r in rows]
    assert stored == expected
    assert str(stored[0][4]) == "-0.0"  # the sign of zero survives too


async def test_every_column_reads_back_as_written_and_ranges_find_it(store: tuple[ReadingStore, str]) -> None:
    """Both stores bypass SQLAlchemy's types when they write (COPY; SQLite's executemany of
    pre-converted values): what they store must read back through those types, and compare with
    times bound through them, as the API's range queries bind theirs."""
    s, url = store
    received = datetime(2026, 11, 27, 4, 5, 7, 1, tzinfo=UTC)
    times = [
        datetime(2026, 11, 27, 4, 5, 6, 123456, tzinfo=UTC),
        datetime(2026, 11, 27, 4, 5, 6, tzinfo=UTC),  # no microseconds
        datetime(2026, 10, 31, 23, 59, 59, 999999, tzinfo=UTC),
        datetime(2026, 11, 27, 9, 35, 6, 5, tzinfo=timezone(timedelta(hours=5, minutes=30))),  # not in UTC
    ]
    values: list[tuple[float | None, object]] = [
        (21.5, None),
        (None, "température ✓"),
        (None, True),
        (None, {"x": [1]}),
    ]
    rows = [
        Row(f"key-{i}", ts, f"devices/ä/t{i}", "dev-ü", num, val, received, 7)
        for i, (ts, (num, val)) in enumerate(zip(times, values, strict=True))
    ]
    assert (await s.write(rows, [])).inserted == len(rows)
    engine = create_engine(url)
    try:
        async with engine.connect() as conn:
            columns = (
                Reading.dedup_key,
                Reading.ts,
                Reading.topic,
                Reading.device_id,
                Reading.num,
                Reading.val,
            )
            stored = [
                tuple(r)
                for r in await conn.execute(select(*columns, Reading.received_at).order_by(Reading.dedup_key))
            ]
            for r in rows:
                at = select(func.count()).select_from(Reading).where(Reading.topic == r.topic)
                assert await conn.scalar(at.where(Reading.ts >= r.ts, Reading.ts <= r.ts)) == 1, r.ts
                assert await conn.scalar(at.where(Reading.ts > r.ts)) == 0, r.ts
                assert await conn.scalar(at.where(Reading.ts < r.ts)) == 0, r.ts
            # a number's reading has no JSON value: SQL NULL, not the JSON text null
            assert await conn.scalar(text("SELECT count(*) FROM readings WHERE val IS NULL")) == 1
            assert await conn.scalar(text("SELECT count(*) FROM topics WHERE last_val IS NULL")) == 1
            summary = select(Topic.topic, Topic.last_ts, Topic.last_num, Topic.last_val, Topic.count)
            topics = [tuple(r) for r in await conn.execute(summary.order_by(Topic.topic))]
    finally:
        await engine.dispose()
    await s.close()
    assert stored == [(r.dedup_key, r.ts, r.topic, r.device_id, r.num, r.val, r.received_at) for r in rows]
    assert topics == [(r.topic, r.ts, r.num, r.val, 1) for r in rows]


@pytest.mark.postgres
async def test_callers_that_come_at_once_share_one_pool_and_close_closes_it(pg_database_url: str) -> None:
    """The first batch and a readiness probe may ask for the pool at once: one pool is opened, and
    close() closes it even while it is being opened (a second pool would stay open unclosed)."""
    database = pg_database_url.rsplit("/", 1)[1]
    connected = (
        f"SELECT count(*) FROM pg_stat_activity WHERE datname = '{database}' AND pid <> pg_backend_pid()"
    )
    s = PostgresReadingStore(pg_database_url)
    try:
        await asyncio.gather(s.ping(), s.ping(), s.write([row("k1")], []))
    finally:
        await s.close()
    assert await query(pg_database_url, connected) == [(0,)]
    opening = asyncio.create_task(s.ping())
    await asyncio.sleep(0)  # the pool is being opened ...
    await s.close()  # ... and closed once it is
    with contextlib.suppress(Exception):
        await opening
    for _ in range(50):  # the server notices a closed connection a moment later
        if await query(pg_database_url, connected) == [(0,)]:
            break
        await asyncio.sleep(0.05)
    assert await query(pg_database_url, connected) == [(0,)]
