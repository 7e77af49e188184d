"""Where batches of readings go: PostgreSQL (COPY into a staging table, then one INSERT) or SQLite.

A batch is written in one transaction together with its dead letters, so a message is
either fully stored or not at all; `write` returns only after the commit.
"""

from __future__ import annotations

import asyncio
import json
import operator
import time
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, NamedTuple, Protocol

import asyncpg
from sqlalchemy import delete, insert, select
from sqlalchemy.ext.asyncio import AsyncEngine

from sensorcloud.core.db import asyncpg_dsn, sqlite_datetime
from sensorcloud.core.live import LIVE_CHANNEL, LivePoint, encode_chunks, iso
from sensorcloud.ingest.copy_binary import COLUMNS as COPY_COLUMNS
from sensorcloud.ingest.copy_binary import SUMMARY_COLUMNS, encode_summary, readings_chunks
from sensorcloud.ingest.models import DeadLetter, Reading
from sensorcloud.ingest.partitions import NAME as PARTITION_NAME
from sensorcloud.ingest.partitions import PartitionManager, next_month


class Row(NamedTuple):
    """One reading ready to store. A tuple whose first seven fields are the columns of `readings`
    in order, so that a batch goes to COPY without being rebuilt."""

    dedup_key: str
    ts: datetime
    topic: str
    device_id: str
    num: float | None
    val: Any | None  # a JSON value (string, boolean, object) when the reading is not a number
    received_at: datetime
    owner_id: int


@dataclass(frozen=True)
class DeadRow:
    received_at: datetime
    topic: str
    device_id: str | None
    reason: str
    payload: bytes
    payload_size: int


@dataclass(frozen=True)
class WriteResult:
    inserted: int
    duplicates: int


class ReadingStore(Protocol):
    async def write(self, rows: Sequence[Row], dead: Sequence[DeadRow]) -> WriteResult: ...

    async def apply_retention(self, days: int) -> int:
        """Remove readings older than `days`; returns partitions dropped (PostgreSQL) or rows deleted."""

    async def ping(self) -> None: ...

    async def close(self) -> None: ...


STAGING_DDL = """
CREATE TEMP TABLE IF NOT EXISTS readings_staging (
    dedup_key varchar(32), ts timestamptz, topic varchar(255), device_id varchar(32),
    num double precision, val jsonb, received_at timestamptz, owner_id integer
) ON COMMIT DELETE ROWS
"""
READING_COLUMNS = list(COPY_COLUMNS)  # ingest/copy_binary.py encodes rows in this order
STAGING_COLUMNS = [*READING_COLUMNS, "owner_id"]


NOTIFY_SQL = "SELECT count(pg_notify($1, chunk)) FROM unnest({chunks}::text[]) AS chunk"
_TOPICS_UPSERT = """
    INSERT INTO topics (topic, device_id, owner_id, last_ts, last_num, last_val, count)
    SELECT topic, device_id, owner_id, ts, num, val, n FROM {source} ORDER BY topic
    ON CONFLICT (topic) DO UPDATE SET
        count = topics.count + EXCLUDED.count,
        last_num = CASE WHEN EXCLUDED.last_ts >= topics.last_ts
                        THEN EXCLUDED.last_num ELSE topics.last_num END,
        last_val = CASE WHEN EXCLUDED.last_ts >= topics.last_ts
                        THEN EXCLUDED.last_val ELSE topics.last_val END,
        last_ts = GREATEST(topics.last_ts, EXCLUDED.last_ts)
"""

# The common case: every reading of the batch is new, so it went in by COPY straight into
# `readings`, and the per-topic summary (newest reading, count) was worked out in Python and went in
# by COPY into a temporary table, as were the live feed's notifications (core/live.encode_chunks),
# delivered to LISTENing iot replicas on commit.
SUMMARY_STAGING_DDL = """
CREATE TEMP TABLE IF NOT EXISTS topics_batch (
    topic varchar(255), device_id varchar(32), owner_id integer, ts timestamptz,
    num double precision, val jsonb, n bigint
) ON COMMIT DELETE ROWS
"""
SUMMARY_SQL = f"""
WITH upsert AS ({_TOPICS_UPSERT.format(source="topics_batch")})
{NOTIFY_SQL.format(chunks="$2")}
"""

