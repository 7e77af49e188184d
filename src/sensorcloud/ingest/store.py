"""Where batches of readings go: PostgreSQL (COPY into a staging table, then one INSERT) or SQLite.

A batch is written in one transaction together with its dead letters, so a message is
either fully stored or not at all; `write` returns only after the commit.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

import asyncpg
from sqlalchemy import bindparam, delete, func, insert, select
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine

from sensorcloud.core.live import LIVE_CHANNEL, LivePoint, encode_chunks, iso
from sensorcloud.ingest.models import DeadLetter, Reading, Topic
from sensorcloud.ingest.partitions import NAME as PARTITION_NAME
from sensorcloud.ingest.partitions import PartitionManager, next_month


@dataclass(frozen=True)
class Row:
    """One reading ready to store."""

    dedup_key: str
    ts: datetime
    topic: str
    device_id: str
    owner_id: int
    num: float | None
    val: Any | None
    received_at: datetime


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
    owner_id integer, num double precision, val jsonb, received_at timestamptz
) ON COMMIT DELETE ROWS
"""
STAGING_COLUMNS = ["dedup_key", "ts", "topic", "device_id", "owner_id", "num", "val", "received_at"]
MERGE_SQL = """
WITH ins AS (
    INSERT INTO readings (dedup_key, ts, topic, device_id, num, val, received_at)
    SELECT DISTINCT ON (dedup_key, ts) dedup_key, ts, topic, device_id, num, val, received_at
    FROM readings_staging
    ON CONFLICT DO NOTHING
    RETURNING topic, device_id, ts, num, val
), agg AS (
    SELECT DISTINCT ON (topic) topic, device_id, ts, num, val, count(*) OVER (PARTITION BY topic) AS n
    FROM ins ORDER BY topic, ts DESC
), upsert AS (
    INSERT INTO topics (topic, device_id, owner_id, last_ts, last_num, last_val, count)
    SELECT a.topic, a.device_id,
           (SELECT s.owner_id FROM readings_staging s WHERE s.device_id = a.device_id LIMIT 1),
           a.ts, a.num, a.val, a.n
    FROM agg a ORDER BY a.topic
    ON CONFLICT (topic) DO UPDATE SET
        count = topics.count + EXCLUDED.count,
        last_num = CASE WHEN EXCLUDED.last_ts >= topics.last_ts
                        THEN EXCLUDED.last_num ELSE topics.last_num END,
        last_val = CASE WHEN EXCLUDED.last_ts >= topics.last_ts
                        THEN EXCLUDED.last_val ELSE topics.last_val END,
        last_ts = GREATEST(topics.last_ts, EXCLUDED.last_ts)
    RETURNING 1
)
SELECT (SELECT count(*) FROM ins) AS inserted
"""
DEAD_SQL = (
    "INSERT INTO dead_letters (received_at, topic, device_id, reason, payload, payload_size) "
    "VALUES ($1, $2, $3, $4, $5, $6)"
)


PARTITIONS_SQL = (
    "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
    "JOIN pg_class p ON p.oid = i.inhparent WHERE p.relname = 'readings'"
)


def live_points(rows: Sequence[Row]) -> list[LivePoint]:
    return [LivePoint(r.topic, iso(r.ts), r.num if r.val is None else r.val) for r in rows]


def asyncpg_dsn(url: str) -> str:
    parsed = make_url(url.replace("postgres://", "postgresql://", 1)).set(drivername="postgresql")
    return parsed.render_as_string(hide_password=False)


