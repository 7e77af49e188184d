"""Readings as PostgreSQL's binary COPY stream, built in one pass over the batch (in pieces, so that
PostgreSQL stores one while the next is encoded).

asyncpg can encode records for COPY itself (`copy_records_to_table`), through a generic codec
per column and value: about 1.2 us per reading here. The readings' columns are fixed and their
values repeat within a batch (the readings of one message share their times and device; topics
repeat), so this encodes each distinct value once and appends bytes: about 0.5 us per reading.
The format is PostgreSQL's (https://www.postgresql.org/docs/current/sql-copy.html, "Binary
Format"): a header, per row the field count then each field as a 32-bit length (-1 for NULL) and
its binary representation, and a trailer. Columns, in order: COLUMNS.

The batch's per-topic summary (each topic's newest reading and how many the batch holds) goes the
same way into a temporary table (SUMMARY_COLUMNS): asyncpg would encode it as seven arrays, element
by element, at about 3 us per topic here. It is encoded first, and the readings reuse the text
fields of its topics and devices.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Iterable, Iterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sensorcloud.ingest.store import Row

COLUMNS = ("dedup_key", "ts", "topic", "device_id", "num", "val", "received_at")
SUMMARY_COLUMNS = ("topic", "device_id", "owner_id", "ts", "num", "val", "n")
HEADER = b"PGCOPY\n\xff\r\n\x00" + bytes(4) + bytes(4)  # signature, flags, header extension length
TRAILER = b"\xff\xff"  # a field count of -1
FIELD_COUNT = struct.pack("!h", len(COLUMNS))
SUMMARY_FIELD_COUNT = struct.pack("!h", len(SUMMARY_COLUMNS))
NULL = struct.pack("!i", -1)
JSONB_VERSION = b"\x01"
PG_EPOCH = datetime(2000, 1, 1, tzinfo=UTC)  # timestamptz: microseconds since then, 64 bits
_ONE_MICROSECOND = timedelta(microseconds=1)
_length = struct.Struct("!i").pack
_timestamp = struct.Struct("!iq").pack  # length 8, then the value
_float8 = struct.Struct("!id").pack
_int4 = struct.Struct("!ii").pack
_int8 = struct.Struct("!iq").pack


def timestamptz(ts: datetime) -> bytes:
    """A timestamptz field (length included); `ts` must be timezone-aware."""
    return _timestamp(8, (ts - PG_EPOCH) // _ONE_MICROSECOND)


def text(value: str) -> bytes:
    raw = value.encode()
    return _length(len(raw)) + raw


def encode_readings(rows: Sequence[Row], texts: dict[str, bytes] | None = None) -> bytearray:
    """The COPY ... FROM STDIN (FORMAT binary) data for `rows` into COLUMNS. `texts` (filled here)
    keeps each topic's and device's text field for encode_summary."""
    buf = bytearray()
    for part in readings_chunks(rows, len(rows) or 1, {} if texts is None else texts):
        buf += part
    return buf


def readings_chunks(rows: Sequence[Row], chunk_rows: int, texts: dict[str, bytes]) -> Iterator[bytearray]:
    """encode_readings' data in pieces of `chunk_rows` rows, each encoded when it is asked for: COPY
    sends a piece while the next one is encoded, and PostgreSQL stores one while the ingest encodes
    the next. `texts` (topic and device -> text field) is used and filled."""
    for start in range(0, len(rows), chunk_rows):
        buf = bytearray(HEADER) if start == 0 else bytearray()
        _encode_rows(buf, rows[start : start + chunk_rows], texts)
        if start + chunk_rows >= len(rows):
            buf += TRAILER
        yield buf
    if not rows:
        yield bytearray(HEADER + TRAILER)


def _encode_rows(buf: bytearray, rows: Sequence[Row], texts: dict[str, bytes]) -> None:
    last_device = None
    device_field = b""
    # each distinct time encoded once: a message's readings share theirs, and so do the messages
    # of one socket read their receive time; in key order they are no longer next to each other
    times: dict[datetime, bytes] = {}
    for key, ts, topic, device_id, num, val, received_at, _owner in rows:
        ts_field = times.get(ts)
        if ts_field is None:
            ts_field = times[ts] = timestamptz(ts)
        received_field = times.get(received_at)
        if received_field is None:
            received_field = times[received_at] = timestamptz(received_at)
        if device_id is not last_device:
            last_device = device_id
            device_field = texts.get(device_id) or texts.setdefault(device_id, text(device_id))
        topic_field = texts.get(topic)
        if topic_field is None:
            topic_field = texts[topic] = text(topic)
        raw_key = key.encode()
        buf += FIELD_COUNT
        buf += _length(len(raw_key))
        buf += raw_key
        buf += ts_field
        buf += topic_field
        buf += device_field
        _value(buf, num, val)
        buf += received_field


def encode_summary(newest: Iterable[Row], counts: dict[str, int], texts: dict[str, bytes]) -> bytearray:
    """COPY data into SUMMARY_COLUMNS: each topic's newest row and the number of its rows in the
    batch (`counts`). `texts` (topic or device -> text field; a string's field is the same whether
    it names a topic or a device) is used and filled, for the batch's readings."""
    buf = bytearray(HEADER)
    for _key, ts, topic, device_id, num, val, _received, owner_id in newest:
        buf += SUMMARY_FIELD_COUNT
        buf += texts.get(topic) or texts.setdefault(topic, text(topic))
        buf += texts.get(device_id) or texts.setdefault(device_id, text(device_id))
        buf += _int4(4, owner_id)
        buf += timestamptz(ts)
        _value(buf, num, val)
        buf += _int8(8, counts[topic])
    buf += TRAILER
    return buf


def _value(buf: bytearray, num: float | None, val: Any) -> None:
    """The num and val fields: a number, or a JSON value as jsonb (a version byte, then the text)."""
    if val is None:
        buf += NULL if num is None else _float8(8, num)
        buf += NULL
    else:
        raw = json.dumps(val).encode()
        buf += NULL
        buf += _length(len(raw) + 1)
        buf += JSONB_VERSION
        buf += raw
