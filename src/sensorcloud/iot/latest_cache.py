"""The newest reading of each topic, kept in process: what GET /iot/{topic}/latest answers on a hit.

An entry is read from the `topics` table on a miss and kept current by the live feed
(core/live.py): in the monolith the ingest writer publishes each committed batch to the in-process
bus; an iot replica alone gets the same points through LISTEN (iot/listener.py). The rules:
- a pushed point replaces an entry only when it is not older (ts >= the entry's: the ingest's
  `topics` upsert also lets the later of two equal times win); a push never adds a topic, as the
  feed does not carry its owner;
- a pushed object value drops the entry instead of replacing it: PostgreSQL's jsonb reorders
  keys, and the answer must be the bytes the database path gives; so does a reading too big for
  a notification, which the feed announces without its value (core.live.OMITTED);
- while the feed may miss points (the LISTEN connection is down) the cache keeps nothing, and it
  is emptied when the connection is back;
- a read from the database that a push of its topic or a reset overtook is answered but not kept
  (its row may predate the push); concurrent misses of one topic share one read;
- an entry is not answered `max_age` seconds after the database last vouched for it: the bound on
  what the feed does not carry (a writer that does not notify). So that the topics in use do not
  miss then, `refresh` (latest_refresh.py runs it every max_age / 4 seconds) reads again, many in
  one query, those that are max_age / 2 old and were answered in the last KEEP_S seconds; the
  others are let go;
- at most `max_entries`, the oldest read dropped first.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from functools import partial
from typing import Any, Protocol

from sensorcloud.core.live import OMITTED, LivePoint

Encoder = Callable[[str, datetime, Any], bytes]
REFRESH_CHUNK = 200
KEEP_S = 60.0  # an entry answered within this is read again before it expires (a dashboard's poll)


class TopicRow(Protocol):
    """What the cache needs of a `topics` row (iot.repository.TopicRow)."""

    @property
    def topic(self) -> str: ...
    @property
    def owner_id(self) -> int: ...
    @property
    def last_ts(self) -> datetime: ...
    @property
    def last_value(self) -> Any: ...


ReadOne = Callable[[str], Awaitable[TopicRow | None]]
ReadMany = Callable[[list[str]], Awaitable[Sequence[TopicRow]]]


class Entry:
    """A topic's owner and newest reading; `body` is its answer, encoded on first use."""

    __slots__ = ("_body", "_encode", "owner_id", "read_at", "topic", "ts", "used_at", "value")

    def __init__(
        self, topic: str, owner_id: int, ts: datetime, value: Any, read_at: float, encode: Encoder
    ) -> None:
        self.topic = topic
        self.owner_id = owner_id
        self.ts = ts
        self.value = value
        self.read_at = read_at  # when the database last vouched for it (pushes keep it)
        self.used_at = read_at  # when it was last answered
        self._encode = encode
        self._body: bytes | None = None

    @property
    def body(self) -> bytes:
        if self._body is None:
            self._body = self._encode(self.topic, self.ts, self.value)
        return self._body


def pushed_value(value: Any) -> Any:
    """A pushed number as the database returns it: `num` is a double (NOTIFY writes 21.0 as 21)."""
    return float(value) if type(value) is int else value