# After a conflict (a redelivery): through a staging table, skipping what is stored already.
# Duplicates within the batch are skipped too (DO NOTHING sees the rows of its own statement).
# Returns the newest new reading of each topic (for the live feed), each with the number inserted.
MERGE_SQL = f"""
WITH ins AS (
    INSERT INTO readings ({", ".join(READING_COLUMNS)})
    SELECT {", ".join(READING_COLUMNS)} FROM readings_staging
    ON CONFLICT DO NOTHING
    RETURNING topic, device_id, ts, num, val
), owners AS (
    SELECT DISTINCT ON (device_id) device_id, owner_id FROM readings_staging
), newest AS (
    SELECT DISTINCT ON (topic) topic, device_id, owner_id, ts, num, val,
           count(*) OVER (PARTITION BY topic) AS n
    FROM ins JOIN owners USING (device_id) ORDER BY topic, ts DESC
), upsert AS ({_TOPICS_UPSERT.format(source="newest")})
SELECT topic, ts, num, val, (SELECT count(*) FROM ins) AS inserted FROM newest
"""  # noqa: S608
DEAD_SQL = (
    "INSERT INTO dead_letters (received_at, topic, device_id, reason, payload, payload_size) "
    "VALUES ($1, $2, $3, $4, $5, $6)"
)
# after a conflict, batches go the merge way for this long: redeliveries come in runs
MERGE_AFTER_CONFLICT_S = 30.0
# COPY's data goes in pieces of this many readings: PostgreSQL stores one while the next is encoded
# (a batch of 4,000 messages with nothing else running: 62-66 -> 49-57 ms, median of 25 writes;
# what the last batch of a burst adds to its latency)
COPY_CHUNK_ROWS = 1000
IN_FLIGHT_CONNECTIONS = 2  # batches written at once (ingest/writer.MAX_IN_FLIGHT), kept connected


PARTITIONS_SQL = (
    "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
    "JOIN pg_class p ON p.oid = i.inhparent WHERE p.relname = 'readings'"
)


_ts_of = operator.itemgetter(1)  # Row.ts, without a Python call per row
_topic_of = operator.itemgetter(2)


def in_key_order(rows: Sequence[Row]) -> list[Row]:
    """The rows grouped by topic, each topic's in arrival order: the order of the `readings` key
    (topic, ts, dedup_key), as a device sends its readings in time order.

    Adding each row to that B-tree is half of PostgreSQL's work in a COPY. Rows in key order go to
    one leaf page after another instead of each to a random page of the index (backend CPU per
    message 10.1-12.6 -> 8.2-11.1 us in the ingest benchmark). It cost the encoding 0.35 us per
    row when a message's readings, no longer next to each other, stopped sharing their encoded
    times; they share them through a dict now (copy_binary._encode_rows), and a batch in key order
    encodes as fast as one in arrival order."""
    return sorted(rows, key=_topic_of)


def newest_by_topic(rows: Sequence[Row]) -> tuple[dict[str, Row], dict[str, int]]:
    """The newest row of each topic (by ts; the later one on a tie) and the number of rows per topic.

    One pass, fields by position (a NamedTuple's names are Python-level properties): it runs over
    every row of every batch."""
    newest: dict[str, Row] = {}
    counts: dict[str, int] = {}
    for row in rows:
        topic = row[2]
        current = newest.get(topic)
        if current is None:
            newest[topic] = row
            counts[topic] = 1
        else:
            counts[topic] += 1
            if row[1] >= current[1]:
                newest[topic] = row
    return newest, counts


def live_points(rows: Sequence[Row]) -> list[LivePoint]:
    """What the live feed shows of a committed batch: the newest reading of each topic in it.

    Under load a batch holds several readings of a topic; a dashboard wants the latest, and the
    REST API has them all. Same rule as the NOTIFY path (_notify_sql)."""
    newest, _ = newest_by_topic(rows)
    return [LivePoint(r.topic, iso(r.ts), r.num if r.val is None else r.val, r.ts) for r in newest.values()]


