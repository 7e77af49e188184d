"""Which device owns a topic: the longest registered prefix wins (the broker let only that device publish)."""

from __future__ import annotations

import time
from enum import Enum
from typing import Literal

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from sensorcloud.broker.acl import DeviceIdentity, in_namespace
from sensorcloud.core.logging import get_logger

log = get_logger(__name__)
REFRESH_S = 30.0
MISS_REFRESH_S = 2.0


class _Stale(Enum):
    STALE = "stale"


STALE = _Stale.STALE  # resolve_cached: the answer needs a read of the table, call resolve()


class DeviceDirectory:
    """A cached copy of (device id, owner, prefix) read from the devices table.

    In the monolith that table is in the same database; in microservices mode ingest reads
    the auth database (SENSORCLOUD_AUTH_DATABASE_URL), read-only.
    """

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine
        self._devices: list[DeviceIdentity] = []
        self._loaded_at = 0.0
        self._by_topic: dict[str, DeviceIdentity] = {}  # topics resolved from the current copy
        self._missed: dict[str, float] = {}  # topic -> when a miss on it last made us read the table

    async def refresh(self) -> None:
        async with self._engine.connect() as conn:
            rows = await conn.execute(text("SELECT id, owner_id, topic_prefix FROM devices"))
            devices = [DeviceIdentity(device_id=r[0], owner_id=int(r[1]), topic_prefix=r[2]) for r in rows]
        # longest prefix first, so nested namespaces resolve to the innermost device
        self._devices = sorted(devices, key=lambda d: len(d.topic_prefix), reverse=True)
        self._by_topic.clear()
        self._loaded_at = time.monotonic()

    async def _refresh_or_keep(self) -> None:
        # Database away: answer from the copy we hold. Raising here would drop the message without
        # its ack; unacked it would sit in the broker's in-flight window until the next reconnect.
        try:
            await self.refresh()
        except Exception as exc:
            log.warning("device directory refresh failed; using the cached copy", error=type(exc).__name__)
            self._loaded_at = time.monotonic() - REFRESH_S + MISS_REFRESH_S  # try again in a moment

    async def resolve(self, topic: str) -> DeviceIdentity | None:
        if time.monotonic() - self._loaded_at > REFRESH_S:
            await self._refresh_or_keep()
        found = self._by_topic.get(topic) or self._lookup(topic)
        if found is None:
            # The broker let someone publish here, yet no device in our copy owns the topic: most
            # likely a device created (in the auth service, another process) after our last read.
            # Read the table again before calling the message unowned: at most once every
            # MISS_REFRESH_S per topic, so a stream on an unowned topic cannot hammer the database.
            now = time.monotonic()
            last = self._missed.get(topic)
            if last is None or now - last >= MISS_REFRESH_S:
                if len(self._missed) > 100_000:
                    self._missed.clear()
                self._missed[topic] = now
                await self._refresh_or_keep()
                found = self._lookup(topic)
        if found is not None:
            if len(self._by_topic) > 100_000:
                self._by_topic.clear()
            self._by_topic[topic] = found
        return found

    def resolve_cached(self, topic: str) -> DeviceIdentity | Literal[_Stale.STALE] | None:
        """What resolve() answers, without awaiting: STALE when it would read the table first.

        The ingest's hot path: a message whose answer is at hand is handled without a coroutine."""
        now = time.monotonic()
        if now - self._loaded_at > REFRESH_S:
            return STALE
        found = self._by_topic.get(topic) or self._lookup(topic)
        if found is None:
            last = self._missed.get(topic)
            return STALE if last is None or now - last >= MISS_REFRESH_S else None
        if len(self._by_topic) > 100_000:
            self._by_topic.clear()
        self._by_topic[topic] = found
        return found

    def _lookup(self, topic: str) -> DeviceIdentity | None:
        return next((d for d in self._devices if in_namespace(d.topic_prefix, topic)), None)

    def forget(self, device_id: str) -> None:
        """Drop a deleted device at once (called in-process by the registry's listeners)."""
        self._devices = [d for d in self._devices if d.device_id != device_id]
        self._by_topic.clear()
