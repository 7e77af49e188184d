"""/api/v1/readings/aggregate: buckets computed by the database, checked against Python."""

from __future__ import annotations

import math
import random
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from sensorcloud.core.live import iso
from sensorcloud.ingest.store import Row
from sensorcloud.iot import aggregate
from sensorcloud.iot.aggregate import ORIGIN
from tests.conftest import bearer, make_admin
from tests.iot.helpers import app_of, new_owner, rows, write

AGGREGATE = "/api/v1/readings/aggregate"
T0 = datetime(2024, 5, 1, 10, 0, 0, tzinfo=UTC)
ALL = "avg,min,max,count,first,last"


def expected(batch: list[Row], start: datetime, end: datetime, width: int) -> list[dict[str, Any]]:
    """The same aggregation done in Python: buckets aligned to ORIGIN, first/last by (ts, key)."""
    groups: dict[datetime, list[Row]] = defaultdict(list)
    for r in batch:
        if r.num is None or not start <= r.ts < end:
            continue
        offset = math.floor((r.ts - ORIGIN).total_seconds() // width) * width
        groups[ORIGIN + timedelta(seconds=offset)].append(r)
    out = []
    for bucket in sorted(groups):
        members = sorted(groups[bucket], key=lambda r: (r.ts, r.dedup_key))
        nums = [r.num for r in members if r.num is not None]
        out.append(
            {
                "date": iso(bucket),
                "avg": sum(nums) / len(nums),
                "min": min(nums),
                "max": max(nums),
                "count": len(nums),
                "first": members[0].num,
                "last": members[-1].num,
            }
        )
    return out


def same(actual: list[dict[str, Any]], wanted: list[dict[str, Any]], fns: list[str]) -> None:
    assert [a["date"] for a in actual] == [w["date"] for w in wanted]
    for a, w in zip(actual, wanted, strict=True):
        assert set(a) == {"date", *fns}
        for fn in fns:
            assert a[fn] == pytest.approx(w[fn], rel=1e-12), (a["date"], fn)


async def test_buckets_match_python(client: httpx.AsyncClient) -> None:
    alice = await new_owner(client, "alice")
    topic = alice.topic()
    rng = random.Random(42)
    points: list[tuple[datetime, Any]] = []
    ts = T0 - timedelta(hours=2)
    while ts < T0 + timedelta(hours=30):
        points.append((ts, round(rng.uniform(-40, 60), 3)))
        ts += timedelta(seconds=rng.uniform(0.2, 90))
    points += [(T0 + timedelta(minutes=17), "text is not aggregated"), (T0, 1000.0), (T0, -1000.0)]
    batch = rows(alice, topic, points)
    await write(app_of(client), batch)

    start, end = T0, T0 + timedelta(hours=26)
    for interval, width, fns in [
        ("30s", 30, ALL),
        ("5m", 300, ALL),
        ("7m", 420, "first,last"),
        ("1h", 3600, "avg,count"),
        ("1d", 86400, ALL),
        ("auto", 300, "max,min,first"),
    ]:
        params = {"topic": topic, "from": iso(start), "to": iso(end), "interval": interval, "fn": fns}
        response = await client.get(AGGREGATE, params=params, headers=bearer(alice.token))
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["topic"] == topic
        assert body["interval"] == ("5m" if interval == "auto" else interval)
        assert (body["from"], body["to"]) == (iso(start), iso(end))
        same(body["data"], expected(batch, start, end, width), fns.split(","))


async def test_defaults_and_validation(client: httpx.AsyncClient) -> None:
    alice = await new_owner(client, "alice")
    bob = await new_owner(client, "bob")
    topic = alice.topic()
    now = datetime.now(UTC)
    await write(
        app_of(client), rows(alice, topic, [(now - timedelta(hours=1), 5), (now - timedelta(days=2), 9)])
    )
    headers = bearer(alice.token)

    default = (await client.get(AGGREGATE, params={"topic": topic}, headers=headers)).json()
    assert default["interval"] == "5m"  # the last 24 hours in about 500 buckets at most
    assert [(d["count"], d["avg"], set(d)) for d in default["data"]] == [
        (1, 5.0, {"date", "avg", "min", "max", "count"})
    ]
    repeated = await client.get(
        AGGREGATE, params=[("topic", topic), ("fn", "min"), ("fn", "last")], headers=headers
    )
    assert set(repeated.json()["data"][0]) == {"date", "min", "last"}
    year = await client.get(
        AGGREGATE, params={"topic": topic, "from": "2024-01-01", "to": "2025-01-01"}, headers=headers
    )
    assert year.json()["interval"] == "1d"

    for params, field in [
        ({"interval": "5x"}, "interval"),
        ({"interval": "0s"}, "interval"),
        ({"fn": "median"}, "fn"),
        ({"fn": ""}, "fn"),
        ({"from": "2024-02-31"}, "from"),
    ]:
        response = await client.get(AGGREGATE, params={"topic": topic, **params}, headers=headers)
        assert response.status_code == 422, (params, response.text)
        assert response.json()["errors"][0]["field"] == field
    too_many = await client.get(AGGREGATE, params={"topic": topic, "interval": "1s"}, headers=headers)
    assert too_many.status_code == 422
    assert "Too many buckets" in too_many.json()["msg"]
    backwards = await client.get(
        AGGREGATE, params={"topic": topic, "from": "2024-05-02", "to": "2024-05-01"}, headers=headers
    )
    assert backwards.status_code == 422

    assert (
        await client.get(AGGREGATE, params={"topic": topic}, headers=bearer(bob.token))
    ).status_code == 404
    assert (await client.get(AGGREGATE, params={"topic": topic})).status_code == 401
    admin = await make_admin(client)
    seen = await client.get(AGGREGATE, params={"topic": topic}, headers=bearer(admin["auth_token"]))
    assert seen.json()["data"][0]["count"] == 1


async def test_a_topic_without_numbers_has_no_buckets(client: httpx.AsyncClient) -> None:
    alice = await new_owner(client, "alice")
    topic = alice.topic("state")
    await write(app_of(client), rows(alice, topic, [(T0, "on"), (T0 + timedelta(seconds=1), True)]))
    params = {"topic": topic, "from": "2024-05-01", "to": "2024-05-02", "fn": ALL}
    body = (await client.get(AGGREGATE, params=params, headers=bearer(alice.token))).json()
    assert body["data"] == []


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)  # the expression is SQLite's
async def test_older_sqlite_without_unixepoch_gives_the_same_buckets(
    client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    alice = await new_owner(client, "alice")
    topic = alice.topic()
    batch = rows(alice, topic, [(T0 + timedelta(seconds=7.3 * i), float(i % 17)) for i in range(3000)])
    await write(app_of(client), batch)
    params = {
        "topic": topic,
        "from": iso(T0),
        "to": iso(T0 + timedelta(hours=7)),
        "interval": "10m",
        "fn": ALL,
    }
    modern = (await client.get(AGGREGATE, params=params, headers=bearer(alice.token))).json()
    monkeypatch.setattr(aggregate, "MODERN_SQLITE", False)
    old = (await client.get(AGGREGATE, params=params, headers=bearer(alice.token))).json()
    assert old == modern
    same(old["data"], expected(batch, T0, T0 + timedelta(hours=7), 600), ALL.split(","))


@pytest.mark.parametrize(
    "functions", [aggregate.FUNCTIONS, ("avg",), ("count", "last"), ("min", "max", "first")], ids=str
)
def test_encoded_answer_is_the_models_byte_for_byte(functions: tuple[str, ...]) -> None:
    """The route encodes its answer without a model per bucket; FastAPI would send the models'
    dump_json (by alias, unset fields left out). Values near every float formatting edge."""
    from pydantic import TypeAdapter

    from sensorcloud.iot.schemas import AggregateOut, BucketOut, encode_aggregate

    floats = [0.0, -0.0, 1e16, 1.5e-7, -123.456, 2.5, 1 / 3, 1e300, 5e-324, None]
    start = datetime(2025, 11, 27, tzinfo=UTC)
    buckets = []
    for i in range(50):
        values: dict[str, Any] = {}
        for f in aggregate.FUNCTIONS:  # the order build_sql returns them in
            if f in functions:
                values[f] = i * 7 + 1 if f == "count" else floats[(i + len(values)) % len(floats)]
        buckets.append((start + timedelta(days=i), values))
    end = start + timedelta(days=365)
    model = AggregateOut(
        topic="sensors/dév/ünïcode",
        interval="1d",
        from_=start,
        to=end,
        data=[BucketOut(date=d, **v) for d, v in buckets],
    )
    expected = TypeAdapter(AggregateOut).dump_json(model, by_alias=True, exclude_unset=True)
    assert encode_aggregate("sensors/dév/ünïcode", "1d", start, end, buckets) == expected