async def _pieces(chunks: Iterator[bytearray]) -> AsyncIterator[bytearray]:
    """COPY's source, a piece at a time (asyncpg takes an async iterable)."""
    for chunk in chunks:
        yield chunk


def _json_text(value: Any | None) -> str | None:
    return None if value is None else json.dumps(value)


def _value(num: float | None, val: str | None) -> Any:
    """A reading's value from its columns (asyncpg gives jsonb as its text)."""
    return num if val is None else json.loads(val)


class PostgresReadingStore:
    """asyncpg directly (COPY is not reachable through SQLAlchemy); synchronous_commit stays on."""

    def __init__(self, url: str, pool_size: int = 4) -> None:
        self._dsn = asyncpg_dsn(url)
        self._pool: asyncpg.Pool | None = None
        # one pool, however many callers come first at once (the first batch, a readiness probe):
        # a second one would be opened beside it and never closed
        self._pool_lock = asyncio.Lock()
        self._pool_size = pool_size
        self._partitions = PartitionManager()
        self._merge_until = 0.0  # monotonic time until which batches take the merge way

    async def _get_pool(self) -> asyncpg.Pool:
        if self._pool is not None:
            return self._pool
        async with self._pool_lock:
            if self._pool is not None:
                return self._pool
            # two open from the start: the writer has two batches in flight at a pause or in a
            # backlog, and the second one should not wait for a connection to be opened then
            # (40 ms measured, at the end of a burst)
            self._pool = await asyncpg.create_pool(
                self._dsn,
                min_size=min(IN_FLIGHT_CONNECTIONS, self._pool_size),
                max_size=self._pool_size,
                init=self._init_connection,
            )
        return self._pool

    @staticmethod
    async def _init_connection(conn: asyncpg.Connection) -> None:
        await conn.execute("SET synchronous_commit = on")
        await conn.execute(SUMMARY_STAGING_DDL)  # each connection's own, emptied at every commit

    async def write(self, rows: Sequence[Row], dead: Sequence[DeadRow]) -> WriteResult:
        pool = await self._get_pool()
        try:
            if rows and time.monotonic() >= self._merge_until:
                try:
                    return await self._write_new(pool, rows, dead)
                except asyncpg.UniqueViolationError:  # a redelivery: the batch rolled back whole
                    self._merge_until = time.monotonic() + MERGE_AFTER_CONFLICT_S
            return await self._write_merge(pool, rows, dead)
        except BaseException:
            # the partitions this transaction created are gone with it: ask the database again
            self._partitions.known.clear()
            raise

    async def _write_new(
        self, pool: asyncpg.Pool, rows: Sequence[Row], dead: Sequence[DeadRow]
    ) -> WriteResult:
        """COPY straight into `readings`: fails on the first reading that is stored already."""
        # the summary encoded before a connection is taken, the readings while COPY sends them
        newest, counts = newest_by_topic(rows)
        summary = newest.values()
        texts: dict[str, bytes] = {}  # each topic's and device's text field, encoded once
        summary_rows = encode_summary(summary, counts, texts)
        notifications = encode_chunks([(r.topic, r.ts, r.num if r.val is None else r.val) for r in summary])
        async with pool.acquire() as conn, conn.transaction():
            await self._ensure_partitions(conn, rows)
            await conn.copy_to_table(
                "readings",
                source=_pieces(readings_chunks(in_key_order(rows), COPY_CHUNK_ROWS, texts)),  # type: ignore[arg-type]
                columns=READING_COLUMNS,
                format="binary",
            )
            # the topic summary, and the live feed (delivered to LISTENing iot replicas on commit);
            # a bytearray is taken as the data itself (bytes would be read as a file name)
            await conn.copy_to_table(
                "topics_batch",
                source=summary_rows,  # type: ignore[arg-type]  # asyncpg takes a buffer too
                columns=SUMMARY_COLUMNS,
                format="binary",
            )
            await conn.fetchval(SUMMARY_SQL, LIVE_CHANNEL, notifications)
            await self._write_dead(conn, dead)
        return WriteResult(inserted=len(rows), duplicates=0)

    async def _write_merge(
        self, pool: asyncpg.Pool, rows: Sequence[Row], dead: Sequence[DeadRow]
    ) -> WriteResult:
        async with pool.acquire() as conn, conn.transaction():
            inserted = 0
            if rows:
                await self._ensure_partitions(conn, rows)
                await conn.execute(STAGING_DDL)
                await conn.copy_records_to_table(
                    "readings_staging",
                    records=[r if r.val is None else r._replace(val=_json_text(r.val)) for r in rows],
                    columns=STAGING_COLUMNS,
                )
                newest = await conn.fetch(MERGE_SQL)
                if newest:
                    inserted = int(newest[0]["inserted"])
                    # the live feed's notifications go out on commit, for the readings new to the table
                    points = [(r["topic"], r["ts"], _value(r["num"], r["val"])) for r in newest]
                    await conn.fetchval(NOTIFY_SQL.format(chunks="$2"), LIVE_CHANNEL, encode_chunks(points))
            await self._write_dead(conn, dead)
        return WriteResult(inserted=inserted, duplicates=len(rows) - inserted)

    @staticmethod
    async def _write_dead(conn: Any, dead: Sequence[DeadRow]) -> None:
        if dead:
            await conn.executemany(
                DEAD_SQL,
                [(d.received_at, d.topic, d.device_id, d.reason, d.payload, d.payload_size) for d in dead],
            )

    async def _ensure_partitions(self, conn: Any, rows: Sequence[Row]) -> None:
        first, last = min(map(_ts_of, rows)), max(map(_ts_of, rows))
        if (first.year, first.month) == (last.year, last.month):  # the usual batch: one month
            months = {(first.year, first.month)}
        else:
            months = {(r.ts.year, r.ts.month) for r in rows}
        names = {f"readings_p{y:04d}_{m:02d}" for y, m in months}
        if names <= self._partitions.known:
            return
        existing = await conn.fetch(PARTITIONS_SQL)
        self._partitions.known.update(r[0] for r in existing)
        for sql in self._partitions.missing_sql(r.ts for r in rows):
            await conn.execute(sql)

    async def apply_retention(self, days: int) -> int:
        pool = await self._get_pool()
        async with pool.acquire() as conn:
            cutoff = datetime.now(UTC) - timedelta(days=days)
            dropped = 0
            for r in await conn.fetch(PARTITIONS_SQL):
                match = PARTITION_NAME.match(r[0])
                if match is None:
                    continue
                start = datetime(int(match[1]), int(match[2]), 1, tzinfo=UTC)
                if next_month(start) <= cutoff:  # only whole months past the cutoff
                    await conn.execute(f'DROP TABLE IF EXISTS "{r[0]}"')
                    self._partitions.known.discard(r[0])
                    dropped += 1
            await conn.execute("DELETE FROM dead_letters WHERE received_at < $1", cutoff)
        return dropped

    async def ping(self) -> None:
        pool = await self._get_pool()
        async with pool.acquire() as conn:
            await conn.fetchval("SELECT 1")

    async def close(self) -> None:
        async with self._pool_lock:  # a pool being opened is closed once it is
            if self._pool is not None:
                await self._pool.close()
                self._pool = None


