"""Devices, free of HTTP: create, list, read, delete, rotate the secret; tell the brokers.

Two kinds of listeners hear of a change. A credential store (`holds_credentials`: Mosquitto's
dynamic-security plugin, which keeps the only usable copy of a device's secret besides its
owner's) must follow every change, or a deleted or rotated device would go on connecting, and a
new one would hold a secret that works nowhere: if it cannot be reached the request fails with
503 and nothing changes (a created device is removed again). The others (in-process caches, the
embedded broker dropping connections) are told after the commit; their failure is logged.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from sensorcloud.auth import devices_repository as repo
from sensorcloud.auth.devices_models import Device
from sensorcloud.auth.devices_registry import DEVICE_ID, hash_secret
from sensorcloud.broker.acl import DeviceIdentity, DeviceListener, valid_prefix
from sensorcloud.core.db import transaction, utcnow
from sensorcloud.core.errors import Conflict, Invalid, NotFound, Unavailable
from sensorcloud.core.logging import get_logger
from sensorcloud.core.tokens import Principal

log = get_logger(__name__)
MAX_DEVICES_PER_USER = 1000
DEFAULT_PREFIX_ROOT = "devices"
# A broker that does not answer must not hold the request (and the user) hostage.
LISTENER_TIMEOUT = 5.0
NOT_FOUND = "Device does not exist."
BROKER_AWAY = "The MQTT broker could not be updated, so the device was {}. Try again in a moment."
ROTATION_NOT_SAVED = (
    "The device's new secret was set at the MQTT broker but could not be saved, so the device cannot "
    "connect with its old secret nor with a new one. Rotate its secret again in a moment."
)
SAVE_ATTEMPTS = 5  # a rotation's registry update: tried at once, then after 0.25, 0.5, 1 and 2 s
SAVE_RETRY_FIRST_S = 0.25


def holds_credentials(listener: DeviceListener) -> bool:
    return bool(getattr(listener, "holds_credentials", False))


@dataclass(frozen=True)
class Credentials:
    """A device with its plaintext secret: known only when it is created or rotated."""

    device: Device
    secret: str


def prefix_problem(prefix: str) -> str | None:
    """Why a custom topic prefix is not acceptable, or None."""
    problem = valid_prefix(prefix)
    if problem:
        return problem
    if prefix == DEFAULT_PREFIX_ROOT:
        # it would contain every default namespace and block every new device
        return f"topic prefix '{DEFAULT_PREFIX_ROOT}' is reserved"
    return None


def _identity(device: Device) -> DeviceIdentity:
    return DeviceIdentity(device.id, device.owner_id, device.topic_prefix)


class DeviceService:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        listeners: Sequence[DeviceListener],
        max_per_user: int = MAX_DEVICES_PER_USER,
    ) -> None:
        self._sessions = sessions
        self._listeners = listeners  # a list the runtime may extend: split at each use
        self._max_per_user = max_per_user

    async def create(self, principal: Principal, name: str, topic_prefix: str | None) -> Credentials:
        if topic_prefix is not None:
            problem = prefix_problem(topic_prefix)
            if problem:
                raise Invalid(problem)
        secret = secrets.token_urlsafe(32)
        device_id = secrets.token_hex(8)
        device = Device(
            id=device_id,
            owner_id=principal.user_id,
            name=name,
            topic_prefix=topic_prefix or f"{DEFAULT_PREFIX_ROOT}/{device_id}",
            secret_hash=hash_secret(secret),
            created_at=utcnow(),
            secret_rotated_at=None,
        )
        try:
            async with transaction(self._sessions) as session:
                await repo.lock_prefixes(session)
                # insert first, check after: on SQLite the insert takes the write lock
                await repo.add_device(session, device)
                if await repo.count_owned(session, principal.user_id) > self._max_per_user:
                    raise Conflict(f"You may own at most {self._max_per_user} devices.")
                taken = await repo.overlapping_prefix(session, device.topic_prefix, device.id)
                if taken is not None:
                    raise Conflict(f"Topic prefix overlaps the prefix '{taken}' of another device.")
        except IntegrityError:  # the same prefix, inserted concurrently (or, once in 2^64, the same id)
            raise Conflict("Topic prefix overlaps the prefix of another device.") from None
        identity = _identity(device)
        if not await self._in_stores("device_saved", lambda s: s.device_saved(identity, secret)):
            async with transaction(self._sessions) as session:
                await repo.delete_device(session, device.id)
            await self._in_stores("device_removed", lambda s: s.device_removed(device.id))  # any half
            raise Unavailable(BROKER_AWAY.format("not created"))
        log.info("device created", device_id=device.id, owner_id=device.owner_id)
        await self._tell_others("device_saved", lambda o: o.device_saved(identity, secret))
        return Credentials(device, secret)

    async def list_devices(
        self, principal: Principal, limit: int, offset: int
    ) -> tuple[Sequence[Device], int]:
        """Your own devices; an admin's listing holds everyone's."""
        owner = None if principal.is_admin else principal.user_id
        async with transaction(self._sessions) as session:
            return await repo.list_devices(session, owner, limit, offset)

    async def _visible(self, session: AsyncSession, principal: Principal, device_id: str) -> Device:
        # someone else's device answers like a missing one: ids must not be probeable
        device = await repo.device_by_id(session, device_id) if DEVICE_ID.fullmatch(device_id) else None
        if device is None or (device.owner_id != principal.user_id and not principal.is_admin):
            raise NotFound(NOT_FOUND)
        return device

    async def get(self, principal: Principal, device_id: str) -> Device:
        async with transaction(self._sessions) as session:
            return await self._visible(session, principal, device_id)

    async def delete(self, principal: Principal, device_id: str) -> None:
        async with transaction(self._sessions) as session:
            device = await self._visible(session, principal, device_id)
        # the broker first: while it still knows the device, the registry must too
        if not await self._in_stores("device_removed", lambda s: s.device_removed(device.id)):
            raise Unavailable(BROKER_AWAY.format("not deleted"))
        async with transaction(self._sessions) as session:
            if not await repo.delete_device(session, device.id):
                raise NotFound(NOT_FOUND)  # deleted concurrently
        log.info("device deleted", device_id=device_id, by=principal.user_id)
        await self._tell_others("device_removed", lambda o: o.device_removed(device_id))

    async def rotate(self, principal: Principal, device_id: str) -> Credentials:
        secret = secrets.token_urlsafe(32)
        async with transaction(self._sessions) as session:
            device = await self._visible(session, principal, device_id)
        # the broker first (it drops sessions opened with the old secret), so a device is never left
        # on its old secret; the registry's half is then retried for a while (_save_secret)
        identity = _identity(device)
        if not await self._in_stores("device_saved", lambda s: s.device_saved(identity, secret)):
            raise Unavailable(BROKER_AWAY.format("not given a new secret"))
        device = await self._save_secret(principal, device_id, hash_secret(secret))
        log.info("device secret rotated", device_id=device_id, by=principal.user_id)
        await self._tell_others("device_removed", lambda o: o.device_removed(device_id))
        await self._tell_others("device_saved", lambda o: o.device_saved(identity, secret))
        return Credentials(device, secret)

    async def _save_secret(self, principal: Principal, device_id: str, secret_hash: str) -> Device:
        """The registry's half of a rotation. The broker holds the new secret already and refuses the
        old one, so a database that fails now is retried for a few seconds (a failover, a restart)
        before the request fails; then the device can connect again only once rotated again."""
        delay, attempt = SAVE_RETRY_FIRST_S, 1
        while True:
            try:
                async with transaction(self._sessions) as session:
                    device = await self._visible(session, principal, device_id)
                    device.secret_hash = secret_hash
                    device.secret_rotated_at = utcnow()
                return device
            except DBAPIError as exc:
                if attempt == SAVE_ATTEMPTS:
                    log.error(
                        "device secret changed at the broker but not saved", device_id=device_id, exc_info=exc
                    )
                    raise Unavailable(ROTATION_NOT_SAVED) from None
                log.warning(
                    "saving a rotated device secret failed; retrying",
                    device_id=device_id,
                    error=type(exc).__name__,
                )
                await asyncio.sleep(delay)
                delay, attempt = delay * 2, attempt + 1

    async def _in_stores(self, event: str, call: Callable[[DeviceListener], Awaitable[None]]) -> bool:
        """Apply a change to every credential store; False if one of them failed (logged)."""
        results = [await self._notify(s, event, call(s)) for s in self._listeners if holds_credentials(s)]
        return all(results)

    async def _tell_others(self, event: str, call: Callable[[DeviceListener], Awaitable[None]]) -> None:
        for listener in [x for x in self._listeners if not holds_credentials(x)]:
            await self._notify(listener, event, call(listener))

    async def _notify(self, listener: DeviceListener, event: str, call: Awaitable[None]) -> bool:
        """Run one listener call; a failure (or no answer in LISTENER_TIMEOUT) is logged, and False."""
        try:
            async with asyncio.timeout(LISTENER_TIMEOUT):
                await call
            return True
        except Exception as exc:
            log.error("device listener failed", listener=type(listener).__name__, change=event, exc_info=exc)
            return False
