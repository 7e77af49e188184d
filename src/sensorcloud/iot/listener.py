"""Microservices: each iot replica LISTENs on PostgreSQL for the readings the ingest writers commit.

The writer calls pg_notify inside each batch's transaction, so a notification arrives only for
committed readings, to every replica. One dedicated connection per replica, reconnected with
backoff when lost (readings committed while it is down are not pushed live; the REST API has
them). A periodic query notices a connection that died silently. `on_change(True)` is called once
LISTEN is in place, `on_change(False)` when the connection is lost: from then on points may be
missed (the latest-value cache turns itself off until the next True).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import Any

import asyncpg
from prometheus_client import CollectorRegistry, Counter, Gauge

from sensorcloud.core.db import asyncpg_dsn
from sensorcloud.core.live import LIVE_CHANNEL, LiveBus, decode_chunk
from sensorcloud.core.logging import get_logger
from sensorcloud.core.tasks import cancel

log = get_logger(__name__)
KEEPALIVE_S = 15.0
MAX_BACKOFF_S = 10.0
FIRST_CONNECT_WAIT_S = 10.0
APPLICATION_NAME = "sensorcloud-live"  # how the LISTEN connections show in pg_stat_activity


class LiveListener:
    def __init__(
        self,
        url: str,
        bus: LiveBus,
        registry: CollectorRegistry,
        on_change: Callable[[bool], None] | None = None,
    ) -> None:
        self._dsn = asyncpg_dsn(url)
        self._bus = bus
        self._on_change = on_change
        self._task: asyncio.Task[None] | None = None
        self._attempted = asyncio.Event()
        self.connected = asyncio.Event()
        self._up = Gauge(
            "sensorcloud_live_listener_connected",
            "1 while the LISTEN connection for the live feed is up",
            registry=registry,
        )
        self._points = Counter(
            "sensorcloud_live_points_received_total",
            "Readings received through PostgreSQL NOTIFY for the live feed",
            registry=registry,
        )

    async def start(self) -> None:
        """Start listening; waits (briefly) for the first connection so that start-up reports it."""
        self._task = asyncio.create_task(self._run(), name="live-listener")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._attempted.wait(), FIRST_CONNECT_WAIT_S)
        if not self.connected.is_set():
            log.warning("live feed: not listening on PostgreSQL yet; retrying in the background")

    async def stop(self) -> None:
        await cancel(self._task)
        self._task = None

    def _changed(self, listening: bool) -> None:
        if self._on_change is not None:
            self._on_change(listening)

    def _on_notify(self, _conn: Any, _pid: int, _channel: str, payload: object) -> None:
        try:
            points = decode_chunk(str(payload))
        except (ValueError, TypeError):
            log.warning("live feed: undecodable notification ignored", size=len(str(payload)))
            return
        self._points.inc(len(points))
        self._bus.publish(points)

    async def _run(self) -> None:
        delay = 0.5
        while True:
            try:
                await self._listen_once()
                delay = 0.5
            except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                log.warning("live feed: LISTEN connection lost", error=type(exc).__name__)
            finally:
                self.connected.clear()
                self._up.set(0)
                self._attempted.set()
                self._changed(False)
            await asyncio.sleep(delay)
            delay = min(delay * 2, MAX_BACKOFF_S)

    async def _listen_once(self) -> None:
        conn: asyncpg.Connection = await asyncpg.connect(
            self._dsn, timeout=10, server_settings={"application_name": APPLICATION_NAME}
        )
        lost = asyncio.Event()
        try:
            conn.add_termination_listener(lambda _c: lost.set())
            await conn.add_listener(LIVE_CHANNEL, self._on_notify)
            self._changed(True)
            self.connected.set()
            self._up.set(1)
            self._attempted.set()
            log.info("live feed: listening on PostgreSQL", channel=LIVE_CHANNEL)
            while not lost.is_set():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(lost.wait(), KEEPALIVE_S)
                if not lost.is_set():
                    await conn.fetchval("SELECT 1", timeout=5)
            log.warning("live feed: LISTEN connection closed by the server")
        finally:
            if not conn.is_closed():
                conn.terminate()
