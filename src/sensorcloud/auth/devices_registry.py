"""The device registry as the broker sees it: check a device's credentials against the database.

Brokers call authenticate() on every connect, so right answers are cached for a few seconds
(settings.device_auth_cache_ttl). The registry is itself a DeviceListener of the runtime: a
rotate or delete in this process drops the device from the cache at once; other processes
forget it within the TTL.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import time

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from sensorcloud.auth import devices_repository as repo
from sensorcloud.broker.acl import DeviceIdentity
from sensorcloud.core.db import transaction
from sensorcloud.core.runtime import Runtime

DEVICE_ID = re.compile(r"[0-9a-f]{16}")
MAX_CACHED = 10_000
MAX_SECRET_LENGTH = 256


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


class DeviceRegistry:
    """Implements broker.acl.DeviceAuthenticator and broker.acl.DeviceListener."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession], cache_ttl: float) -> None:
        self._sessions = sessions
        self._ttl = cache_ttl
        # device id -> {secret hash -> (identity, expires at)}
        self._cache: dict[str, dict[str, tuple[DeviceIdentity, float]]] = {}
        self._cached = 0
        # bumped by every forget(): a lookup that started before it must not cache its answer
        self._generation = 0

    async def authenticate(self, username: str, password: str) -> DeviceIdentity | None:
        """The device whose id is `username` if `password` is its current secret, else None."""
        if not DEVICE_ID.fullmatch(username) or not password or len(password) > MAX_SECRET_LENGTH:
            return None
        secret_hash = hash_secret(password)
        now = time.monotonic()
        hit = self._cache.get(username, {}).get(secret_hash)
        if hit is not None and hit[1] > now:
            return hit[0]
        generation = self._generation
        async with transaction(self._sessions) as session:
            device = await repo.active_device_by_id(session, username)
        if device is None or not hmac.compare_digest(device.secret_hash, secret_hash):
            return None
        identity = DeviceIdentity(device.id, device.owner_id, device.topic_prefix)
        if self._ttl > 0 and generation == self._generation:
            self._remember(identity, secret_hash, now + self._ttl)
        return identity

    def _remember(self, identity: DeviceIdentity, secret_hash: str, expires: float) -> None:
        if self._cached >= MAX_CACHED:
            # rare (that many devices connecting within one TTL); start over rather than track age
            self._cache.clear()
            self._cached = 0
        entries = self._cache.setdefault(identity.device_id, {})
        if secret_hash not in entries:
            self._cached += 1
        entries[secret_hash] = (identity, expires)

    def forget(self, device_id: str) -> None:
        """Drop every cached answer for the device (its secret changed or it is gone)."""
        self._generation += 1
        self._cached -= len(self._cache.pop(device_id, {}))

    async def device_saved(self, identity: DeviceIdentity, secret: str) -> None:
        """Nothing to do: the next connect reads the new secret from the database."""

    async def device_removed(self, device_id: str) -> None:
        self.forget(device_id)


def device_registry(runtime: Runtime) -> DeviceRegistry:
    """The runtime's registry (created and added to its device listeners on first use)."""
    for listener in runtime.device_listeners:
        if isinstance(listener, DeviceRegistry):
            return listener
    registry = DeviceRegistry(runtime.sessions, runtime.settings.device_auth_cache_ttl)
    # first, so the cache is cleared before a broker listener drops live connections
    runtime.device_listeners.insert(0, registry)
    return registry
