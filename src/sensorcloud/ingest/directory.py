"""Which device owns a topic: the longest registered prefix wins (the broker let only that device publish)."""

from __future__ import annotations

import time

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from sensorcloud.broker.acl import DeviceIdentity, in_namespace
from sensorcloud.core.logging import get_logger

log = get_logger(__name__)
REFRESH_S = 30.0
MISS_REFRESH_S = 2.0


class DeviceDirectory:
    """A cached copy of (device id, owner, prefix) read from the devices table.

    In the monolith that table is in the same database; in microservices mode ingest reads
    the auth database (SENSORCLOUD_AUTH_DATABASE_URL), read-only.
    """

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine
        self._devices: list[DeviceIdentity] = []
        self._loaded_at = 0.0
        self._by_topic: dict[str, DeviceIdentity | None] = {}

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
        age = time.monotonic() - self._loaded_at
        if age > REFRESH_S:
            await self._refresh_or_keep()
        if topic in self._by_topic:
            found = self._by_topic[topic]
            if found is not None or age < MISS_REFRESH_S:
                return found
            await self._refresh_or_keep()  # a device created moments ago: look again, every few seconds
        found = next((d for d in self._devices if in_namespace(d.topic_prefix, topic)), None)
        if len(self._by_topic) > 100_000:
            self._by_topic.clear()
        self._by_topic[topic] = found
        return found

    def forget(self, device_id: str) -> None:
        """Drop a deleted device at once (called in-process by the registry's listeners)."""
        self._devices = [d for d in self._devices if d.device_id != device_id]
        self._by_topic.clear()
