"""The read side, free of HTTP: who may see which topic, latest values, pages, aggregates, exports."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncEngine

from sensorcloud.core.errors import Invalid, NotFound
from sensorcloud.core.tokens import Principal
from sensorcloud.iot import aggregate as agg
from sensorcloud.iot import cursor as cur
from sensorcloud.iot import repository as repo
from sensorcloud.iot.latest_cache import LatestCache
from sensorcloud.iot.schemas import encode_latest
from sensorcloud.iot.timeparse import MAX_BUCKETS, auto_interval, bucket_count, interval_label

# One message whatever the reason, so that nobody learns that another user's topic exists.
TOPIC_NOT_FOUND = "Topic not found"
SEED_RANGE_LIMIT = 10_000
DEFAULT_PAGE = 100
MAX_PAGE = 1000
EXPORT_PAGE = 5000
DEFAULT_AGGREGATE_SPAN = timedelta(hours=24)


def owner_filter(principal: Principal) -> int | None:
    """Whose topics the caller sees: their own, or everyone's (None) for an admin."""
    return None if principal.is_admin else principal.user_id


@dataclass(frozen=True)
class Page:
    rows: Sequence[repo.ReadingRow]
    next_cursor: str | None


@dataclass(frozen=True)
class Aggregation:
    start: datetime
    end: datetime
    width: int
    buckets: list[agg.Bucket]  # (start, {function: value}), oldest first

    @property
    def label(self) -> str:
        return interval_label(self.width)


def may_read(principal: Principal, owner_id: int) -> bool:
    return principal.is_admin or owner_id == principal.user_id


