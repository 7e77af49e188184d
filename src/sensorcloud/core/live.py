"""The live feed's bus: committed readings fan out to whoever watches their topics.

Monolith: the writer publishes to an in-process bus after each commit (only while someone
watches). Microservices: the writer issues pg_notify on channel LIVE_CHANNEL inside the batch's
transaction (delivered on commit); each iot replica LISTENs and republishes to its own in-process
bus. Either way the feed carries the newest reading of each topic in a committed batch: under load
a batch holds several readings of a topic and a dashboard shows the latest (the REST API has all).
Besides the WebSocket watchers, a follower (the iot service's latest-value cache) takes every batch.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

import orjson

LIVE_CHANNEL = "sensorcloud_readings"
NOTIFY_LIMIT = 7900  # PostgreSQL refuses NOTIFY payloads of 8000 bytes or more
QUEUE_LIMIT = 10_000


class _Omitted:
    def __repr__(self) -> str:
        return "OMITTED"


OMITTED: Any = _Omitted()  # LivePoint.value of a reading too big for a notification: read it from the API


@dataclass(frozen=True)
class LivePoint:
    topic: str
    date: str  # ISO-8601, as the API shows dates
    value: Any  # OMITTED: the topic has a newer reading than its followers know, not carried
    # the time itself, when the publisher has it (in process): a follower need not parse `date`
    ts: datetime | None = field(default=None, compare=False)


def iso(ts: datetime) -> str:
    """A UTC time as the API writes dates (pydantic's form: ...Z)."""
    return ts.astimezone(UTC).isoformat().replace("+00:00", "Z")


SAMPLE = 32  # points encoded first to estimate the size of them all
Reading = tuple[str, datetime, Any]  # topic, time (aware), value: a point before its date is written


def encode_chunks(points: Sequence[Reading]) -> list[str]:
    """The notifications carrying `points`: JSON arrays of [topic, date, value], each at most
    NOTIFY_LIMIT bytes; a point too big for one notification goes as [topic, date] ("changed, too
    big to carry": a follower forgets the topic's entry). Dates as iso() writes them.

    Built by orjson a list at a time (a point at a time costs twice as much): the size of the
    first SAMPLE points tells how many even groups make chunks of about 3/4 of the limit; a group
    still too big is halved."""
    chunks: list[str] = []
    if not points:
        return chunks
    if len(points) <= SAMPLE:
        _pack(points, chunks)
        return chunks
    estimate = len(_dumps(points[:SAMPLE])) * len(points) // SAMPLE
    step = -(-len(points) // -(-estimate // (NOTIFY_LIMIT * 3 // 4)))
    for start in range(0, len(points), step):
        _pack(points[start : start + step], chunks)
    return chunks


def _pack(points: Sequence[Reading], chunks: list[str]) -> None:
    data = _dumps(points)
    if len(data) <= NOTIFY_LIMIT:
        chunks.append(data.decode())
    elif len(points) == 1:
        topic, ts, _ = points[0]
        chunks.append(_dumps([(topic, ts)]).decode())
    else:
        middle = len(points) // 2
        _pack(points[:middle], chunks)
        _pack(points[middle:], chunks)


def _dumps(points: Sequence[tuple[Any, ...]]) -> bytes:
    """[[topic, date, value], ...]: orjson writes an aware UTC datetime as iso() does (Z, microseconds
    only when not zero); a value it cannot take (an integer beyond 64 bits) goes through json."""
    try:
        return orjson.dumps(points, option=orjson.OPT_UTC_Z)
    except TypeError:  # orjson.JSONEncodeError
        plain = [(p[0], iso(p[1]), *p[2:]) for p in points]
        return json.dumps(plain, separators=(",", ":"), ensure_ascii=False).encode()


def decode_chunk(payload: str) -> list[LivePoint]:
    """One notification: a JSON array of [topic, date, value] (encode_chunks, at most NOTIFY_LIMIT
    bytes); [topic, date] for a value too big to carry."""
    return [
        LivePoint(topic=p[0], date=p[1], value=p[2] if len(p) > 2 else OMITTED) for p in json.loads(payload)
    ]


class Follower(Protocol):
    """Takes every published batch, synchronously (e.g. the iot service's cache of newest values)."""

    @property
    def following(self) -> bool:
        """Whether it wants points now; while no one does, a publisher may skip building them."""

    def receive(self, points: Sequence[LivePoint]) -> None: ...


class LiveBus:
    """In-process fan-out. A slow watcher loses its oldest points rather than stalling ingestion."""

    def __init__(self) -> None:
        self._watchers: set[tuple[frozenset[str], asyncio.Queue[LivePoint]]] = set()
        self._followers: list[Follower] = []

    def follow(self, follower: Follower) -> None:
        self._followers.append(follower)

    def publish(self, points: Iterable[LivePoint]) -> None:
        if not self._watchers and not self._followers:
            return
        batch = points if isinstance(points, Sequence) else list(points)
        for follower in self._followers:
            follower.receive(batch)
        if not self._watchers:
            return
        for point in batch:
            if point.value is OMITTED:  # a dashboard gets values; this one it reads from the API
                continue
            for topics, queue in self._watchers:
                if point.topic in topics:
                    if queue.full():
                        queue.get_nowait()
                    queue.put_nowait(point)

    @asynccontextmanager
    async def watch(self, topics: Iterable[str]) -> AsyncIterator[asyncio.Queue[LivePoint]]:
        queue: asyncio.Queue[LivePoint] = asyncio.Queue(QUEUE_LIMIT)
        entry = (frozenset(topics), queue)
        self._watchers.add(entry)
        try:
            yield queue
        finally:
            self._watchers.discard(entry)

    @property
    def watchers(self) -> int:
        """Those who want points now: open watches and following followers (0: skip publishing)."""
        return len(self._watchers) + sum(1 for f in self._followers if f.following)
