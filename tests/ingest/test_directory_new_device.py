"""The ingest's device directory in microservices mode: devices are created by another process (auth),
so no listener tells ingest about them; the first message of a new device must still find it."""

from __future__ import annotations

import pytest

from sensorcloud.core.db import create_engine
from sensorcloud.ingest.directory import DeviceDirectory
from tests.support.stack import create_devices

pytestmark = pytest.mark.postgres


async def test_a_device_created_after_the_last_read_is_found_on_its_first_message(
    pg_database_url: str,
) -> None:
    engine = create_engine(pg_database_url)
    lookups = DeviceDirectory(engine)
    try:
        await lookups.refresh()  # the copy is fresh, and does not hold the device yet
        assert await lookups.resolve("devices/nobody/n") is None
        (device,) = await create_devices(pg_database_url, 1)
        found = await lookups.resolve(f"{device.prefix}/temperature")
        assert found is not None
        assert found.device_id == device.id
        assert await lookups.resolve("devices/nobody/n") is None
    finally:
        await engine.dispose()