class IotService:
    def __init__(self, engine: AsyncEngine, latest: LatestCache | None = None) -> None:
        self._engine = engine
        self._latest = LatestCache(encode_latest, 0, 0) if latest is None else latest

    async def topic(self, principal: Principal, topic: str) -> repo.TopicRow:
        """The topic's summary (its newest reading included); NotFound if absent or not the caller's."""
        async with self._engine.connect() as conn:
            row = await repo.find_topic(conn, topic, owner_filter(principal))
        if row is None:
            raise NotFound(TOPIC_NOT_FOUND)
        return row

    async def check_access(self, principal: Principal, topic: str) -> None:
        """NotFound unless the topic exists and is the caller's (an admin's: any), as topic() decides;
        through the latest-value cache (a topic's owner never changes), which then holds it."""
        entry = self._latest.get(topic)
        if entry is None:
            entry = await self._latest.load(topic, self._topic_row)  # kept for the next request
        if entry is None or not may_read(principal, entry.owner_id):
            raise NotFound(TOPIC_NOT_FOUND)

    async def latest_json(self, principal: Principal, topic: str) -> bytes:
        """The seed's answer for the topic's newest reading, JSON-encoded (schemas.encode_latest),
        from the latest-value cache when it holds the topic; NotFound as topic() refuses."""
        body = self.cached_json(principal, topic)
        if body is not None:
            return body
        entry = self._latest.get(topic)  # held but not the caller's: refused below, as by the database
        if entry is None:
            entry = await self._latest.load(topic, self._topic_row)
        if entry is None or not may_read(principal, entry.owner_id):
            raise NotFound(TOPIC_NOT_FOUND)
        return entry.body

    def has_cached(self, topic: str) -> bool:
        return self._latest.get(topic) is not None

    def cached_json(self, principal: Principal, topic: str) -> bytes | None:
        """latest_json's answer if the cache holds the topic for this caller, else None."""
        entry = self._latest.get(topic)
        if entry is None or not may_read(principal, entry.owner_id):
            return None
        self._latest.hits += 1
        return entry.body

    async def _topic_row(self, topic: str) -> repo.TopicRow | None:
        async with self._engine.connect() as conn:
            return await repo.find_topic(conn, topic, None)

    async def latest_rows(self, names: list[str]) -> list[repo.TopicRow]:
        """The summaries of these topics, whoever owns them (for the latest-value cache's refresh)."""
        async with self._engine.connect() as conn:
            return await repo.find_topics(conn, names)

    async def topics(self, principal: Principal) -> list[repo.TopicRow]:
        async with self._engine.connect() as conn:
            return await repo.list_topics(conn, owner_filter(principal))

    async def visible_topics(self, principal: Principal, names: Iterable[str]) -> set[str]:
        """Those of `names` the caller may read."""
        async with self._engine.connect() as conn:
            return await repo.existing_topics(conn, names, owner_filter(principal))

    async def seed_range(
        self, principal: Principal, topic: str, start: datetime, end: datetime
    ) -> tuple[list[repo.ReadingRow], bool]:
        """Readings of [start, end), oldest first, at most SEED_RANGE_LIMIT; and whether more exist."""
        await self.check_access(principal, topic)
        async with self._engine.connect() as conn:
            rows = await repo.readings_page(
                conn, topic, start=start, end=end, order="asc", after=None, limit=SEED_RANGE_LIMIT + 1
            )
        return list(rows[:SEED_RANGE_LIMIT]), len(rows) > SEED_RANGE_LIMIT

    async def page(
        self,
        principal: Principal,
        topic: str,
        *,
        start: datetime | None,
        end: datetime | None,
        order: cur.Order,
        limit: int,
        cursor: str | None,
    ) -> Page:
        """One page of readings in (ts, key) order and the cursor of the next (None on the last)."""
        _check_range(start, end)
        try:
            after = None if cursor is None else cur.decode(cursor, order, topic)
        except cur.BadCursor as exc:
            raise Invalid(f"Invalid cursor: {exc}") from None
        await self.check_access(principal, topic)
        async with self._engine.connect() as conn:
            rows = await repo.readings_page(
                conn, topic, start=start, end=end, order=order, after=after, limit=limit + 1
            )
        if len(rows) <= limit:
            return Page(rows=rows, next_cursor=None)
        last = rows[limit - 1]
        return Page(rows=rows[:limit], next_cursor=cur.encode(cur.Position(last.ts, last.key), order, topic))

    async def aggregate(
        self,
        principal: Principal,
        topic: str,
        *,
        start: datetime | None,
        end: datetime | None,
        width: int | None,
        functions: Sequence[str],
    ) -> Aggregation:
        """Buckets over [start, end) (default: the last 24 hours); width None picks about 500 buckets."""
        end = end or datetime.now(UTC)
        start = start or end - DEFAULT_AGGREGATE_SPAN
        _check_range(start, end)
        chosen = width or auto_interval(start, end)
        if bucket_count(start, end, chosen) > MAX_BUCKETS:
            raise Invalid(
                f"Too many buckets: {interval_label(chosen)} over this range makes more than "
                f"{MAX_BUCKETS}; use a wider interval, a shorter range or interval=auto"
            )
        await self.check_access(principal, topic)
        async with self._engine.connect() as conn:
            buckets = await agg.aggregate(conn, topic, start, end, chosen, functions)
        return Aggregation(start=start, end=end, width=chosen, buckets=buckets)

    async def export(
        self,
        principal: Principal,
        topic: str,
        *,
        start: datetime | None,
        end: datetime | None,
        page_size: int = EXPORT_PAGE,
    ) -> AsyncIterator[Sequence[repo.ReadingRow]]:
        """Check access now, then return the readings of [start, end) oldest first, a page at a time.

        Each page takes a pooled connection only while it is read, so a slow download holds no
        connection, and memory stays that of one page however long the range.
        """
        _check_range(start, end)
        await self.check_access(principal, topic)
        return self._pages(topic, start, end, page_size)

    async def _pages(
        self, topic: str, start: datetime | None, end: datetime | None, page_size: int
    ) -> AsyncIterator[Sequence[repo.ReadingRow]]:
        after: cur.Position | None = None
        while True:
            async with self._engine.connect() as conn:
                rows = await repo.readings_page(
                    conn, topic, start=start, end=end, order="asc", after=after, limit=page_size
                )
            if rows:
                yield rows
            if len(rows) < page_size:
                return
            after = cur.Position(rows[-1].ts, rows[-1].key)


def _check_range(start: datetime | None, end: datetime | None) -> None:
    if start is not None and end is not None and start >= end:
        raise Invalid("Invalid range: 'from' must be before 'to'")