SQLITE_IN_CHUNK = 500  # dedup keys per lookup, well under SQLite's limit of bound parameters
_SQLITE_KNOWN = "SELECT dedup_key FROM readings WHERE dedup_key IN ({})"
_SQLITE_READINGS = (
    "INSERT INTO readings (dedup_key, ts, topic, device_id, num, val, received_at) "
    "VALUES (?, ?, ?, ?, ?, ?, ?)"
)


def sqlite_rows(rows: Sequence[Row], times: dict[datetime, str]) -> list[tuple[Any, ...]]:
    """The readings' parameters as the sqlite3 driver takes them, converted as the columns' types
    would (times as UTCDateTime text, each distinct time once, kept in `times`; values as JSON
    text), without SQLAlchemy's per-value processing, which was a third of the monolith's CPU
    under load."""
    out = []
    for key, ts, topic, device_id, num, val, received_at, _owner in rows:
        when = times.get(ts)
        if when is None:
            when = times[ts] = sqlite_datetime(ts)
        came = times.get(received_at)
        if came is None:
            came = times[received_at] = sqlite_datetime(received_at)
        out.append((key, when, topic, device_id, num, _json_text(val), came))
    return out


# each topic's count and newest reading (by ts; the later one on a tie), as on PostgreSQL
_SQLITE_TOPICS = """
INSERT INTO topics (topic, device_id, owner_id, last_ts, last_num, last_val, count)
VALUES (?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (topic) DO UPDATE SET
    count = topics.count + excluded.count,
    last_num = iif(excluded.last_ts >= topics.last_ts, excluded.last_num, topics.last_num),
    last_val = iif(excluded.last_ts >= topics.last_ts, excluded.last_val, topics.last_val),
    last_ts = max(topics.last_ts, excluded.last_ts)
"""


