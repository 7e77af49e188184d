"""Monthly partitions of the PostgreSQL readings table: created ahead, dropped after retention."""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import UTC, datetime

AHEAD_MONTHS = 2
NAME = re.compile(r"^readings_p(\d{4})_(\d{2})$")


def month_start(ts: datetime) -> datetime:
    return datetime(ts.year, ts.month, 1, tzinfo=UTC)


def next_month(start: datetime) -> datetime:
    return datetime(start.year + start.month // 12, start.month % 12 + 1, 1, tzinfo=UTC)


def partition_name(start: datetime) -> str:
    return f"readings_p{start.year:04d}_{start.month:02d}"


def create_sql(start: datetime) -> str:
    """DDL for the partition holding [start, start + 1 month); idempotent."""
    end = next_month(start)
    return (
        f"CREATE TABLE IF NOT EXISTS {partition_name(start)} PARTITION OF readings "
        f"FOR VALUES FROM ('{start.isoformat()}') TO ('{end.isoformat()}')"
    )


def months_ahead(now: datetime, ahead: int = AHEAD_MONTHS) -> list[datetime]:
    months = [month_start(now)]
    for _ in range(ahead):
        months.append(next_month(months[-1]))
    return months


class PartitionManager:
    """Remembers which partitions exist and says which a batch still needs."""

    def __init__(self) -> None:
        self.known: set[str] = set()

    def missing_sql(self, timestamps: Iterable[datetime]) -> list[str]:
        """DDL for the partitions these timestamps (and the months ahead of now) need but lack."""
        wanted = {month_start(ts) for ts in timestamps} | set(months_ahead(datetime.now(UTC)))
        out = []
        for start in sorted(wanted):
            if partition_name(start) not in self.known:
                out.append(create_sql(start))
                self.known.add(partition_name(start))
        return out
