"""Fetch the auth service's JWKS for services that only verify tokens (iot, ingest).

Keys are fetched at start (without failing if auth is down) and again when a token names an
unknown kid, at most once per REFETCH_INTERVAL_S; when auth is down the cached keys keep working.
"""

from __future__ import annotations

import asyncio
import time

import httpx

from sensorcloud.core.keys import keys_from_jwks
from sensorcloud.core.logging import get_logger
from sensorcloud.core.tokens import KeyRing

log = get_logger(__name__)
REFETCH_INTERVAL_S = 30.0
TIMEOUT_S = 3.0


class JwksClient:
    def __init__(self, url: str, algorithm: str, ring: KeyRing) -> None:
        self._url = url
        self._algorithm = algorithm
        self._ring = ring
        self._last_attempt = 0.0
        self._lock = asyncio.Lock()

    async def refresh(self, *, force: bool = False) -> bool:
        """Fetch the key set; returns whether the ring holds any key afterwards."""
        async with self._lock:
            if not force and time.monotonic() - self._last_attempt < REFETCH_INTERVAL_S:
                return len(self._ring) > 0
            self._last_attempt = time.monotonic()
            try:
                async with httpx.AsyncClient(timeout=TIMEOUT_S) as client:
                    response = await client.get(self._url)
                    response.raise_for_status()
                    keys = keys_from_jwks(response.json(), self._algorithm)
            except (httpx.HTTPError, ValueError) as exc:
                log.warning("cannot fetch JWKS; keeping cached keys", url=self._url, error=type(exc).__name__)
                return len(self._ring) > 0
            if keys:
                self._ring.replace(keys)
                log.info("JWKS loaded", keys=len(keys))
            return len(self._ring) > 0

    async def on_unknown_kid(self) -> None:
        await self.refresh()
