"""Pure parts of the read side: dates, intervals, the seed's path rule, cursors, the table contract."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from fastapi import FastAPI

from sensorcloud.app import Target, create_app
from sensorcloud.core.settings import Settings
from sensorcloud.ingest.models import Reading, Topic
from sensorcloud.iot import cursor
from sensorcloud.iot.seed import SeedQuery, parse_seed_path
from sensorcloud.iot.tables import readings, topics
from sensorcloud.iot.timeparse import (
    BadValue,
    auto_interval,
    interval_label,
    parse_inclusive_end,
    parse_interval,
    parse_when,
)

MAY = datetime(2024, 5, 1, tzinfo=UTC)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2024-05-01", MAY),
        ("20240501", MAY),
        ("2024-05-01T00:00:00", MAY),
        ("2024-05-01T00:00:00Z", MAY),
        ("2024-05-01T02:00:00+02:00", MAY),
        ("2024-05-01T02:00:00 02:00", MAY),  # an unencoded "+" in a query string
        ("2024-04-30T20:00:00-04:00", MAY),
        ("2024-05-01 00:00:00.000", MAY),
        ("2024-05-01T00:00:00.5Z", MAY + timedelta(milliseconds=500)),
    ],
)
def test_dates_are_read_as_utc(text: str, expected: datetime) -> None:
    assert parse_when(text) == expected


@pytest.mark.parametrize(
    "text", ["", "yesterday", "2024-13-01", "2024-02-30", "2024-05-01T25:00", "1714521600", "x" * 100]
)
def test_bad_dates_are_refused(text: str) -> None:
    with pytest.raises(BadValue):
        parse_when(text)


def test_inclusive_ends() -> None:
    assert parse_inclusive_end("2024-05-01") == MAY + timedelta(days=1)
    assert parse_inclusive_end("2024-05-01T00:00:00Z") == MAY + timedelta(microseconds=1)
    with pytest.raises(BadValue):
        parse_inclusive_end("9999-12-31")


def test_intervals() -> None:
    assert [parse_interval(t) for t in ("30s", "5m", "1h", "1d", "1w", "90S")] == [
        30,
        300,
        3600,
        86400,
        604800,
        90,
    ]
    for bad in ("0s", "5", "m", "1.5h", "-1h", "400d", "1y"):
        with pytest.raises(BadValue):
            parse_interval(bad)
    assert [interval_label(s) for s in (30, 60, 90, 3600, 86400, 604800)] == [
        "30s",
        "1m",
        "90s",
        "1h",
        "1d",
        "1w",
    ]


@pytest.mark.parametrize(
    ("span", "label"),
    [
        (timedelta(minutes=5), "1s"),
        (timedelta(hours=1), "10s"),
        (timedelta(hours=24), "5m"),
        (timedelta(days=7), "30m"),
        (timedelta(days=30), "3h"),
        (timedelta(days=365), "1d"),
        (timedelta(days=3650), "1w"),
    ],
)
def test_auto_interval_gives_about_500_buckets(span: timedelta, label: str) -> None:
    width = auto_interval(MAY, MAY + span)
    assert interval_label(width) == label
    assert span.total_seconds() / width <= 500 or label == "1w"


@pytest.mark.parametrize(
    ("path", "query"),
    [
        ("devices/a/t", SeedQuery("devices/a/t")),
        ("devices/a/t/latest", SeedQuery("devices/a/t")),
        ("devices/a/t/2024-05-01/2024-05-02", SeedQuery("devices/a/t", "2024-05-01", "2024-05-02")),
        ("t/2024-05-01T00:00:00Z/now", SeedQuery("t", "2024-05-01T00:00:00Z", "now")),
        ("t/then/20240501", SeedQuery("t", "then", "20240501")),
        ("2024-05-01/2024-05-02", SeedQuery("2024-05-01/2024-05-02")),  # no topic before the dates
        ("devices/a/2024", SeedQuery("devices/a/2024")),
        ("latest", SeedQuery("latest")),
    ],
)
def test_seed_paths(path: str, query: SeedQuery) -> None:
    assert parse_seed_path(path) == query


def test_cursors_round_trip_and_refuse_other_queries() -> None:
    position = cursor.Position(MAY + timedelta(microseconds=7), "k1")
    token = cursor.encode(position, "asc", "devices/a/t")
    assert cursor.decode(token, "asc", "devices/a/t") == position
    for order, topic in (("desc", "devices/a/t"), ("asc", "devices/a/u")):
        with pytest.raises(cursor.BadCursor):
            cursor.decode(token, order, topic)  # type: ignore[arg-type]
    for junk in ("", "!!!", "e30", "x" * 600):
        with pytest.raises(cursor.BadCursor):
            cursor.decode(junk, "asc", "devices/a/t")


def test_the_read_side_names_only_columns_ingest_creates() -> None:
    for view, model in ((readings, Reading), (topics, Topic)):
        assert set(view.c.keys()) <= set(model.__table__.c.keys())


def test_openapi_documents_the_routes(settings: Settings) -> None:
    app: FastAPI = create_app(settings, Target.ALL)
    paths = app.openapi()["paths"]
    for path in (
        "/iot/{topic}/latest",
        "/iot/{topic}/{start_date}/{end_date}",
        "/iot/{topic}",
        "/api/v1/topics",
        "/api/v1/readings",
        "/api/v1/readings/aggregate",
        "/api/v1/readings/export",
    ):
        assert paths[path]["get"]["summary"], path
        assert "401" in paths[path]["get"]["responses"], path
    assert {p["name"] for p in paths["/api/v1/readings"]["get"]["parameters"]} >= {"from", "to", "cursor"}
