"""Batches messages by count and by time, commits them, and only then acknowledges them.

When the writer is idle, a batch is taken once `batch_size` messages wait, `interval_s` after the
first of them arrived, or as soon as the stream pauses: no message for `idle_s`. The pause rule
keeps a quiet device's reading from waiting the whole interval, and a burst's last messages from
waiting for company that is not coming; it costs at most one extra transaction per e * idle_s
(a stream with gaps of about idle_s), however the load varies. A batch holds everything waiting,
up to `max_batch`: while a batch commits the next one fills, so batches grow with the load and
shrink again when the stream is light (fewer, bigger transactions cost the database less per
message). A second batch is written alongside the first (on its own connection) only when a full
`max_batch` waits, i.e. while draining a backlog, or when the stream pauses: the last messages
before a pause do not wait for the commit in progress.
Acknowledgements and the live feed go out batch after batch, in the order the messages came in.

If the database is away, the batch is retried with backoff and nothing is acknowledged,
so the broker keeps the messages; once the buffer is full, `put` waits and `has_room` is False
(backpressure).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from sensorcloud.core.logging import get_logger
from sensorcloud.ingest.metrics import IngestMetrics
from sensorcloud.ingest.store import IN_FLIGHT_CONNECTIONS, DeadRow, ReadingStore, Row

log = get_logger(__name__)
Ack = Callable[[], None]
MAX_BACKOFF_S = 10.0
MAX_BATCH = 10000  # messages in one transaction when a backlog waits (at least batch_size)
# batches being written at once (a backlog, a pause); the store keeps a connection open for each
MAX_IN_FLIGHT = IN_FLIGHT_CONNECTIONS
PAUSE_CONFIRM_S = 0.001  # a pause is looked at again after the loop read its sockets once more


@dataclass(slots=True)
class Item:
    """One message turned into rows (or into a dead letter), with what to do once it is committed."""

    rows: list[Row] = field(default_factory=list)
    dead: DeadRow | None = None
    ack: Ack | None = None


class BatchWriter:
    def __init__(
        self,
        store: ReadingStore,
        metrics: IngestMetrics,
        batch_size: int = 1000,
        interval_s: float = 0.2,
        max_pending: int | None = None,
        on_commit: Callable[[list[Row]], None] | None = None,
        max_batch: int | None = None,
        max_in_flight: int = MAX_IN_FLIGHT,
        idle_s: float = 0.0,
    ) -> None:
        self._store = store
        self._on_commit = on_commit  # the live feed: told of every committed batch
        self._metrics = metrics
        self._batch_size = batch_size
        self._max_batch = max(batch_size, max_batch or MAX_BATCH)
        self._interval = interval_s
        self._idle = idle_s  # 0: no pause rule
        # three full batches: two being written, one filling (30,000 by default, as Receive Maximum)
        self._max_pending = max_pending or self._max_batch * 3
        self._max_in_flight = max(1, max_in_flight)
        self._buffer: list[Item] = []
        self._first_at = 0.0  # when the oldest waiting item came
        self._last_at = 0.0  # when the newest did
        self._pause_seen = -1.0  # the _last_at of the pause seen once, to be confirmed (see _timeout)
        self._wake = asyncio.Event()  # the buffer reached a threshold, or a batch is done
        self._space = asyncio.Event()
        self._space.set()
        self._closing = False
        self._task: asyncio.Task[None] | None = None
        self._writing: set[asyncio.Task[None]] = set()
        self._previous: asyncio.Future[None] | None = None  # the last batch taken: acknowledged yet?
        self.healthy = True

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="ingest-writer")

    async def close(self) -> None:
        """Commit what is buffered (while the database answers), then stop."""
        self._closing = True
        self._wake.set()
        if self._task is not None:
            await self._task

    @property
    def has_room(self) -> bool:
        return len(self._buffer) < self._max_pending

    def add(self, item: Item) -> None:
        """Queue an item now (the caller checked `has_room`)."""
        buffer = self._buffer
        buffer.append(item)
        waiting = len(buffer)
        self._last_at = now = time.monotonic()
        if waiting == 1:
            self._first_at = now
            self._wake.set()
        elif waiting == self._batch_size or waiting == self._max_batch:
            self._wake.set()

    async def put(self, item: Item) -> None:
        """Queue an item, waiting while the buffer is full."""
        while not self.has_room:
            self._space.clear()
            await self._space.wait()
        self.add(item)

    async def write_now(self, item: Item) -> None:
        """Queue one item and wait until the batch holding it is committed (HTTP ingestion)."""
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        previous = item.ack

        def ack() -> None:
            if previous is not None:
                previous()
            if not done.done():
                done.set_result(None)

        item.ack = ack
        await self.put(item)
        await done

    # ---- scheduling -------------------------------------------------------------------------
    def _due(self) -> bool:
        waiting, writing = len(self._buffer), len(self._writing)
        if not waiting or writing >= self._max_in_flight:
            return False
        if self._closing:
            return True
        if writing:
            # one batch is being written: start another for a full one (a backlog), or for the last
            # messages before a pause, which would otherwise wait for that commit first
            return waiting >= self._max_batch or self._paused()
        return (
            waiting >= self._batch_size
            or time.monotonic() >= self._first_at + self._interval
            or self._paused()
        )

    def _paused(self) -> bool:
        """No message for idle_s, and none in the sockets either: see _timeout."""
        return self._idle > 0 and time.monotonic() >= self._paused_at() and self._pause_seen == self._last_at

    def _paused_at(self) -> float:
        return self._last_at + self._idle

    def _timeout(self) -> float | None:
        """How long to sleep before a time rule can make a batch due; None: until woken."""
        if not self._buffer or len(self._writing) >= self._max_in_flight:
            return None
        now = time.monotonic()
        deadline = None if self._writing else self._first_at + self._interval
        if self._idle:
            paused_at = self._paused_at()
            if now >= paused_at and self._pause_seen != self._last_at:
                # No message for idle_s, it seems; but after a long step of the loop (a batch
                # encoded, a collection), messages that came meanwhile may still be unread in the
                # socket, and a wake-up scheduled before that step comes first. A short sleep lets
                # the loop read its sockets; a pause still there after it is one.
                self._pause_seen = self._last_at
                return PAUSE_CONFIRM_S
            deadline = paused_at if deadline is None else min(deadline, paused_at)
        return None if deadline is None else max(0.0, deadline - now)

    async def _run(self) -> None:
        while True:
            while not self._due():
                if self._closing and not self._buffer:
                    await asyncio.gather(*self._writing)
                    return
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), self._timeout())
            batch = self._buffer[: self._max_batch]
            del self._buffer[: self._max_batch]
            self._first_at = time.monotonic()  # what is left waits from now on
            self._space.set()
            self._metrics.pending.set(len(self._buffer))
            done = asyncio.get_running_loop().create_future()
            task = asyncio.create_task(self._commit(batch, self._previous, done), name="ingest-batch")
            self._previous = done
            self._writing.add(task)

    async def _commit(
        self, batch: list[Item], previous: asyncio.Future[None] | None, done: asyncio.Future[None]
    ) -> None:
        try:
            await self._write(batch, previous)
        finally:
            done.set_result(None)
            self._writing.discard(asyncio.current_task())
            self._wake.set()

    async def _write(self, batch: list[Item], previous: asyncio.Future[None] | None) -> None:
        rows = [r for item in batch for r in item.rows]
        dead = [item.dead for item in batch if item.dead is not None]
        delay = 0.2
        while True:
            started = time.perf_counter()
            try:
                result = await self._store.write(rows, dead)
                break
            except Exception as exc:  # any storage failure: keep the batch, unacknowledged, and retry
                self.healthy = False
                self._metrics.write_errors.inc()
                log.warning(
                    "batch write failed; retrying",
                    error=type(exc).__name__,
                    detail=str(exc)[:200],
                    retry_in_s=delay,
                    messages=len(batch),
                )
                if self._closing and delay >= MAX_BACKOFF_S:
                    log.error("giving up on the buffered batch at shutdown; the broker will redeliver it")
                    return
                await asyncio.sleep(delay)
                delay = min(delay * 2, MAX_BACKOFF_S)
        if not self.healthy:
            log.info("batch writes succeed again")
        self.healthy = True
        self._metrics.batch_seconds.observe(time.perf_counter() - started)
        self._metrics.readings.inc(result.inserted)
        self._metrics.duplicates.inc(result.duplicates)
        self._metrics.dead_letters.inc(len(dead))
        self._metrics.messages.labels("stored").inc(len(batch) - len(dead))
        self._metrics.messages.labels("dead_letter").inc(len(dead))
        if previous is not None:
            await previous  # the batch before this one is acknowledged first
        for item in batch:
            if item.ack is not None:
                item.ack()
        if self._on_commit is not None and rows:
            try:
                self._on_commit(rows)
            except Exception:  # the live feed is best effort; storage already succeeded
                log.exception("live feed publish failed")
