"""The latest-value cache's background refresh and its Prometheus metrics (see iot/latest_cache.py)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from sensorcloud.core.logging import get_logger
from sensorcloud.core.tasks import cancel
from sensorcloud.iot.latest_cache import LatestCache, ReadMany

log = get_logger(__name__)


class Refresher:
    """Runs LatestCache.refresh every max_age / 4 seconds: an entry in use is read again when it is
    max_age / 2 to 3/4 max_age old, which leaves a busy event loop room to run it late."""

    def __init__(self, cache: LatestCache, read: ReadMany) -> None:
        self._cache = cache
        self._read = read
        self._task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self._cache.max_age / 4)
            try:
                await self._cache.refresh(self._read)
            except Exception as exc:  # the database may be away: entries then expire, requests read it
                log.warning("latest-value cache refresh failed", error=type(exc).__name__)

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="latest-cache-refresh")

    async def stop(self) -> None:
        await cancel(self._task)
        self._task = None


class _Metrics(Collector):
    """Read at scrape time: the request path only adds to two integers."""

    def __init__(self, cache: LatestCache) -> None:
        self._cache = cache

    def collect(self) -> Iterable[CounterMetricFamily | GaugeMetricFamily]:
        c = self._cache
        yield GaugeMetricFamily(
            "sensorcloud_latest_cache_entries", "Topics held by the latest-value cache", len(c)
        )
        yield GaugeMetricFamily(
            "sensorcloud_latest_cache_enabled", "1 while the latest-value cache keeps entries", int(c.enabled)
        )
        yield CounterMetricFamily("sensorcloud_latest_cache_hits", "Lookups answered from the cache", c.hits)
        yield CounterMetricFamily(
            "sensorcloud_latest_cache_misses", "Lookups that went to the database", c.misses
        )


def register_metrics(cache: LatestCache, registry: CollectorRegistry) -> None:
    registry.register(_Metrics(cache))