class PostgresReadingStore:
    """asyncpg directly (COPY is not reachable through SQLAlchemy); synchronous_commit stays on."""

    def __init__(self, url: str, pool_size: int = 4) -> None:
        self._dsn = asyncpg_dsn(url)
        self._pool: asyncpg.Pool | None = None
        self._pool_size = pool_size
        self._partitions = PartitionManager()

    async def _get_pool(self) -> asyncpg.Pool:
        if self._pool is None:
            self._pool = await asyncpg.create_pool(
                self._dsn, min_size=1, max_size=self._pool_size, init=self._init_connection
            )
        return self._pool

    @staticmethod
    async def _init_connection(conn: asyncpg.Connection) -> None:
        await conn.execute("SET synchronous_commit = on")

    async def write(self, rows: Sequence[Row], dead: Sequence[DeadRow]) -> WriteResult:
        pool = await self._get_pool()
        async with pool.acquire() as conn, conn.transaction():
            inserted = 0
            if rows:
                await self._ensure_partitions(conn, rows)
                await conn.execute(STAGING_DDL)
                await conn.copy_records_to_table(
                    "readings_staging",
                    records=[
                        (
                            r.dedup_key,
                            r.ts,
                            r.topic,
                            r.device_id,
                            r.owner_id,
                            r.num,
                            None if r.val is None else json.dumps(r.val),
                            r.received_at,
                        )
                        for r in rows
                    ],
                    columns=STAGING_COLUMNS,
                )
                inserted = int(await conn.fetchval(MERGE_SQL))
                # delivered to LISTENing iot replicas when (and only if) this transaction commits
                for chunk in encode_chunks(live_points(rows)):
                    await conn.execute("SELECT pg_notify($1, $2)", LIVE_CHANNEL, chunk)
            if dead:
                await conn.executemany(
                    DEAD_SQL,
                    [
                        (d.received_at, d.topic, d.device_id, d.reason, d.payload, d.payload_size)
                        for d in dead
                    ],
                )
        return WriteResult(inserted=inserted, duplicates=len(rows) - inserted)

    async def _ensure_partitions(self, conn: Any, rows: Sequence[Row]) -> None:
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
        if self._pool is not None:
            await self._pool.close()
            self._pool = None


class SqliteReadingStore:
    """executemany through SQLAlchemy on the monolith's SQLite file (one writer: this process)."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def write(self, rows: Sequence[Row], dead: Sequence[DeadRow]) -> WriteResult:
        async with self._engine.begin() as conn:
            fresh: list[Row] = []
            if rows:
                keys = list({r.dedup_key for r in rows})
                existing: set[str] = set()
                for i in range(0, len(keys), 500):
                    result = await conn.execute(
                        select(Reading.dedup_key).where(Reading.dedup_key.in_(keys[i : i + 500]))
                    )
                    existing.update(result.scalars())
                seen: set[str] = set()
                for r in rows:
                    if r.dedup_key not in existing and r.dedup_key not in seen:
                        seen.add(r.dedup_key)
                        fresh.append(r)
            if fresh:
                await conn.execute(
                    insert(Reading),
                    [
                        {
                            "dedup_key": r.dedup_key,
                            "ts": r.ts,
                            "topic": r.topic,
                            "device_id": r.device_id,
                            "num": r.num,
                            "val": r.val,
                            "received_at": r.received_at,
                        }
                        for r in fresh
                    ],
                )
                await conn.execute(_TOPIC_UPSERT, _topic_summaries(fresh))
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


def _topic_summaries(rows: Sequence[Row]) -> list[dict[str, Any]]:
    newest: dict[str, Row] = {}
    counts: dict[str, int] = {}
    for r in rows:
        counts[r.topic] = counts.get(r.topic, 0) + 1
        if r.topic not in newest or r.ts >= newest[r.topic].ts:
            newest[r.topic] = r
    return [
        {
            "p_topic": t,
            "p_device_id": r.device_id,
            "p_owner_id": r.owner_id,
            "p_last_ts": r.ts,
            "p_last_num": r.num,
            "p_last_val": r.val,
            "p_count": counts[t],
        }
        for t, r in sorted(newest.items())
    ]


_new = sqlite_insert(Topic).values(
    topic=bindparam("p_topic"),
    device_id=bindparam("p_device_id"),
    owner_id=bindparam("p_owner_id"),
    last_ts=bindparam("p_last_ts"),
    last_num=bindparam("p_last_num"),
    last_val=bindparam("p_last_val"),
    count=bindparam("p_count"),
)
_newer = _new.excluded.last_ts >= Topic.last_ts
_TOPIC_UPSERT = _new.on_conflict_do_update(
    index_elements=[Topic.topic],
    set_={
        "count": Topic.count + _new.excluded.count,
        "last_num": func.iif(_newer, _new.excluded.last_num, Topic.last_num),
        "last_val": func.iif(_newer, _new.excluded.last_val, Topic.last_val),
        "last_ts": func.max(Topic.last_ts, _new.excluded.last_ts),
    },
)
