"""Removes from Mosquitto's dynamic-security plugin the devices the registry no longer has.

Device changes reach the broker before they count (auth/devices_service.py), so the two agree;
this is the safety net for what could still leave a broker client behind: a deletion racing a
rotation of the same device, a registry restored from a backup, a row deleted by hand. It runs
when the auth service starts and every RECONCILE_S seconds, and only ever removes device clients
(the admin and service accounts are not devices). A device created while it runs is never taken
for stale: the broker is listed first and the registry read after, and a device is in the
registry before the broker hears of it.
"""

from __future__ import annotations

import asyncio

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from sensorcloud.auth import devices_repository as repo
from sensorcloud.broker.dynsec import DynsecSync
from sensorcloud.core.db import transaction
from sensorcloud.core.logging import get_logger
from sensorcloud.core.tasks import cancel

log = get_logger(__name__)
RECONCILE_S = 300.0


class BrokerReconciler:
    def __init__(
        self, sync: DynsecSync, sessions: async_sessionmaker[AsyncSession], interval: float | None = None
    ) -> None:
        self._sync = sync
        self._sessions = sessions
        self._interval = RECONCILE_S if interval is None else interval
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="dynsec-reconcile")

    async def stop(self) -> None:
        await cancel(self._task)
        self._task = None

    async def run_once(self) -> list[str]:
        """One pass: the device clients removed."""
        removed = await self._sync.remove_stale_devices(self._registered)
        if removed:
            log.warning("dynsec: removed devices the registry does not have", devices=removed)
        return removed

    async def _registered(self) -> set[str]:
        async with transaction(self._sessions) as session:
            return await repo.device_ids(session)

    async def _run(self) -> None:
        while True:
            try:
                await self.run_once()
            except Exception as exc:  # the broker or the database away: next round
                log.warning("dynsec reconciliation failed; retrying later", error=type(exc).__name__)
            await asyncio.sleep(self._interval)
