"""Batches messages by count and by time, commits them, and only then acknowledges them.

If the database is away, the batch is retried with backoff and nothing is acknowledged,
so the broker keeps the messages; once the buffer is full, `put` waits (backpressure).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from sensorcloud.core.logging import get_logger
from sensorcloud.ingest.metrics import IngestMetrics
from sensorcloud.ingest.store import DeadRow, ReadingStore, Row

log = get_logger(__name__)
Ack = Callable[[], None]
MAX_BACKOFF_S = 10.0


@dataclass
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
    ) -> None:
        self._store = store
        self._on_commit = on_commit  # the live feed: told of every committed batch
        self._metrics = metrics
        self._batch_size = batch_size
        self._interval = interval_s
        self._max_pending = max_pending or batch_size * 20
        self._buffer: list[Item] = []
        self._full = asyncio.Event()
        self._space = asyncio.Event()
        self._space.set()
        self._closing = False
        self._task: asyncio.Task[None] | None = None
        self.healthy = True

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="ingest-writer")

    async def close(self) -> None:
        """Commit what is buffered (while the database answers), then stop."""
        self._closing = True
        self._full.set()
        if self._task is not None:
            await self._task

    async def put(self, item: Item) -> None:
        while len(self._buffer) >= self._max_pending:
            self._space.clear()
            await self._space.wait()
        self._buffer.append(item)
        self._metrics.pending.set(len(self._buffer))
        if len(self._buffer) >= self._batch_size:
            self._full.set()

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

    async def _run(self) -> None:
        while True:
            if not self._closing and len(self._buffer) < self._batch_size:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._full.wait(), self._interval)
            self._full.clear()
            if not self._buffer:
                if self._closing:
                    return
                continue
            batch = self._buffer[: self._batch_size]
            del self._buffer[: self._batch_size]
            self._space.set()
            self._metrics.pending.set(len(self._buffer))
            await self._commit(batch)

    async def _commit(self, batch: list[Item]) -> None:
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
        for item in batch:
            if item.ack is not None:
                item.ack()
        if self._on_commit is not None and rows:
            try:
                self._on_commit(rows)
            except Exception:  # the live feed is best effort; storage already succeeded
                log.exception("live feed publish failed")