def sqlite_topics(rows: Sequence[Row], times: dict[datetime, str]) -> list[tuple[Any, ...]]:
    """The batch's per-topic summary as parameters of _SQLITE_TOPICS, converted as sqlite_rows does
    (each time taken from `times` when sqlite_rows converted it already)."""
    newest, counts = newest_by_topic(rows)
    return [
        (
            topic,
            r.device_id,
            r.owner_id,
            times.get(r.ts) or sqlite_datetime(r.ts),
            r.num,
            _json_text(r.val),
            counts[topic],
        )
        for topic, r in sorted(newest.items())
    ]


class SqliteReadingStore:
    """executemany on the monolith's SQLite file (one writer: this process)."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def write(self, rows: Sequence[Row], dead: Sequence[DeadRow]) -> WriteResult:
        async with self._engine.begin() as conn:
            fresh: list[Row] = []
            if rows:
                keys = list({r.dedup_key for r in rows})
                existing: set[str] = set()
                for i in range(0, len(keys), SQLITE_IN_CHUNK):
                    chunk = tuple(keys[i : i + SQLITE_IN_CHUNK])
                    marks = ",".join("?" * len(chunk))
                    known = await conn.exec_driver_sql(_SQLITE_KNOWN.format(marks), chunk)
                    existing.update(key for (key,) in known)
                seen: set[str] = set()
                for r in rows:
                    if r.dedup_key not in existing and r.dedup_key not in seen:
                        seen.add(r.dedup_key)
                        fresh.append(r)
            if fresh:
                times: dict[datetime, str] = {}  # each distinct time as text, once for both
                await conn.exec_driver_sql(_SQLITE_READINGS, sqlite_rows(fresh, times))
                await conn.exec_driver_sql(_SQLITE_TOPICS, sqlite_topics(fresh, times))
            if dead:
                await conn.execute(
                    insert(DeadLetter),
                    [
                        {
                            "received_at": d.received_at,
                            "topic": d.topic,
                            "device_id": d.device_id,
                            "reason": d.reason,
                            "payload": d.payload,
                            "payload_size": d.payload_size,
                        }
                        for d in dead
                    ],
                )
        return WriteResult(inserted=len(fresh), duplicates=len(rows) - len(fresh))

    async def apply_retention(self, days: int) -> int:
        cutoff = datetime.now(UTC) - timedelta(days=days)
        async with self._engine.begin() as conn:
            result = await conn.execute(delete(Reading).where(Reading.ts < cutoff))
            await conn.execute(delete(DeadLetter).where(DeadLetter.received_at < cutoff))
        return int(getattr(result, "rowcount", 0) or 0)

    async def ping(self) -> None:
        async with self._engine.connect() as conn:
            await conn.execute(select(1))

    async def close(self) -> None:
        return None  # the engine belongs to the app
