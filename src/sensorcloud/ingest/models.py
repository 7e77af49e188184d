"""Tables of the readings database: readings, the per-topic summary, dead letters.

On PostgreSQL `readings` is partitioned by month of `ts` (see migrations 0003, 0004 and
ingest/partitions.py); on SQLite it is one table. Both have a unique key on the dedup key
so that a redelivered message adds no row.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, Float, Integer, LargeBinary, String, Text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from sensorcloud.core.db import Base, UTCDateTime

# None is SQL NULL, as COPY writes it on PostgreSQL (not the JSON text 'null': a payload's null is
# refused, so a reading's val is either a JSON value or absent)
JSONValue = JSON(none_as_null=True).with_variant(JSONB(none_as_null=True), "postgresql")

# compared byte by byte on PostgreSQL whatever the database's locale (migration 0005): the key's
# order, not a language's, and the same as SQLite's
TopicName = String(255).with_variant(String(255, collation="C"), "postgresql")


class Reading(Base):
    __tablename__ = "readings"

    # One key serves dedup, the newest of a topic, ranges and keyset pages (migration 0004). It
    # includes ts because a partitioned table's unique keys must contain the partition key;
    # dedup_key (derived from the topic) already identifies the reading.
    topic: Mapped[str] = mapped_column(TopicName, primary_key=True)
    ts: Mapped[datetime] = mapped_column(UTCDateTime(), primary_key=True)
    dedup_key: Mapped[str] = mapped_column(String(32), primary_key=True)
    device_id: Mapped[str] = mapped_column(String(32))
    num: Mapped[float | None] = mapped_column(Float(53), nullable=True)
    val: Mapped[Any | None] = mapped_column(JSONValue, nullable=True)
    received_at: Mapped[datetime] = mapped_column(UTCDateTime())


class Topic(Base):
    """One row per topic: its owner, newest reading and count, kept up to date by the writer."""

    __tablename__ = "topics"

    topic: Mapped[str] = mapped_column(TopicName, primary_key=True)
    device_id: Mapped[str] = mapped_column(String(32), index=True)
    owner_id: Mapped[int] = mapped_column(Integer, index=True)
    last_ts: Mapped[datetime] = mapped_column(UTCDateTime())
    last_num: Mapped[float | None] = mapped_column(Float(53), nullable=True)
    last_val: Mapped[Any | None] = mapped_column(JSONValue, nullable=True)
    count: Mapped[int] = mapped_column(BigInteger)


class DeadLetter(Base):
    """A message that could not become readings, kept with its reason for an admin to inspect."""

    __tablename__ = "dead_letters"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    received_at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)
    topic: Mapped[str] = mapped_column(Text)
    device_id: Mapped[str | None] = mapped_column(String(32), nullable=True)
    reason: Mapped[str] = mapped_column(String(255))
    payload: Mapped[bytes] = mapped_column(LargeBinary)
    payload_size: Mapped[int] = mapped_column(Integer)
