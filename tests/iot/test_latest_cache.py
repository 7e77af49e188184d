"""The latest-value cache on its own: hits and misses, the live feed's pushes, resets, ageing, bounds."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from sensorcloud.core.live import OMITTED, LiveBus, LivePoint, decode_chunk, iso
from sensorcloud.iot.latest_cache import KEEP_S, LatestCache, TopicRow
from sensorcloud.iot.repository import TopicRow as Row
from sensorcloud.iot.schemas import Point, SeedReadings, encode_latest

T0 = datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC)
ALICE, BOB = 1, 2


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def until(check: Any) -> None:
    for _ in range(100):
        if check():
            return
        await asyncio.sleep(0)
    raise AssertionError("never")


class Database:
    """The `topics` table as the cache reads it, counting the reads."""

    def __init__(self) -> None:
        self.rows: dict[str, Row] = {}
        self.reads = 0
        self.gate: asyncio.Event | None = None  # when set, a read waits for it (a slow database)

    def put(self, topic: str, ts: datetime, value: Any, owner: int = ALICE) -> None:
        self.rows[topic] = Row(
            topic=topic, device_id="d", owner_id=owner, last_ts=ts, last_value=value, count=1
        )

    async def one(self, topic: str) -> TopicRow | None:
        self.reads += 1
        snapshot = self.rows.get(topic)
        if self.gate is not None:
            await self.gate.wait()
        return snapshot

    async def many(self, topics: list[str]) -> Sequence[TopicRow]:
        self.reads += 1
        return [self.rows[t] for t in topics if t in self.rows]


def cache(
    clock: Clock | None = None, size: int = 100, max_age: float = 5.0, live: bool = True
) -> LatestCache:
    return LatestCache(encode_latest, size, max_age, live=live, clock=clock or Clock())


def cached_value(c: LatestCache, topic: str) -> Any:
    entry = c.get(topic)
    assert entry is not None
    return json.loads(entry.body)["data"][0]["value"]


def body(topic: str, ts: datetime, value: Any) -> dict[str, Any]:
    return {"topic": topic, "data": [{"date": iso(ts), "value": value}]}


async def test_a_miss_reads_once_then_hits() -> None:
    db, c = Database(), cache()
    db.put("a/t", T0, 21.5)
    assert c.get("a/t") is None
    entry = await c.load("a/t", db.one)
    assert entry is not None
    assert entry.owner_id == ALICE
    assert json.loads(entry.body) == body("a/t", T0, 21.5)
    assert c.get("a/t") is entry
    assert (c.misses, db.reads) == (1, 1)  # hits are counted by who answers from the entry
    assert await c.load("nothing/here", db.one) is None
    assert len(c) == 1


async def test_concurrent_misses_of_a_topic_share_one_read() -> None:
    db, c = Database(), cache()
    db.put("a/t", T0, 1.0)
    db.gate = asyncio.Event()
    loads = [asyncio.create_task(c.load("a/t", db.one)) for _ in range(5)]
    await until(lambda: db.reads == 1)
    db.gate.set()
    entries = await asyncio.gather(*loads)
    assert db.reads == 1
    assert all(e is entries[0] for e in entries)


async def test_a_failed_read_reaches_every_waiter_and_is_not_kept() -> None:
    c = cache()

    async def broken(_topic: str) -> TopicRow | None:
        await asyncio.sleep(0)
        raise OSError("database away")

    results = await asyncio.gather(c.load("a/t", broken), c.load("a/t", broken), return_exceptions=True)
    assert all(isinstance(r, OSError) for r in results)
    assert len(c) == 0


async def test_pushes_replace_newer_or_equal_only_and_never_add() -> None:
    db, c = Database(), cache()
    db.put("a/t", T0, 20.0)
    await c.load("a/t", db.one)
    c.receive([LivePoint("a/t", iso(T0 - timedelta(seconds=1)), 5.0)])  # older: ignored
    assert cached_value(c, "a/t") == 20.0
    later = T0 + timedelta(seconds=1, microseconds=500)
    c.receive([LivePoint("a/t", iso(later), 22)])  # NOTIFY writes 22.0 as 22: the route answers 22.0
    entry = c.get("a/t")
    assert entry is not None
    assert entry.body == encode_latest("a/t", later, 22.0)
    assert b'"value":22.0' in entry.body
    c.receive([LivePoint("a/t", iso(later), "on")])  # equal time: the later commit wins, as in `topics`
    assert cached_value(c, "a/t") == "on"
    c.receive([LivePoint("b/t", iso(later), 1.0)])  # not cached: its owner is unknown
    assert c.get("b/t") is None
    assert db.reads == 1


async def test_an_in_process_push_brings_its_time_and_is_not_parsed() -> None:
    """The monolith's writer passes each point's datetime along (LivePoint.ts): the cache uses it."""
    db, c = Database(), cache()
    db.put("a/t", T0, 1.0)
    await c.load("a/t", db.one)
    later = T0 + timedelta(seconds=1)
    c.receive([LivePoint("a/t", "not parsed", 2.0, later)])
    assert cached_value(c, "a/t") == 2.0
    assert c.get("a/t").ts == later  # type: ignore[union-attr]
    c.receive([LivePoint("a/t", iso(later), 3.0, T0)])  # its own time is older: kept as it was
    assert cached_value(c, "a/t") == 2.0


async def test_a_pushed_object_drops_the_entry() -> None:
    db, c = Database(), cache()
    db.put("a/t", T0, 1.0)
    await c.load("a/t", db.one)
    c.receive([LivePoint("a/t", iso(T0 + timedelta(seconds=1)), {"b": 1, "a": 2})])
    assert c.get("a/t") is None  # jsonb's key order is the database's to give


async def test_a_reading_too_big_to_push_drops_the_entry_and_reaches_no_watcher() -> None:
    """A notification carries [topic, date] for a value over its size limit (ingest/store.py)."""
    db, c = Database(), cache()
    db.put("a/t", T0, 1.0)
    await c.load("a/t", db.one)
    bus = LiveBus()
    bus.follow(c)
    later = iso(T0 + timedelta(seconds=1))
    (point,) = decode_chunk(json.dumps([["a/t", later]]))
    assert point == LivePoint("a/t", later, OMITTED)
    async with bus.watch(["a/t"]) as queue:
        bus.publish([point, LivePoint("a/t", later, 2.0)])
        assert c.get("a/t") is None  # dropped by the first; the second never adds a topic
        assert queue.get_nowait() == LivePoint("a/t", later, 2.0)  # the watcher gets values only
        assert queue.empty()
    db.put("a/t", T0 + timedelta(seconds=1), {"big": "x"})
    await c.load("a/t", db.one)  # read again from the database
    assert cached_value(c, "a/t") == {"big": "x"}


async def test_a_push_during_a_read_is_not_lost() -> None:
    db, c = Database(), cache()
    db.put("a/t", T0, 1.0)
    db.gate = asyncio.Event()
    load = asyncio.create_task(c.load("a/t", db.one))
    await until(lambda: db.reads == 1)
    assert c.following  # a read in flight wants the feed
    db.put("a/t", T0 + timedelta(seconds=1), 2.0)  # committed after the read's snapshot...
    c.receive([LivePoint("a/t", iso(T0 + timedelta(seconds=1)), 2.0)])  # ...and pushed
    db.gate.set()
    stale = await load
    assert stale is not None
    assert json.loads(stale.body)["data"][0]["value"] == 1.0
    assert c.get("a/t") is None  # ...but not kept
    db.gate = None
    fresh = await c.load("a/t", db.one)
    assert fresh is not None
    assert c.get("a/t") is fresh


async def test_a_reset_empties_it_and_off_keeps_nothing() -> None:
    db, c = Database(), cache()
    db.put("a/t", T0, 1.0)
    await c.load("a/t", db.one)
    c.reset(live=False)  # the LISTEN connection is lost: points may be missed from now on
    assert c.get("a/t") is None
    assert not c.enabled
    entry = await c.load("a/t", db.one)
    assert entry is not None
    assert json.loads(entry.body) == body("a/t", T0, 1.0)
    assert len(c) == 0
    db.gate = asyncio.Event()
    load = asyncio.create_task(c.load("a/t", db.one))
    await until(lambda: db.reads == 3)
    c.reset(live=True)  # listening again; the read began before: it may have missed a point
    db.gate.set()
    await load
    assert len(c) == 0
    assert c.enabled
    db.gate = None
    await c.load("a/t", db.one)
    assert len(c) == 1


async def test_size_zero_keeps_nothing() -> None:
    db, c = Database(), cache(size=0)
    db.put("a/t", T0, 1.0)
    assert await c.load("a/t", db.one) is not None
    assert len(c) == 0
    assert not c.enabled
    assert not c.following


async def test_at_most_max_entries_the_oldest_read_dropped() -> None:
    db, c = Database(), cache(size=2)
    for name in ("a", "b", "c"):
        db.put(name, T0, 1.0)
        await c.load(name, db.one)
    assert [t for t in ("a", "b", "c") if c.get(t)] == ["b", "c"]


async def test_entries_expire_unless_refreshed_and_idle_ones_go() -> None:
    clock, db = Clock(), Database()
    c = cache(clock, max_age=4.0)
    db.put("a/t", T0, 1.0)
    db.put("b/t", T0, 1.0)
    await c.load("a/t", db.one)
    await c.load("b/t", db.one)
    clock.now += 4.5
    assert c.get("a/t") is None  # too old: the next answer comes from the database again
    await c.load("a/t", db.one)
    reads = db.reads
    # the refresh reads again, in one query, what is max_age / 2 old and was answered lately...
    clock.now += 1.0
    assert await c.refresh(db.many) == 1  # b/t; a/t was read 1 s ago
    clock.now += 1.0
    db.put("a/t", T0 + timedelta(minutes=1), 3.0)  # e.g. a reading too large for a notification
    assert await c.refresh(db.many) == 1
    assert await c.refresh(db.many) == 0
    assert db.reads == reads + 2
    assert cached_value(c, "a/t") == 3.0
    clock.now += 1.9
    assert c.get("a/t") is not None  # read 1.9 s ago: still good
    # ...and lets go what nobody asked for in KEEP_S seconds, or what the database no longer has
    clock.now += KEEP_S - 1.5
    del db.rows["a/t"]
    assert await c.refresh(db.many) == 1
    assert len(c) == 0


async def test_a_refresh_is_not_a_use() -> None:
    clock, db = Clock(), Database()
    c = cache(clock, max_age=4.0)
    db.put("a/t", T0, 1.0)
    await c.load("a/t", db.one)
    for _ in range(int(KEEP_S) + 1):
        clock.now += 1.0
        await c.refresh(db.many)
    assert len(c) == 0


def test_the_bus_feeds_followers_and_counts_them_while_they_follow() -> None:
    bus, c = LiveBus(), cache()
    bus.follow(c)
    assert bus.watchers == 0  # an empty cache wants nothing: the writer may skip building points
    c._store(0, Row("a/t", "d", ALICE, T0, 1.0, 1), answering=True)
    assert bus.watchers == 1
    bus.publish(iter([LivePoint("a/t", iso(T0 + timedelta(seconds=1)), 2.0)]))
    assert cached_value(c, "a/t") == 2.0


@pytest.mark.parametrize(
    "value",
    [
        21.0,
        21.5,
        -0.0,
        1e20,
        1.5e-7,
        123456789.123,
        "on",
        "ünïcödé ✓",
        "",
        True,
        False,
        {"lat": 1.5, "lon": 2},
    ],
)
@pytest.mark.parametrize("ts", [T0, T0 + timedelta(microseconds=250_000), T0 + timedelta(microseconds=1)])
async def test_encoded_as_fastapi_sends_the_response_model(value: Any, ts: datetime) -> None:
    app = FastAPI()

    @app.get("/x", response_model=SeedReadings)
    async def x() -> Any:
        return SeedReadings(topic="dev/ü/t", data=[Point(date=ts, value=value)])

    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        assert (await client.get("/x")).content == encode_latest("dev/ü/t", ts, value)