class LatestCache:
    def __init__(
        self,
        encode: Encoder,
        max_entries: int,
        max_age: float,
        *,
        live: bool = True,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._encode = encode
        self._max_entries = max_entries
        self.max_age = max_age
        self._clock = clock
        self._live = live
        self._entries: dict[str, Entry] = {}
        self._reads: dict[str, int] = {}  # topic -> database reads in flight
        self._raced: set[str] = set()  # topics pushed while a read was in flight
        self._loads: dict[str, asyncio.Task[Entry | None]] = {}
        self._generation = 0
        self.hits = 0  # answers from an entry
        self.misses = 0  # answers that waited for a read

    @property
    def enabled(self) -> bool:
        """Whether entries are kept now: a size above 0 and a feed that misses nothing."""
        return self._live and self._max_entries > 0

    @property
    def following(self) -> bool:
        """Whether pushed points matter now (core.live.Follower): not while it is empty."""
        return bool(self._entries) or bool(self._reads)

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, topic: str) -> Entry | None:
        """The topic's entry, unless absent or too old. Who answers from it adds to `hits`."""
        entry = self._entries.get(topic)
        if entry is not None:
            now = self._clock()
            if now - entry.read_at <= self.max_age:
                entry.used_at = now
                return entry
        return None

    async def load(self, topic: str, read: ReadOne) -> Entry | None:
        """The topic's entry as `read` finds it in the database now (None: no such topic), kept
        when the rules allow. Concurrent loads of one topic share one read."""
        self.misses += 1
        task = self._loads.get(topic)
        if task is None:
            task = asyncio.get_running_loop().create_task(self._load(topic, read))
            self._loads[topic] = task
            task.add_done_callback(partial(self._loaded, topic))
        return await asyncio.shield(task)  # a waiter that goes away does not cancel the others' read

    async def _load(self, topic: str, read: ReadOne) -> Entry | None:
        with self._reading((topic,)) as generation:
            row = await read(topic)
            return None if row is None else self._store(generation, row, answering=True)

    def _loaded(self, topic: str, task: asyncio.Task[Entry | None]) -> None:
        if self._loads.get(topic) is task:
            del self._loads[topic]
        if not task.cancelled():
            task.exception()  # retrieved here; the waiters get it too

    async def refresh(self, read: ReadMany) -> int:
        """Read again the entries in use that are max_age / 2 old; let the idle ones go. How many read."""
        due = self._due(self.max_age / 2)
        for i in range(0, len(due), REFRESH_CHUNK):
            chunk = due[i : i + REFRESH_CHUNK]
            with self._reading(chunk) as generation:
                rows = {r.topic: r for r in await read(chunk)}
                for topic in chunk:
                    row = rows.get(topic)
                    if row is None:
                        self._entries.pop(topic, None)
                    else:
                        self._store(generation, row, answering=False)
        return len(due)

    def _due(self, age: float) -> list[str]:
        now = self._clock()
        for topic in [t for t, e in self._entries.items() if now - e.used_at > KEEP_S]:
            del self._entries[topic]
        return [t for t, e in self._entries.items() if now - e.read_at >= age]

    @contextmanager
    def _reading(self, topics: Iterable[str]) -> Iterator[int]:
        """Around a database read of these topics: notes the pushes that overtake it."""
        names = list(topics)
        for topic in names:
            self._reads[topic] = self._reads.get(topic, 0) + 1
        try:
            yield self._generation
        finally:
            for topic in names:
                left = self._reads.pop(topic) - 1
                if left:
                    self._reads[topic] = left
                else:
                    self._raced.discard(topic)

    def _store(self, generation: int, row: TopicRow, *, answering: bool) -> Entry:
        topic = row.topic
        entry = Entry(topic, row.owner_id, row.last_ts, row.last_value, self._clock(), self._encode)
        if not self.enabled or generation != self._generation or topic in self._raced:
            return entry
        current = self._entries.pop(topic, None)
        if current is None:
            if len(self._entries) >= self._max_entries:
                del self._entries[next(iter(self._entries))]
        else:
            if current.ts > entry.ts:  # only a push overtaking the read could do it, and that is raced
                entry = Entry(topic, row.owner_id, current.ts, current.value, entry.read_at, self._encode)
            if not answering:  # a refresh is no use
                entry.used_at = current.used_at
        self._entries[topic] = entry
        return entry

    def receive(self, points: Sequence[LivePoint]) -> None:
        """Newest readings of a committed batch (core.live.Follower)."""
        for point in points:
            topic = point.topic
            if topic in self._reads:
                self._raced.add(topic)
            entry = self._entries.get(topic)
            if entry is None:
                continue
            ts = point.ts  # in process the writer passes the time itself
            if ts is None:
                try:
                    ts = datetime.fromisoformat(point.date)
                except ValueError:
                    del self._entries[topic]
                    continue
            if ts < entry.ts:
                continue
            if point.value is OMITTED or isinstance(point.value, dict | list):
                del self._entries[topic]  # read again on the next request
                continue
            pushed = Entry(topic, entry.owner_id, ts, pushed_value(point.value), entry.read_at, self._encode)
            pushed.used_at = entry.used_at
            self._entries[topic] = pushed

    def reset(self, live: bool) -> None:
        """Forget every entry (points may have been missed); `live` False keeps nothing until True."""
        self._entries.clear()
        self._generation += 1  # reads in flight are not kept
        self._live = live
