"""The live feed's notification payloads (core/live.encode_chunks) without a database: every point
once, in order, every chunk under PostgreSQL's limit, dates as the API writes them."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

from sensorcloud.core.live import NOTIFY_LIMIT, OMITTED, decode_chunk, encode_chunks, iso

NOW = datetime(2026, 11, 27, 10, 0, 0, tzinfo=UTC)


def decoded(chunks: list[str]) -> list[tuple[str, str, Any]]:
    assert all(len(chunk.encode()) <= NOTIFY_LIMIT for chunk in chunks)
    return [(p.topic, p.date, p.value) for chunk in chunks for p in decode_chunk(chunk)]


def test_no_points_no_notification() -> None:
    assert encode_chunks([]) == []


def test_a_few_points_make_one_chunk_with_the_api_dates() -> None:
    points = [
        ("a/t", NOW, 21.5),
        ("a/u", NOW + timedelta(microseconds=120_000), {"on": True, "name": "é"}),
        ("a/v", NOW + timedelta(microseconds=7), "text"),
    ]
    chunks = encode_chunks(points)
    assert len(chunks) == 1
    assert decoded(chunks) == [(topic, iso(ts), value) for topic, ts, value in points]
    assert '"2026-11-27T10:00:00Z"' in chunks[0]  # no fraction when there is none
    assert '"2026-11-27T10:00:00.120000Z"' in chunks[0]


def test_many_points_are_split_under_the_limit_in_order() -> None:
    points: list[tuple[str, datetime, Any]] = [
        (f"sensors/dev-{i:05d}/temp/{'hum' if i % 2 else 'temp'}", NOW, i / 7) for i in range(3000)
    ]
    points[100] = ("sensors/long/" + "x" * 200, NOW, "y" * 3000)  # a few big ones among small ones
    points[2000] = ("sensors/obj", NOW, {"k": "z" * 5000})
    chunks = encode_chunks(points)
    assert len(chunks) > 20
    assert decoded(chunks) == [(topic, iso(ts), value) for topic, ts, value in points]


def test_a_point_too_big_for_any_notification_goes_without_its_value() -> None:
    huge = {"v": "y" * NOTIFY_LIMIT}
    points = [("a/small", NOW, 1.0), ("a/huge", NOW, huge), ("a/after", NOW, 2.0)]
    got = decoded(encode_chunks(points))
    assert got == [("a/small", iso(NOW), 1.0), ("a/huge", iso(NOW), OMITTED), ("a/after", iso(NOW), 2.0)]


def test_a_value_orjson_cannot_write_goes_through_json() -> None:
    big = {"n": 2**70, "neg": -(2**80)}  # integers beyond 64 bits (the careful parser keeps them)
    chunks = encode_chunks([("a/big", NOW + timedelta(microseconds=5), big)])
    assert decoded(chunks) == [("a/big", iso(NOW + timedelta(microseconds=5)), big)]
    assert json.loads(chunks[0])[0][2]["n"] == 2**70
