"""readings (partitioned by month on PostgreSQL), topics, dead letters

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-27
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

from sensorcloud.ingest.partitions import create_sql, months_ahead

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

PG_READINGS = """
CREATE TABLE readings (
    dedup_key varchar(32) NOT NULL,
    ts timestamptz NOT NULL,
    topic varchar(255) NOT NULL,
    device_id varchar(32) NOT NULL,
    num double precision,
    val jsonb,
    received_at timestamptz NOT NULL,
    CONSTRAINT pk_readings PRIMARY KEY (dedup_key, ts)
) PARTITION BY RANGE (ts)
"""


def _json() -> sa.types.TypeEngine[Any]:
    return sa.JSON().with_variant(JSONB(), "postgresql")


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(PG_READINGS)
        # created on the parent, so every partition gets it
        op.execute("CREATE INDEX ix_readings_topic_ts ON readings (topic, ts)")
        for start in months_ahead(datetime.now(UTC)):
            op.execute(create_sql(start))
    else:
        op.create_table(
            "readings",
            sa.Column("dedup_key", sa.String(32), nullable=False),
            sa.Column("ts", sa.DateTime(timezone=True), nullable=False),
            sa.Column("topic", sa.String(255), nullable=False),
            sa.Column("device_id", sa.String(32), nullable=False),
            sa.Column("num", sa.Float(53), nullable=True),
            sa.Column("val", _json(), nullable=True),
            sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
            sa.PrimaryKeyConstraint("dedup_key", "ts", name="pk_readings"),
        )
        op.create_index("ix_readings_topic_ts", "readings", ["topic", "ts"])
        # SQLite has no partitions: the dedup key alone is unique, so a redelivery without ts is caught too
        op.create_index("uq_readings_dedup_key", "readings", ["dedup_key"], unique=True)
    op.create_table(
        "topics",
        sa.Column("topic", sa.String(255), nullable=False),
        sa.Column("device_id", sa.String(32), nullable=False),
        sa.Column("owner_id", sa.Integer(), nullable=False),
        sa.Column("last_ts", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_num", sa.Float(53), nullable=True),
        sa.Column("last_val", _json(), nullable=True),
        sa.Column("count", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("topic", name="pk_topics"),
    )
    op.create_index("ix_topics_device_id", "topics", ["device_id"])
    op.create_index("ix_topics_owner_id", "topics", ["owner_id"])
    op.create_table(
        "dead_letters",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("topic", sa.Text(), nullable=False),
        sa.Column("device_id", sa.String(32), nullable=True),
        sa.Column("reason", sa.String(255), nullable=False),
        sa.Column("payload", sa.LargeBinary(), nullable=False),
        sa.Column("payload_size", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_dead_letters"),
    )
    op.create_index("ix_dead_letters_received_at", "dead_letters", ["received_at"])


def downgrade() -> None:
    op.drop_table("dead_letters")
    op.drop_table("topics")
    op.drop_table("readings")
