"""Topics compare byte by byte on PostgreSQL whatever the database's locale (migration 0005)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import text

from sensorcloud.core.db import create_engine
from sensorcloud.core.migrate import migrate_url
from sensorcloud.devstack.postgres import PostgresServer
from sensorcloud.ingest.store import PostgresReadingStore, Row

pytestmark = pytest.mark.postgres

TOPIC_COLLATIONS = """
SELECT c.relname, coll.collname
FROM pg_attribute a
JOIN pg_class c ON c.oid = a.attrelid
JOIN pg_collation coll ON coll.oid = a.attcollation
WHERE a.attname = 'topic' AND c.relkind IN ('r', 'p')
  AND (c.relname IN ('readings', 'topics') OR c.relname LIKE 'readings\\_p%')
ORDER BY 1
"""


async def test_topics_are_in_byte_order_in_a_database_with_a_locale(pg_server: PostgresServer) -> None:
    name = f"t_locale_{uuid.uuid4().hex[:8]}"
    # as the postgres image and managed services create theirs: with a locale (here the one every
    # Debian has); the project's own test servers have none
    pg_server.psql(f"CREATE DATABASE {name} TEMPLATE template0 LC_COLLATE 'C.utf8' LC_CTYPE 'C.utf8'")
    url = pg_server.url_for(name)
    await migrate_url(url)
    store = PostgresReadingStore(url)
    now = datetime.now(UTC)
    old = now - timedelta(days=400)  # a partition made after the migration, by the writer
    try:
        await store.write(
            [
                Row(f"k{i}", ts, topic, "d" * 16, 1.0, None, now, 7)
                for i, (ts, topic) in enumerate(
                    [(now, "devices/d/b"), (now, "devices/d/B"), (old, "devices/d/é")]
                )
            ],
            [],
        )
    finally:
        await store.close()
    engine = create_engine(url)
    try:
        async with engine.connect() as conn:
            default = (
                await conn.execute(
                    text("SELECT datcollate FROM pg_database WHERE datname = current_database()")
                )
            ).scalar_one()
            collations: dict[str, str] = {r[0]: r[1] for r in await conn.execute(text(TOPIC_COLLATIONS))}
            ordered = (await conn.execute(text("SELECT topic FROM topics ORDER BY topic"))).scalars().all()
    finally:
        await engine.dispose()
    assert default == "C.utf8"
    assert f"readings_p{old.year:04d}_{old.month:02d}" in collations
    assert set(collations.values()) == {"C"}, collations
    assert ordered == ["devices/d/B", "devices/d/b", "devices/d/é"]  # as SQLite orders them
