"""PostgreSQL's binary COPY format as ingest/copy_binary.py writes it (the round trip through a real
server is in test_store.py): times on both sides of PostgreSQL's epoch, NULLs, JSON values."""

from __future__ import annotations

import struct
from datetime import UTC, datetime, timedelta, timezone

from sensorcloud.ingest.copy_binary import (
    COLUMNS,
    HEADER,
    SUMMARY_COLUMNS,
    TRAILER,
    encode_readings,
    encode_summary,
    readings_chunks,
    timestamptz,
)
from sensorcloud.ingest.store import READING_COLUMNS, Row

EPOCH_2000 = datetime(2000, 1, 1, tzinfo=UTC)


def test_timestamps_are_microseconds_since_2000_either_side() -> None:
    assert timestamptz(EPOCH_2000) == struct.pack("!iq", 8, 0)
    assert timestamptz(EPOCH_2000 - timedelta(microseconds=1)) == struct.pack("!iq", 8, -1)
    assert timestamptz(datetime(2026, 11, 27, 4, 5, 6, 7, tzinfo=UTC)) == struct.pack(
        "!iq", 8, int((datetime(2026, 11, 27, 4, 5, 6, tzinfo=UTC) - EPOCH_2000).total_seconds()) * 10**6 + 7
    )


def field(raw: bytes | None) -> bytes:
    """One field as the format has it: its length then its bytes, or a length of -1 for NULL."""
    return struct.pack("!i", -1) if raw is None else struct.pack("!i", len(raw)) + raw


def test_a_batch_is_header_rows_trailer_in_the_store_column_order() -> None:
    assert list(COLUMNS) == READING_COLUMNS
    ts = datetime(2026, 1, 2, tzinfo=UTC)
    rows = [
        Row("k1", ts, "a/t", "dev", 1.5, None, ts, 7),
        Row("k2", ts, "a/s", "dev", None, {"on": True}, ts, 7),
    ]
    data = bytes(encode_readings(rows))
    assert data.startswith(HEADER)
    assert data.endswith(TRAILER)
    stamp = timestamptz(ts)

    def row(key: bytes, topic: bytes, num: bytes | None, val: bytes | None) -> bytes:
        return (
            struct.pack("!h", 7)
            + field(key)
            + stamp
            + field(topic)
            + field(b"dev")
            + field(num)
            + field(val)
            + stamp
        )

    first = row(b"k1", b"a/t", struct.pack("!d", 1.5), None)
    second = row(b"k2", b"a/s", None, b"\x01" + b'{"on": true}')  # jsonb: a version byte, then the text
    assert data == HEADER + first + second + TRAILER


def test_a_batch_in_pieces_is_the_same_stream_header_first_trailer_last() -> None:
    ts = datetime(2026, 1, 2, tzinfo=UTC)
    rows = [
        Row(f"k{n}", ts + timedelta(seconds=n // 2), f"a/{n % 3}", "dev", float(n), None, ts, 7)
        for n in range(7)
    ]
    whole = bytes(encode_readings(rows))
    for size in (1, 2, 3, 6, 7, 1000):
        pieces = [bytes(piece) for piece in readings_chunks(rows, size, {})]
        assert len(pieces) == -(-len(rows) // size)
        assert b"".join(pieces) == whole, size
        assert pieces[0].startswith(HEADER)
        assert pieces[-1].endswith(TRAILER)
    assert [bytes(p) for p in readings_chunks([], 1000, {})] == [HEADER + TRAILER]


def test_each_row_carries_its_own_times_when_rows_that_share_them_are_apart() -> None:
    """In key order a message's readings (one time) are apart and other messages' times come
    between: each distinct time is encoded once and every row still gets its own."""
    t0 = datetime(2026, 1, 2, tzinfo=UTC)
    t1 = t0 + timedelta(microseconds=1)
    same_as_t0 = t0.astimezone(timezone(timedelta(hours=2)))  # the same instant, another zone
    received = t0 + timedelta(seconds=5)
    rows = [
        Row("a", t0, "d1/h", "d1", 1.0, None, received, 7),
        Row("b", t1, "d2/h", "d2", 2.0, None, received, 7),
        Row("c", t0, "d1/t", "d1", 3.0, None, t1, 7),
        Row("d", same_as_t0, "d3/t", "d3", 4.0, None, received, 7),
        Row("e", t1, "d2/t", "d2", 5.0, None, t0, 7),
    ]
    alone = b"".join(bytes(encode_readings([r]))[len(HEADER) : -len(TRAILER)] for r in rows)
    assert bytes(encode_readings(rows)) == HEADER + alone + TRAILER


def test_the_summary_reuses_the_batch_texts_and_counts_each_topic() -> None:
    ts = datetime(2026, 1, 2, tzinfo=UTC)
    rows = [
        Row("k1", ts, "a/t", "dev", 1.5, None, ts, 7),
        Row("k2", ts + timedelta(seconds=1), "a/s", "dev", None, "on", ts, 7),
    ]
    texts: dict[str, bytes] = {}
    data = bytes(encode_summary(reversed(rows), {"a/t": 3, "a/s": 1}, texts))
    # the texts it encoded are kept for the readings of the same batch
    assert texts == {"a/t": field(b"a/t"), "a/s": field(b"a/s"), "dev": field(b"dev")}
    assert list(SUMMARY_COLUMNS) == ["topic", "device_id", "owner_id", "ts", "num", "val", "n"]

    def row(topic: bytes, at: datetime, num: bytes | None, val: bytes | None, n: int) -> bytes:
        owner = struct.pack("!i", 7)
        return (
            struct.pack("!h", 7)
            + field(topic)
            + field(b"dev")
            + field(owner)
            + timestamptz(at)
            + (field(num) + field(val) + field(struct.pack("!q", n)))
        )

    second = row(b"a/s", ts + timedelta(seconds=1), None, b'\x01"on"', 1)
    first = row(b"a/t", ts, struct.pack("!d", 1.5), None, 3)
    assert data == HEADER + second + first + TRAILER
