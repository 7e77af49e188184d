"""Which device owns a topic: the longest registered prefix wins (the broker let only that device publish)."""

from __future__ import annotations

import time

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from sensorcloud.broker.acl import DeviceIdentity, in_namespace

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

    async def resolve(self, topic: str) -> DeviceIdentity | None:
        age = time.monotonic() - self._loaded_at
        if age > REFRESH_S:
            await self.refresh()
        if topic in self._by_topic:
            found = self._by_topic[topic]
            if found is not None or age < MISS_REFRESH_S:
                return found
            await self.refresh()  # a device created moments ago: look again, at most every few seconds
        found = next((d for d in self._devices if in_namespace(d.topic_prefix, topic)), None)
        if len(self._by_topic) > 100_000:
            self._by_topic.clear()
        self._by_topic[topic] = found
        return found

    def forget(self, device_id: str) -> None:
        """Drop a deleted device at once (called in-process by the registry's listeners)."""
        self._devices = [d for d in self._devices if d.device_id != device_id]
        self._by_topic.clear()
