"""Small counters and flags with a time to live: in process (monolith) or in Redis (replicas).

Login throttling and token revocation use this, so that replicas of a service share them.
"""

from __future__ import annotations

import time
from typing import Protocol

from redis.asyncio import Redis


class SharedState(Protocol):
    async def incr(self, key: str, ttl: int) -> tuple[int, int]:
        """Add one to a counter whose window starts at its first hit; returns (count, seconds left)."""

    async def count(self, key: str) -> tuple[int, int]:
        """The counter's value and the seconds left in its window ((0, 0) when absent)."""

    async def delete(self, key: str) -> None: ...

    async def set_flag(self, key: str, ttl: int) -> None: ...

    async def has_flag(self, key: str) -> bool: ...

    async def ping(self) -> None: ...

    async def close(self) -> None: ...


class MemoryState:
    """Single-process state, bounded: expired keys are swept as new ones arrive."""

    def __init__(self, max_keys: int = 100_000) -> None:
        self._values: dict[str, tuple[int, float]] = {}
        self._flags: dict[str, float] = {}
        self._max_keys = max_keys

    def _live(self, key: str) -> tuple[int, float] | None:
        item = self._values.get(key)
        if item is None:
            return None
        if item[1] <= time.monotonic():
            del self._values[key]
            return None
        return item

    def _sweep(self) -> None:
        if len(self._values) < self._max_keys:
            return
        now = time.monotonic()
        for key in [k for k, (_, exp) in self._values.items() if exp <= now]:
            del self._values[key]
        while len(self._values) >= self._max_keys:  # still full of live keys: drop the oldest
            del self._values[next(iter(self._values))]

    async def incr(self, key: str, ttl: int) -> tuple[int, int]:
        item = self._live(key)
        if item is None:
            self._sweep()
            item = (0, time.monotonic() + ttl)
        value = (item[0] + 1, item[1])
        self._values[key] = value
        return value[0], max(1, int(value[1] - time.monotonic() + 0.999))

    async def count(self, key: str) -> tuple[int, int]:
        item = self._live(key)
        if item is None:
            return 0, 0
        return item[0], max(1, int(item[1] - time.monotonic() + 0.999))

    async def delete(self, key: str) -> None:
        self._values.pop(key, None)

    async def set_flag(self, key: str, ttl: int) -> None:
        # Flags (revocations) live apart from counters and are never evicted early: dropping one
        # would bring a revoked token back. They are few (one per logout) and expire on their own.
        now = time.monotonic()
        if len(self._flags) >= self._max_keys:
            self._flags = {k: exp for k, exp in self._flags.items() if exp > now}
        self._flags[key] = now + ttl

    async def has_flag(self, key: str) -> bool:
        expires = self._flags.get(key)
        if expires is None:
            return False
        if expires <= time.monotonic():
            del self._flags[key]
            return False
        return True

    async def ping(self) -> None:
        return None

    async def close(self) -> None:
        return None


class RedisState:
    """The same operations on Redis, so every replica sees one counter."""

    def __init__(self, url: str, prefix: str = "sensorcloud:") -> None:
        self._redis = Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2)
        self._prefix = prefix

    async def incr(self, key: str, ttl: int) -> tuple[int, int]:
        full = self._prefix + key
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.incr(full)
            pipe.expire(full, ttl, nx=True)
            pipe.ttl(full)
            count, _, left = await pipe.execute()
        return int(count), max(1, int(left))

    async def count(self, key: str) -> tuple[int, int]:
        full = self._prefix + key
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.get(full)
            pipe.ttl(full)
            value, left = await pipe.execute()
        if value is None:
            return 0, 0
        return int(value), max(1, int(left))

    async def delete(self, key: str) -> None:
        await self._redis.delete(self._prefix + key)

    async def set_flag(self, key: str, ttl: int) -> None:
        await self._redis.set(self._prefix + key, b"1", ex=ttl)

    async def has_flag(self, key: str) -> bool:
        return bool(await self._redis.exists(self._prefix + key))

    async def ping(self) -> None:
        await self._redis.ping()

    async def close(self) -> None:
        await self._redis.aclose()


def create_shared_state(redis_url: str | None) -> SharedState:
    return RedisState(redis_url) if redis_url else MemoryState()
