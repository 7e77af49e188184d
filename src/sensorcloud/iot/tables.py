"""The read side's view of the readings database (written by ingest; migration 0003 is the contract).

Declared here as lightweight table clauses rather than imported from the ingest service, so that
the services share only the schema, never code; they are not part of any metadata.
"""

from __future__ import annotations

from sqlalchemy import JSON, BigInteger, Float, Integer, String, column, table
from sqlalchemy.dialects.postgresql import JSONB

from sensorcloud.core.db import UTCDateTime

_json = JSON().with_variant(JSONB(), "postgresql")

readings = table(
    "readings",
    column("dedup_key", String(32)),
    column("ts", UTCDateTime()),
    column("topic", String(255)),
    column("device_id", String(32)),
    column("num", Float(53)),
    column("val", _json),
)

topics = table(
    "topics",
    column("topic", String(255)),
    column("device_id", String(32)),
    column("owner_id", Integer),
    column("last_ts", UTCDateTime()),
    column("last_num", Float(53)),
    column("last_val", _json),
    column("count", BigInteger),
)
