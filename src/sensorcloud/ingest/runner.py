"""The ingest service as one object: store, writer, device directory, pipeline, and its source of
messages: an MQTT subscriber (microservices), or the embedded broker's tap (the monolith: the
broker calls `pipeline` directly, and `on_pause` stops it at shutdown)."""

from __future__ import annotations

import asyncio
import gc
import socket
from collections.abc import Callable
from urllib.parse import unquote, urlsplit

from prometheus_client import CollectorRegistry
from sqlalchemy.ext.asyncio import AsyncEngine

from sensorcloud.broker.acl import DeviceAuthenticator, DeviceIdentity
from sensorcloud.core.errors import ConfigurationError
from sensorcloud.core.live import LiveBus
from sensorcloud.core.logging import get_logger
from sensorcloud.core.settings import Settings
from sensorcloud.ingest.directory import DeviceDirectory
from sensorcloud.ingest.metrics import IngestMetrics
from sensorcloud.ingest.mqtt import MqttSubscriber, SubscriberConfig
from sensorcloud.ingest.parse import limits_from_settings
from sensorcloud.ingest.pipeline import Pipeline
from sensorcloud.ingest.store import (
    PostgresReadingStore,
    ReadingStore,
    Row,
    SqliteReadingStore,
    live_points,
)
from sensorcloud.ingest.writer import MAX_IN_FLIGHT, BatchWriter

log = get_logger(__name__)
RETENTION_INTERVAL_S = 3600
# young container objects (allocated minus freed) that start a collection; CPython's default: 700
GC_THRESHOLD_0 = 500_000


def tune_gc() -> None:
    """Make the garbage collector cheap under a stream of messages.

    A young collection starts once the container objects allocated and not yet freed pass the
    threshold. A message in flight holds about five (its batch item, rows, acknowledgement) until
    its batch commits, so under load every collection walks messages that are all still alive,
    only to find nothing to free: the hot path creates no reference cycles, and what it allocates
    is freed by reference counting. With CPython's defaults (700) that was a third of the ingest's
    CPU time at 10,000+ messages/s; with 20,000 still a tenth at 25,000 messages/s (measured: 62
    young and 5 older collections, 0.68 s, for 200,000 messages). Objects alive once start-up is
    done are moved out of its sight (gc.freeze), and the threshold is above what the most messages
    the ingest holds at once (Receive Maximum 30,000, about 150,000 objects) can reach, so the
    collector runs for what outlives messages (reference cycles elsewhere, caches growing), at
    most every 500,000 such objects.
    """
    gc.collect()  # what is garbage now must not be frozen with the rest
    gc.freeze()
    threshold, *older = gc.get_threshold()
    gc.set_threshold(max(threshold, GC_THRESHOLD_0), *older)


def broker_from_url(url: str) -> tuple[str, int, str, str]:
    """mqtt://user:password@host:port -> (host, port, user, password)."""
    parts = urlsplit(url)
    if parts.scheme not in ("mqtt", "tcp") or not parts.hostname:
        raise ConfigurationError("SENSORCLOUD_MQTT_URL must look like mqtt://user:password@host:1883")
    return parts.hostname, parts.port or 1883, unquote(parts.username or ""), unquote(parts.password or "")


def default_client_id() -> str:
    return f"sensorcloud-ingest-{socket.gethostname()}"


class IngestService:
    def __init__(
        self,
        settings: Settings,
        readings_engine: AsyncEngine,
        registry_engine: AsyncEngine,
        metrics_registry: CollectorRegistry,
        authenticator: DeviceAuthenticator,
        live: LiveBus | None = None,
    ) -> None:
        self.settings = settings
        self.engine = readings_engine
        self.authenticator = authenticator
        self.limits = limits_from_settings(settings)
        self.metrics = IngestMetrics(metrics_registry)
        url = settings.effective_database_url
        self.store: ReadingStore = (
            SqliteReadingStore(readings_engine) if url.startswith("sqlite") else PostgresReadingStore(url)
        )
        self.live = live
        self.writer = BatchWriter(
            self.store,
            self.metrics,
            settings.ingest_batch_size,
            settings.ingest_batch_interval_ms / 1000,
            on_commit=None if live is None else self._publish_live,
            # SQLite has one writer at a time: a second transaction would only wait for the lock
            max_in_flight=1 if isinstance(self.store, SqliteReadingStore) else MAX_IN_FLIGHT,
            idle_s=settings.ingest_batch_idle_ms / 1000,
        )
        self.directory = DeviceDirectory(registry_engine)
        self.pipeline = Pipeline(self.directory, self.limits, self.writer)
        self.subscriber: MqttSubscriber | None = None
        self.on_pause: list[Callable[[], None]] = []  # other sources: take no more messages
        self._retention_task: asyncio.Task[None] | None = None

    def _publish_live(self, rows: list[Row]) -> None:
        """In-process live feed (the monolith): nothing to do while nobody watches."""
        if self.live is not None and self.live.watchers:
            self.live.publish(live_points(rows))

    def subscribe(self, config: SubscriberConfig) -> None:
        self.subscriber = MqttSubscriber(config, self.pipeline.handle, offer=self.pipeline.offer)

    async def start(self) -> None:
        tune_gc()
        self.writer.start()
        await self.directory.refresh()
        if self.subscriber is not None:
            await self.subscriber.start()
        if self.settings.retention_days:
            self._retention_task = asyncio.create_task(self._retention_loop(self.settings.retention_days))

    async def _retention_loop(self, days: int) -> None:
        while True:
            try:
                removed = await self.store.apply_retention(days)
                log.info("retention applied", days=days, removed=removed)
            except Exception as exc:  # the database may be away for a while: try again next round
                log.warning("retention failed", error=type(exc).__name__)
            await asyncio.sleep(RETENTION_INTERVAL_S)

    async def stop(self) -> None:
        if self._retention_task is not None:
            self._retention_task.cancel()
            await asyncio.gather(self._retention_task, return_exceptions=True)
        try:
            for pause in self.on_pause:
                pause()
            if self.subscriber is not None:
                await self.subscriber.pause()  # take no more; commit and acknowledge what we hold
            await self.writer.close()
            if self.subscriber is not None:
                await self.subscriber.stop()
        finally:
            await self.store.close()  # its connections, whatever happened before

    async def ready(self) -> None:
        await self.store.ping()
        if not self.writer.healthy:
            raise RuntimeError("batch writes are failing")
        if self.subscriber is not None and not self.subscriber.connected.is_set():
            raise RuntimeError("not connected to the MQTT broker")

    # DeviceListener: a deleted device's topics stop resolving at once in this process
    async def device_saved(self, identity: DeviceIdentity, secret: str) -> None:
        await self.directory.refresh()

    async def device_removed(self, device_id: str) -> None:
        self.directory.forget(device_id)
